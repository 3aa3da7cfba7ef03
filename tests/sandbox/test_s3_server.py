"""The S3 server beside the sandbox (real versitygw, built from cluster/go/versitygw) and the hub
process keeping its images in it through REGISTRY_STORAGE=s3 alone (env, as the role sets it).

versitygw is built into the build cache the first time (about 3 minutes; $KNLAB_VERSITYGW names a
binary to use instead, $KNLAB_CLUSTER_CACHE another cache)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import aiohttp
import pytest
from image_push import Pusher, layer
from knlab_sandbox import cli, s3_server
from knlab_sandbox.registry_process import start_registry

pytestmark = [
    pytest.mark.skipif(
        not (os.environ.get("KNLAB_DOCKER_REGISTRY") or shutil.which("docker-registry")),
        reason="the hub process needs docker-registry (apt-get install docker-registry)",
    ),
    pytest.mark.skipif(
        not (os.environ.get("KNLAB_VERSITYGW") or shutil.which("go")),
        reason="the S3 server is built from cluster/go/versitygw: it needs Go (or $KNLAB_VERSITYGW)",
    ),
]


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory):
    state = tmp_path_factory.mktemp("s3-state")
    data = s3_server.start(state, port=0)
    yield state, data
    s3_server.stop(state)


def hub_env(data: dict, prefix: str = "/knlab", secret_key: str | None = None) -> dict[str, str]:
    """What roles/registry sets for `registry_storage: s3` (the keys come from a Secret there)."""
    return {
        "REGISTRY_STORAGE": "s3",
        "REGISTRY_STORAGE_S3_REGIONENDPOINT": data["endpoint"],
        "REGISTRY_STORAGE_S3_REGION": data["region"],
        "REGISTRY_STORAGE_S3_BUCKET": data["bucket"],
        "REGISTRY_STORAGE_S3_ACCESSKEY": data["access_key"],
        "REGISTRY_STORAGE_S3_SECRETKEY": secret_key or data["secret_key"],
        "REGISTRY_STORAGE_S3_SECURE": "false",
        "REGISTRY_STORAGE_S3_FORCEPATHSTYLE": "true",
        "REGISTRY_STORAGE_S3_ROOTDIRECTORY": prefix,
        "REGISTRY_STORAGE_REDIRECT_DISABLE": "true",
        "REGISTRY_STORAGE_DELETE_ENABLED": "true",
        "REGISTRY_HTTP_SECRET": "shared-by-every-replica",
    }


async def _start_hub(tmp_path: Path, name: str, env: dict[str, str]):
    scratch = tmp_path / f"{name}-scratch"
    scratch.mkdir()
    return await start_registry(
        f"default/{name}", env=env, mounts={}, scratch=scratch, log_path=tmp_path / f"{name}.log", pid_dir=None
    )


def test_up_is_idempotent_keeps_its_keys_private_and_down_stops_it(tmp_path, capsys) -> None:
    state = str(tmp_path)
    assert cli.main(["s3", "info", "--state-dir", state]) == cli.EXIT_NOT_RUNNING
    assert cli.main(["s3", "up", "--state-dir", state, "--port", "0", "--bucket", "images"]) == 0
    first = json.loads(capsys.readouterr().out)
    try:
        assert Path(first["bucket_dir"]) == tmp_path.resolve() / "s3" / "data" / "images"
        assert Path(first["bucket_dir"]).is_dir()
        for private in ("credentials.json", "endpoint.json"):
            assert (tmp_path / "s3" / private).stat().st_mode & 0o777 == 0o600
        # The keys are in the process's environment, not on its command line.
        cmdline = Path(f"/proc/{first['pid']}/cmdline").read_bytes()
        assert first["secret_key"].encode() not in cmdline
        assert cli.main(["s3", "up", "--state-dir", state, "--port", "0", "--bucket", "other"]) == 0
        second = json.loads(capsys.readouterr().out)
        assert second["pid"] == first["pid"]
        # The bucket asked for, made and named, not the first caller's.
        assert (second["bucket"], Path(second["bucket_dir"]).name) == ("other", "other")
        assert Path(second["bucket_dir"]).is_dir()
        assert cli.main(["s3", "info", "--state-dir", state]) == 0
        assert json.loads(capsys.readouterr().out)["endpoint"] == first["endpoint"]
    finally:
        # `knlab-sandbox down` stops it too (a killed sandbox leaves no S3 server behind).
        assert cli.main(["down", "--state-dir", state]) == 0
    assert (
        not Path(f"/proc/{first['pid']}").exists()
        or b"versitygw" not in Path(f"/proc/{first['pid']}/cmdline").read_bytes()
    )
    assert "1 process it had left running" in capsys.readouterr().out
    assert cli.main(["s3", "info", "--state-dir", state]) == cli.EXIT_NOT_RUNNING
    # The data and the keys stay for the next up.
    try:
        assert cli.main(["s3", "up", "--state-dir", state, "--port", "0", "--bucket", "images"]) == 0
        again = json.loads(capsys.readouterr().out)
    finally:
        s3_server.stop(tmp_path)
    assert (again["access_key"], again["secret_key"]) == (first["access_key"], first["secret_key"])


def test_a_bucket_name_that_is_not_one_is_refused(tmp_path, capsys) -> None:
    assert cli.main(["s3", "up", "--state-dir", str(tmp_path), "--bucket", "../escape"]) == 2
    assert "is not an S3 bucket name" in capsys.readouterr().err
    assert not (tmp_path / "s3" / "pids").exists()


async def test_the_hub_keeps_its_images_in_the_bucket_and_a_new_process_serves_them(s3, tmp_path) -> None:
    _, data = s3
    first = await _start_hub(tmp_path, "hub-1", hub_env(data))
    try:
        async with aiohttp.ClientSession() as session:
            pushed = await Pusher(session, first.url).image("demo/hello", "v1", [layer({"hello.txt": b"on s3\n"})])
    finally:
        await first.stop()
    blobs = Path(data["bucket_dir"]) / "knlab" / "docker" / "registry" / "v2" / "blobs" / "sha256"
    stored = {path.parent.name for path in blobs.glob("*/*/data")}
    assert {digest.split(":", 1)[1] for digest in pushed.blob_digests} <= stored
    assert not (tmp_path / "hub-1-scratch" / "var" / "lib" / "registry" / "docker").exists()

    # A new process with an empty filesystem (a new revision, another replica) serves the same image.
    second = await _start_hub(tmp_path, "hub-2", hub_env(data))
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(
                f"{second.url}/v2/demo/hello/manifests/v1", headers={"Accept": pushed.media_type}
            ) as response:
                assert response.status == 200
                assert await response.read() == pushed.manifest
            for digest in pushed.blob_digests:
                async with session.get(f"{second.url}/v2/demo/hello/blobs/{digest}", allow_redirects=False) as r:
                    # Served by the hub itself (redirects off): clients need not reach the S3 server.
                    assert r.status == 200
                    assert "sha256:" + hashlib.sha256(await r.read()).hexdigest() == digest
    finally:
        await second.stop()


async def test_wrong_keys_fail_the_push_rather_than_store_elsewhere(s3, tmp_path) -> None:
    _, data = s3
    hub = await _start_hub(tmp_path, "hub-bad", hub_env(data, prefix="/bad", secret_key="not-the-key"))
    try:
        async with aiohttp.ClientSession() as session:
            with pytest.raises(AssertionError, match=r"POST .*: 500"):
                await Pusher(session, hub.url).blob("demo/bad", b"never stored\n")
    finally:
        await hub.stop()
    assert not (Path(data["bucket_dir"]) / "bad").exists()
    assert "SignatureDoesNotMatch" in (tmp_path / "hub-bad.log").read_text()
