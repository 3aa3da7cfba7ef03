"""Registry HTTP API v2 plumbing shared by the builder (pushes images) and images.py (pulls them).

Both reach only registries that run inside the sandbox: a hub Knative Service behind the gateway,
or a registry listening on loopback. ``registry_address`` finds where a registry named in an image
reference listens; a `RegistryConnection` sends each request there with the registry's own name as
Host header, as a client outside the sandbox would. Credentials come from docker config documents
(a Secret's ``.dockerconfigjson``, kaniko's ``config.json``) through ``docker_config_credentials``.

    address = registry_address("hub.default.svc.cluster.local", gateway.resolve)  # None: unreachable
    connection = RegistryConnection(session, Registry("hub.default.svc.cluster.local", address))
    async with connection.request("GET", "/v2/") as response: ...
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import ssl
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"

# The parts of an image reference, as docker/distribution's reference grammar spells them.
DIGEST_PATTERN = re.compile(r"^sha256:[0-9a-f]{64}$")
TAG_PATTERN = re.compile(r"^[\w][\w.-]{0,127}$")
REPOSITORY_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")

LOOPBACK_HOST = "127.0.0.1"
_LOOPBACK_NAMES = ("127.0.0.1", "localhost")
# Docker Hub answers to several names; a docker config may file its credentials under any of them.
_DOCKER_HUB_NAMES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})

Resolver = Callable[[str], Any]  # the gateway's: a host → an (host, port) endpoint, or None


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def basic_authorization(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def registry_errors(body: bytes) -> list[str]:
    """``CODE: message`` for each entry of a registry error body; [] when the body is not one."""
    try:
        errors = json.loads(body).get("errors") or []
        return [f"{error.get('code') or 'UNKNOWN'}: {error.get('message', '')}" for error in errors]
    except (ValueError, AttributeError, TypeError):
        return []


def registry_address(name: str, resolve: Resolver | None) -> tuple[str, int] | None:
    """Where the registry ``name`` (``host[:port]`` as in an image reference) listens in the sandbox.

    ``127.0.0.1:PORT`` or ``localhost:PORT`` is reached directly; any other name only through
    ``resolve`` (a hub Knative Service's host). None when nothing in the sandbox answers for it.
    """
    host, _, port = name.rpartition(":") if ":" in name else (name, "", "")
    if host in _LOOPBACK_NAMES and port.isdigit():
        return LOOPBACK_HOST, int(port)
    endpoint = resolve(name) if resolve is not None else None
    return (str(endpoint[0]), int(endpoint[1])) if endpoint is not None else None


def docker_config_credentials(document: Any, registry: str) -> tuple[str, str] | None:
    """Username and password for ``registry`` from a docker config document's ``auths``.

    Read as kubelet and go-containerregistry read it: a key may be a URL or carry a path, names
    compare case-insensitively, and ``auth`` (base64 ``user:password``) wins over ``username`` and
    ``password`` when it decodes to that.
    """
    auths = document.get("auths") if isinstance(document, Mapping) else None
    if not isinstance(auths, Mapping):
        return None
    wanted = _canonical_registry(registry)
    for key, entry in auths.items():
        if _canonical_registry(_registry_of(str(key))) != wanted or not isinstance(entry, Mapping):
            continue
        decoded = _decoded_auth(entry.get("auth"))
        if decoded is not None:
            return decoded
        if entry.get("username") is not None:
            return str(entry["username"]), str(entry.get("password", ""))
    return None


def _decoded_auth(value: Any) -> tuple[str, str] | None:
    """``auth`` is base64 of ``user:password``; None when it is missing or not that."""
    try:
        user, colon, password = base64.b64decode(str(value or ""), validate=True).decode().partition(":")
    except ValueError:  # not base64, or not UTF-8
        return None
    return (user, password) if colon else None


def _registry_of(key: str) -> str:
    return urlsplit(key).netloc if "://" in key else key.split("/", 1)[0]


def _canonical_registry(name: str) -> str:
    name = name.lower()
    return "docker.io" if name in _DOCKER_HUB_NAMES else name


@dataclass(frozen=True)
class Registry:
    """One registry: its name (``host[:port]``, sent as the Host header), where it listens, how to talk to it."""

    name: str
    address: tuple[str, int]
    scheme: str = "http"
    verify_tls: bool = True
    credentials: tuple[str, str] | None = None

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://{self.address[0]}:{self.address[1]}"


class RegistryConnection:
    """Requests to one registry over an aiohttp session; ``authorization`` is sent once it is set.

    Redirects are not followed: the Host header names this registry, so a redirect elsewhere would
    reach the wrong one. A ``target`` may be a path or a full URL (a registry's ``Location``); only
    its path and query are used.
    """

    def __init__(self, session: aiohttp.ClientSession, registry: Registry, *, user_agent: str | None = None):
        self.session = session
        self.registry = registry
        self.user_agent = user_agent
        self.authorization: str | None = None

    def headers(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        headers = {"Host": self.registry.name}
        if self.user_agent:
            headers["User-Agent"] = self.user_agent
        if self.authorization:
            headers["Authorization"] = self.authorization
        headers.update(extra or {})
        return headers

    def url(self, target: str) -> str:
        parts = urlsplit(target)
        return self.registry.base_url + (parts.path or "/") + (f"?{parts.query}" if parts.query else "")

    def request(
        self, method: str, target: str, *, data: bytes | None = None, headers: Mapping[str, str] | None = None
    ) -> AbstractAsyncContextManager[aiohttp.ClientResponse]:
        return self.session.request(
            method,
            self.url(target),
            data=data,
            headers=self.headers(headers),
            ssl=self._ssl_option(),
            allow_redirects=False,
        )

    def _ssl_option(self) -> Any:
        if self.registry.scheme != "https":
            return None
        return ssl.create_default_context() if self.registry.verify_tls else False
