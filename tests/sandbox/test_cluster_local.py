"""Pod processes reach Knative Services by their cluster-local names, through the gateway as their HTTP proxy.

Real processes, real HTTP: a Python app image calls another Service with urllib, and the real
registry (Go's net/http) delivers its notifications to a receiver Service.
"""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest
from image_push import Pusher, layer
from knlab_sandbox.gateway import Gateway
from knlab_sandbox.runtime import Runtime
from knlab_sandbox.settings import Settings

HUB = "hub.default.svc.cluster.local"

# GET /?url=U fetches U with urllib (which honours http_proxy) and answers what came back.
CALLER_APP = b"""
import os, urllib.error, urllib.parse, urllib.request
from http.server import BaseHTTPRequestHandler, HTTPServer


class Caller(BaseHTTPRequestHandler):
    def do_GET(self):
        url = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)["url"][0]
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                status, body = response.status, response.read()
        except urllib.error.HTTPError as error:
            status, body = error.code, error.read()
        body = (str(status) + " " + body.decode()).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


HTTPServer(("127.0.0.1", int(os.environ["PORT"])), Caller).serve_forever()
"""

# POST /events keeps the body; GET answers every body kept, as a JSON list.
RECEIVER_APP = b"""
import json, os
from http.server import BaseHTTPRequestHandler, HTTPServer

received = []


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        received.append({"path": self.path, "host": self.headers.get("Host"),
                         "content_type": self.headers.get("Content-Type"),
                         "authorization": self.headers.get("Authorization"), "body": json.loads(body)})
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self):
        body = json.dumps(received).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


HTTPServer(("127.0.0.1", int(os.environ["PORT"])), Receiver).serve_forever()
"""


@pytest.fixture
async def sandbox(tmp_path):
    settings = Settings(state_dir=tmp_path / "state", gateway_port=0)
    gateway = Gateway(0)
    await gateway.start()
    runtime = Runtime(settings, gateway, ready_timeout=20)
    try:
        yield settings, gateway, runtime
    finally:
        await runtime.stop_all()
        await gateway.stop()


def _url(gateway: Gateway) -> str:
    return f"http://{gateway.address[0]}:{gateway.address[1]}"


async def _get(gateway: Gateway, host: str, path: str = "/") -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(_url(gateway) + path, headers={"Host": host}) as r:
        return r.status, await r.text()


async def _start(settings, gateway, runtime, name: str, spec: dict) -> None:
    log_path = settings.log_path("default", f"{name}-00001-deployment-x", "user-container")
    endpoint = await runtime.start(f"default/{name}-00001", "default", spec, {"PORT": "8080"}, log_path)
    gateway.set_route([f"{name}.default.svc.cluster.local", f"{name}.default.127.0.0.1.sslip.io"], endpoint)


async def _push_app(gateway: Gateway, repository: str, source: bytes) -> None:
    async with aiohttp.ClientSession() as session:
        await Pusher(session, _url(gateway), host=HUB).image(
            repository,
            "v1",
            [layer({"app/app.py": source}, directories=("app",))],
            config={"Cmd": ["python3", "app.py"], "WorkingDir": "/app"},
        )


def _app(image: str) -> dict:
    return {"containers": [{"image": image, "ports": [{"containerPort": 8080}]}]}


async def test_a_python_app_calls_another_service_by_its_cluster_local_name(sandbox):
    settings, gateway, runtime = sandbox
    await _start(settings, gateway, runtime, "hub", {"containers": [{"image": "registry:2"}]})
    await _push_app(gateway, "demo/caller", CALLER_APP)
    async with aiohttp.ClientSession() as session:
        await Pusher(session, _url(gateway), host=HUB).hello_app("demo/hello", "v1")
    await _start(settings, gateway, runtime, "hello", _app(f"{HUB}/demo/hello:v1"))
    await _start(settings, gateway, runtime, "caller", _app(f"{HUB}/demo/caller:v1"))

    status, text = await _get(
        gateway, "caller.default.svc.cluster.local", "/?url=http://hello.default.svc.cluster.local/"
    )
    assert status == 200
    assert text.startswith("200 Hello Sandbox from "), text
    # The hub's API by its cluster-local name, as a receiver asks it for a tag's digest.
    status, text = await _get(
        gateway, "caller.default.svc.cluster.local", f"/?url=http://{HUB}/v2/demo/hello/tags/list"
    )
    assert (status, json.loads(text.removeprefix("200 "))) == (200, {"name": "demo/hello", "tags": ["v1"]})
    # A name no Service has: the gateway's 404, as an ingress without that virtual host.
    status, text = await _get(
        gateway, "caller.default.svc.cluster.local", "/?url=http://nothing.default.svc.cluster.local/"
    )
    assert text.startswith("404 no route for host 'nothing.default.svc.cluster.local'"), text
    # A port no Knative Service serves is not routed either.
    status, text = await _get(
        gateway, "caller.default.svc.cluster.local", "/?url=http://hello.default.svc.cluster.local:8080/"
    )
    assert text.startswith("404 "), text


async def test_the_gateway_routes_an_absolute_form_target_by_its_host_not_the_host_header(sandbox):
    settings, gateway, runtime = sandbox
    await _start(settings, gateway, runtime, "hub", {"containers": [{"image": "registry:2"}]})
    reader, writer = await asyncio.open_connection(*gateway.address)
    writer.write(
        f"GET http://{HUB.upper()}:80/v2/ HTTP/1.1\r\nHost: elsewhere.example\r\nConnection: close\r\n\r\n".encode()
    )
    await writer.drain()
    response = (await reader.read()).decode()
    writer.close()
    assert response.startswith("HTTP/1.1 200 "), response
    assert "Docker-Distribution-Api-Version: registry/2.0" in response
    reader, writer = await asyncio.open_connection(*gateway.address)
    writer.write(f"CONNECT {HUB}:443 HTTP/1.1\r\nHost: {HUB}:443\r\n\r\n".encode())
    await writer.drain()
    assert (await reader.readline()).startswith(b"HTTP/1.1 405 ")
    writer.close()


async def test_the_registry_delivers_notifications_to_a_service_by_its_cluster_local_name(sandbox):
    settings, gateway, runtime = sandbox
    # A plain hub holds the receiver's image; the notifying hub is a second registry process.
    await _start(settings, gateway, runtime, "hub", {"containers": [{"image": "registry:2"}]})
    await _push_app(gateway, "demo/receiver", RECEIVER_APP)
    await _start(settings, gateway, runtime, "receiver", _app(f"{HUB}/demo/receiver:v1"))
    endpoints = (
        "- name: receiver\n"
        "  url: http://receiver.default.svc.cluster.local/events\n"
        "  headers: {Authorization: [Bearer s3cret]}\n"
        "  timeout: 2s\n"
        "  threshold: 3\n"
        "  backoff: 1s\n"
        "  ignoredmediatypes: [application/octet-stream]\n"
    )
    env = [{"name": "REGISTRY_NOTIFICATIONS_ENDPOINTS", "value": endpoints}]
    notifying = {"containers": [{"image": "registry:2", "env": env}]}
    await _start(settings, gateway, runtime, "notifier", notifying)
    async with aiohttp.ClientSession() as session:
        notifier = Pusher(session, _url(gateway), host="notifier.default.svc.cluster.local")
        pushed = await notifier.hello_app("demo/app", "v2")

    deliveries: list = []
    for _ in range(100):
        _, text = await _get(gateway, "receiver.default.svc.cluster.local")
        deliveries = json.loads(text)
        events = [e for d in deliveries for e in d["body"]["events"]]
        if any(e["action"] == "push" and e["target"].get("tag") == "v2" for e in events):
            break
        await asyncio.sleep(0.1)
    events = [e for d in deliveries for e in d["body"]["events"]]
    pushes = [e for e in events if e["action"] == "push"]
    assert pushes, f"no push event arrived: {deliveries}"
    assert pushes[-1]["target"]["digest"] == pushed.digest
    assert pushes[-1]["target"]["repository"] == "demo/app"
    assert all(e["target"]["mediaType"] != "application/octet-stream" for e in events)
    delivery = deliveries[-1]
    assert delivery["path"] == "/events"
    assert delivery["host"] == "receiver.default.svc.cluster.local"
    assert delivery["authorization"] == "Bearer s3cret"
    assert delivery["content_type"] == "application/vnd.docker.distribution.events.v1+json"
