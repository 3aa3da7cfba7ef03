"""The gateway: Host-header routing and a streaming proxy in front of a real registry."""

from __future__ import annotations

import hashlib
import os

import aiohttp
import pytest
from aiohttp import web
from image_push import Pusher, layer, sha256_digest
from knlab_sandbox.gateway import Endpoint, Gateway, normalise_host, rewrite_location
from knlab_sandbox.processes import free_port
from knlab_sandbox.registry_process import start_registry

HUB_HOSTS = ["hub.default.svc.cluster.local", "hub.default.127.0.0.1.sslip.io"]


@pytest.fixture
async def gateway():
    gateway = Gateway(0)
    await gateway.start()
    try:
        yield gateway
    finally:
        await gateway.stop()


@pytest.fixture
async def hub(tmp_path, gateway):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    registry = await start_registry(
        "default/hub-00001", env={}, mounts={}, scratch=scratch, log_path=tmp_path / "hub.log", pid_dir=None
    )
    gateway.set_route(HUB_HOSTS, Endpoint(registry.host, registry.port))
    try:
        yield registry
    finally:
        await registry.stop()


@pytest.fixture
async def echo_backend():
    """A small app that tells what it received, to see exactly what the proxy forwards."""
    port = free_port()

    async def echo(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        return web.json_response(
            {
                "method": request.method,
                "path": str(request.rel_url),
                "host": request.headers.get("Host"),
                "forwarded_proto": request.headers.get("X-Forwarded-Proto"),
                "body_sha": hashlib.sha256(body).hexdigest(),
                "chunked": request.headers.get("Transfer-Encoding") == "chunked",
            },
            # Its own address, as a backend that ignores Host builds absolute URLs.
            headers={"Location": f"http://127.0.0.1:{port}/next?x=1"},
        )

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_route("*", "/{tail:.*}", echo)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield Endpoint("127.0.0.1", port)
    finally:
        await runner.cleanup()


def _base(gateway: Gateway) -> str:
    return f"http://{gateway.address[0]}:{gateway.address[1]}"


async def test_routes_by_host_header_and_rewrites_backend_locations(gateway, echo_backend):
    gateway.set_route(["hello.default.svc.cluster.local"], echo_backend)
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{_base(gateway)}/some/path?q=1",
            data=b"payload",
            headers={"Host": "Hello.Default.svc.cluster.local:80"},
            allow_redirects=False,
        ) as response,
    ):
        assert response.status == 200
        seen = await response.json()
        assert response.headers["Location"] == "http://Hello.Default.svc.cluster.local:80/next?x=1"
    assert seen["method"] == "POST"
    assert seen["path"] == "/some/path?q=1"
    assert seen["host"] == "Hello.Default.svc.cluster.local:80"
    assert seen["forwarded_proto"] == "http"
    assert seen["body_sha"] == hashlib.sha256(b"payload").hexdigest()


async def test_a_chunked_request_body_is_streamed_through(gateway, echo_backend):
    gateway.set_route(["hello.default.svc.cluster.local"], echo_backend)
    parts = [os.urandom(100_000) for _ in range(5)]

    async def body():
        for part in parts:
            yield part

    async with (
        aiohttp.ClientSession() as session,
        session.put(_base(gateway), data=body(), headers={"Host": "hello.default.svc.cluster.local"}) as response,
    ):
        seen = await response.json()
    assert seen["chunked"] is True
    assert seen["body_sha"] == hashlib.sha256(b"".join(parts)).hexdigest()


async def test_unknown_host_is_a_404_and_a_dead_backend_a_502(gateway):
    async with aiohttp.ClientSession() as session:
        async with session.get(_base(gateway), headers={"Host": "nobody.default.svc.cluster.local"}) as response:
            assert response.status == 404
            assert "nobody.default.svc.cluster.local" in await response.text()
        gateway.set_route(["gone.default.svc.cluster.local"], Endpoint("127.0.0.1", free_port()))
        async with session.get(_base(gateway), headers={"Host": "gone.default.svc.cluster.local"}) as response:
            assert response.status == 502
    gateway.remove_route(["gone.default.svc.cluster.local"])
    assert gateway.resolve("gone.default.svc.cluster.local") is None


async def test_resolve_accepts_the_service_port_only(gateway):
    endpoint = Endpoint("127.0.0.1", 4242)
    gateway.set_route(HUB_HOSTS, endpoint)
    assert gateway.resolve("hub.default.svc.cluster.local") == endpoint
    assert gateway.resolve("HUB.default.svc.cluster.local:80") == endpoint
    assert gateway.resolve(f"hub.default.127.0.0.1.sslip.io:{gateway.address[1]}") == endpoint
    # A Knative Service listens on 80 only; port 5000 would not answer on a cluster either.
    assert gateway.resolve("hub.default.svc.cluster.local:5000") is None
    assert gateway.resolve("other.default.svc.cluster.local") is None


async def test_push_and_pull_a_large_image_through_the_gateway(gateway, hub):
    big = os.urandom(3 * 1024 * 1024)
    blob, diff_id = layer({"data.bin": big})
    async with aiohttp.ClientSession() as session:
        pusher = Pusher(session, _base(gateway), host="hub.default.svc.cluster.local")
        pushed = await pusher.image("demo/big", "v1", [(blob, diff_id)])
        # Pull it back by the external name: manifest, then the blob, streamed through.
        headers = {"Host": "hub.default.127.0.0.1.sslip.io", "Accept": pushed.media_type}
        async with session.get(f"{_base(gateway)}/v2/demo/big/manifests/v1", headers=headers) as response:
            assert response.status == 200
            assert response.headers["Docker-Content-Digest"] == pushed.digest
            manifest = await response.json(content_type=None)
        layer_digest = manifest["layers"][0]["digest"]
        async with session.head(f"{_base(gateway)}/v2/demo/big/blobs/{layer_digest}", headers=headers) as response:
            assert response.status == 200
            assert int(response.headers["Content-Length"]) == len(blob)
        async with session.get(
            f"{_base(gateway)}/v2/demo/big/blobs/{layer_digest}", headers=headers, auto_decompress=False
        ) as response:
            assert response.status == 200
            assert sha256_digest(await response.read()) == layer_digest


def test_normalise_host_and_location_rewrite():
    assert normalise_host("Hub.Default.svc.cluster.local.:8080") == "hub.default.svc.cluster.local"
    assert normalise_host("[::1]:80") == "[::1]"
    endpoint = Endpoint("127.0.0.1", 5555)
    assert (
        rewrite_location("http://127.0.0.1:5555/v2/x/blobs/uploads/u?_state=s", endpoint, "hub.default:80")
        == "http://hub.default:80/v2/x/blobs/uploads/u?_state=s"
    )
    assert rewrite_location("/v2/x/blobs/sha256:ab", endpoint, "hub") == "/v2/x/blobs/sha256:ab"
    assert rewrite_location("http://elsewhere/v2/", endpoint, "hub") == "http://elsewhere/v2/"


async def _named_backend(name: str) -> tuple[web.AppRunner, Endpoint]:
    async def answer(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(text=name)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, Endpoint("127.0.0.1", port)


async def test_a_pool_spreads_requests_and_skips_an_instance_that_refuses(gateway):
    runners = []
    endpoints = []
    for name in ("a", "b"):
        runner, endpoint = await _named_backend(name)
        runners.append(runner)
        endpoints.append(endpoint)
    dead = Endpoint("127.0.0.1", free_port())  # nothing listens there
    try:
        gateway.set_route(["app.default.svc.cluster.local"], endpoints[0])
        pool = gateway.set_pool("default/app-00001", endpoints)
        url = f"http://{gateway.address[0]}:{gateway.address[1]}/"
        headers = {"Host": "app.default.svc.cluster.local"}
        async with aiohttp.ClientSession() as session:
            answers = []
            for _ in range(6):
                async with session.get(url, headers=headers) as response:
                    answers.append(await response.text())
            assert sorted(set(answers)) == ["a", "b"]
            assert pool.served == {endpoints[0]: 3, endpoints[1]: 3}
            assert pool.in_flight == 0
            # The route names an instance that died: requests reach the pool's live one; a GET whose
            # pick refuses the connection is tried on the other instance.
            gateway.set_route(["app.default.svc.cluster.local"], dead)
            gateway.set_pool("default/app-00001", [dead])
            gateway.set_pool("default/app-00001", [dead, endpoints[1]])
            for _ in range(4):
                async with session.get(url, headers=headers) as response:
                    assert (response.status, await response.text()) == (200, "b")
            # A request with a body is not replayed: the one that picked the dead instance is a 502.
            statuses = []
            for _ in range(4):
                async with session.put(url, headers=headers, data=b"x" * 10) as response:
                    statuses.append(response.status)
            assert sorted(set(statuses)) == [200, 502]
        concurrency, rate = pool.sample()
        assert concurrency >= 0 and rate > 0
        assert gateway.resolve("app.default.svc.cluster.local") in (dead, endpoints[1])
        gateway.remove_pool("default/app-00001")
        assert gateway.pool("default/app-00001") is None
    finally:
        for runner in runners:
            await runner.cleanup()
