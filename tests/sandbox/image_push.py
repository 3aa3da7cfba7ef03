"""Test helper: build small images and push them to a registry over the HTTP API v2, asynchronously.

Async on purpose: pushes often go through the sandbox gateway, which runs in the test's own event
loop. ``host`` is the Host header to send (a Knative host when pushing through the gateway).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

import aiohttp

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"

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


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def layer(files: Mapping[str, bytes | None], *, directories: tuple[str, ...] = ()) -> tuple[bytes, str]:
    """A tar.gz layer; a ``None`` value is a whiteout entry for that path. Returns (blob, diff_id)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in directories:
            info = tarfile.TarInfo(name)
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            tar.addfile(info)
        for name, content in sorted(files.items()):
            if content is None:
                head, _, base = name.rpartition("/")
                info = tarfile.TarInfo(f"{head}/.wh.{base}" if head else f".wh.{base}")
                tar.addfile(info, io.BytesIO(b""))
                continue
            info = tarfile.TarInfo(name)
            info.size = len(content)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(content))
    uncompressed = raw.getvalue()
    return gzip.compress(uncompressed, mtime=0), sha256_digest(uncompressed)


@dataclass(frozen=True)
class Pushed:
    digest: str
    media_type: str
    manifest: bytes


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
        location = patched.headers["Location"]
        separator = "&" if "?" in location else "?"
        await self._request("PUT", f"{location}{separator}{urlencode({'digest': digest})}", 201)
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
    ) -> Pushed:
        config_blob = json.dumps(
            {
                "architecture": "amd64",
                "os": "linux",
                "config": dict(config or {}),
                "rootfs": {"type": "layers", "diff_ids": [diff_id for _, diff_id in layers]},
            },
            sort_keys=True,
        ).encode()
        layer_descriptors = []
        for blob, _ in layers:
            digest = await self.blob(repository, blob)
            layer_descriptors.append(
                {"mediaType": OCI_LAYER if oci else DOCKER_LAYER, "size": len(blob), "digest": digest}
            )
        config_digest = await self.blob(repository, config_blob)
        media_type = OCI_MANIFEST if oci else DOCKER_MANIFEST
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": media_type,
                "config": {
                    "mediaType": OCI_CONFIG if oci else DOCKER_CONFIG,
                    "size": len(config_blob),
                    "digest": config_digest,
                },
                "layers": layer_descriptors,
            }
        ).encode()
        digest = await self.manifest(repository, tag, manifest, media_type)
        return Pushed(digest, media_type, manifest)

    async def index(self, repository: str, tag: str, images: list[tuple[Pushed, str]]) -> Pushed:
        """An OCI index over ``(image, architecture)`` pairs already in ``repository``."""
        body = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_INDEX,
                "manifests": [
                    {
                        "mediaType": image.media_type,
                        "size": len(image.manifest),
                        "digest": image.digest,
                        "platform": {"architecture": architecture, "os": "linux"},
                    }
                    for image, architecture in images
                ],
            }
        ).encode()
        return Pushed(await self.manifest(repository, tag, body, OCI_INDEX), OCI_INDEX, body)

    async def hello_app(self, repository: str, tag: str, *, target: str = "Sandbox", oci: bool = True) -> Pushed:
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
