"""`knlab-sandbox up|down|status|kubeconfig|s3`.

`up` starts the server in the background (its own session, output in `<state-dir>/server.log`),
returns once the API answers and says where the kubeconfig is. Running `up` again while it runs
changes nothing. `down` stops the server and every process it started. `status` exits 0 when the
sandbox runs and 3 when it does not (as LSB init scripts do). `s3 up|down|info` starts, stops or
describes (JSON) a real S3 server on 127.0.0.1 for hubs on object storage (s3_server.py); `down`
stops it too.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import os
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path

from . import s3_server
from .processes import stop_recorded
from .settings import (
    DEFAULT_API_PORT,
    DEFAULT_GATEWAY_PORT,
    DEFAULT_STATE_DIR,
    FaultSettings,
    Settings,
    parse_codes,
)

START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
EXIT_NOT_RUNNING = 3


def _state_dir_parent() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "--state-dir",
        type=Path,
        default=argparse.SUPPRESS,
        help=f"where the sandbox keeps everything (default: $KNLAB_SANDBOX_STATE_DIR or {DEFAULT_STATE_DIR}/)",
    )
    return parent


def build_parser() -> argparse.ArgumentParser:
    parent = _state_dir_parent()
    parser = argparse.ArgumentParser(
        prog="knlab-sandbox",
        description="An embedded Kubernetes-compatible control plane with Knative Serving and Tekton simulated.",
        parents=[parent],
    )
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", parents=[parent], help="start the sandbox (no-op when it runs)")
    up.add_argument("--api-host", default="127.0.0.1", help="address of the API server (default 127.0.0.1)")
    up.add_argument("--api-port", type=int, default=DEFAULT_API_PORT, help=f"0 = random (default {DEFAULT_API_PORT})")
    up.add_argument("--gateway-host", default="127.0.0.1", help="address of the gateway (default 127.0.0.1)")
    up.add_argument(
        "--gateway-port", type=int, default=DEFAULT_GATEWAY_PORT, help=f"0 = random (default {DEFAULT_GATEWAY_PORT})"
    )
    up.add_argument("--step-delay", type=float, default=0.0, help="seconds added to every Tekton step")
    up.add_argument("--foreground", action="store_true", help="run the server in this process (tests, debugging)")
    faults = up.add_argument_group("fault injection (also KNLAB_SANDBOX_FAULT_<NAME> variables)")
    faults.add_argument("--fault-seed", type=int, help="random seed: the same seed injects the same faults")
    faults.add_argument("--fault-error-rate", type=float, help="fraction of API requests answered with an error")
    faults.add_argument("--fault-error-codes", help="comma-separated codes to pick from (default 429,500,503)")
    faults.add_argument("--fault-retry-after", type=int, help="Retry-After seconds on injected errors (default 1)")
    faults.add_argument("--fault-latency", type=float, help="seconds added to every API request")
    faults.add_argument("--fault-drop-watch-after", type=float, help="cut every watch stream after this many seconds")
    faults.add_argument("--fault-history-limit", type=int, help="keep only the last K watch events (early 410s)")
    sub.add_parser("down", parents=[parent], help="stop the sandbox and every process it started")
    sub.add_parser("status", parents=[parent], help="show whether it runs and its API and gateway addresses")
    kc = sub.add_parser("kubeconfig", parents=[parent], help="print the kubeconfig path (--print: its content)")
    kc.add_argument("--print", dest="show", action="store_true", help="print the kubeconfig itself")
    s3 = sub.add_parser("s3", parents=[parent], help="a real S3 server (versitygw) on 127.0.0.1: up, down, info")
    s3.add_argument("action", choices=["up", "down", "info"], help="up prints the endpoint and keys as info does")
    s3.add_argument(
        "--port", type=int, default=s3_server.DEFAULT_PORT, help=f"0 = random (default {s3_server.DEFAULT_PORT})"
    )
    s3.add_argument("--bucket", default=s3_server.BUCKET, help=f"made at up (default {s3_server.BUCKET})")
    return parser


def _state_dir(args: argparse.Namespace) -> Path:
    return Path(getattr(args, "state_dir", None) or os.environ.get("KNLAB_SANDBOX_STATE_DIR") or DEFAULT_STATE_DIR)


def _faults(args: argparse.Namespace) -> FaultSettings:
    faults = FaultSettings.from_env()
    for name in ("seed", "error_rate", "retry_after", "latency", "drop_watch_after", "history_limit"):
        value = getattr(args, f"fault_{name}", None)
        if value is not None:
            setattr(faults, name, value)
    if args.fault_error_codes:
        faults.error_codes = parse_codes(args.fault_error_codes)
    if not 0.0 <= faults.error_rate <= 1.0:
        raise ValueError(f"--fault-error-rate must be between 0 and 1, not {faults.error_rate}")
    return faults


def settings_from_args(args: argparse.Namespace) -> Settings:
    for name in ("api_port", "gateway_port"):
        port = getattr(args, name)
        if not 0 <= port <= 65535:
            raise ValueError(f"--{name.replace('_', '-')} must be 0-65535, not {port}")
    return Settings(
        state_dir=_state_dir(args),
        api_host=args.api_host,
        api_port=args.api_port,
        gateway_host=args.gateway_host,
        gateway_port=args.gateway_port,
        step_delay=args.step_delay,
        faults=_faults(args),
    )


# --- the running server ------------------------------------------------------------------------


def read_info(state_dir: Path) -> dict | None:
    try:
        return json.loads((state_dir.resolve() / "server.json").read_text())
    except (OSError, ValueError):
        return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child (not reaped yet) is not alive for our purposes.
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z"):
            return False
    return True


def api_answers(info: dict, timeout: float = 2.0) -> bool:
    """True when the API answers /readyz over TLS verified against the sandbox's CA."""
    try:
        context = ssl.create_default_context(cafile=info["ca"])
        host, port = info["api"].removeprefix("https://").rsplit(":", 1)
        connection = http.client.HTTPSConnection(host, int(port), context=context, timeout=timeout)
        connection.request("GET", "/readyz")
        ok = connection.getresponse().status == 200
        connection.close()
        return ok
    except (OSError, KeyError, ValueError, http.client.HTTPException):
        return False


def running_info(state_dir: Path) -> dict | None:
    info = read_info(state_dir)
    if info and _pid_alive(int(info.get("pid", 0))) and api_answers(info):
        return info
    return None


def _describe(info: dict) -> str:
    return (
        f"API:        {info['api']}\n"
        f"gateway:    {info.get('gateway') or '(not running: gateway.py missing)'}\n"
        f"kubeconfig: {info['kubeconfig']}\n"
        f"pid:        {info['pid']}"
    )


def _server_argv(args: argparse.Namespace, settings: Settings) -> list[str]:
    argv = [sys.executable, "-m", "knlab_sandbox", "up", "--foreground", "--state-dir", str(settings.state_dir)]
    argv += ["--api-host", settings.api_host, "--api-port", str(settings.api_port)]
    argv += ["--gateway-host", settings.gateway_host, "--gateway-port", str(settings.gateway_port)]
    argv += ["--step-delay", str(settings.step_delay)]
    faults = settings.faults
    argv += ["--fault-seed", str(faults.seed), "--fault-error-rate", str(faults.error_rate)]
    argv += [
        "--fault-error-codes",
        ",".join(map(str, faults.error_codes)),
        "--fault-retry-after",
        str(faults.retry_after),
    ]
    argv += ["--fault-latency", str(faults.latency), "--fault-drop-watch-after", str(faults.drop_watch_after)]
    argv += ["--fault-history-limit", str(faults.history_limit)]
    return argv


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def cmd_up(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    if args.foreground:
        return _run_foreground(settings)
    info = running_info(settings.state_dir)
    if info:
        print(f"knlab-sandbox is already running\n{_describe(info)}")
        return 0
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    stale = read_info(settings.state_dir)
    if stale and _pid_alive(int(stale.get("pid", 0))):
        print(
            f"a sandbox process (pid {stale['pid']}) exists but its API does not answer; stopping it", file=sys.stderr
        )
        _stop(settings.state_dir)
    with contextlib.suppress(FileNotFoundError):
        settings.info_path.unlink()
    started = time.monotonic()
    with settings.server_log_path.open("ab") as log:
        process = subprocess.Popen(
            _server_argv(args, settings),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: `down` stops it and its children together
            cwd=str(settings.state_dir),
        )
    settings.pid_path.write_text(f"{process.pid}\n")
    while time.monotonic() - started < START_TIMEOUT:
        if process.poll() is not None:
            print(
                f"knlab-sandbox failed to start (exit {process.returncode}); {settings.server_log_path}:",
                file=sys.stderr,
            )
            print(_tail(settings.server_log_path), file=sys.stderr)
            return 1
        info = read_info(settings.state_dir)
        if info and info.get("pid") == process.pid and api_answers(info):
            print(f"knlab-sandbox is up in {time.monotonic() - started:.2f}s\n{_describe(info)}")
            print(f"use it: export KUBECONFIG={info['kubeconfig']}")
            return 0
        time.sleep(0.05)
    print(f"knlab-sandbox did not answer within {START_TIMEOUT:.0f}s; see {settings.server_log_path}", file=sys.stderr)
    _stop(settings.state_dir)
    return 1


def _run_foreground(settings: Settings) -> int:
    # Imported here: aiohttp and the rest load only in the server process, keeping `status` fast.
    from .server import StartupError, serve, setup_logging  # noqa: PLC0415

    settings.state_dir.mkdir(parents=True, exist_ok=True)
    setup_logging()
    settings.pid_path.write_text(f"{os.getpid()}\n")
    try:
        asyncio.run(serve(settings))
    except StartupError as error:
        print(f"knlab-sandbox: {error}", file=sys.stderr)
        return 1
    return 0


def _stop(state_dir: Path) -> tuple[list[int], list[int]]:
    """Stop the server (its whole process group) and any process it recorded.

    Returns the pids signalled: the server's, and those of processes a killed server left behind.
    """
    state_dir = state_dir.resolve()
    pids = set()
    info = read_info(state_dir)
    if info:
        pids.add(int(info.get("pid", 0)))
    with contextlib.suppress(OSError, ValueError):
        pids.add(int((state_dir / "server.pid").read_text().strip()))
    signalled = []
    for pid in sorted(p for p in pids if p > 0 and _pid_alive(p)):
        if not _is_sandbox(pid):
            continue
        signalled.append(pid)
        _signal_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        while _pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        _signal_group(pid, signal.SIGKILL)
    leftovers = _stop_recorded(state_dir)
    for name in ("server.json", "server.pid"):
        with contextlib.suppress(FileNotFoundError):
            (state_dir / name).unlink()
    return signalled, leftovers


def _is_sandbox(pid: int) -> bool:
    """Guard against a recycled pid: only signal a process that runs knlab_sandbox."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return False
    return b"knlab_sandbox" in cmdline or b"knlab-sandbox" in cmdline


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if os.getpgid(pid) == pid:  # a session leader started by `up`: its group holds its children
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)


def _stop_recorded(state_dir: Path) -> list[int]:
    """Processes the runtime started in their own sessions, recorded under run/pids, and the S3 server."""
    return stop_recorded(state_dir / "run" / "pids") + s3_server.stop(state_dir)


def cmd_down(args: argparse.Namespace) -> int:
    server, leftovers = _stop(_state_dir(args))
    if not (server or leftovers):
        print("knlab-sandbox was not running")
    elif leftovers:
        # The server stops what it started; these outlived a server that was killed.
        noun = "process" if len(leftovers) == 1 else "processes"
        print(f"knlab-sandbox stopped, and {len(leftovers)} {noun} it had left running")
    else:
        print("knlab-sandbox stopped")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    state_dir = _state_dir(args)
    info = running_info(state_dir)
    if info is None:
        print(f"knlab-sandbox is not running (state dir {state_dir.resolve()})")
        return EXIT_NOT_RUNNING
    print(f"knlab-sandbox is running\n{_describe(info)}")
    return 0


def cmd_kubeconfig(args: argparse.Namespace) -> int:
    path = _state_dir(args).resolve() / "kubeconfig"
    if not path.exists():
        print(f"no kubeconfig at {path}: run `knlab-sandbox up` first", file=sys.stderr)
        return 1
    print(path.read_text() if args.show else path, end="" if args.show else "\n")
    return 0


def cmd_s3(args: argparse.Namespace) -> int:
    state_dir = _state_dir(args)
    if args.action == "down":
        print("S3 server stopped" if s3_server.stop(state_dir) else "the S3 server was not running")
        return 0
    if args.action == "info":
        data = s3_server.info(state_dir)
        if data is None:
            print("the S3 server is not running: knlab-sandbox s3 up", file=sys.stderr)
            return EXIT_NOT_RUNNING
    else:
        if not 0 <= args.port <= 65535:
            raise ValueError(f"--port must be 0-65535, not {args.port}")
        try:
            # The build's progress (first run) goes to stderr: stdout is the JSON alone.
            with contextlib.redirect_stdout(sys.stderr):
                data = s3_server.start(state_dir, args.port, args.bucket)
        except s3_server.S3StartError as error:
            print(f"knlab-sandbox: {error}", file=sys.stderr)
            return 1
    print(json.dumps(data, indent=2))
    return 0


COMMANDS = {"up": cmd_up, "down": cmd_down, "status": cmd_status, "kubeconfig": cmd_kubeconfig, "s3": cmd_s3}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except ValueError as error:
        print(f"knlab-sandbox: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
