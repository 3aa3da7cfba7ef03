"""Process wiring: store → ResourceAPI → admission plug-ins and seeds → gateway → runtime → controllers → HTTPS API.

`serve(settings)` runs until SIGTERM/SIGINT, then stops the controllers, every process the runtime
started, the gateway and the API, in that order. It writes `server.json` (pid and the real
addresses, since ports may be 0 = random) and the kubeconfig once the API listens.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import faulthandler
import gc
import importlib
import importlib.util
import inspect
import io
import json
import logging
import os
import secrets
import signal
import ssl
import sys
import threading
import time
import traceback
import types
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml
from aiohttp import web

from . import certs
from .api import ApiServer
from .auth import SIGNING_KEY, TokenAuthority
from .faults import Faults
from .resources import ResourceAPI
from .settings import CONTEXT_NAME, Settings
from .store import Store

log = logging.getLogger("knlab_sandbox")

# Admission plug-ins: importing them registers their hooks; a module's SEED_OBJECTS are created at start.
ADMISSION_MODULES = ("knative_admission", "tekton_admission", "rbac")
# Controllers: (module, class), each built as cls(api, settings, runtime, gateway) and run as a task.
CONTROLLERS = (("knative", "KnativeController"), ("tekton", "TektonController"))
CONTROLLER_RESTART_DELAY = 1.0


class StartupError(Exception):
    """The server cannot start; the message says why (shown by `knlab-sandbox up`)."""


def _import_optional(name: str) -> ModuleType | None:
    """Import a sibling module. Absent → None (that part is simply not wired); broken → StartupError."""
    qualified = f"{__package__}.{name}"
    if importlib.util.find_spec(qualified) is None:
        log.warning("module %s is not present: not wired", qualified)
        return None
    try:
        return importlib.import_module(qualified)
    except Exception as exc:
        raise StartupError(f"module {qualified} failed to import: {type(exc).__name__}: {exc}") from exc


def _build_controller(
    cls: type, api: ResourceAPI, settings: Settings, runtime: Any, gateway: Any, *, tokens: Any = None
) -> Any:
    """cls(api, settings, runtime=…, gateway=…, tokens=…), passing each only to controllers that take it."""
    parameters = inspect.signature(cls).parameters
    offered = (("runtime", runtime), ("gateway", gateway), ("tokens", tokens))
    extra = {name: value for name, value in offered if name in parameters}
    return cls(api, settings, **extra)


def ensure_token(settings: Settings) -> str:
    """The bearer token, made once per state directory (the kubeconfig keeps working across restarts)."""
    path = settings.token_path
    if path.exists():
        token = path.read_text().strip()
        if token:
            return token
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(token + "\n")
    return token


def kubeconfig(server_url: str, ca_pem: bytes, token: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": CONTEXT_NAME,
                "cluster": {"server": server_url, "certificate-authority-data": base64.b64encode(ca_pem).decode()},
            }
        ],
        "users": [{"name": CONTEXT_NAME, "user": {"token": token}}],
        "contexts": [
            {"name": CONTEXT_NAME, "context": {"cluster": CONTEXT_NAME, "user": CONTEXT_NAME, "namespace": "default"}}
        ],
        "current-context": CONTEXT_NAME,
        "preferences": {},
    }


def _write_atomic(path: Path, text: str, mode: int = 0o644) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(tmp, path)


@dataclass
class Server:
    settings: Settings
    tasks: list[asyncio.Task] = field(default_factory=list)
    runner: web.AppRunner | None = None
    gateway: Any = None
    runtime: Any = None
    store: Store | None = None
    faults: Faults | None = None

    async def start(self) -> dict:
        settings = self.settings
        settings.state_dir.mkdir(parents=True, exist_ok=True)
        token = ensure_token(settings)
        pki = certs.ensure_pki(settings.pki_dir, [settings.api_host])
        history = settings.faults.history_limit or settings.history_size
        self.store = Store(settings.db_path, history_size=history)
        api = ResourceAPI(self.store, settings)

        modules = [m for m in (_import_optional(n) for n in ADMISSION_MODULES) if m is not None]
        controller_classes = []
        for module_name, class_name in CONTROLLERS:
            module = _import_optional(module_name)
            if module is None:
                continue
            cls = getattr(module, class_name, None)
            if cls is None:
                raise StartupError(f"module {module.__name__} has no class {class_name}")
            controller_classes.append(cls)
        await api.seed_registered()
        for module in modules:
            await api.seed(list(getattr(module, "SEED_OBJECTS", [])))

        tokens = TokenAuthority(settings.pki_dir / SIGNING_KEY)
        self.gateway, self.runtime = await self._start_runtime()
        controllers = [
            _build_controller(cls, api, settings, self.runtime, self.gateway, tokens=tokens)
            for cls in controller_classes
        ]
        for controller in controllers:
            if self.runtime is not None and hasattr(controller, "on_runtime_exit"):
                self.runtime.on_exit = controller.on_runtime_exit

        self.faults = Faults(settings.faults, settings.request_log_path)
        app = ApiServer(api, settings, token, self.faults, tokens).app()
        self.runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await self.runner.setup()
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(pki.server_cert, pki.server_key)
        site = web.TCPSite(self.runner, settings.api_host, settings.api_port, ssl_context=context)
        try:
            await site.start()
        except OSError as exc:
            raise StartupError(f"cannot listen on {settings.api_host}:{settings.api_port}: {exc.strerror}") from exc
        api_port = self.runner.addresses[0][1]

        for controller in controllers:
            if hasattr(controller, "api_endpoint"):  # what pods get in KUBERNETES_SERVICE_HOST/_PORT
                controller.api_endpoint = (settings.api_host, api_port)
            self.tasks.append(asyncio.create_task(self._supervise(controller), name=type(controller).__name__))

        gateway_address = tuple(self.gateway.address) if self.gateway is not None else None
        info = {
            "pid": os.getpid(),
            "api": f"https://{settings.api_host}:{api_port}",
            "api_port": api_port,
            "gateway": f"http://{gateway_address[0]}:{gateway_address[1]}" if gateway_address else None,
            "gateway_port": gateway_address[1] if gateway_address else None,
            "kubeconfig": str(settings.kubeconfig_path),
            "ca": str(pki.ca_cert),
            "state_dir": str(settings.state_dir),
            "started": time.time(),
            "controllers": [type(c).__name__ for c in controllers],
        }
        config = kubeconfig(info["api"], pki.ca_cert.read_bytes(), token)
        _write_atomic(settings.kubeconfig_path, yaml.safe_dump(config, sort_keys=False), 0o600)
        _write_atomic(settings.info_path, json.dumps(info, indent=2) + "\n")
        log.info("knlab-sandbox API on %s, gateway on %s", info["api"], info["gateway"])
        return info

    async def _start_runtime(self) -> tuple[Any, Any]:
        gateway_module = _import_optional("gateway")
        runtime_module = _import_optional("runtime")
        gateway = runtime = None
        if gateway_module is not None:
            gateway = gateway_module.Gateway(self.settings.gateway_port, host=self.settings.gateway_host)
            try:
                await gateway.start()
            except OSError as exc:
                raise StartupError(
                    f"cannot listen on {self.settings.gateway_host}:{self.settings.gateway_port}: {exc.strerror}"
                ) from exc
        if runtime_module is not None:
            if gateway is None:
                raise StartupError("runtime.py needs gateway.py, which is missing")
            runtime = runtime_module.Runtime(self.settings, gateway)
            stopped = runtime.stop_orphans()
            if stopped:
                log.info("stopped what an earlier server left running: pids %s", stopped)
        return gateway, runtime

    async def _supervise(self, controller: Any) -> None:
        """Run a controller; if it crashes, log why and start it again (as a crash-looping pod would)."""
        while True:
            try:
                await controller.run()
                log.warning("%s.run() returned; restarting it", type(controller).__name__)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s crashed; restarting it in %.0fs", type(controller).__name__, CONTROLLER_RESTART_DELAY)
            await asyncio.sleep(CONTROLLER_RESTART_DELAY)

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.runtime is not None:
            with contextlib.suppress(Exception):
                await self.runtime.stop_all()
        if self.gateway is not None:
            with contextlib.suppress(Exception):
                await self.gateway.stop()
        if self.runner is not None:
            await self.runner.cleanup()
        if self.faults is not None:
            self.faults.close()
        if self.store is not None:
            self.store.close()
        with contextlib.suppress(FileNotFoundError):
            info = json.loads(self.settings.info_path.read_text())
            if info.get("pid") == os.getpid():
                self.settings.info_path.unlink()


async def serve(settings: Settings) -> None:
    """Run the sandbox in this process until SIGTERM or SIGINT."""
    server = Server(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # Diagnostics for a sandbox that seems stuck (tests send these when they fail): SIGUSR1 logs
    # where every asyncio task and thread is waiting; SIGUSR2 dumps the threads even when the event
    # loop itself is blocked (faulthandler answers from C, without the loop).
    loop.add_signal_handler(signal.SIGUSR1, log_stacks)
    faulthandler.register(signal.SIGUSR2, all_threads=True)
    try:
        await server.start()
        await stop.wait()
    finally:
        await server.stop()


def _awaited_frames(awaitable: Any) -> list[Any]:
    """The frames of a suspended coroutine and of what it awaits, outermost first."""
    frames = []
    while awaitable is not None:
        frame = getattr(awaitable, "cr_frame", None) or getattr(awaitable, "ag_frame", None)
        if frame is None:
            break
        frames.append(frame)
        awaitable = getattr(awaitable, "cr_await", None) or getattr(awaitable, "ag_await", None)
    return frames


def _format_frames(frames: list[Any]) -> str:
    return "".join(traceback.format_list(traceback.StackSummary.extract((f, f.f_lineno) for f in frames)))


def log_stacks() -> None:
    """Log where every asyncio task, async generator and thread waits, to see why a sandbox is stuck."""
    out = io.StringIO()
    for task in sorted(asyncio.all_tasks(), key=lambda t: t.get_name()):
        out.write(f"Task {task.get_name()}:\n{_format_frames(_awaited_frames(task.get_coro()))}")
    # `async for` awaits an asend object that hides its generator: show suspended generators apart.
    for obj in gc.get_objects():
        if isinstance(obj, types.AsyncGeneratorType) and obj.ag_await is not None:
            out.write(f"Async generator {obj.__qualname__}:\n{_format_frames(_awaited_frames(obj))}")
    names = {thread.ident: thread.name for thread in threading.enumerate()}
    for ident, frame in sys._current_frames().items():
        out.write(f"Thread {names.get(ident, ident)}:\n{''.join(traceback.format_stack(frame))}")
    log.warning("stacks on request (SIGUSR1):\n%s", out.getvalue())


def setup_logging() -> None:
    """Log to stderr: `up` sends the server's stderr to <state-dir>/server.log."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
