"""The configuration files of the node's components, rendered into <state>/config."""

from __future__ import annotations

import json

import yaml

from .settings import (
    CGROUP_ROOT,
    CLUSTER_DOMAIN,
    DNS_SERVICE_IP,
    HUB_NODE_PORT,
    HUB_NODE_PORTS,
    MIRROR,
    MIRROR_PORT,
    MIRRORED_REGISTRIES,
    NODE_IP,
    NODE_NAME,
    NODE_POD_CIDR,
    POD_CIDR,
    SERVICE_CIDR,
    Paths,
)

__all__ = ["POD_CIDR", "SERVICE_CIDR", "render"]


def mirror(paths: Paths) -> str:
    """The mirror registry: the images built here, on the node's address."""
    return yaml.safe_dump(
        {
            "version": 0.1,
            "log": {"level": "warn", "accesslog": {"disabled": True}},
            "storage": {"filesystem": {"rootdirectory": str(paths.mirror_store)}, "delete": {"enabled": True}},
            "http": {"addr": f"{NODE_IP}:{MIRROR_PORT}"},
        }
    )


def containerd(paths: Paths, pause_image: str) -> str:
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    return f"""# containerd 1.6 (Debian) for knlab-cluster, written by knlab-cluster up.
version = 2
root = "/var/lib/containerd"
state = "/run/containerd"
oom_score = 0

[grpc]
  address = "/run/containerd/containerd.sock"

[{cri}]
  sandbox_image = "{pause_image}"
  # No CAP_SYS_RESOURCE here: runc could not lower oom_score_adj below the parent's.
  restrict_oom_score_adj = true
  enable_selinux = false
  [{cri}.containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [{cri}.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [{cri}.containerd.runtimes.runc.options]
        SystemdCgroup = false
  [{cri}.cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{paths.config / "cni"}"
  [{cri}.registry]
    config_path = "{paths.config / "certs.d"}"
"""


def registry_hosts() -> dict[str, str]:
    """containerd's hosts.toml: every public registry is served by the mirror, the hub over HTTP."""
    files = {}
    for registry in MIRRORED_REGISTRIES:
        files[f"certs.d/{registry}/hosts.toml"] = (
            f"# {registry} comes from the mirror built by knlab-cluster build: nothing is pulled from outside.\n"
            f'server = "http://{MIRROR}"\n\n[host."http://{MIRROR}"]\n  capabilities = ["pull", "resolve"]\n'
        )
    # Hubs (Knative Services) on NodePorts of the node, plain HTTP: the demo's and a few more.
    for port in range(HUB_NODE_PORT, HUB_NODE_PORT + HUB_NODE_PORTS):
        host = f"{NODE_IP}:{port}"
        files[f"certs.d/{host}/hosts.toml"] = (
            f'# A hub on NodePort {port}, over plain HTTP.\nserver = "http://{host}"\n\n'
            f'[host."http://{host}"]\n  capabilities = ["pull", "resolve"]\n'
        )
    return files


def cni() -> str:
    return json.dumps(
        {
            "cniVersion": "1.0.0",
            "name": "knlab",
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": "cni0",
                    "isGateway": True,
                    "ipMasq": False,
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "ranges": [[{"subnet": NODE_POD_CIDR}]],
                        "routes": [{"dst": "0.0.0.0/0"}],
                    },
                },
                {"type": "portmap", "capabilities": {"portMappings": True}},
            ],
        },
        indent=2,
    )


def kubelet(paths: Paths) -> str:
    pki = paths.pki
    return yaml.safe_dump(
        {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": True},
                "x509": {"clientCAFile": str(pki / "ca.crt")},
            },
            "authorization": {"mode": "Webhook"},
            "tlsCertFile": str(pki / "kubelet-serving.crt"),
            "tlsPrivateKeyFile": str(pki / "kubelet-serving.key"),
            "address": NODE_IP,
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "containerRuntimeEndpoint": "unix:///run/containerd/containerd.sock",
            "cgroupDriver": "cgroupfs",
            "cgroupRoot": f"/{CGROUP_ROOT}",
            "failSwapOn": False,
            "clusterDNS": [DNS_SERVICE_IP],
            "clusterDomain": CLUSTER_DOMAIN,
            "resolvConf": str(paths.config / "resolv.conf"),
            "staticPodPath": "",
            "serializeImagePulls": False,
            "maxPods": 110,
            # The disk is shared with the rest of the machine: evict on memory only, never GC images
            # because some other program filled the disk.
            "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%"},
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "podLogsDir": "/var/log/pods",
        }
    )


def kube_proxy(paths: Paths) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "mode": "iptables",
            "clusterCIDR": POD_CIDR,
            "hostnameOverride": NODE_NAME,
            "bindAddress": NODE_IP,
            "clientConnection": {"kubeconfig": str(paths.config / "kube-proxy.kubeconfig")},
            # Leave the global conntrack table size alone (it is not this namespace's to set).
            "conntrack": {"maxPerCore": 0},
            "metricsBindAddress": "127.0.0.1:10249",
            "healthzBindAddress": "127.0.0.1:10256",
            "nodePortAddresses": [f"{NODE_IP}/32"],
        }
    )


# Metadata of every request but the ones that only keep leases and events going; `cluster-test`
# reads it to prove that check mode writes nothing.
AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived"],
    "rules": [
        {"level": "None", "resources": [{"group": "coordination.k8s.io", "resources": ["leases"]}]},
        {"level": "None", "resources": [{"group": "", "resources": ["events"]}, {"group": "events.k8s.io"}]},
        {"level": "None", "verbs": ["get", "list", "watch"], "users": ["system:apiserver"]},
        # The status writes that end a build or a rollout, with their bodies: the benchmarks take
        # the moment a TaskRun succeeded or a Service became Ready from here.
        {
            "level": "RequestResponse",
            "verbs": ["update", "patch"],
            "resources": [
                {"group": "tekton.dev", "resources": ["taskruns/status"]},
                {"group": "serving.knative.dev", "resources": ["services/status"]},
            ],
        },
        {"level": "Metadata"},
    ],
}

# Pods that use the node's DNS settings get none: nothing outside the namespace answers.
RESOLV_CONF = "# knlab-cluster: no name server outside the cluster (the namespace has no way out)\noptions ndots:1\n"


def render(paths: Paths, build: dict) -> dict[str, str]:
    images = build.get("images", {})
    files = {
        "mirror.yml": mirror(paths),
        "containerd.toml": containerd(
            paths, images.get("registry.k8s.io/pause", "").split("@")[0] or "registry.k8s.io/pause:3.10"
        ),
        "cni/10-knlab.conflist": cni(),
        "kubelet.yaml": kubelet(paths),
        "kube-proxy.yaml": kube_proxy(paths),
        "audit-policy.yaml": yaml.safe_dump(AUDIT_POLICY),
        "resolv.conf": RESOLV_CONF,
        **registry_hosts(),
    }
    return files
