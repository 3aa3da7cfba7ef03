"""Shared pieces of the benchmarks: the sandbox, a small API client, logs, statistics, the machine.

Everything talks to 127.0.0.1 only. Every wait has a deadline and every loop a bound.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import math
import os
import platform
import shutil
import ssl
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
BENCH_DIR = REPO / "benchmarks"
OUT_DIR = BENCH_DIR / "out"
VENV_BIN = REPO / ".venv" / "bin"
COLLECTIONS = REPO / ".build" / "collections"


def tool(name: str) -> str:
    """The venv's copy of a command when there is one, else the one on PATH."""
    candidate = VENV_BIN / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if not found:
        raise SystemExit(f"benchmarks: {name} not found (run `make setup`)")
    return found


def ansible_env(**extra: str) -> dict[str, str]:
    """Environment for ansible-playbook: this checkout as knlab.serverless, kubernetes.core from the venv."""
    site = next((VENV_BIN.parent / "lib").glob("python3*/site-packages"), None)
    paths = [str(COLLECTIONS)] + ([str(site)] if site else [])
    env = dict(os.environ)
    env.update(
        ANSIBLE_COLLECTIONS_PATH=":".join(paths),
        ANSIBLE_CALLBACK_PLUGINS=str(BENCH_DIR / "callback_plugins"),
        ANSIBLE_CALLBACKS_ENABLED="knlab_bench_timing",
        ANSIBLE_LOCALHOST_WARNING="false",
        ANSIBLE_INVENTORY_UNPARSED_WARNING="false",
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_PYTHON_INTERPRETER=sys.executable,
        PATH=f"{VENV_BIN}:{env.get('PATH', '')}",
    )
    env.update(extra)
    return env


def wait_until(what: str, check: Callable[[], Any], timeout: float, interval: float = 0.02) -> Any:
    """Poll ``check`` until it returns something truthy; SystemExit naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


# --- the sandbox ----------------------------------------------------------------------------------


class Sandbox:
    """A sandbox started with the real CLI on random loopback ports, in its own state dir."""

    def __init__(self, state_dir: Path, *extra_args: str):
        self.state_dir = state_dir.resolve()
        self.extra_args = extra_args
        self.info: dict[str, Any] = {}

    def up(self, timeout: float = 60.0) -> float:
        """Start it; returns the seconds `knlab-sandbox up` took (it returns once the API answers)."""
        argv = [tool("knlab-sandbox"), "up", "--state-dir", str(self.state_dir), "--api-port", "0"]
        argv += ["--gateway-port", "0", *self.extra_args]
        started = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, timeout=timeout)
        elapsed = time.perf_counter() - started
        self.info = json.loads((self.state_dir / "server.json").read_text())
        return elapsed

    def down(self) -> None:
        argv = [tool("knlab-sandbox"), "down", "--state-dir", str(self.state_dir)]
        subprocess.run(argv, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)

    @property
    def kubeconfig(self) -> str:
        return str(self.state_dir / "kubeconfig")

    @property
    def request_log(self) -> Path:
        return self.state_dir / "requests.log"

    @property
    def transitions_log(self) -> Path:
        return self.state_dir / "transitions.log"

    def client(self) -> Api:
        token = (self.state_dir / "token").read_text().strip()
        return Api(self.info["api"], self.info["ca"], token)

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()


class ApiError(Exception):
    def __init__(self, status: int, body: Any):
        super().__init__(f"HTTP {status}: {body}")
        self.status = status
        self.body = body


class Api:
    """Just enough of a Kubernetes client for the benchmarks' own set-up (not what is measured)."""

    def __init__(self, url: str, ca: str, token: str):
        host, port = url.removeprefix("https://").rsplit(":", 1)
        self.host, self.port = host, int(port)
        self.context = ssl.create_default_context(cafile=ca)
        self.token = token

    def request(self, method: str, path: str, body: Any = None, content_type: str = "application/json") -> Any:
        connection = http.client.HTTPSConnection(self.host, self.port, context=self.context, timeout=30)
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json", "User-Agent": "knlab-bench"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = content_type
        try:
            connection.request(method, path, body=data, headers=headers)
            response = connection.getresponse()
            raw = response.read()
        finally:
            connection.close()
        parsed = json.loads(raw) if raw else None
        if response.status >= 400:
            raise ApiError(response.status, parsed)
        return parsed

    def create(self, path: str, body: dict) -> dict:
        return self.request("POST", path, body)

    def get(self, path: str) -> dict | None:
        try:
            return self.request("GET", path)
        except ApiError as error:
            if error.status == 404:
                return None
            raise

    def merge_patch(self, path: str, patch: dict) -> dict:
        return self.request("PATCH", path, patch, "application/merge-patch+json")

    def delete(self, path: str) -> None:
        with contextlib.suppress(ApiError):
            self.request("DELETE", path, {"propagationPolicy": "Background"})


def condition(obj: dict | None, kind: str) -> dict:
    for item in ((obj or {}).get("status") or {}).get("conditions") or []:
        if item.get("type") == kind:
            return item
    return {}


# --- logs -----------------------------------------------------------------------------------------


def task_times(entries: list[dict]) -> list[tuple[str, float]]:
    """(task, seconds from its start to its result), in the order they ran."""
    times: list[tuple[str, float]] = []
    began: float | None = None
    for entry in entries:
        if entry["status"] == "start":
            began = entry["time"]
        elif began is not None:
            times.append((entry["task"], round(entry["time"] - began, 3)))
            began = None
    return times


def read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class LogTail:
    """New JSON lines of a growing log since the last call (whole lines only)."""

    def __init__(self, path: Path):
        self.path = path
        self.offset = path.stat().st_size if path.exists() else 0

    def new(self) -> list[dict]:
        if not self.path.exists():
            return []
        with self.path.open("rb") as handle:
            handle.seek(self.offset)
            chunk = handle.read()
        complete = chunk[: chunk.rfind(b"\n") + 1]
        self.offset += len(complete)
        return [json.loads(line) for line in complete.splitlines() if line.strip()]


# --- numbers --------------------------------------------------------------------------------------


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile (no interpolation: always one of the measured values)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def summary(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "median": statistics.median(values),
        "p95": percentile(values, 0.95),
        "min": min(values),
        "max": max(values),
        "mean": statistics.fmean(values),
    }


def save(name: str, data: dict) -> Path:
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    path = OUT_DIR / f"{name}.json"
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


def load(name: str) -> dict | None:
    path = OUT_DIR / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


# --- the machine ----------------------------------------------------------------------------------


def _first_line(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "not found"
    return (done.stdout or done.stderr).strip().splitlines()[0] if (done.stdout or done.stderr).strip() else "?"


def _proc_field(path: str, key: str) -> str:
    with contextlib.suppress(OSError):
        for line in Path(path).read_text().splitlines():
            if line.startswith(key):
                return line.split(":", 1)[1].strip()
    return "unknown"


def machine() -> dict[str, str]:
    memory_kib = _proc_field("/proc/meminfo", "MemTotal").split()[0]
    python = tool("python")
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "cores": str(os.cpu_count()),
        "memory": f"{int(memory_kib) / 1024 / 1024:.1f} GiB" if memory_kib.isdigit() else memory_kib,
        "cpu": _proc_field("/proc/cpuinfo", "model name"),
        "os": platform.platform(),
        "python": _first_line([python, "--version"]),
        "ansible-core": _first_line([python, "-c", "import ansible.release as r; print(r.__version__)"]),
        "kubernetes.core": _first_line(
            [
                python,
                "-c",
                "import json, ansible_collections.kubernetes.core as c, pathlib; "
                "print(json.loads((pathlib.Path(list(c.__path__)[0]) / 'MANIFEST.json').read_text())"
                "['collection_info']['version'])",
            ]
        ),
        "kubernetes (Python client)": _first_line([python, "-c", "import kubernetes; print(kubernetes.__version__)"]),
        "kubectl": _first_line([tool("kubectl"), "version", "--client"]),
        "docker-registry": _first_line(["/usr/bin/docker-registry", "--version"]),
    }


@contextlib.contextmanager
def processes() -> Iterator[list[subprocess.Popen]]:
    """Children started inside are killed (their whole session) when the block ends, however it ends."""
    started: list[subprocess.Popen] = []
    try:
        yield started
    finally:
        for child in started:
            if child.poll() is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(child.pid, 9)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    child.wait(timeout=10)
