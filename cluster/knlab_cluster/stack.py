"""What runs on the node once it is Ready: CoreDNS, then Knative Serving, Traefik, Tekton and the
local-path provisioner through the collection's own knative_stack role (playbooks/knative-stack.yml),
from the manifests and images this machine built.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

from .node import Node, log
from .settings import (
    CLUSTER_DIR,
    DNS_SERVICE_IP,
    HOST_INGRESS_PORT,
    HUB_NODE_PORT,
    HUB_PULL_HOST,
    INGRESS_ADDRESS,
    INGRESS_NODE_PORT,
    KNATIVE_DOMAIN,
    MIRROR,
    MIRRORED_REGISTRIES,
    REPO_DIR,
)

WEBHOOK_TIMEOUT = 300


def stack_vars(build: dict) -> dict:
    images = build["images"]
    return {
        "knative_stack_manifest_dir": str(Path(build["manifests"]["serving-core.yaml"]).parent),
        "knative_stack_ingress": "traefik",
        "knative_stack_traefik_image": images["docker.io/library/traefik"],
        "knative_stack_ingress_node_port": INGRESS_NODE_PORT,
        "knative_stack_pvc_provisioner": "local-path",
        "knative_stack_domain": KNATIVE_DOMAIN,
        "knative_stack_hub_pull_host": HUB_PULL_HOST,
        "knative_stack_hub_node_port": HUB_NODE_PORT,
        # Knative's controller resolves tags itself, from its pod: the mirrored registries' names
        # lead nowhere here (no DNS, no route), so their tags are deployed as written and
        # containerd pulls them from the mirror.
        "knative_stack_skip_tag_resolution": ["kind.local", "ko.local", "dev.local", *MIRRORED_REGISTRIES],
    }


def demo_env(build: dict) -> dict[str, str]:
    """What playbooks/demo.yml needs to know about this cluster (read from the environment)."""
    images = build["images"]
    return {
        "DEMO_REGISTRY_PULL_HOST": HUB_PULL_HOST,
        "DEMO_INGRESS_ADDRESS": INGRESS_ADDRESS,
        "DEMO_REGISTRY_IMAGE": images["docker.io/library/registry"].split("@")[0],
        "DEMO_BUILDER_IMAGE": images["ghcr.io/chainguard-dev/kaniko/executor"],
        # kaniko pulls the base image itself: from the mirror, whose address is a private one (so
        # plain HTTP is allowed), and with the base image built here.
        # --skip-default-registry-fallback: an image missing from the mirror fails the build
        # instead of kaniko trying docker.io.
        "DEMO_BUILD_EXTRA_ARGS": f"--registry-mirror={MIRROR} --skip-default-registry-fallback --insecure-pull "
        f"--build-arg=BASE_IMAGE={images['docker.io/knlab/python']}",
        # For tools on the host (molecule/cluster, benchmarks): the loopback forwards.
        "KNLAB_CLUSTER_HOST_INGRESS": f"http://127.0.0.1:{HOST_INGRESS_PORT}",
    }


def coredns_manifest(build: dict) -> str:
    template = (CLUSTER_DIR / "manifests" / "coredns.yaml").read_text()
    return template.replace("@COREDNS_IMAGE@", build["images"]["registry.k8s.io/coredns/coredns"]).replace(
        "@DNS_SERVICE_IP@", DNS_SERVICE_IP
    )


def install(node: Node, build: dict) -> None:
    kubectl = [node.kubectl, "--kubeconfig", str(node.paths.inner_kubeconfig)]
    node.enter(
        [*kubectl, "apply", "--server-side", "--field-manager=knlab-cluster", "-f", "-"],
        input=coredns_manifest(build).encode(),
        check=True,
        stdout=subprocess.DEVNULL,
    )
    vars_file = node.paths.config / "stack-vars.json"
    vars_file.write_text(json.dumps(stack_vars(build), indent=2))
    env_file = node.paths.state / "demo.env"
    # Shell syntax (`set -a; . demo.env`), quoted: some values hold spaces. demo.json: the same
    # for programs (tests, molecule/cluster, benchmarks).
    env_file.write_text("".join(f"{k}={shlex.quote(v)}\n" for k, v in demo_env(build).items()))
    env_file.with_suffix(".json").write_text(json.dumps(demo_env(build), indent=2) + "\n")
    log("installing Knative Serving, Traefik, Tekton and local-path-provisioner (roles/knative_stack)")
    started = time.monotonic()
    playbook = [
        ansible_tool("ansible-playbook"),
        str(REPO_DIR / "playbooks" / "knative-stack.yml"),
        "-e",
        f"@{vars_file}",
    ]
    result = node.enter(["env", *(f"{k}={v}" for k, v in ansible_env(node).items()), *playbook], cwd=REPO_DIR)
    if result.returncode != 0:
        raise SystemExit(f"playbooks/knative-stack.yml failed (exit {result.returncode})")
    log(f"the stack is installed ({time.monotonic() - started:.0f} s)")
    wait_webhooks(node, kubectl)


def ansible_tool(name: str) -> str:
    """The Ansible command installed beside this Python (the checkout's .venv), else the one on PATH."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if not found:
        raise SystemExit(f"{name} not found: run make setup (it installs Ansible into .venv)")
    return found


def ansible_env(node: Node) -> dict[str, str]:
    """This checkout as knlab.serverless, kubernetes.core from the ansible package (as make does)."""
    site_packages = next(p for p in sys.path if p.endswith("site-packages"))
    default_path = f"{REPO_DIR / '.build' / 'collections'}:{site_packages}"
    return {
        "K8S_AUTH_KUBECONFIG": str(node.paths.inner_kubeconfig),
        "ANSIBLE_COLLECTIONS_PATH": os.environ.get("ANSIBLE_COLLECTIONS_PATH", default_path),
        "ANSIBLE_LOCALHOST_WARNING": "false",
        "ANSIBLE_INVENTORY_UNPARSED_WARNING": "false",
        "ANSIBLE_NOCOLOR": "1",
    }


# Server-side dry runs: they go through Knative's and Tekton's admission webhooks without creating
# anything, so they pass only once both webhooks answer.
PROBES = """
apiVersion: serving.knative.dev/v1
kind: Service
metadata: {name: knlab-cluster-probe, namespace: default}
spec:
  template:
    spec:
      containers: [{image: registry.k8s.io/pause:3.10}]
---
apiVersion: tekton.dev/v1
kind: TaskRun
metadata: {name: knlab-cluster-probe, namespace: default}
spec:
  taskSpec:
    steps: [{name: probe, image: registry.k8s.io/pause:3.10, command: [/pause]}]
"""


def wait_webhooks(node: Node, kubectl: list[str]) -> None:
    deadline = time.monotonic() + WEBHOOK_TIMEOUT
    while True:
        result = node.enter(
            [*kubectl, "create", "--dry-run=server", "-f", "-"], input=PROBES.encode(), capture_output=True
        )
        if result.returncode == 0:
            log("Knative's and Tekton's webhooks answer")
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"the webhooks did not answer in {WEBHOOK_TIMEOUT} s: {result.stderr.decode().strip()}")
        time.sleep(1)
