"""The hub process: the real docker-registry with our config, REGISTRY_* env and mapped paths."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import aiohttp
import pytest
from image_push import Pusher, layer
from knlab_sandbox import processes
from knlab_sandbox.registry_process import RegistryStartError, start_registry


async def _start(tmp_path: Path, name: str = "hub", **kwargs):
    scratch = tmp_path / f"{name}-scratch"
    scratch.mkdir(exist_ok=True)
    return await start_registry(
        f"default/{name}",
        env=kwargs.pop("env", {}),
        mounts=kwargs.pop("mounts", {}),
        scratch=scratch,
        log_path=tmp_path / f"{name}.log",
        pid_dir=tmp_path / "pids",
        **kwargs,
    )


async def _push_one(url: str) -> str:
    async with aiohttp.ClientSession() as session:
        pushed = await Pusher(session, url).image("demo/hello", "v1", [layer({"hello.txt": b"hi\n"})])
    return pushed.digest


async def _tags(url: str, auth: aiohttp.BasicAuth | None = None) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as session, session.get(f"{url}/v2/demo/hello/tags/list", auth=auth) as r:
        return r.status, await r.json(content_type=None)


async def test_serves_the_registry_api_and_stops_cleanly(tmp_path):
    hub = await _start(tmp_path)
    try:
        async with aiohttp.ClientSession() as session, session.get(f"{hub.url}/v2/") as response:
            assert response.status == 200
            assert response.headers["Docker-Distribution-Api-Version"] == "registry/2.0"
        await _push_one(hub.url)
        assert await _tags(hub.url) == (200, {"name": "demo/hello", "tags": ["v1"]})
        assert hub.storage == tmp_path / "hub-scratch" / "var" / "lib" / "registry"
        assert list((tmp_path / "pids").glob("*.json"))
    finally:
        await hub.stop()
    assert hub.child.returncode is not None
    assert not (tmp_path / "hub-scratch").exists(), "the container filesystem goes with the container"
    assert not list((tmp_path / "pids").glob("*.json"))
    assert "listening on 127.0.0.1" in (tmp_path / "hub.log").read_text()


async def test_a_mounted_volume_keeps_the_images_and_scratch_storage_loses_them(tmp_path):
    pvc = tmp_path / "pvc"
    pvc.mkdir()
    for _ in range(2):
        hub = await _start(tmp_path, mounts={"/var/lib/registry": pvc})
        try:
            await _push_one(hub.url)
        finally:
            await hub.stop()
    hub = await _start(tmp_path, mounts={"/var/lib/registry": pvc})
    try:
        assert (await _tags(hub.url))[1]["tags"] == ["v1"]
    finally:
        await hub.stop()

    hub = await _start(tmp_path, name="ephemeral")
    try:
        await _push_one(hub.url)
    finally:
        await hub.stop()
    hub = await _start(tmp_path, name="ephemeral")
    try:
        status, body = await _tags(hub.url)
        assert status == 404
        assert body["errors"][0]["code"] == "NAME_UNKNOWN"
    finally:
        await hub.stop()


async def test_htpasswd_from_a_mounted_secret_through_registry_env(tmp_path):
    bcrypt = pytest.importorskip("bcrypt")
    secret = tmp_path / "secret"
    secret.mkdir()
    hashed = bcrypt.hashpw(b"wonderland", bcrypt.gensalt(rounds=4)).decode()
    (secret / "htpasswd").write_text(f"alice:{hashed}\n")
    env = {
        "REGISTRY_AUTH": "htpasswd",
        "REGISTRY_AUTH_HTPASSWD_REALM": "Registry Realm",
        "REGISTRY_AUTH_HTPASSWD_PATH": "/auth/htpasswd",
        # The pod's address is not ours to take: the sandbox always binds a free loopback port.
        "REGISTRY_HTTP_ADDR": ":5000",
    }
    hub = await _start(tmp_path, env=env, mounts={"/auth": secret})
    try:
        assert hub.port != 5000
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{hub.url}/v2/") as response:
                assert response.status == 401
                assert response.headers["WWW-Authenticate"] == 'Basic realm="Registry Realm"'
            token = base64.b64encode(b"alice:wonderland").decode()
            async with session.get(f"{hub.url}/v2/", headers={"Authorization": f"Basic {token}"}) as response:
                assert response.status == 200
    finally:
        await hub.stop()


async def test_a_registry_that_exits_reports_its_exit_code_and_log(tmp_path):
    with pytest.raises(RegistryStartError) as failure:
        await _start(tmp_path, env={"REGISTRY_LOG_LEVEL": "bogus"})
    assert failure.value.reason == "ExitCode1"
    assert failure.value.message.startswith("Container failed with: ")
    assert "invalid loglevel bogus" in failure.value.message
    assert not list((tmp_path / "pids").glob("*.json"))


async def test_missing_binary_is_a_clear_failure(tmp_path, monkeypatch):
    monkeypatch.setenv("KNLAB_DOCKER_REGISTRY", str(tmp_path / "no-such-registry"))
    with pytest.raises(
        RegistryStartError, match=r"^docker-registry is not installed: apt-get install docker-registry$"
    ):
        await _start(tmp_path)


@pytest.mark.parametrize(
    ("env", "mounts", "expected"),
    [
        ({}, {"/etc/docker/registry": Path("/tmp")}, "would replace the registry's config file"),
        ({"REGISTRY_HTTP_TLS_CERTIFICATE": "/certs/tls.crt"}, {}, "talks plain HTTP"),
    ],
)
async def test_what_the_sandbox_cannot_honour_is_refused(tmp_path, env, mounts, expected):
    with pytest.raises(RegistryStartError, match=expected) as failure:
        await _start(tmp_path, env=env, mounts=mounts)
    assert failure.value.reason == "UnsupportedConfiguration"


async def test_recorded_processes_are_stopped_after_the_server_dies(tmp_path):
    hub = await _start(tmp_path)
    try:
        # What `knlab-sandbox down` does after a kill -9 of the server: only the records are left.
        assert processes.stop_recorded(tmp_path / "pids") == [hub.child.pid]
        await hub.child.process.wait()
        assert not (tmp_path / "hub-scratch").exists()
        with pytest.raises(ProcessLookupError):
            os.kill(hub.child.pid, 0)
    finally:
        await hub.stop()
