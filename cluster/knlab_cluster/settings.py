"""Where things live and the cluster's fixed addresses.

Builds are cached outside the checkout (``KNLAB_CLUSTER_CACHE``, default /var/cache/knlab-cluster for
root and ~/.cache/knlab-cluster for anyone else), keyed by what was pinned, so every clone on the
machine shares them. The running cluster keeps its
state in ``KNLAB_CLUSTER_STATE`` (default /srv/knlab-cluster). Inside the cluster's mount namespace
/run, /var/lib and /var/log are bind mounts of directories under the state directory, so the state
directory itself must not live under any of them.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

# The cluster/ directory of the checkout: go modules, manifests, templates.
CLUSTER_DIR = Path(__file__).resolve().parent.parent
REPO_DIR = CLUSTER_DIR.parent

NETNS = "knlab-cluster"
NODE_NAME = "knlab-node"
# The node's interface: a bridge with no ports, so the namespace has no way out.
NODE_BRIDGE = "knlab0"
NODE_IP = "10.250.0.10"
NODE_PREFIX = 24
POD_CIDR = "10.244.0.0/16"
NODE_POD_CIDR = "10.244.0.0/24"
SERVICE_CIDR = "10.96.0.0/16"
KUBERNETES_SERVICE_IP = "10.96.0.1"
DNS_SERVICE_IP = "10.96.0.10"
CLUSTER_DOMAIN = "cluster.local"
API_PORT = 6443
MIRROR_PORT = 5000
MIRROR = f"{NODE_IP}:{MIRROR_PORT}"
# Registries the mirror stands in for (containerd's hosts.toml, Knative's tag resolution).
MIRRORED_REGISTRIES = ("docker.io", "index.docker.io", "gcr.io", "ghcr.io", "registry.k8s.io", "quay.io", "cgr.dev")
# The hub's NodePort: nodes pull what builds pushed to the hub from here.
HUB_NODE_PORT = 30500
HUB_PULL_HOST = f"{NODE_IP}:{HUB_NODE_PORT}"
# containerd pulls over plain HTTP from this many NodePorts from HUB_NODE_PORT on (more hubs).
HUB_NODE_PORTS = 5
# The ingress (Traefik) on a NodePort of the node's address.
INGRESS_NODE_PORT = 31080
INGRESS_ADDRESS = f"http://{NODE_IP}:{INGRESS_NODE_PORT}"
KNATIVE_DOMAIN = f"{NODE_IP}.sslip.io"
# Host loopback ports forwarded into the namespace (socat; no interface joins the two): the API
# server and the ingress, for tools that run on the host (molecule, benchmarks, your kubectl).
# Not the sandbox's defaults (16443, 18080): `make demo` must work while the cluster runs.
HOST_API_PORT = 26443
HOST_INGRESS_PORT = 28080
# The S3 server (versitygw) for hubs that keep their images in object storage: on the node's
# address, one bucket made at start.
S3_PORT = 7070
S3_BUCKET = "hub"
S3_REGION = "us-east-1"
S3_ENDPOINT = f"http://{NODE_IP}:{S3_PORT}"
# Global sysctls the kubelet changes (pkg/kubelet/cm: setupKernelTunables); restored on down.
KUBELET_SYSCTLS = (
    "vm.overcommit_memory",
    "vm.panic_on_oom",
    "kernel.panic",
    "kernel.panic_on_oops",
    "kernel.keys.root_maxkeys",
    "kernel.keys.root_maxbytes",
)
# cgroup v1 controllers mounted again inside the namespace (ip netns exec remounts /sys).
CGROUP_CONTROLLERS = ("cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids")
# Every pod and the kubelet's QoS tree live below this cgroup, so down can clean it up.
CGROUP_ROOT = "knlab-cluster"


# Bind mounts of directories under the state directory, inside the cluster's mount namespace.
BIND_MOUNTED = ("/run", "/var/lib", "/var/log")


def default_cache() -> Path:
    """``KNLAB_CLUSTER_CACHE``; else the system cache for root and the user's own for anyone else
    (the sandbox builds versitygw there without root)."""
    if os.environ.get("KNLAB_CLUSTER_CACHE"):
        return Path(os.environ["KNLAB_CLUSTER_CACHE"])
    if os.geteuid() == 0:
        return Path("/var/cache/knlab-cluster")
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "knlab-cluster"


@dataclass(frozen=True)
class Paths:
    cache: Path
    state: Path

    @classmethod
    def from_env(cls) -> Paths:
        cache = default_cache()
        state = Path(os.environ.get("KNLAB_CLUSTER_STATE", "/srv/knlab-cluster"))
        # Inside the namespace these directories are other directories: whatever the cluster's
        # processes (and `knlab-cluster exec`) need must live elsewhere.
        needed = {
            "KNLAB_CLUSTER_STATE": state,
            "KNLAB_CLUSTER_CACHE": cache,
            "the checkout": REPO_DIR,
            "the Python environment": Path(sys.prefix),
        }
        for what, path in needed.items():
            for bound in BIND_MOUNTED:
                if path.resolve().is_relative_to(bound):
                    raise SystemExit(f"{what} ({path}) is under {bound}, which the cluster bind-mounts over: move it")
        return cls(cache=cache, state=state)

    # --- build outputs (cache) ---
    @property
    def bin_cache(self) -> Path:
        return self.cache / "bin"

    @property
    def image_cache(self) -> Path:
        return self.cache / "images"

    @property
    def mirror_store(self) -> Path:
        return self.cache / "mirror"

    @property
    def build_manifest(self) -> Path:
        """What the last build produced: binaries, image references and manifests (JSON)."""
        return self.cache / "build.json"

    # --- the running cluster (state) ---
    @property
    def pki(self) -> Path:
        return self.state / "pki"

    @property
    def config(self) -> Path:
        return self.state / "config"

    @property
    def logs(self) -> Path:
        return self.state / "logs"

    @property
    def pids(self) -> Path:
        return self.state / "pids"

    @property
    def kubeconfig(self) -> Path:
        """For the host: the API server through the loopback forward."""
        return self.state / "kubeconfig"

    @property
    def inner_kubeconfig(self) -> Path:
        """For commands inside the namespace (knlab-cluster exec)."""
        return self.config / "admin.kubeconfig"

    @property
    def s3_data(self) -> Path:
        """The S3 server's root: each top-level directory is a bucket."""
        return self.state / "s3"

    @property
    def s3_credentials(self) -> Path:
        """The S3 server's root access and secret keys (JSON, mode 0600), made by the first up."""
        return self.state / "s3-credentials.json"

    @property
    def sysctls(self) -> Path:
        return self.state / "sysctls.json"

    @property
    def audit_log(self) -> Path:
        return self.logs / "audit.log"

    def bound(self, target: str) -> Path:
        """The directory under the state dir that is mounted over `target` inside the namespace."""
        return self.state / "root" / target.strip("/").replace("/", "-")
