"""knlab-cluster's pure parts (no root, no cluster): image names, manifest resolution, the node's
configuration, certificates, and the guard on where state may live."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from knlab_cluster import components, configs, manifests, pki
from knlab_cluster.settings import MIRROR, MIRRORED_REGISTRIES, NODE_IP, Paths


@pytest.mark.parametrize(
    ("name", "repository"),
    [
        ("docker.io/library/registry", "library/registry"),
        ("docker.io/library/busybox", "library/busybox"),
        ("docker.io/knlab/python", "knlab/python"),
        ("registry.k8s.io/pause", "pause"),
        ("registry.k8s.io/coredns/coredns", "coredns/coredns"),
        ("gcr.io/knative-releases/knative.dev/serving/cmd/queue", "knative-releases/knative.dev/serving/cmd/queue"),
        ("busybox", "library/busybox"),
    ],
)
def test_mirror_repositories_are_the_paths_containerd_asks_for(name: str, repository: str) -> None:
    assert components.Image(name=name, tag="x", base="static").repository == repository


def test_every_component_pins_the_module_it_builds() -> None:
    for component in components.GO_COMPONENTS:
        assert component.version.startswith("v"), component
        assert (component.directory / "go.sum").exists(), f"{component.name} has no go.sum"
        for package in component.binaries.values():
            assert package.startswith(component.module), (component.name, package)


def test_kubernetes_carries_its_version_in_both_version_packages() -> None:
    flags = " ".join(components.component("kubernetes").ldflags)
    version = components.component("kubernetes").version
    assert f"k8s.io/component-base/version.gitVersion={version}" in flags
    assert f"k8s.io/client-go/pkg/version.gitVersion={version}" in flags


def test_every_ko_image_is_laid_out_as_ko_does_and_runs_as_nonroot() -> None:
    ko_images = [image for image in components.images() if image.ko_path]
    assert {image.ko_path.rsplit("/", 1)[-1] for image in ko_images} >= {"entrypoint", "queue", "controller"}
    for image in ko_images:
        command = image.ko_path.rsplit("/", 1)[-1]
        assert image.entrypoint == (f"/ko-app/{command}",)
        assert image.user == components.NONROOT


def test_ko_references_become_the_images_built_here() -> None:
    text = "image: ko://knative.dev/serving/cmd/queue\n"
    resolved = manifests._resolve(text, {"knative.dev/serving/cmd/queue": "gcr.io/x/queue:v1@sha256:ab"}, "f.yaml")
    assert resolved == "image: gcr.io/x/queue:v1@sha256:ab\n"


def test_a_ko_reference_that_is_not_built_is_an_error() -> None:
    with pytest.raises(SystemExit, match=re.escape("ko://knative.dev/serving/cmd/unknown")):
        manifests._resolve("image: ko://knative.dev/serving/cmd/unknown", {}, "f.yaml")


def test_yaml_files_skip_dotfiles_kustomizations_and_what_is_left_out(tmp_path: Path) -> None:
    for rel in ("100-a.yaml", "sub/200-b.yaml", ".ko.yaml", "kustomization.yaml", "resolvers/x.yaml", "events.yaml"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("kind: X\n")
    assert manifests._yaml_files(tmp_path, manifests.TEKTON_SKIPPED) == ["100-a.yaml", "sub/200-b.yaml"]


def _paths(tmp_path: Path) -> Paths:
    return Paths(cache=tmp_path / "cache", state=tmp_path / "state")


def test_containerd_pulls_every_public_registry_from_the_mirror_only(tmp_path: Path) -> None:
    files = configs.render(_paths(tmp_path), {})
    for registry in MIRRORED_REGISTRIES:
        hosts = tomllib.loads(files[f"certs.d/{registry}/hosts.toml"])
        # Even the fallback ("server") is the mirror: nothing is ever asked of the real registry.
        assert hosts["server"] == f"http://{MIRROR}"
        assert list(hosts["host"]) == [f"http://{MIRROR}"]
    containerd = tomllib.loads(files["containerd.toml"])
    cri = containerd["plugins"]["io.containerd.grpc.v1.cri"]
    assert cri["restrict_oom_score_adj"] is True


def test_the_node_answers_on_its_own_address_and_cgroup_root(tmp_path: Path) -> None:
    files = configs.render(_paths(tmp_path), {})
    kubelet = yaml.safe_load(files["kubelet.yaml"])
    assert kubelet["address"] == NODE_IP
    assert kubelet["cgroupRoot"] == "/knlab-cluster"
    assert kubelet["cgroupDriver"] == "cgroupfs"
    proxy = yaml.safe_load(files["kube-proxy.yaml"])
    assert proxy["conntrack"]["maxPerCore"] == 0
    assert "nameserver" not in files["resolv.conf"]
    cni = json.loads(files["cni/10-knlab.conflist"])
    assert cni["plugins"][0]["ipMasq"] is False


def test_certificates_name_every_address_the_api_server_answers_on(tmp_path: Path) -> None:
    pki.ensure_pki(tmp_path)
    cert = x509.load_pem_x509_certificate((tmp_path / "apiserver.crt").read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    ips = {str(ip) for ip in names.get_values_for_type(x509.IPAddress)}
    assert {"127.0.0.1", NODE_IP, "10.96.0.1"} <= ips
    kubelet = x509.load_pem_x509_certificate((tmp_path / "kubelet.crt").read_bytes())
    subject = {a.oid._name: a.value for a in kubelet.subject}
    assert subject == {"commonName": "system:node:knlab-node", "organizationName": "system:nodes"}
    config = yaml.safe_load(pki.kubeconfig(tmp_path, "admin", "https://127.0.0.1:16443"))
    assert config["clusters"][0]["cluster"]["server"] == "https://127.0.0.1:16443"
    # A second call keeps what exists (kubeconfigs handed out stay valid).
    before = (tmp_path / "ca.crt").read_bytes()
    pki.ensure_pki(tmp_path)
    assert (tmp_path / "ca.crt").read_bytes() == before


@pytest.mark.parametrize("state", ["/run/knlab", "/var/lib/knlab", "/var/log/knlab"])
def test_state_under_a_bind_mounted_directory_is_refused(monkeypatch: pytest.MonkeyPatch, state: str) -> None:
    monkeypatch.setenv("KNLAB_CLUSTER_STATE", state)
    with pytest.raises(SystemExit, match="bind-mounts over"):
        Paths.from_env()


def test_a_recorded_pid_is_ours_only_while_its_start_time_matches(tmp_path: Path) -> None:
    from knlab_cluster.node import Node

    node = Node(_paths(tmp_path))
    node.paths.pids.mkdir(parents=True)
    node.record("me", os.getpid())
    assert node.pid("me") == os.getpid()
    # The same pid with another start time is a reused pid: never taken (or killed) for ours.
    pid_file = node.paths.pids / "me.pid"
    pid_file.write_text(f"{os.getpid()} 1\n")
    assert node.pid("me") is None
    pid_file.write_text("not a pid\n")
    assert node.pid("me") is None
    assert node.pid("never-started") is None


def test_a_component_that_exits_before_it_is_ready_is_started_again(tmp_path: Path) -> None:
    """The kubelet exits when containerd's CRI is not initialized yet: `start` tries again (retries)."""
    import subprocess

    from knlab_cluster.node import Component, ExitedEarly, Node

    class LocalNode(Node):
        def enter(self, argv: list[str], *, check: bool = False, **kwargs) -> subprocess.CompletedProcess:
            return subprocess.run(argv, check=check, **kwargs)

    node = LocalNode(_paths(tmp_path))
    node.paths.pids.mkdir(parents=True)
    node.paths.logs.mkdir(parents=True)
    tries, ready = tmp_path / "tries", tmp_path / "ready"
    # Exits at once twice, then serves (and says so) on the third start.
    script = f'echo x >> {tries}; [ "$(wc -l < {tries})" -ge 3 ] || exit 1; touch {ready}; sleep 30'
    flaky = Component("flaky", ["sh", "-c", script], ready=["test", "-e", str(ready)], on_host=True, retries=2)
    pid = node.start(flaky)
    try:
        assert tries.read_text().count("x") == 3
        assert node.pid("flaky") == pid
    finally:
        os.kill(pid, 9)
    tries.unlink()
    ready.unlink()
    (node.paths.pids / "flaky.pid").unlink()
    with pytest.raises(ExitedEarly):
        node.start(Component("flaky", ["sh", "-c", script], ready=["test", "-e", str(ready)], on_host=True, retries=1))
    assert tries.read_text().count("x") == 2


def test_restart_stops_one_component_and_starts_it_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`knlab-cluster restart NAME` (the fault campaign): a new process, the others untouched."""
    import subprocess
    import time

    from knlab_cluster import node as node_mod
    from knlab_cluster.node import HOLDER, Component, Node

    marker = tmp_path / "starts"

    class LocalNode(Node):
        def components(self) -> list[Component]:
            return [
                Component(name, ["sh", "-c", f"echo {name} >> {marker}; exec sleep 60"], on_host=True)
                for name in ("one", "two")
            ]

    monkeypatch.setattr(node_mod, "_require_root", lambda: None)
    node = LocalNode(_paths(tmp_path))
    node.paths.pids.mkdir(parents=True)
    node.paths.logs.mkdir(parents=True)
    holder = subprocess.Popen(["sleep", "60"])
    started: list[int] = []
    try:
        node.record(HOLDER, holder.pid)
        one, two = (node.start(c) for c in node.components())
        started += [one, two]
        new = node.restart("one")
        started.append(new)
        assert new != one
        assert node.pid("one") == new
        assert node.pid("two") == two  # the other component is not touched
        assert not node_mod._alive(one)
        deadline = time.monotonic() + 10  # no readiness check here: the shell writes when it runs
        while marker.read_text().split() != ["one", "two", "one"] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert marker.read_text().split() == ["one", "two", "one"]
        with pytest.raises(SystemExit, match="no component 'three'"):
            node.restart("three")
    finally:
        for pid in started:
            if node_mod._alive(pid):
                os.kill(pid, 9)
        holder.kill()
        holder.wait()


def test_status_into_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    # `knlab-cluster status | head -1`: the reader is gone before the output is flushed.
    env = {**os.environ, "KNLAB_CLUSTER_STATE": str(tmp_path / "state"), "KNLAB_CLUSTER_CACHE": str(tmp_path / "cache")}
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys; from knlab_cluster.cli import main; sys.exit(main(['status']))"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    child.stdout.close()  # before the child (a new Python) has written anything
    stderr = child.stderr.read().decode()
    assert child.wait(timeout=60) == 141, stderr
    assert "Traceback" not in stderr and "BrokenPipeError" not in stderr, stderr


def test_the_s3_server_keys_are_made_once_private_and_kept(tmp_path: Path) -> None:
    from knlab_cluster import s3

    paths = _paths(tmp_path)
    assert s3.environment(paths) == {}
    keys = s3.ensure_credentials(paths)
    assert paths.s3_credentials.stat().st_mode & 0o777 == 0o600
    assert len(keys["secret_key"]) >= 30 and keys["access_key"] != keys["secret_key"]
    assert s3.ensure_credentials(paths) == keys  # a second up keeps them: the buckets' clients still work
    assert s3.environment(paths) == {"ROOT_ACCESS_KEY": keys["access_key"], "ROOT_SECRET_KEY": keys["secret_key"]}
    s3.ensure_bucket(paths)
    assert (paths.state / "s3" / "hub").is_dir()
    shown = s3.endpoint(paths)
    assert shown["endpoint"] == f"http://{NODE_IP}:7070"
    assert (shown["bucket"], shown["access_key"]) == ("hub", keys["access_key"])
    assert shown["secret_key"] == keys["secret_key"]
    assert shown["bucket_dir"] == str(paths.state / "s3" / "hub")


def test_the_s3_server_listens_on_the_node_with_its_keys_only_in_the_environment(tmp_path: Path) -> None:
    from knlab_cluster.node import Node

    node = Node(_paths(tmp_path), {"binaries": {"versitygw": "/cache/bin/versitygw"}})
    from knlab_cluster import s3

    keys = s3.ensure_credentials(node.paths)
    (server,) = [c for c in node.components() if c.name == "s3"]
    assert server.argv[0] == "/cache/bin/versitygw"
    assert server.argv[server.argv.index("--port") + 1] == f"{NODE_IP}:7070"
    assert server.argv[-2:] == ["posix", str(node.paths.state / "s3")]
    assert keys["secret_key"] not in " ".join(server.argv)
    assert server.env == {"ROOT_ACCESS_KEY": keys["access_key"], "ROOT_SECRET_KEY": keys["secret_key"]}
    assert server.ready and server.ready[-1] == f"http://{NODE_IP}:7070/"


def test_knlab_cluster_s3_prints_the_endpoint_or_says_up_makes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from knlab_cluster import cli, s3

    monkeypatch.setenv("KNLAB_CLUSTER_STATE", str(tmp_path / "state"))
    monkeypatch.setenv("KNLAB_CLUSTER_CACHE", str(tmp_path / "cache"))
    with pytest.raises(SystemExit, match="knlab-cluster up starts it"):
        cli.main(["s3"])
    keys = s3.ensure_credentials(Paths.from_env())
    assert cli.main(["s3"]) == 0
    assert json.loads(capsys.readouterr().out)["secret_key"] == keys["secret_key"]


@pytest.mark.parametrize(
    ("euid", "env", "expected"),
    [
        (0, {}, "/var/cache/knlab-cluster"),
        (1000, {"HOME": "/home/u"}, "/home/u/.cache/knlab-cluster"),
        (1000, {"HOME": "/home/u", "XDG_CACHE_HOME": "/xdg"}, "/xdg/knlab-cluster"),
        (1000, {"KNLAB_CLUSTER_CACHE": "/c"}, "/c"),
    ],
)
def test_the_build_cache_is_the_system_one_for_root_and_the_users_own_otherwise(
    monkeypatch: pytest.MonkeyPatch, euid: int, env: dict[str, str], expected: str
) -> None:
    from knlab_cluster import settings

    for name in ("KNLAB_CLUSTER_CACHE", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(settings.os, "geteuid", lambda: euid)
    assert settings.default_cache() == Path(expected)


def test_a_tool_built_before_is_reused_without_go(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`tool_binary` (the sandbox's versitygw) reuses the build keyed by the pinned version."""
    from knlab_cluster import build

    versitygw = components.component("versitygw")
    assert versitygw.version == "v1.8.0"
    monkeypatch.setattr(build, "go_version", lambda: "go1.26.8")
    out = tmp_path / "bin" / f"versitygw-v1.8.0-{build.component_key(versitygw, 'go1.26.8')}"
    out.mkdir(parents=True)
    (out / ".done").write_text("{}")

    def no_go(cmd: list[str], **kwargs: object) -> None:
        raise AssertionError(f"ran {cmd}")

    monkeypatch.setattr(build, "run", no_go)
    assert build.tool_binary("versitygw", cache=tmp_path) == out / "versitygw"


def test_up_with_a_build_from_before_the_s3_server_says_to_build_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from knlab_cluster import node as node_mod
    from knlab_cluster.node import Node

    monkeypatch.setattr(node_mod, "_require_root", lambda: None)
    monkeypatch.setattr(node_mod, "_require_cgroup_v1", lambda: None)
    node = Node(_paths(tmp_path), {"binaries": {"registry": "/bin/registry"}})
    with pytest.raises(SystemExit, match=r"no versitygw .*run knlab-cluster build"):
        node.up()
    assert not (tmp_path / "state").exists()  # refused before anything was made
