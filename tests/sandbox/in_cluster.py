"""Test helper: a real sandbox server in the test's event loop, and an in-cluster client app to run in it.

``Running`` wraps `knlab_sandbox.server.Server`; everything here is async because the server shares
the test's loop. ``PROBE_APP`` is a stdlib app that, like an in-cluster client, reads its
ServiceAccount directory (``--sa-dir``), and answers:

- ``GET /files``: the directory's ``namespace``, whether ``token`` and ``ca.crt`` exist, and the
  ``KUBERNETES_SERVICE_*`` variables;
- ``GET|PATCH|POST /api?path=P[&impersonate=U]`` (body passed on): the API's answer to that request,
  sent to ``https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT`` with the mounted token,
  verified against the mounted ``ca.crt``, as ``{"status": N, "body": …}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from pathlib import Path
from typing import Any

import aiohttp
from image_push import Pusher, layer
from knlab_sandbox.server import Server
from knlab_sandbox.settings import Settings

HUB = "hub.default.svc.cluster.local"
WAIT = 60.0

PROBE_APP = b"""
import json, os, ssl, sys, urllib.error, urllib.parse, urllib.request
from http.server import BaseHTTPRequestHandler, HTTPServer

SA_DIR = sys.argv[sys.argv.index("--sa-dir") + 1]


def read(name):
    try:
        with open(os.path.join(SA_DIR, name)) as handle:
            return handle.read()
    except OSError:
        return None


class Probe(BaseHTTPRequestHandler):
    def answer(self, document):
        body = json.dumps(document).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self.handle_any()

    def do_PATCH(self):
        self.handle_any()

    def do_POST(self):
        self.handle_any()

    def handle_any(self):
        url = urllib.parse.urlsplit(self.path)
        if url.path == "/files":
            env = {k: v for k, v in os.environ.items() if k.startswith("KUBERNETES_SERVICE")}
            return self.answer({"namespace": read("namespace"), "token": read("token") is not None,
                                "ca": read("ca.crt") is not None, "env": env})
        query = urllib.parse.parse_qs(url.query)
        data = self.rfile.read(int(self.headers.get("Content-Length", "0"))) or None
        api = "https://" + os.environ["KUBERNETES_SERVICE_HOST"] + ":" + os.environ["KUBERNETES_SERVICE_PORT"]
        request = urllib.request.Request(api + query["path"][0], data=data, method=self.command)
        request.add_header("Authorization", "Bearer " + (read("token") or "").strip())
        request.add_header("Accept", "application/json")
        if data:
            request.add_header("Content-Type", self.headers.get("Content-Type", "application/json"))
        if "impersonate" in query:
            request.add_header("Impersonate-User", query["impersonate"][0])
        context = ssl.create_default_context(cafile=os.path.join(SA_DIR, "ca.crt"))
        try:
            with urllib.request.urlopen(request, context=context, timeout=10) as response:
                status, body = response.status, response.read()
        except urllib.error.HTTPError as error:
            status, body = error.code, error.read()
        self.answer({"status": status, "body": json.loads(body or b"null")})


HTTPServer(("127.0.0.1", int(os.environ["PORT"])), Probe).serve_forever()
"""

HUB_SERVICE = {
    "apiVersion": "serving.knative.dev/v1",
    "kind": "Service",
    "metadata": {"name": "hub"},
    "spec": {"template": {"spec": {"containers": [{"image": "docker.io/library/registry:2"}]}}},
}


def probe_service(name: str, **pod_spec: Any) -> dict:
    container = {
        "image": f"{HUB}/test/probe:v1",
        "args": ["app.py", "--sa-dir", "/var/run/secrets/kubernetes.io/serviceaccount"],
    }
    return {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"template": {"spec": {"containers": [container], **pod_spec}}},
    }


class Running:
    def __init__(self, server: Server, info: dict):
        self.server, self.info = server, info
        self.token = (server.settings.state_dir / "token").read_text().strip()
        self.ssl = ssl.create_default_context(cafile=info["ca"])
        self.session = aiohttp.ClientSession()

    async def close(self) -> None:
        await self.session.close()
        await self.server.stop()

    async def api(
        self, method: str, path: str, body: Any = None, *, token: str | None = None, content_type: str = ""
    ) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token or self.token}", "Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body)
            headers["Content-Type"] = content_type or "application/json"
        async with self.session.request(
            method, self.info["api"] + path, data=data, headers=headers, ssl=self.ssl
        ) as response:
            text = await response.text()
        with contextlib.suppress(ValueError):
            return response.status, json.loads(text)
        return response.status, text

    async def create(self, path: str, body: dict) -> dict:
        status, created = await self.api("POST", path, body)
        assert status == 201, created
        return created

    async def through_gateway(self, host: str, path: str, method: str = "GET", body: Any = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body)
        headers = {"Host": host, "Content-Type": "application/merge-patch+json"}
        async with self.session.request(method, self.info["gateway"] + path, data=data, headers=headers) as response:
            text = await response.text()
        with contextlib.suppress(ValueError):
            return response.status, json.loads(text)
        return response.status, text

    async def wait_ready(self, name: str, namespace: str = "default", status: str = "True") -> dict:
        path = f"/apis/serving.knative.dev/v1/namespaces/{namespace}/services/{name}"
        service: Any = None
        async with asyncio.timeout(WAIT):
            while True:
                _, service = await self.api("GET", path)
                status_block = service.get("status") or {} if isinstance(service, dict) else {}
                ready = next((c for c in status_block.get("conditions") or [] if c["type"] == "Ready"), {})
                if status_block.get("observedGeneration") == service["metadata"]["generation"] and (
                    ready.get("status") == status
                ):
                    return service
                await asyncio.sleep(0.05)

    async def hub_with_probe(self) -> None:
        """The hub Service, and the probe image pushed to it."""
        await self.create("/apis/serving.knative.dev/v1/namespaces/default/services", HUB_SERVICE)
        await self.wait_ready("hub")
        await Pusher(self.session, self.info["gateway"], host=HUB).image(
            "test/probe",
            "v1",
            [layer({"app/app.py": PROBE_APP}, directories=("app",))],
            config={"Entrypoint": ["python3"], "Cmd": ["app.py"], "WorkingDir": "/app"},
        )


async def start(state_dir: Path) -> Running:
    server = Server(Settings(state_dir=state_dir, api_port=0, gateway_port=0))
    info = await server.start()
    return Running(server, info)
