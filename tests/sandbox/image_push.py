"""Test helper: push small images to a registry over the HTTP API v2, asynchronously.

Async on purpose: pushes often go through the sandbox gateway, which runs in the test's own event
loop. ``host`` is the Host header to send (a Knative host when pushing through the gateway). The
images themselves (layers, config, manifests, indexes) are built by the unit tests' registry helper,
so both push the same documents.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit

import aiohttp
from ansible_collections.knlab.serverless.tests.unit.registry_server import (
    OCI_INDEX,
    PushedImage,
    image_documents,
    index_document,
    sha256_digest,
    upload_finish_target,
)
from ansible_collections.knlab.serverless.tests.unit.registry_server import layer_tarball as layer

HELLO_APP = b"""
import os
from http.server import BaseHTTPRequestHandler, HTTPServer


class Hello(BaseHTTPRequestHandler):
    def do_GET(self):
        body = ("Hello " + os.environ.get("TARGET", "World") + " from " + os.getcwd() + "\\n").encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


print("listening on", os.environ["PORT"], flush=True)
HTTPServer(("127.0.0.1", int(os.environ["PORT"])), Hello).serve_forever()
"""


class Pusher:
    """Pushes to ``base_url`` (``http://127.0.0.1:PORT``) with Host header ``host``."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str, host: str | None = None):
        self.session = session
        self.base_url = base_url.rstrip("/")
        self.host = host

    def _headers(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        headers = dict(extra or {})
        if self.host:
            headers["Host"] = self.host
        return headers

    def _url(self, target: str) -> str:
        parts = urlsplit(target)
        return f"{self.base_url}{parts.path}" + (f"?{parts.query}" if parts.query else "")

    async def _request(self, method: str, target: str, expected: int, **kwargs) -> aiohttp.ClientResponse:
        headers = self._headers(kwargs.pop("headers", None))
        async with self.session.request(method, self._url(target), headers=headers, **kwargs) as response:
            await response.read()
            if response.status != expected:
                raise AssertionError(f"{method} {target}: {response.status} {await response.text()}")
            return response

    async def blob(self, repository: str, data: bytes) -> str:
        digest = sha256_digest(data)
        started = await self._request("POST", f"/v2/{repository}/blobs/uploads/", 202)
        patched = await self._request(
            "PATCH",
            started.headers["Location"],
            202,
            data=data,
            headers={"Content-Type": "application/octet-stream"},
        )
        await self._request("PUT", upload_finish_target(patched.headers["Location"], digest), 201)
        return digest

    async def manifest(self, repository: str, reference: str, body: bytes, media_type: str) -> str:
        response = await self._request(
            "PUT", f"/v2/{repository}/manifests/{reference}", 201, data=body, headers={"Content-Type": media_type}
        )
        return response.headers["Docker-Content-Digest"]

    async def image(
        self,
        repository: str,
        tag: str,
        layers: list[tuple[bytes, str]],
        *,
        config: Mapping | None = None,
        oci: bool = False,
    ) -> PushedImage:
        image = image_documents(layers, config=config, oci=oci)
        blob_digests = tuple([await self.blob(repository, blob) for blob in image.blobs])
        digest = await self.manifest(repository, tag, image.manifest, image.media_type)
        return PushedImage(repository, tag, digest, image.media_type, image.manifest, blob_digests)

    async def index(self, repository: str, tag: str, images: list[tuple[PushedImage, str]]) -> PushedImage:
        """An OCI index over ``(image, architecture)`` pairs already in ``repository``."""
        body = index_document(images)
        return PushedImage(repository, tag, await self.manifest(repository, tag, body, OCI_INDEX), OCI_INDEX, body)

    async def hello_app(self, repository: str, tag: str, *, target: str = "Sandbox", oci: bool = True) -> PushedImage:
        """The usual test app: /app/app.py answering GET with a greeting, run by ``python3 app.py``."""
        return await self.image(
            repository,
            tag,
            [layer({"app/app.py": HELLO_APP}, directories=("app",))],
            config={
                "Env": ["PATH=/usr/local/bin:/usr/bin:/bin", f"TARGET={target}"],
                "Cmd": ["python3", "app.py"],
                "WorkingDir": "/app",
                "ExposedPorts": {"8080/tcp": {}},
            },
            oci=oci,
        )
