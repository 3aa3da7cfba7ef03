"""The two places a conformance scenario runs: the sandbox and the real cluster.

Both are driven the same way, through the same tools a user has: the collection's modules and
playbooks (ansible), kubectl, and an HTTP call through the ingress. A scenario never asks which
target it runs on; what differs is only how a command reaches the target:

- ``SandboxTarget``: a private sandbox (``knlab-sandbox up`` on a temp state dir, random loopback
  ports), prepared as ``make demo`` prepares it (playbooks/sandbox-prepare.yml);
- ``ClusterTarget``: the running ``knlab-cluster``, every command inside its network namespace
  (``knlab-cluster exec``), as tests/cluster does.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
ANSIBLE_ENV = {
    "ANSIBLE_COLLECTIONS_PATH": str(ROOT / ".build" / "collections"),
    "ANSIBLE_NOCOLOR": "1",
    "ANSIBLE_LOCALHOST_WARNING": "false",
    "ANSIBLE_INVENTORY_UNPARSED_WARNING": "false",
    "ANSIBLE_PYTHON_INTERPRETER": sys.executable,
}


@dataclass
class Done:
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


class Target:
    """What a scenario uses. Subclasses say how a command reaches the target (``_run``)."""

    name = ""
    kubeconfig = ""
    demo_env: dict[str, str] = {}

    def _run(self, argv: list[str], env: dict[str, str], *, input: str | None, timeout: float) -> Done:
        raise NotImplementedError

    def run(
        self, *argv: str, env: dict[str, str] | None = None, input: str | None = None, timeout: float = 120.0
    ) -> Done:
        return self._run(list(argv), {"KUBECONFIG": self.kubeconfig, **(env or {})}, input=input, timeout=timeout)

    def kubectl(self, *args: str, check: bool = True, input: str | None = None, timeout: float = 120) -> str:
        done = self.run("kubectl", *args, input=input, timeout=timeout)
        if check and done.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed on {self.name}:\n{done.output}")
        return done.stdout if done.returncode == 0 else done.output

    def json(self, *args: str) -> dict:
        return json.loads(self.kubectl(*args, "-o", "json"))

    def module(self, module: str, timeout: float = 900, **args) -> dict:
        """One collection module run by `ansible`, its result (failed or not)."""
        env = {
            **ANSIBLE_ENV,
            "K8S_AUTH_KUBECONFIG": self.kubeconfig,
            "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1",
            "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json",
        }
        argv = [str(BIN / "ansible"), "localhost", "-m", f"knlab.serverless.{module}", "-a", json.dumps(args)]
        done = self.run(*argv, env=env, timeout=timeout)
        start = done.stdout.find("{")
        assert start >= 0, f"no result from {module} on {self.name}:\n{done.output}"
        report = json.JSONDecoder().raw_decode(done.stdout[start:])[0]
        return report["plays"][0]["tasks"][0]["hosts"]["localhost"]

    def playbook(self, path: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 900) -> Done:
        variables = {**self.demo_env, **ANSIBLE_ENV, "K8S_AUTH_KUBECONFIG": self.kubeconfig, **(env or {})}
        return self.run(str(BIN / "ansible-playbook"), str(path), *args, env=variables, timeout=timeout)

    def http_get(self, url: str) -> str:
        """GET a Knative URL through the target's ingress, its host in the Host header."""
        host = url.split("://", 1)[1].split("/", 1)[0]
        done = self.run(
            "curl", "-sS", "--max-time", "20", "-o", "/dev/stdout", "-w", "\n%{http_code}",
            "-H", f"Host: {host}", f"{self.demo_env['DEMO_INGRESS_ADDRESS']}/",
        )  # fmt: skip
        return done.stdout

    def close(self) -> None:
        """Leave the target as it was found (the sandbox goes; the cluster stays up)."""


class SandboxTarget(Target):
    name = "sandbox"

    def __init__(self) -> None:
        self.state_dir = Path(tempfile.mkdtemp(prefix="knlab-conformance-"))
        self._cli("up", "--api-port", "0", "--gateway-port", "0")
        info = json.loads((self.state_dir / "server.json").read_text())
        self.kubeconfig = info["kubeconfig"]
        self.demo_env = {"DEMO_INGRESS_ADDRESS": info["gateway"]}
        prepared = self.playbook(ROOT / "playbooks" / "sandbox-prepare.yml")
        assert prepared.returncode == 0, f"sandbox-prepare.yml failed:\n{prepared.output[-3000:]}"

    def _cli(self, *args: str) -> None:
        subprocess.run(
            [str(BIN / "knlab-sandbox"), *args, "--state-dir", str(self.state_dir)],
            check=True,
            capture_output=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )

    def _run(self, argv: list[str], env: dict[str, str], *, input: str | None, timeout: float) -> Done:
        return _call(argv, env={**os.environ, **env}, input=input, timeout=timeout)

    def close(self) -> None:
        self._cli("down")
        shutil.rmtree(self.state_dir, ignore_errors=True)


class ClusterTarget(Target):
    name = "cluster"

    def __init__(self) -> None:
        from knlab_cluster.settings import Paths

        paths = Paths.from_env()
        self.kubeconfig = str(paths.inner_kubeconfig)
        self.demo_env = json.loads((paths.state / "demo.json").read_text())
        self.demo_env.pop("KNLAB_CLUSTER_HOST_INGRESS", None)

    def _run(self, argv: list[str], env: dict[str, str], *, input: str | None, timeout: float) -> Done:
        # `knlab-cluster exec` runs argv in the namespace as is: the environment goes through env(1).
        command = [str(BIN / "knlab-cluster"), "exec", "--", "env", *(f"{k}={v}" for k, v in env.items()), *argv]
        return _call(command, env=None, input=input, timeout=timeout)


def _call(argv: list[str], *, env: dict[str, str] | None, input: str | None, timeout: float) -> Done:
    """argv from the checkout, its output captured; stdin closed unless there is input."""
    done = subprocess.run(
        argv,
        input=input,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=None if input is not None else subprocess.DEVNULL,
        cwd=ROOT,
        check=False,
    )
    return Done(done.returncode, done.stdout, done.stderr)


def open_target(name: str) -> Target:
    if name == "sandbox":
        return SandboxTarget()
    if name == "cluster":
        if os.geteuid() != 0:
            raise SystemExit("the real cluster needs root")
        return ClusterTarget()
    raise SystemExit(f"unknown conformance target {name!r}: sandbox or cluster")


DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
