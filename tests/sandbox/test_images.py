"""Pulling and unpacking images from a real docker-registry over the HTTP API v2."""

from __future__ import annotations

import base64
import gzip
import io
import tarfile

import aiohttp
import pytest
from image_push import Pusher, layer, sha256_digest
from knlab_sandbox.images import ImagePullError, ImageReference, apply_layer, pull_image
from knlab_sandbox.registry_process import start_registry


@pytest.fixture
async def registry(tmp_path_factory):
    root = tmp_path_factory.mktemp("registry")
    hub = await start_registry("test/images", env={}, mounts={}, scratch=root, log_path=root / "log", pid_dir=None)
    try:
        yield hub
    finally:
        await hub.stop()


@pytest.fixture
async def pusher(registry):
    async with aiohttp.ClientSession() as session:
        yield Pusher(session, registry.url)


def _address(registry) -> tuple[str, int]:
    return (registry.host, registry.port)


@pytest.mark.parametrize("oci", [True, False])
async def test_pull_unpacks_the_layers_and_returns_the_config(registry, pusher, tmp_path, oci):
    pushed = await pusher.hello_app("demo/hello", "oci" if oci else "docker", oci=oci)
    image = f"{registry.host}:{registry.port}/demo/hello:{'oci' if oci else 'docker'}"
    pulled = await pull_image(image, _address(registry), tmp_path / "cache")
    assert pulled.digest == pushed.digest
    assert (pulled.rootfs / "app" / "app.py").read_text().startswith("\nimport os")
    assert pulled.config.cmd == ("python3", "app.py")
    assert pulled.config.entrypoint is None
    assert pulled.config.working_dir == "/app"
    assert pulled.config.exposed_ports == ("8080/tcp",)
    assert pulled.config.env_dict()["TARGET"] == "Sandbox"
    # A second pull of the same digest is served from the cache.
    again = await pull_image(f"{image.rsplit(':', 1)[0]}@{pushed.digest}", _address(registry), tmp_path / "cache")
    assert again.rootfs == pulled.rootfs
    assert [path.name for path in (tmp_path / "cache").iterdir()] == [pushed.digest.removeprefix("sha256:")]


async def test_whiteouts_and_opaque_directories_remove_lower_files(registry, pusher, tmp_path):
    lower = layer({"a/x": b"x", "a/y": b"y", "b/z": b"z", "c": b"c"})
    upper = layer({"a/x": None, "c": None, "b/.wh..wh..opq": b"", "b/new": b"new"})
    await pusher.image("demo/layers", "v1", [lower, upper], config={"Cmd": ["python3"]})
    pulled = await pull_image(f"127.0.0.1:{registry.port}/demo/layers:v1", _address(registry), tmp_path)
    files = sorted(str(path.relative_to(pulled.rootfs)) for path in pulled.rootfs.rglob("*"))
    assert files == ["a", "a/y", "b", "b/new"]


async def test_an_index_resolves_to_linux_amd64(registry, pusher, tmp_path):
    arm = await pusher.image("demo/multi", "arm", [layer({"arch": b"arm64"})])
    amd = await pusher.image("demo/multi", "amd", [layer({"arch": b"amd64"})])
    index = await pusher.index("demo/multi", "v1", [(arm, "arm64"), (amd, "amd64")])
    pulled = await pull_image(f"127.0.0.1:{registry.port}/demo/multi:v1", _address(registry), tmp_path)
    assert pulled.digest == amd.digest
    assert pulled.resolved_digest == index.digest  # what the tag names: Knative's imageDigest, kubelet's imageID
    again = await pull_image(f"127.0.0.1:{registry.port}/demo/multi:v1", _address(registry), tmp_path)
    assert again.resolved_digest == index.digest  # also when the unpacked image comes from the cache
    assert (pulled.rootfs / "arch").read_bytes() == b"amd64"


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        ("demo/hello:no-such-tag", "MANIFEST_UNKNOWN"),
        # 2.8 answers an unknown repository's manifest with MANIFEST_UNKNOWN too.
        ("demo/nothing:v1", "MANIFEST_UNKNOWN"),
    ],
)
async def test_what_the_registry_lacks_is_a_clear_error(registry, tmp_path, image, expected):
    with pytest.raises(ImagePullError, match=expected) as failure:
        await pull_image(f"127.0.0.1:{registry.port}/{image}", _address(registry), tmp_path)
    assert "404" in failure.value.message
    assert not list(tmp_path.iterdir()), "nothing is left behind"


async def test_a_registry_that_does_not_answer_is_a_clear_error(tmp_path):
    from knlab_sandbox.processes import free_port

    port = free_port()
    with pytest.raises(ImagePullError, match="did not answer"):
        await pull_image(f"127.0.0.1:{port}/demo/hello:v1", ("127.0.0.1", port), tmp_path)


async def test_credentials_are_sent_when_the_registry_wants_them(tmp_path):
    bcrypt = pytest.importorskip("bcrypt")
    secret = tmp_path / "auth"
    secret.mkdir()
    secret.joinpath("htpasswd").write_text(f"alice:{bcrypt.hashpw(b'pw', bcrypt.gensalt(rounds=4)).decode()}\n")
    env = {
        "REGISTRY_AUTH": "htpasswd",
        "REGISTRY_AUTH_HTPASSWD_REALM": "r",
        "REGISTRY_AUTH_HTPASSWD_PATH": "/a/htpasswd",
    }
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    hub = await start_registry(
        "t/auth", env=env, mounts={"/a": secret}, scratch=scratch, log_path=tmp_path / "log", pid_dir=None
    )
    try:
        token = base64.b64encode(b"alice:pw").decode()
        async with aiohttp.ClientSession(headers={"Authorization": f"Basic {token}"}) as session:
            await Pusher(session, hub.url).image("demo/private", "v1", [layer({"f": b"1"})])
        image = f"127.0.0.1:{hub.port}/demo/private:v1"
        with pytest.raises(ImagePullError, match="401 UNAUTHORIZED"):
            await pull_image(image, (hub.host, hub.port), tmp_path / "cache")
        pulled = await pull_image(image, (hub.host, hub.port), tmp_path / "cache", credentials=("alice", "pw"))
        assert (pulled.rootfs / "f").read_bytes() == b"1"
    finally:
        await hub.stop()


def test_apply_layer_skips_escapes_and_checks_the_diff_id(tmp_path):
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name in ("../escape", "/abs/file", "ok/file"):
            info = tarfile.TarInfo(name)
            info.size = 2
            tar.addfile(info, io.BytesIO(b"hi"))
    blob = tmp_path / "layer.tar.gz"
    blob.write_bytes(gzip.compress(raw.getvalue()))
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    apply_layer(blob, "application/vnd.oci.image.layer.v1.tar+gzip", rootfs, sha256_digest(raw.getvalue()))
    assert sorted(str(path.relative_to(tmp_path)) for path in tmp_path.rglob("*file")) == [
        "rootfs/abs/file",
        "rootfs/ok/file",
    ]
    assert not (tmp_path / "escape").exists()
    with pytest.raises(ImagePullError, match="does not match diff_id"):
        apply_layer(blob, "", rootfs, "sha256:" + "0" * 64)
    with pytest.raises(ImagePullError, match="unsupported layer media type"):
        apply_layer(blob, "application/vnd.oci.image.layer.v1.tar+zstd", rootfs)


@pytest.mark.parametrize(
    ("image", "host", "repository", "reference"),
    [
        ("registry:2", "docker.io", "library/registry", "2"),
        ("docker.io/library/registry:2", "docker.io", "library/registry", "2"),
        ("hub.default.svc.cluster.local/hello", "hub.default.svc.cluster.local", "hello", "latest"),
        ("127.0.0.1:5000/a/b:v1", "127.0.0.1:5000", "a/b", "v1"),
        ("localhost/x@sha256:" + "a" * 64, "localhost", "x", "sha256:" + "a" * 64),
        ("hub.default:80/team/app:1.0@sha256:" + "b" * 64, "hub.default:80", "team/app", "sha256:" + "b" * 64),
    ],
)
def test_image_reference_parsing(image, host, repository, reference):
    parsed = ImageReference.parse(image)
    assert (parsed.host, parsed.repository, parsed.reference) == (host, repository, reference)


@pytest.mark.parametrize("image", ["", "Upper/case", "a b", "x@sha256:short", "x:bad/tag:"])
def test_bad_image_references_are_refused(image):
    with pytest.raises(ImagePullError, match="invalid image reference"):
        ImageReference.parse(image)
