"""Child processes that stand in for containers: start, wait for a port, stop, and find orphans.

Every process runs in its own session (so its whole process group can be signalled, as a container
runtime stops every process of a container) with its output going to a log file (the pod's log).
Each running process is recorded as a small JSON file in a pid directory under the state dir, so
that `knlab-sandbox down` (or the next `up`) can stop what a killed server left behind.
A record carries the executable path and is only acted on while /proc shows the same executable,
which keeps a recycled pid from being signalled.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

STOP_GRACE_SECONDS = 5.0
POLL_INTERVAL = 0.05


def free_port(host: str = "127.0.0.1") -> int:
    # The port is free when we look; a process taking it before the child binds shows up as a
    # clear start failure, never as traffic reaching the wrong process.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def log_tail(path: Path, lines: int = 10) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.rstrip().splitlines()[-lines:])


def exit_reason(returncode: int) -> str:
    """Kubernetes' spelling: a signal death counts as 128 + signal number."""
    code = 128 - returncode if returncode < 0 else returncode
    return f"ExitCode{code}"


def record_name(key: str) -> str:
    """A file name for ``key`` that is readable and cannot collide with another key's."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", key)[:80]
    return f"{readable}-{hashlib.sha256(key.encode()).hexdigest()[:10]}"


@dataclass
class ChildProcess:
    """A started child: the asyncio process, its log and the record that lets `down` find it."""

    key: str
    process: asyncio.subprocess.Process
    log_path: Path
    record: Path | None
    scratch_dirs: list[Path] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        return self.process.returncode


async def spawn(
    key: str,
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: Path,
    log_path: Path,
    pid_dir: Path | None,
    scratch_dirs: Sequence[Path] = (),
) -> ChildProcess:
    """Start ``argv`` in a new session with stdout and stderr in ``log_path`` (truncated: a new container)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log,
            stderr=asyncio.subprocess.STDOUT,
            cwd=str(cwd),
            env=dict(env),
            start_new_session=True,
        )
    record = None
    if pid_dir is not None:
        pid_dir.mkdir(parents=True, exist_ok=True)
        record = pid_dir / f"{record_name(key)}.json"
        record.write_text(
            json.dumps(
                {
                    "key": key,
                    "pid": process.pid,
                    "executable": os.path.realpath(argv[0]),
                    "scratch_dirs": [str(path) for path in scratch_dirs],
                    "started": time.time(),
                }
            )
        )
    return ChildProcess(key, process, log_path, record, list(scratch_dirs))


async def wait_for_port(child: ChildProcess, host: str, port: int, timeout: float) -> bool:
    """True once ``host:port`` accepts a TCP connection; False when the child exits first or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.returncode is not None:
            return False
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout=1.0)
        except (OSError, TimeoutError):
            await asyncio.sleep(POLL_INTERVAL)
            continue
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return child.returncode is None
    return False


def _signal_group(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signum)


async def terminate(child: ChildProcess, grace: float = STOP_GRACE_SECONDS) -> None:
    """SIGTERM the child's process group, SIGKILL it after ``grace``; remove its record and scratch dirs."""
    if child.returncode is None:
        _signal_group(child.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(child.process.wait(), timeout=grace)
        except TimeoutError:
            _signal_group(child.pid, signal.SIGKILL)
            await child.process.wait()
    # Helpers the child started in its group may outlive it; they go with it, as in a container.
    _signal_group(child.pid, signal.SIGKILL)
    _forget(child.record, child.scratch_dirs)


def _forget(record: Path | None, scratch_dirs: Sequence[Path]) -> None:
    for directory in scratch_dirs:
        shutil.rmtree(directory, ignore_errors=True)
    if record is not None:
        record.unlink(missing_ok=True)


def _same_executable(pid: int, executable: str) -> bool:
    try:
        return os.path.realpath(f"/proc/{pid}/exe") == executable
    except OSError:
        return False


def stop_recorded(pid_dir: Path, grace: float = STOP_GRACE_SECONDS) -> list[int]:
    """Stop every process recorded in ``pid_dir`` (left over from a server that was killed).

    Synchronous, so `knlab-sandbox down` can call it without an event loop. Returns the pids that
    were signalled; records of processes that are gone are just removed.
    """
    stopped: list[int] = []
    if not pid_dir.is_dir():
        return stopped
    for record in sorted(pid_dir.glob("*.json")):
        try:
            data = json.loads(record.read_text())
            pid, executable = int(data["pid"]), str(data["executable"])
            scratch = [Path(path) for path in data.get("scratch_dirs", [])]
        except (OSError, ValueError, KeyError, TypeError):
            record.unlink(missing_ok=True)
            continue
        if _same_executable(pid, executable):
            _signal_group(pid, signal.SIGTERM)
            deadline = time.monotonic() + grace
            while _same_executable(pid, executable) and time.monotonic() < deadline:
                time.sleep(POLL_INTERVAL)
            _signal_group(pid, signal.SIGKILL)
            stopped.append(pid)
        _forget(record, scratch)
    return stopped
