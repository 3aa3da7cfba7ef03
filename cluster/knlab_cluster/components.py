"""What the cluster is made of: Go programs (each pinned by its own module under go/) and images.

Each component has a module of its own (go/<name>/go.mod) rather than one module for all: a
single module would make Go's minimal version selection raise every shared dependency
(client-go, grpc, otel, ...) to the highest that any component asks for, so each component would
be built against a dependency set its upstream never tested. One module each keeps exactly the
versions its release pins.
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from .settings import CLUSTER_DIR

GO_DIR = CLUSTER_DIR / "go"


@dataclass(frozen=True)
class GoComponent:
    name: str  # the directory under go/
    module: str  # the upstream module whose version this component pins
    binaries: dict[str, str]  # output name -> import path
    ldflags: tuple[str, ...] = ()

    @property
    def directory(self) -> Path:
        return GO_DIR / self.name

    @property
    def version(self) -> str:
        return module_version(self.directory / "go.mod", self.module)


def module_version(go_mod: Path, module: str) -> str:
    match = re.search(rf"^\s*(?:require\s+)?{re.escape(module)}\s+(v\S+)", go_mod.read_text(), re.M)
    if not match:
        raise SystemExit(f"{go_mod} does not require {module}")
    return match.group(1)


def module_dir(module: str, version: str, cwd: Path) -> Path:
    """Where a module's files are in the module cache (downloading it if needed)."""
    result = subprocess.run(
        ["go", "mod", "download", "-json", f"{module}@{version}"], cwd=cwd, check=True, capture_output=True, text=True
    )
    return Path(json.loads(result.stdout)["Dir"])


def _kubernetes_ldflags() -> tuple[str, ...]:
    # /version must carry a real version, or kubectl cannot parse it: both packages need it.
    version = module_version(GO_DIR / "kubernetes" / "go.mod", "k8s.io/kubernetes")
    major, minor = version.lstrip("v").split(".")[:2]
    flags = []
    for package in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [
            f"-X {package}.gitVersion={version}",
            f"-X {package}.gitMajor={major}",
            f"-X {package}.gitMinor={minor}",
            f"-X {package}.gitTreeState=clean",
        ]
    return tuple(flags)


def _cmds(prefix: str, names: list[str]) -> dict[str, str]:
    return {name: f"{prefix}/{name}" for name in names}


KNATIVE_PKG = "knative.dev/serving"
TEKTON_PKG = "github.com/tektoncd/pipeline"

GO_COMPONENTS: tuple[GoComponent, ...] = (
    GoComponent(
        "crane", "github.com/google/go-containerregistry", {"crane": "github.com/google/go-containerregistry/cmd/crane"}
    ),
    GoComponent(
        "registry",
        "github.com/distribution/distribution/v3",
        {"registry": "github.com/distribution/distribution/v3/cmd/registry"},
    ),
    GoComponent("etcd", "go.etcd.io/etcd/server/v3", {"etcd": "go.etcd.io/etcd/server/v3"}),
    GoComponent(
        "kubernetes",
        "k8s.io/kubernetes",
        _cmds(
            "k8s.io/kubernetes/cmd",
            ["kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy", "kubectl"],
        ),
        _kubernetes_ldflags(),
    ),
    GoComponent("coredns", "github.com/coredns/coredns", {"coredns": "github.com/coredns/coredns"}),
    GoComponent(
        "knative",
        KNATIVE_PKG,
        {name: f"{KNATIVE_PKG}/cmd/{name}" for name in ["controller", "webhook", "activator", "autoscaler", "queue"]},
    ),
    GoComponent(
        "tekton",
        TEKTON_PKG,
        {
            f"tekton-{name}": f"{TEKTON_PKG}/cmd/{name}"
            for name in ["controller", "webhook", "entrypoint", "nop", "workingdirinit", "sidecarlogresults"]
        },
    ),
    GoComponent("traefik", "github.com/traefik/traefik/v3", {"traefik": "github.com/traefik/traefik/v3/cmd/traefik"}),
    GoComponent(
        "kaniko", "github.com/chainguard-dev/kaniko", {"executor": "github.com/chainguard-dev/kaniko/cmd/executor"}
    ),
    GoComponent(
        "versitygw", "github.com/versity/versitygw", {"versitygw": "github.com/versity/versitygw/cmd/versitygw"}
    ),
    GoComponent(
        "local-path",
        "github.com/rancher/local-path-provisioner",
        {"local-path-provisioner": "github.com/rancher/local-path-provisioner"},
    ),
)


def component(name: str) -> GoComponent:
    return next(c for c in GO_COMPONENTS if c.name == name)


@dataclass(frozen=True)
class Image:
    """An image made with crane from files of this machine: no base image is pulled."""

    name: str  # repository as manifests spell it, e.g. gcr.io/knative-releases/knative.dev/serving/cmd/queue
    tag: str
    base: str  # "static" (passwd, CA certificates, /tmp), "busybox" (static + Debian's busybox), "python"
    files: dict[str, str] = field(default_factory=dict)  # path in the image -> binary name (or "file:<path>")
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    user: str = ""
    workdir: str = ""
    # ko:// import path this image stands for in upstream manifests, if any.
    ko_path: str = ""

    @property
    def repository(self) -> str:
        """The path inside the mirror: the name without its registry host, as containerd asks for it."""
        host, _, path = self.name.partition("/")
        if not ("." in host or ":" in host):  # no host: a Docker Hub name
            host, path = "docker.io", self.name
        if host in ("docker.io", "index.docker.io") and "/" not in path:
            return f"library/{path}"  # Docker Hub's official images
        return path


KO_ENV = (
    "PATH=/ko-app:/usr/local/bin:/usr/bin:/bin",
    "KO_DATA_PATH=/var/run/ko",
    "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt",
)
NONROOT = "65532"


def _ko_image(name: str, tag: str, binary: str, ko_path: str) -> Image:
    """An image laid out the way ko lays it out (/ko-app/<command>): Tekton's controller relies on it."""
    command = ko_path.rsplit("/", 1)[-1]
    return Image(
        name=name,
        tag=tag,
        base="static",
        files={f"/ko-app/{command}": binary},
        entrypoint=(f"/ko-app/{command}",),
        env=KO_ENV,
        user=NONROOT,
        ko_path=ko_path,
    )


def images() -> tuple[Image, ...]:
    knative = component("knative").version
    knative_release = "v1.23.0" if knative == "v0.50.0" else knative
    tekton = component("tekton").version
    traefik = component("traefik").version
    kaniko = component("kaniko").version
    registry = component("registry").version
    coredns = component("coredns").version
    local_path = component("local-path").version
    result: list[Image] = [
        Image(
            name="registry.k8s.io/pause", tag="3.10", base="scratch", files={"/pause": "pause"}, entrypoint=("/pause",)
        ),
        Image(
            name="registry.k8s.io/coredns/coredns",
            tag=coredns,
            base="static",
            files={"/coredns": "coredns"},
            entrypoint=("/coredns",),
            user=NONROOT,
        ),
        Image(
            name="docker.io/library/registry",
            tag=registry.lstrip("v").split(".")[0],
            base="static",
            files={"/bin/registry": "registry", "/etc/distribution/config.yml": "file:images/registry-config.yml"},
            entrypoint=("/bin/registry", "serve"),
            cmd=("/etc/distribution/config.yml",),
            env=("OTEL_TRACES_EXPORTER=none",),
        ),
        Image(
            name="docker.io/library/traefik",
            tag=traefik,
            base="static",
            files={"/traefik": "traefik"},
            entrypoint=("/traefik",),
            user=NONROOT,
        ),
        Image(
            name="ghcr.io/chainguard-dev/kaniko/executor",
            tag=kaniko,
            base="kaniko",
            files={"/kaniko/executor": "executor"},
            entrypoint=("/kaniko/executor",),
            env=(
                "PATH=/usr/local/bin:/kaniko",
                "HOME=/root",
                "USER=root",
                "SSL_CERT_DIR=/kaniko/ssl/certs",
                "DOCKER_CONFIG=/kaniko/.docker/",
            ),
            workdir="/workspace",
        ),
        Image(
            name="docker.io/rancher/local-path-provisioner",
            tag=local_path,
            base="static",
            files={"/usr/bin/local-path-provisioner": "local-path-provisioner"},
            entrypoint=("/usr/bin/local-path-provisioner",),
        ),
        # The helper pods of local-path-provisioner and Tekton's script steps need a shell.
        Image(name="docker.io/library/busybox", tag="latest", base="busybox", entrypoint=("/bin/sh",)),
        Image(name="cgr.dev/chainguard/busybox", tag="latest", base="busybox", entrypoint=("/bin/sh",)),
        # Apps like the demo's: Python 3 from Debian's packages.
        Image(
            name="docker.io/knlab/python",
            tag="3-debian12",
            base="python",
            cmd=("python3",),
            env=("PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C.UTF-8"),
        ),
    ]
    for name in ["controller", "webhook", "activator", "autoscaler", "queue"]:
        path = f"{KNATIVE_PKG}/cmd/{name}"
        result.append(_ko_image(f"gcr.io/knative-releases/{path}", knative_release, name, path))
    for name in ["controller", "webhook", "entrypoint", "nop", "workingdirinit", "sidecarlogresults"]:
        path = f"{TEKTON_PKG}/cmd/{name}"
        result.append(_ko_image(f"ghcr.io/tektoncd/pipeline/cmd/{name}", tekton, f"tekton-{name}", path))
    return tuple(result)
