"""`knlab-sandbox up|down|status|kubeconfig` as a user runs them, including a crash (kill -9)."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml


def cli(state_dir: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "knlab_sandbox", *args, "--state-dir", str(state_dir)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def kubectl(kubeconfig: Path, *args: str) -> str:
    result = subprocess.run(
        ["kubectl", "--kubeconfig", str(kubeconfig), "--cache-dir", str(kubeconfig.parent / "kc-cache"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def server_pid(state_dir: Path) -> int:
    return json.loads((state_dir / "server.json").read_text())["pid"]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat").read_text()
    return not stat.split(") ", 1)[1].startswith("Z")


@pytest.fixture
def state_dir(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "state"
    yield path
    cli(path, "down")


def test_up_status_kubeconfig_down(state_dir: Path) -> None:
    up = cli(state_dir, "up", "--api-port", "0", "--gateway-port", "0")
    assert up.returncode == 0, up.stderr
    kubeconfig = state_dir.resolve() / "kubeconfig"
    assert str(kubeconfig) in up.stdout
    config = yaml.safe_load(kubeconfig.read_text())
    assert config["current-context"] == "knlab-sandbox"
    cluster = config["clusters"][0]["cluster"]
    assert cluster["server"].startswith("https://127.0.0.1:")
    assert base64.b64decode(cluster["certificate-authority-data"]).startswith(b"-----BEGIN CERTIFICATE-----")
    assert config["users"][0]["user"]["token"]
    pid = server_pid(state_dir)

    again = cli(state_dir, "up", "--api-port", "0", "--gateway-port", "0")
    assert again.returncode == 0 and "already running" in again.stdout
    assert server_pid(state_dir) == pid

    status = cli(state_dir, "status")
    assert status.returncode == 0
    assert cluster["server"] in status.stdout and "gateway:" in status.stdout
    assert cli(state_dir, "kubeconfig").stdout.strip() == str(kubeconfig)
    assert "current-context: knlab-sandbox" in cli(state_dir, "kubeconfig", "--print").stdout
    assert "default" in kubectl(kubeconfig, "get", "namespaces", "-o", "name")

    down = cli(state_dir, "down")
    # One line, no count: the server's own process is not news (issue 9 item 8, "1 processes").
    assert down.returncode == 0 and down.stdout == "knlab-sandbox stopped\n"
    assert not alive(pid)
    assert cli(state_dir, "status").returncode == 3
    again = cli(state_dir, "down")  # stopping a stopped sandbox is fine
    assert again.returncode == 0 and again.stdout == "knlab-sandbox was not running\n"


def test_kill_9_loses_nothing(state_dir: Path) -> None:
    assert cli(state_dir, "up", "--api-port", "0", "--gateway-port", "0").returncode == 0
    kubeconfig = state_dir.resolve() / "kubeconfig"
    kubectl(kubeconfig, "create", "configmap", "kept", "--from-literal=a=1")
    before = int(kubectl(kubeconfig, "get", "cm", "kept", "-o", "jsonpath={.metadata.resourceVersion}"))
    pid = server_pid(state_dir)
    os.killpg(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert cli(state_dir, "status").returncode == 3

    up = cli(state_dir, "up", "--api-port", "0", "--gateway-port", "0")
    assert up.returncode == 0, up.stderr
    assert kubectl(kubeconfig, "get", "cm", "kept", "-o", "jsonpath={.data.a}") == "1"
    kubectl(kubeconfig, "create", "configmap", "after")
    after = int(kubectl(kubeconfig, "get", "cm", "after", "-o", "jsonpath={.metadata.resourceVersion}"))
    assert after > before


def test_bad_flags_are_one_line_errors(state_dir: Path) -> None:
    result = cli(state_dir, "up", "--api-port", "70000")
    assert result.returncode == 2
    assert result.stderr.strip() == "knlab-sandbox: --api-port must be 0-65535, not 70000"
    assert not (state_dir / "server.json").exists()
