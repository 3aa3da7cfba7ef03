"""Sandbox settings and the layout of the state directory.

Everything the sandbox keeps lives under one state directory (default `.sandbox/`): the SQLite
database, the CA and server certificate, the token, the kubeconfig, the pod logs, the PVC
directories and the server's own log and request log.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_STATE_DIR = Path(".sandbox")
DEFAULT_API_PORT = 16443
DEFAULT_GATEWAY_PORT = 18080
CONTEXT_NAME = "knlab-sandbox"


@dataclass
class FaultSettings:
    """Fault injection (see faults.py). All off by default; env `KNLAB_SANDBOX_FAULT_*` or CLI flags."""

    seed: int = 0
    error_rate: float = 0.0  # fraction of API requests answered with an error
    error_codes: tuple[int, ...] = (429, 500, 503)
    retry_after: int = 1  # Retry-After seconds on injected errors (client-go retries those); -1: no header
    latency: float = 0.0  # seconds added to every API request
    drop_watch_after: float = 0.0  # close every watch stream after this many seconds (0 = never)
    history_limit: int = 0  # keep only the last K watch events (0 = the default history size)

    @property
    def active(self) -> bool:
        return bool(self.error_rate or self.latency or self.drop_watch_after or self.history_limit)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> FaultSettings:
        env = dict(os.environ if env is None else env)
        faults = cls()
        prefix = "KNLAB_SANDBOX_FAULT_"
        for name, kind in (
            ("seed", int),
            ("error_rate", float),
            ("retry_after", int),
            ("latency", float),
            ("drop_watch_after", float),
            ("history_limit", int),
        ):
            raw = env.get(prefix + name.upper())
            if raw:
                setattr(faults, name, kind(raw))
        codes = env.get(prefix + "ERROR_CODES")
        if codes:
            faults.error_codes = parse_codes(codes)
        return faults


def parse_codes(text: str) -> tuple[int, ...]:
    codes = tuple(int(c) for c in text.replace(" ", "").split(",") if c)
    for code in codes:
        if code != 429 and not 500 <= code <= 599:
            raise ValueError(f"fault error code {code} is not 429 or 5xx")
    return codes


@dataclass
class Settings:
    state_dir: Path
    api_host: str = "127.0.0.1"
    api_port: int = DEFAULT_API_PORT
    gateway_host: str = "127.0.0.1"
    gateway_port: int = DEFAULT_GATEWAY_PORT
    step_delay: float = 0.0  # seconds added per Tekton step (realistic waits)
    faults: FaultSettings = field(default_factory=FaultSettings)
    history_size: int = 10000  # watch events kept for resume before compaction (→ 410)
    bookmark_interval: float = 5.0  # seconds between BOOKMARK events on watches that asked for them

    def __post_init__(self) -> None:
        self.state_dir = Path(self.state_dir).resolve()

    # --- state directory layout ---
    @property
    def db_path(self) -> Path:
        return self.state_dir / "state.db"

    @property
    def pki_dir(self) -> Path:
        return self.state_dir / "pki"

    @property
    def ca_cert_path(self) -> Path:
        return self.pki_dir / "ca.crt"

    @property
    def token_path(self) -> Path:
        return self.state_dir / "token"

    @property
    def kubeconfig_path(self) -> Path:
        return self.state_dir / "kubeconfig"

    @property
    def pid_path(self) -> Path:
        return self.state_dir / "server.pid"

    @property
    def info_path(self) -> Path:
        """JSON written once the server listens: pid and the real addresses (ports may be 0 = random)."""
        return self.state_dir / "server.json"

    @property
    def server_log_path(self) -> Path:
        return self.state_dir / "server.log"

    @property
    def request_log_path(self) -> Path:
        return self.state_dir / "requests.log"

    @property
    def transitions_log_path(self) -> Path:
        """JSON lines: when a write made an object's Ready/Succeeded condition terminal (transitions.py)."""
        return self.state_dir / "transitions.log"

    @property
    def run_dir(self) -> Path:
        """Scratch space for running processes (unpacked images, registry configs, temp storage)."""
        return self.state_dir / "run"

    def log_path(self, namespace: str, pod: str, container: str) -> Path:
        """The file a container's output goes to; `pods/{name}/log` reads it."""
        return self.state_dir / "logs" / namespace / pod / f"{container}.log"

    def volume_dir(self, namespace: str, pvc_name: str) -> Path:
        """The directory a PVC is bound to (created with the PVC, kept across restarts, removed with the PVC)."""
        return self.state_dir / "volumes" / namespace / pvc_name
