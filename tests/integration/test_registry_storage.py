"""The registry role never drops the hub's images silently (issue 9 item 5), on a real sandbox.

One sandbox, prepared as an admin would (playbooks/sandbox-prepare.yml: the PVC feature flags),
runs the registry role with a claim; then:

1. the same settings again: passes, changes nothing;
2. persistence off, and another claim: each run stops with a message naming the claim that holds
   the images and registry_allow_storage_change, and sends not one write (request log) - the hub
   keeps its claim;
3. persistence off with registry_allow_storage_change=true: the hub runs without the claim.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
PLAY = """
- name: The hub alone
  hosts: localhost
  connection: local
  gather_facts: false
  roles:
    - role: knlab.serverless.registry
"""

pytestmark = pytest.mark.skipif(
    not (os.environ.get("KNLAB_DOCKER_REGISTRY") or shutil.which("docker-registry")),
    reason="the sandbox's hub needs docker-registry (apt-get install docker-registry)",
)


class Sandbox:
    def __init__(self, state_dir: Path, playbook: Path):
        self.state_dir = state_dir
        self.playbook_path = playbook
        self.info: dict = {}

    def cli(self, *args: str) -> None:
        argv = [str(BIN / "knlab-sandbox"), *args, "--state-dir", str(self.state_dir)]
        done = subprocess.run(argv, check=False, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr

    def requests(self) -> list[dict]:
        path = self.state_dir / "requests.log"
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def run(self, playbook: Path, **extra: object) -> tuple[int, str]:
        env = {key: value for key, value in os.environ.items() if not key.startswith(("DEMO_", "K8S_AUTH_"))}
        env.update(
            ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".build" / "collections"),
            ANSIBLE_NOCOLOR="1",
            ANSIBLE_LOCALHOST_WARNING="false",
            ANSIBLE_INVENTORY_UNPARSED_WARNING="false",
            K8S_AUTH_KUBECONFIG=self.info["kubeconfig"],
        )
        argv = [str(BIN / "ansible-playbook"), str(playbook), "-e", json.dumps(extra)]
        done = subprocess.run(
            argv, check=False, env=env, cwd=ROOT, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=240
        )
        return done.returncode, done.stdout + done.stderr

    def hub_claims(self) -> list[str]:
        argv = ["kubectl", "--kubeconfig", self.info["kubeconfig"], "get", "ksvc", "hub", "-o", "json"]
        done = subprocess.run(argv, check=True, capture_output=True, text=True, timeout=60)
        volumes = json.loads(done.stdout)["spec"]["template"]["spec"].get("volumes") or []
        return [v["persistentVolumeClaim"]["claimName"] for v in volumes if "persistentVolumeClaim" in v]


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[Sandbox]:
    playbook = tmp_path / "hub.yml"
    playbook.write_text(PLAY)
    sandbox = Sandbox(tmp_path / "sandbox", playbook)
    sandbox.cli("up", "--api-port", "0", "--gateway-port", "0")
    sandbox.info = json.loads((sandbox.state_dir / "server.json").read_text())
    try:
        yield sandbox
    finally:
        sandbox.cli("down")


def recap_changed(output: str) -> int:
    line = next(line for line in output.splitlines() if line.startswith("localhost"))
    return int(line.split("changed=")[1].split()[0])


def test_the_hub_keeps_its_images_unless_the_user_says_otherwise(sandbox: Sandbox) -> None:
    code, output = sandbox.run(ROOT / "playbooks" / "sandbox-prepare.yml")
    assert code == 0, output[-3000:]
    code, output = sandbox.run(sandbox.playbook_path, registry_persistence=True)
    assert code == 0, output[-3000:]
    assert sandbox.hub_claims() == ["hub-data"]

    code, output = sandbox.run(sandbox.playbook_path, registry_persistence=True)
    assert code == 0, output[-3000:]
    assert recap_changed(output) == 0

    for settings, moved_to in (
        ({"registry_persistence": False}, "into its pod only"),
        ({"registry_persistence": True, "registry_pvc_name": "other-data"}, "to PersistentVolumeClaim other-data"),
    ):
        seen = len(sandbox.requests())
        code, output = sandbox.run(sandbox.playbook_path, **settings)
        assert code != 0, output[-3000:]
        message = " ".join(output.split())
        assert "keeps its images on PersistentVolumeClaim hub-data" in message
        assert moved_to in message
        assert "Nothing was changed" in message and "registry_allow_storage_change=true" in message
        writes = [r for r in sandbox.requests()[seen:] if r["method"] in WRITE_METHODS]
        assert writes == [], writes
        assert sandbox.hub_claims() == ["hub-data"]

    code, output = sandbox.run(sandbox.playbook_path, registry_persistence=False, registry_allow_storage_change=True)
    assert code == 0, output[-3000:]
    assert recap_changed(output) >= 1
    assert sandbox.hub_claims() == []
