"""Fixtures that run the real sandbox for the tests in tests/sandbox/.

Every sandbox here is the real server, started as a subprocess in its own process group::

    python -m knlab_sandbox up --foreground --state-dir <tmp> --api-port 0 --gateway-port 0 [extra flags]

on random loopback ports, and stopped (the whole group, plus any process the runtime recorded)
when the fixture ends.

Fixtures:

- ``sandbox`` (session scope): one shared sandbox. Tests that share it must not depend on global
  state: use ``namespace`` (a fresh namespace per test) or unique names.
- ``namespace``: creates a namespace in the shared sandbox for one test; returns its name.
- ``start_sandbox`` (function scope): a factory for a private sandbox, e.g. with fault injection:
  ``sb = start_sandbox("--fault-history-limit", "5")`` or ``start_sandbox(env={...})``.

A ``Sandbox`` has ``state_dir``, ``kubeconfig``, ``api_url``, ``token``, ``ca_path``,
``gateway`` ((host, port)), ``gateway_url``, ``info`` (server.json) and ``settings`` (a
``knlab_sandbox.settings.Settings`` for the same state dir, for ``log_path``/``volume_dir``), and:

- ``kubectl(*args, input=None, check=True, timeout=60)`` → CompletedProcess (text), with this
  sandbox's kubeconfig and a private kubectl cache dir;
- ``request(method, path, body=None, *, headers=None, token=<its token>, timeout=10)`` →
  ``(status, headers, parsed JSON or text)`` over HTTPS verified against its CA;
- ``api_client()`` → a ``kubernetes.client.ApiClient`` for it;
- ``kill()`` (SIGKILL, as a crash), ``stop()`` and ``restart()`` (same state dir and ports);
- ``diagnostics()`` → where the live server's tasks and threads wait, and the tails of its
  server.log and requests.log. A failing test's report gets this for every sandbox it used (the
  fixtures' and any ``Sandbox`` it made itself), as extra sections after the traceback.

Import the helpers in other test files with ``from conftest import Sandbox`` (pytest puts this
directory on sys.path) or just use the fixtures.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from knlab_sandbox.processes import stop_recorded
from knlab_sandbox.settings import Settings

START_TIMEOUT = 30.0
KUBECTL = os.environ.get("KUBECTL", "kubectl")
# How much of each log a failure report shows.
SERVER_LOG_TAIL = 20000
REQUEST_LOG_LINES = 60
# Sandboxes made during the current test (a failure report covers them): reset as each test starts.
_made_in_test: list[Sandbox] = []


class Sandbox:
    def __init__(self, state_dir: Path, extra_args: tuple[str, ...] = (), env: dict[str, str] | None = None):
        self.state_dir = state_dir.resolve()
        self.extra_args = extra_args
        self.env = env or {}
        self.process: subprocess.Popen | None = None
        self.info: dict[str, Any] = {}
        self.api_port = 0
        self.gateway_port = 0
        _made_in_test.append(self)

    # --- lifecycle ---
    def start(self) -> Sandbox:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, "-m", "knlab_sandbox", "up", "--foreground", "--state-dir", str(self.state_dir)]
        argv += ["--api-port", str(self.api_port), "--gateway-port", str(self.gateway_port), *self.extra_args]
        with contextlib.suppress(FileNotFoundError):
            (self.state_dir / "server.json").unlink()
        log = (self.state_dir / "server.log").open("ab")
        self.process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **self.env},
        )
        log.close()
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"sandbox exited with {self.process.returncode}:\n{self.server_log()}")
            info = self._read_info()
            if info and info.get("pid") == self.process.pid:
                self.info = info
                if self._ready():
                    # A restart must come back on the same ports (the kubeconfig names them).
                    self.api_port = info["api_port"]
                    self.gateway_port = info.get("gateway_port") or 0
                    return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"sandbox did not answer within {START_TIMEOUT}s:\n{self.server_log()}")

    def _read_info(self) -> dict | None:
        try:
            return json.loads((self.state_dir / "server.json").read_text())
        except (OSError, ValueError):
            return None

    def _ready(self) -> bool:
        try:
            status, _, _ = self.request("GET", "/readyz", timeout=2)
        except OSError:
            return False
        return status == 200

    def server_log(self, tail: int = 5000) -> str:
        try:
            return (self.state_dir / "server.log").read_text(errors="replace")[-tail:]
        except OSError:
            return ""

    def _server_pid(self) -> int | None:
        """The pid of this state dir's live server (started here or by ``knlab-sandbox up``), if any."""
        info = self._read_info() or self.info
        pid = info.get("pid") if info else None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes() if pid else b""
        except OSError:
            return None
        return pid if b"knlab_sandbox" in cmdline else None

    def diagnostics(self) -> str:
        """Where the live server waits (its stacks, logged on SIGUSR1/SIGUSR2), then its logs' tails."""
        pid = self._server_pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGUSR1)  # asyncio tasks and threads, logged by the event loop
                time.sleep(1.0)
                os.kill(pid, signal.SIGUSR2)  # thread stacks from faulthandler, even if the loop is stuck
                time.sleep(0.5)
        try:
            requests = (self.state_dir / "requests.log").read_text(errors="replace").splitlines()
        except OSError:
            requests = []
        return (
            f"state dir {self.state_dir}, server pid {pid or '(not running)'}\n"
            f"--- server.log (tail) ---\n{self.server_log(SERVER_LOG_TAIL)}\n"
            f"--- requests.log (last {REQUEST_LOG_LINES}) ---\n" + "\n".join(requests[-REQUEST_LOG_LINES:])
        )

    def _signal(self, sig: signal.Signals) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, sig)

    def kill(self) -> None:
        """SIGKILL the server's process group, as a crash would (children recorded by the runtime stay)."""
        self._signal(signal.SIGKILL)
        if self.process is not None:
            self.process.wait(timeout=10)

    def stop(self) -> None:
        self._signal(signal.SIGTERM)
        if self.process is not None:
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                self.process.wait(timeout=10)
        stop_recorded(self.state_dir / "run" / "pids")

    def restart(self) -> Sandbox:
        self.stop()
        return self.start()

    # --- addresses and credentials ---
    @property
    def settings(self) -> Settings:
        return Settings(self.state_dir)

    @property
    def kubeconfig(self) -> Path:
        return Path(self.info["kubeconfig"])

    @property
    def api_url(self) -> str:
        return self.info["api"]

    @property
    def ca_path(self) -> Path:
        return Path(self.info["ca"])

    @property
    def token(self) -> str:
        return (self.state_dir / "token").read_text().strip()

    @property
    def gateway(self) -> tuple[str, int] | None:
        port = self.info.get("gateway_port")
        return ("127.0.0.1", port) if port else None

    @property
    def gateway_url(self) -> str | None:
        return self.info.get("gateway")

    # --- clients ---
    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess:
        argv = [KUBECTL, "--kubeconfig", str(self.kubeconfig), "--cache-dir", str(self.state_dir / "kubectl-cache")]
        result = subprocess.run(
            [*argv, *args], input=input, capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
        return result

    def ssl_context(self, ca: Path | None = None) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(ca or self.ca_path))

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        headers: dict[str, str] | None = None,
        token: str | None = "default",
        timeout: float = 10,
        ca: Path | None = None,
    ) -> tuple[int, dict[str, str], Any]:
        host, port = self.api_url.removeprefix("https://").rsplit(":", 1)
        connection = http.client.HTTPSConnection(host, int(port), context=self.ssl_context(ca), timeout=timeout)
        all_headers = {"Accept": "application/json", **(headers or {})}
        if token == "default":
            token = self.token
        if token:
            all_headers["Authorization"] = f"Bearer {token}"
        data = None
        if body is not None:
            data = body if isinstance(body, bytes | str) else json.dumps(body)
            all_headers.setdefault("Content-Type", "application/json")
        try:
            connection.request(method, path, body=data, headers=all_headers)
            response = connection.getresponse()
            raw = response.read()
            response_headers = {k.lower(): v for k, v in response.getheaders()}
        finally:
            connection.close()
        text = raw.decode(errors="replace")
        try:
            parsed: Any = json.loads(text)
        except ValueError:
            parsed = text
        return response.status, response_headers, parsed

    def api_client(self) -> Any:
        from kubernetes import client, config

        configuration = client.Configuration()
        config.load_kube_config(config_file=str(self.kubeconfig), client_configuration=configuration)
        return client.ApiClient(configuration)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    _made_in_test.clear()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    """A failing test's report shows what its sandboxes were doing (before teardown stops them)."""
    outcome = yield
    report = outcome.get_result()
    if not report.failed or call.when == "teardown":
        return
    used = [value for value in getattr(item, "funcargs", {}).values() if isinstance(value, Sandbox)]
    seen: set[Path] = set()
    for sb in [*used, *_made_in_test]:
        if sb.state_dir not in seen:
            seen.add(sb.state_dir)
            report.sections.append((f"sandbox {sb.state_dir.name}", sb.diagnostics()))


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    sb = Sandbox(tmp_path_factory.mktemp("sandbox")).start()
    try:
        yield sb
    finally:
        sb.stop()


@pytest.fixture
def start_sandbox(tmp_path: Path) -> Iterator[Any]:
    started: list[Sandbox] = []

    def start(*extra_args: str, env: dict[str, str] | None = None, state_dir: Path | None = None) -> Sandbox:
        sb = Sandbox(state_dir or tmp_path / f"sandbox-{len(started)}", tuple(extra_args), env)
        started.append(sb)
        return sb.start()

    try:
        yield start
    finally:
        for sb in started:
            sb.stop()


@pytest.fixture
def namespace(sandbox: Sandbox) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:8]}"
    sandbox.kubectl("create", "namespace", name)
    yield name
    sandbox.kubectl("delete", "namespace", name, "--wait=false", check=False)
