"""The real cluster (knlab-cluster) as the tests see it: through its CLI, as root.

Everything runs inside the cluster's network namespace (`knlab-cluster exec`): kubectl, the
playbooks, curl. The cluster is started if it is not running (`make cluster-test` starts it first).
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from knlab_cluster.settings import Paths

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
CLI = str(BIN / "knlab-cluster")
STATE = Path(os.environ.get("KNLAB_CLUSTER_STATE", "/srv/knlab-cluster"))
NAMESPACE = "default"
DEMO_LABEL = "app.kubernetes.io/managed-by=knlab.serverless"

if os.geteuid() != 0:  # pragma: no cover - CI runs as root
    pytest.skip("the real cluster needs root", allow_module_level=True)


@dataclass
class Run:
    changed: int
    output: str


def module_argv(module: str, args: dict, kubeconfig: str | None = None) -> list[str]:
    """The command that runs one collection module with `ansible` inside the cluster's namespace
    (the JSON callback prints its result)."""
    variables = {
        "K8S_AUTH_KUBECONFIG": kubeconfig or str(Paths.from_env().inner_kubeconfig),
        "ANSIBLE_COLLECTIONS_PATH": f"{ROOT / '.build' / 'collections'}",
        "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1",
        "ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json",
        "ANSIBLE_LOCALHOST_WARNING": "false",
        "ANSIBLE_INVENTORY_UNPARSED_WARNING": "false",
        "ANSIBLE_PYTHON_INTERPRETER": sys.executable,
    }
    return [
        CLI,
        "exec",
        "--",
        "env",
        *(f"{k}={v}" for k, v in variables.items()),
        str(BIN / "ansible"),
        "localhost",
        "-m",
        f"knlab.serverless.{module}",
        "-a",
        json.dumps(args),
    ]


def kubeconfig_secrets() -> set[str]:
    """What must never show in any output: the cluster kubeconfig's client key (base64, and each
    line of its PEM body) and any token in it."""
    config = yaml.safe_load(Paths.from_env().inner_kubeconfig.read_text())
    needles: set[str] = set()
    for user in config.get("users", []):
        data = user.get("user", {})
        if data.get("client-key-data"):
            needles.add(data["client-key-data"])
            pem = base64.b64decode(data["client-key-data"]).decode()
            needles.update(line for line in pem.splitlines() if len(line) >= 40 and "-----" not in line)
        if data.get("token"):
            needles.add(data["token"])
    assert needles, "no client key or token in the kubeconfig: a grep for them would prove nothing"
    return needles


class Cluster:
    def __init__(self) -> None:
        self.env = json.loads((STATE / "demo.json").read_text())
        self.ingress = self.env["DEMO_INGRESS_ADDRESS"]
        self.build = json.loads(Paths.from_env().build_manifest.read_text())

    def exec(self, *argv: str, check: bool = True, timeout: float = 120, input: str | None = None) -> str:
        done = subprocess.run(
            [CLI, "exec", "--", *argv],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=None if input is not None else subprocess.DEVNULL,
            check=False,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        return done.stdout

    def kubectl(self, *args: str, **kwargs) -> str:
        return self.exec("kubectl", *args, **kwargs)

    def json(self, *args: str) -> dict:
        return json.loads(self.kubectl(*args, "-o", "json"))

    def names(self, resource: str, namespace: str = NAMESPACE, selector: str = "") -> list[str]:
        args = ["get", resource, "-n", namespace]
        if selector:
            args += ["-l", selector]
        return sorted(item["metadata"]["name"] for item in self.json(*args)["items"])

    def playbook(self, name: str, *args: str, env: dict[str, str] | None = None, timeout: float = 900) -> Run:
        variables = {
            **self.env,
            "K8S_AUTH_KUBECONFIG": str(Paths.from_env().inner_kubeconfig),
            "ANSIBLE_COLLECTIONS_PATH": f"{ROOT / '.build' / 'collections'}",
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_LOCALHOST_WARNING": "false",
            "ANSIBLE_INVENTORY_UNPARSED_WARNING": "false",
            **(env or {}),
        }
        argv = [
            "env",
            *(f"{k}={v}" for k, v in variables.items()),
            str(BIN / "ansible-playbook"),
            str(ROOT / "playbooks" / name),
            *args,
        ]
        done = subprocess.run(
            [CLI, "exec", "--", *argv],
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            cwd=ROOT,
            check=False,
        )
        output = done.stdout + done.stderr
        assert done.returncode == 0, f"{name} {' '.join(args)} failed:\n{output[-5000:]}"
        recap = re.search(r"^localhost\s+: ok=\d+\s+changed=(\d+)\s+unreachable=0\s+failed=0", output, re.M)
        assert recap, f"no PLAY RECAP for localhost in:\n{output[-2000:]}"
        return Run(int(recap.group(1)), output)

    def module(self, module: str, **args) -> dict:
        """One collection module run by `ansible` inside the namespace; its result (failed or not)."""
        argv = module_argv(module, args)
        done = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=900,
            stdin=subprocess.DEVNULL,
            check=False,
        )
        start = done.stdout.find("{")
        assert start >= 0, f"no result from {module}:\n{done.stdout}\n{done.stderr}"
        report = json.loads(done.stdout[start:])
        return report["plays"][0]["tasks"][0]["hosts"]["localhost"]

    @property
    def base_image(self) -> str:
        """The demo's Python base image, served by the cluster's mirror (python3, sleep)."""
        arg = next(a for a in self.env["DEMO_BUILD_EXTRA_ARGS"].split() if a.startswith("--build-arg=BASE_IMAGE="))
        return arg.split("=", 2)[2]

    @contextmanager
    def own_namespace(self, name: str) -> Iterator[str]:
        """A namespace for one test module: the pods of what it deletes may linger for their grace
        period, and the demo's tests expect the default namespace to hold only the demo."""
        self.kubectl("create", "namespace", name, check=False)
        try:
            yield name
        finally:
            self.kubectl("delete", "namespace", name, "--wait=false")

    @contextmanager
    def fresh_namespace(self, name: str) -> Iterator[str]:
        """A namespace made anew for one test (what a previous run left there is deleted first),
        deleted after it, waiting until it is gone."""
        self.kubectl("delete", "namespace", name, "--ignore-not-found", "--wait=true", timeout=300)
        try:
            self.kubectl("create", "namespace", name)
            yield name
        finally:
            self.kubectl("delete", "namespace", name, "--ignore-not-found", "--wait=true", timeout=300, check=False)

    def wait_for_hub(self, host: str) -> None:
        """Until the hub answers on its NodePort: kube-proxy programs a new NodePort a moment after
        the Service and its endpoints exist."""
        self.wait(lambda: self.exec("curl", "-fsS", f"http://{host}/v2/", check=False), "the hub's NodePort", 60)

    def replace_hub_pods(self, namespace: str, host: str) -> list[str]:
        """Delete the pods of the hub in ``namespace``, wait for a new Ready one to answer on ``host``
        (its NodePort); the repositories its catalog lists then."""
        old = self.names("pods", namespace)
        self.kubectl("delete", "pod", "-n", namespace, "-l", "serving.knative.dev/service=hub", "--wait=true")
        self.wait(lambda: (p := self.names("pods", namespace)) and set(p).isdisjoint(old), "a new hub pod")
        self.kubectl(
            "wait",
            "pod",
            "-n",
            namespace,
            "-l",
            "serving.knative.dev/service=hub",
            "--for=condition=Ready",
            "--timeout=180s",
        )
        catalog = self.wait(
            lambda: self.exec("curl", "-fsS", f"http://{host}/v2/_catalog", check=False), "the new hub pod"
        )
        return json.loads(catalog)["repositories"]

    def answer(self, name: str, namespace: str = NAMESPACE) -> str:
        """The app's answer through the real ingress (Traefik), with its host in the Host header."""
        url = self.json("get", "ksvc", name, "-n", namespace)["status"]["url"]
        host = url.split("://", 1)[1]
        return self.exec("curl", "-fsS", "--max-time", "20", "-H", f"Host: {host}", f"{self.ingress}/")

    def builds_and_revisions(self) -> tuple[list[str], list[str]]:
        return self.names("taskruns"), self.names("revisions")

    def demo_objects(self) -> dict[str, list[str]]:
        objects = {r: self.names(r) for r in ("ksvc", "configurations", "revisions", "routes", "taskruns", "tasks")}
        objects["configmaps"] = self.names("configmaps", selector=DEMO_LABEL)
        objects["pvc"] = self.names("pvc")
        objects["pods"] = [p for p in self.names("pods") if not p.startswith("knlab-")]
        return {kind: names for kind, names in objects.items() if names}

    def audit_lines(self) -> int:
        return sum(1 for _ in (STATE / "logs" / "audit.log").open())

    def writes_since(self, line: int, user: str = "kubernetes-admin") -> list[dict]:
        """Write requests by `user` recorded by the API server's audit log after `line`."""
        events = []
        with (STATE / "logs" / "audit.log").open() as log:
            for number, text in enumerate(log):
                if number < line:
                    continue
                event = json.loads(text)
                if event.get("user", {}).get("username") == user and event["verb"] in {
                    "create",
                    "update",
                    "patch",
                    "delete",
                    "deletecollection",
                }:
                    events.append(event)
        return events

    def wait(self, predicate, what: str, timeout: float = 180, interval: float = 1.0):
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
            time.sleep(interval)


def hub_manifests(namespace: str, image: str, node_port: int) -> str:
    """A hub as the original demo runs it (a Knative Service, one replica, no volume) and a
    NodePort in front of its pods, so that the node's containerd can pull from it."""
    manifests = [
        {
            "apiVersion": "serving.knative.dev/v1",
            "kind": "Service",
            "metadata": {"name": "hub", "namespace": namespace},
            "spec": {
                "template": {
                    "metadata": {
                        "annotations": {
                            "autoscaling.knative.dev/min-scale": "1",
                            "autoscaling.knative.dev/max-scale": "1",
                        }
                    },
                    "spec": {"containers": [{"image": image, "ports": [{"containerPort": 5000}]}]},
                }
            },
        },
        hub_nodeport(namespace, node_port),
    ]
    return "\n".join(json.dumps(m) for m in manifests)


def hub_nodeport(namespace: str, node_port: int) -> dict:
    """A NodePort Service in front of the pods of the Knative Service ``hub`` in ``namespace``."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "hub-nodeport", "namespace": namespace},
        "spec": {
            "type": "NodePort",
            "selector": {"serving.knative.dev/service": "hub"},
            "ports": [{"port": 5000, "targetPort": 5000, "nodePort": node_port}],
        },
    }


@pytest.fixture(scope="session")
def cluster() -> Cluster:
    done = subprocess.run(
        [CLI, "up"], capture_output=True, text=True, timeout=1800, stdin=subprocess.DEVNULL, check=False
    )
    assert done.returncode == 0, f"knlab-cluster up failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return Cluster()
