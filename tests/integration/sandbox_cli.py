"""One sandbox of its own, driven through its CLI: what the integration tests and the scripts beside
them (hub_scale.py) share. Plain Python, no pytest: conftest.py builds the ``sandbox`` fixture on it,
and a script run by make imports it as it is.

``SandboxCLI`` starts a sandbox on random loopback ports in a state directory (``knlab-sandbox up``),
runs kubectl and playbooks against it, and stops it (``down``, which stops its S3 server too); as a
context manager, up on entry and down on exit. A
command that fails raises ``CommandFailed`` with its output's tail; a playbook's exit code and
output are returned, so that a test can check a refusal too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Self

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

REGISTRY_PLAY = """
- name: The hub alone
  hosts: localhost
  connection: local
  gather_facts: false
  roles:
    - role: knlab.serverless.registry
"""
REGISTRY_ABSENT_PLAY = """
- name: No hub
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: The registry role's absent entry point
      ansible.builtin.include_role:
        name: knlab.serverless.registry
        tasks_from: absent
"""


class CommandFailed(Exception):
    """A command against the sandbox failed: the message names it and ends with its output."""


def ansible_settings() -> dict[str, str]:
    """What every play run here sets: this checkout's collection, and plain output."""
    return {
        "ANSIBLE_COLLECTIONS_PATH": str(ROOT / ".build" / "collections"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_LOCALHOST_WARNING": "false",
        "ANSIBLE_INVENTORY_UNPARSED_WARNING": "false",
    }


def sandbox_env(kubeconfig: str | Path, **extra: str) -> dict[str, str]:
    """This process's environment for a play against one sandbox: without the demo's settings and any
    other cluster's credentials (DEMO_*, K8S_AUTH_*, KUBECONFIG), with the sandbox's kubeconfig."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DEMO_", "K8S_AUTH_")) and key != "KUBECONFIG"
    }
    env.update(ansible_settings(), K8S_AUTH_KUBECONFIG=str(kubeconfig), **extra)
    return env


def run_play(argv: list[str], env: Mapping[str, str], timeout: float) -> tuple[int, str]:
    """``ansible-playbook`` with ``argv``; its exit code and output (stdout, then stderr)."""
    done = subprocess.run(
        [str(BIN / "ansible-playbook"), *argv],
        check=False,
        env=dict(env),
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return done.returncode, done.stdout + done.stderr


def recap_changed(output: str) -> int:
    """changed= of localhost in a play's PLAY RECAP."""
    line = next(line for line in output.splitlines() if line.startswith("localhost"))
    return int(line.split("changed=")[1].split()[0])


def s3_secret_manifest(name: str, namespace: str, s3: Mapping[str, str]) -> str:
    """The Secret with the S3 keys, as JSON for ``kubectl create|apply -f -`` on stdin: the keys
    never go on a command line, where any user of the machine sees them in the process list."""
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": namespace},
            "stringData": {"access_key": s3["access_key"], "secret_key": s3["secret_key"]},
        }
    )


class SandboxCLI:
    """One sandbox in ``state_dir``; ``info`` is its server.json (kubeconfig, gateway) once it is up."""

    def __init__(self, state_dir: Path):
        self.state_dir = state_dir
        self.info: dict = {}

    @property
    def kubeconfig(self) -> Path:
        return Path(self.info["kubeconfig"])

    @property
    def gateway(self) -> str:
        return self.info["gateway"]

    def cli(self, *args: str, timeout: float = 120) -> str:
        """``knlab-sandbox ARGS --state-dir STATE``; its output."""
        argv = [str(BIN / "knlab-sandbox"), *args, "--state-dir", str(self.state_dir)]
        done = subprocess.run(
            argv, check=False, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout
        )
        if done.returncode != 0:
            raise CommandFailed(f"knlab-sandbox {' '.join(args)} failed: {(done.stdout + done.stderr).strip()[-800:]}")
        return done.stdout

    def up(self) -> None:
        """Start it on random loopback ports (again after ``down``: the same objects, new ports)."""
        self.cli("up", "--api-port", "0", "--gateway-port", "0")
        self.info = json.loads((self.state_dir / "server.json").read_text())

    def down(self) -> None:
        self.cli("down")  # stops the S3 server too

    def __enter__(self) -> Self:
        self.up()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.down()

    def kubectl(self, *args: str, stdin: str | None = None, timeout: float = 60) -> str:
        argv = ["kubectl", "--kubeconfig", str(self.kubeconfig), *args]
        done = subprocess.run(argv, check=False, input=stdin, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise CommandFailed(f"kubectl {' '.join(args)} failed: {done.stderr.strip()[-500:]}")
        return done.stdout

    def get(self, kind: str, name: str) -> dict:
        return json.loads(self.kubectl("get", kind, name, "-o", "json"))

    def play(self, playbook: Path, timeout: float = 300, **extra: object) -> tuple[int, str]:
        """``playbook`` against this sandbox with ``extra`` as its extra vars; its exit code and output."""
        return run_play([str(playbook), "-e", json.dumps(extra)], sandbox_env(self.kubeconfig), timeout)

    def request_log(self) -> list[dict]:
        """Every request the sandbox's API server answered, in order (its requests.log)."""
        path = self.state_dir / "requests.log"
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
