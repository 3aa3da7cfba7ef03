# Copyright (c) knlab serverless developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A read-only client of the Docker registry HTTP API v2 (CNCF distribution, OCI distribution).

Private to knlab.serverless: not a public API. It talks HTTP through Ansible's own
``ansible.module_utils.urls.Request``, so it needs nothing beyond ansible-core, and it never
imports the Kubernetes client.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import re
import socket
import ssl
from dataclasses import dataclass
from typing import Any
from urllib.error import HTTPError, URLError
from urllib.parse import urlencode, urljoin, urlsplit

from ansible.module_utils.urls import ConnectionError as UrlsConnectionError
from ansible.module_utils.urls import Request, make_context
from ansible_collections.knlab.serverless.plugins.module_utils._errors import ServerlessError
from ansible_collections.knlab.serverless.plugins.module_utils._validation import has_control_characters

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
# A registry converts or refuses what the client does not list: distribution 2.8 answers a request
# without the schema 2 type by down-converting to schema 1 (or 400), and hides OCI manifests (404).
MANIFEST_ACCEPT = ", ".join((DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_MANIFEST, OCI_INDEX))

# Grammar of distribution/reference and the OCI distribution spec.
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
REPOSITORY_RE = re.compile(rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*")
TAG_RE = re.compile(r"[\w][\w.-]{0,127}")
DIGEST_RE = re.compile(r"[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+")
DIGEST_HEX_LENGTHS = {"sha256": 64, "sha512": 128}
REPOSITORY_MAX_LENGTH = 255
HOST_HEADER_RE = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?"
)

# Paging guard: a registry that keeps sending rel="next" links must not keep the module busy forever.
MAX_PAGES = 10_000
USER_AGENT = "ansible-knlab.serverless-registry_image_info"


class RegistryError(ServerlessError):
    """A registry request failed in a way the user has to act on."""


@dataclass(frozen=True)
class Reply:
    status: int
    headers: Any  # an email.message.Message: case-insensitive lookups
    body: bytes

    def header(self, name: str) -> str | None:
        return self.headers.get(name) if self.headers is not None else None


@dataclass(frozen=True)
class Manifest:
    digest: str
    media_type: str | None


# -- validation -------------------------------------------------------------------------------------


def validate_repository(repository: str) -> str:
    """Raise ``RegistryError`` unless ``repository`` is a valid repository path (no host, no tag)."""
    if REPOSITORY_RE.fullmatch(repository) and len(repository) <= REPOSITORY_MAX_LENGTH:
        return repository
    hint = (
        "path components of lowercase letters and digits separated by '.', '_', '__' or '-', joined by '/'"
        f" and at most {REPOSITORY_MAX_LENGTH} characters"
    )
    if "@" in repository or ":" in repository.rsplit("/", 1)[-1]:
        hint = "put the tag or digest in the tag option, not in repository"
    elif ":" in repository:
        hint = "leave the registry host out of repository; it belongs in registry_url"
    elif repository != repository.lower() and REPOSITORY_RE.fullmatch(repository.lower()):
        hint = "repository names are lowercase"
    raise RegistryError(f"repository {repository!r} is not a valid repository name: {hint}")


def is_digest(reference: str) -> bool:
    return ":" in reference


def validate_reference(reference: str) -> str:
    """Raise ``RegistryError`` unless ``reference`` is a tag or a digest such as ``sha256:…``."""
    if is_digest(reference):
        algorithm, encoded = reference.split(":", 1)
        expected = DIGEST_HEX_LENGTHS.get(algorithm)
        if DIGEST_RE.fullmatch(reference) and (
            expected is None or (len(encoded) == expected and re.fullmatch(r"[a-f0-9]+", encoded))
        ):
            return reference
        raise RegistryError(
            f"tag {reference!r} is not a valid digest: expected <algorithm>:<hex>,"
            " e.g. sha256: and 64 lowercase hex digits"
        )
    if TAG_RE.fullmatch(reference):
        return reference
    raise RegistryError(
        f"tag {reference!r} is not a valid tag: letters, digits, '_', '.' and '-', at most 128 characters,"
        " not starting with '.' or '-'"
    )


def normalize_registry_url(registry_url: str) -> str:
    """``scheme://host[:port]`` without a trailing slash, or a ``RegistryError`` saying what is wrong."""
    parts = urlsplit(registry_url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise RegistryError(
            f"registry_url {registry_url!r} must start with http:// or https:// followed by the registry host"
        )
    if "@" in parts.netloc:
        raise RegistryError("registry_url must not carry credentials; use the username and password options")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise RegistryError(
            f"registry_url {registry_url!r} must be only scheme://host[:port]; the API lives at /v2/ on that host"
        )
    try:
        port = parts.port
    except ValueError as err:
        raise RegistryError(f"registry_url {registry_url!r} has an invalid port: {err}") from None
    if port == 0 or not HOST_HEADER_RE.fullmatch(parts.netloc) or not host_and_port_fit(parts.netloc):
        raise RegistryError(
            f"registry_url {registry_url!r} has an invalid host or port: host labels of at most 63 characters "
            "(253 in all), a port between 1 and 65535"
        )
    return f"{parts.scheme}://{parts.netloc}"


def validate_host_header(host_header: str) -> str:
    if HOST_HEADER_RE.fullmatch(host_header) and host_and_port_fit(host_header):
        return host_header
    raise RegistryError(
        f"host_header {host_header!r} is not a host name (labels of at most 63 characters, 253 in all) with an "
        "optional :port between 1 and 65535"
    )


def host_and_port_fit(netloc: str) -> bool:
    """DNS length limits on the host, and a port in 1-65535 (the grammar alone allows 99999)."""
    if netloc.startswith("["):
        host, port = "", netloc.partition("]")[2][1:]
    else:
        host, port = netloc.partition(":")[0::2]
    if port and not (port.isdigit() and 0 < int(port) < 65536):
        return False
    return len(host) <= 253 and all(len(label) <= 63 for label in host.split("."))


def validate_credentials(username: str | None, password: str | None) -> None:
    """Basic authentication cannot carry a ':' in the user name, nor control characters anywhere."""
    if username is not None and (not username or ":" in username or has_control_characters(username)):
        raise RegistryError("username must be non-empty, without ':' or control characters (HTTP Basic auth)")
    if password is not None and has_control_characters(password):
        # Never echo the password itself.
        raise RegistryError("password must not contain control characters (newline, tab, NUL, ...)")


# -- response helpers -------------------------------------------------------------------------------


def registry_error_text(body: bytes) -> str:
    """The ``errors`` a registry put in its JSON body, as ``CODE: message; …`` (or a short excerpt)."""
    try:
        errors = json.loads(body).get("errors") or []
        text = "; ".join(f"{item.get('code', '?')}: {item.get('message', '')}".strip() for item in errors)
    except (ValueError, AttributeError, TypeError):
        text = body[:200].decode("utf-8", "replace")
    return " ".join(text.split())


def next_page_url(link_header: str | None, current_url: str) -> str | None:
    """The ``rel="next"`` target of a ``Link`` header, resolved against the page that carried it."""
    if not link_header:
        return None
    for match in re.finditer(r"<([^>]*)>([^<]*)", link_header):
        target, params = match.groups()
        rels = re.findall(r"""\brel\s*=\s*"?([^";,]+)"?""", params, flags=re.IGNORECASE)
        if any("next" in rel.lower().split() for rel in rels):
            return urljoin(current_url, target)
    return None


def parse_challenge(header: str | None) -> tuple[str, dict[str, str]]:
    """``WWW-Authenticate: Bearer realm="…",service="…"`` → ("bearer", {"realm": …, "service": …})."""
    if not header:
        return "", {}
    scheme, *rest = header.strip().split(None, 1)
    params = {key.lower(): value for key, value in re.findall(r'(\w+)\s*=\s*"([^"]*)"', "".join(rest))}
    return scheme.lower(), params


def describe_transport_error(
    err: BaseException, url: str, timeout: float, *, what: str = "registry", option: str = "registry_url"
) -> str:
    """One line for a request that got no HTTP answer at all; ``what`` and ``option`` word the hints."""
    where = urlsplit(url).netloc or url
    reason: object = err.reason if isinstance(err, URLError) else err
    if isinstance(reason, ssl.SSLCertVerificationError):
        detail = reason.verify_message or reason.reason or str(reason)
        return (
            f"TLS certificate of {where} is not trusted ({detail}): set ca_path to the CA that signed it,"
            " or validate_certs: false"
        )
    if isinstance(reason, ssl.SSLError):
        detail = reason.reason or str(reason)
        hint = f" (does the {what} speak plain http? then use an http:// {option})" if "VERSION" in detail else ""
        return f"TLS handshake with {where} failed: {detail}{hint}"
    if isinstance(reason, ConnectionRefusedError):
        return f"cannot connect to {where}: connection refused (is the {what} running and {option} right?)"
    if isinstance(reason, socket.gaierror):
        return f"cannot resolve the {what} host {urlsplit(url).hostname!r}: {reason.strerror or reason}"
    if isinstance(reason, TimeoutError):
        return f"no answer from {where} within {timeout:g} seconds (raise timeout, or check the address)"
    if isinstance(reason, http.client.HTTPException):
        return f"{where} did not answer like an HTTP server: {type(reason).__name__} {reason}".strip()
    if isinstance(reason, OSError) and reason.strerror:
        return f"cannot talk to {where}: {reason.strerror}"
    return f"cannot talk to {where}: {reason}"


# -- the client -------------------------------------------------------------------------------------


def _tls_context(ca_path: str | None, validate_certs: bool) -> ssl.SSLContext:
    """The TLS context for all of a client's requests, as ``Request`` would build it for each."""
    try:
        return make_context(cafile=ca_path, validate_certs=validate_certs)
    except (ssl.SSLError, OSError, ValueError) as err:
        raise RegistryError(f"ca_path {ca_path!r} holds no usable PEM CA certificate ({err})") from None


class RegistryClient:
    """Read-only access to one registry: ping, tag listing (with paging), manifest lookup.

    Basic credentials are sent with every request. A registry that answers with a ``Bearer``
    challenge (token authentication: Docker Hub, GHCR, Harbor, …) gets the standard token flow:
    the token is fetched from the challenge's realm, with the basic credentials when given.
    """

    def __init__(
        self,
        registry_url: str,
        *,
        username: str | None = None,
        password: str | None = None,
        validate_certs: bool = True,
        ca_path: str | None = None,
        host_header: str | None = None,
        timeout: float = 10.0,
        page_size: int | None = None,
    ) -> None:
        self.base_url = normalize_registry_url(registry_url)
        self.username = username
        self.timeout = timeout
        self.page_size = page_size
        self.host_header = validate_host_header(host_header) if host_header else None
        if ca_path and not os.path.isfile(ca_path):
            raise RegistryError(f"ca_path {ca_path!r} is not a readable file")
        self._basic = None
        if username:
            token = base64.b64encode(f"{username}:{password or ''}".encode()).decode("ascii")
            self._basic = f"Basic {token}"
        self._bearer: str | None = None
        self._http = Request(
            timeout=timeout,
            # One TLS context for all of this client's requests: Request builds one per request
            # otherwise, and reading the system's CA certificates costs about 25 ms each time.
            context=_tls_context(ca_path, validate_certs),
            http_agent=USER_AGENT,
            # Only what the module was given: no surprise credentials from ~/.netrc.
            use_netrc=False,
            follow_redirects="safe",
            # Credentials and the Host override are for the registry only, never for a redirect target.
            unredirected_headers=["Authorization", "Host"],
        )

    # -- transport ---------------------------------------------------------------------------------

    def _send(self, method: str, url: str, headers: dict[str, str]) -> Reply:
        try:
            response = self._http.open(method, url, headers=headers)
        except HTTPError as err:
            try:
                body = err.read() if method != "HEAD" else b""
            except (OSError, http.client.HTTPException):
                body = b""
            return Reply(err.code, err.headers, body or b"")
        except (URLError, UrlsConnectionError, OSError, http.client.HTTPException, ValueError) as err:
            raise RegistryError(describe_transport_error(err, url, self.timeout)) from None
        try:
            body = response.read() if method != "HEAD" else b""
        except (OSError, http.client.HTTPException) as err:
            raise RegistryError(describe_transport_error(err, url, self.timeout)) from None
        finally:
            response.close()
        return Reply(response.status, response.headers, body)

    def _registry_headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = dict(extra or {})
        if self.host_header:
            headers["Host"] = self.host_header
        if self._bearer:
            headers["Authorization"] = f"Bearer {self._bearer}"
        elif self._basic:
            headers["Authorization"] = self._basic
        return headers

    def call(self, method: str, url: str, headers: dict[str, str] | None = None) -> Reply:
        """One request to the registry; a ``Bearer`` challenge is answered once with a fresh token."""
        reply = self._send(method, url, self._registry_headers(headers))
        if reply.status == 401:
            scheme, params = parse_challenge(reply.header("WWW-Authenticate"))
            if scheme == "bearer" and params.get("realm"):
                self._bearer = self._fetch_token(params)
                reply = self._send(method, url, self._registry_headers(headers))
        return reply

    def _fetch_token(self, challenge: dict[str, str]) -> str:
        realm = challenge["realm"]
        if urlsplit(realm).scheme not in ("http", "https"):
            raise RegistryError(f"registry at {self.base_url} sent a token realm that is not an http(s) URL: {realm!r}")
        query = {key: challenge[key] for key in ("service", "scope") if challenge.get(key)}
        url = realm + (("&" if "?" in realm else "?") + urlencode(query) if query else "")
        # The token service is another host: no Host override, only the basic credentials.
        reply = self._send("GET", url, {"Authorization": self._basic} if self._basic else {})
        if reply.status != 200:
            who = f"user {self.username!r}" if self.username else "anonymous access"
            detail = registry_error_text(reply.body)
            raise RegistryError(
                f"token service {urlsplit(realm).netloc} refused {who} (HTTP {reply.status}"
                f"{': ' + detail if detail else ''}); check username and password"
            )
        document = self._json(reply, url)
        token = document.get("token") or document.get("access_token")
        if not isinstance(token, str) or not token:
            raise RegistryError(f"token service {urlsplit(realm).netloc} answered without a token")
        return token

    def _json(self, reply: Reply, url: str) -> dict:
        try:
            document = json.loads(reply.body)
        except ValueError:
            document = None
        if not isinstance(document, dict):
            raise RegistryError(f"GET {url} did not answer with a JSON object: {reply.body[:120]!r}")
        return document

    def _status_error(self, reply: Reply, method: str, url: str) -> RegistryError:
        path = urlsplit(url).path
        if reply.status == 401:
            challenge = reply.header("WWW-Authenticate") or "no WWW-Authenticate header"
            if self.username:
                return RegistryError(
                    f"registry {self.base_url} rejected the credentials of user {self.username!r}"
                    f" (HTTP 401 on {method} {path}, challenge: {challenge})"
                )
            return RegistryError(
                f"registry {self.base_url} requires authentication (HTTP 401 on {method} {path},"
                f" challenge: {challenge}): set username and password"
            )
        if reply.status == 403:
            who = f"user {self.username!r}" if self.username else "anonymous access"
            return RegistryError(f"registry {self.base_url} denies {who} on {method} {path} (HTTP 403)")
        detail = registry_error_text(reply.body)
        return RegistryError(
            f"registry {self.base_url} answered HTTP {reply.status} to {method} {path}{': ' + detail if detail else ''}"
        )

    # -- API ---------------------------------------------------------------------------------------

    def ping(self) -> None:
        """``GET /v2/``: proves the URL is a v2 registry and that the credentials are accepted."""
        url = f"{self.base_url}/v2/"
        reply = self.call("GET", url)
        if reply.status == 404:
            raise RegistryError(f"{self.base_url} does not serve the registry API v2 (GET /v2/ answered 404)")
        if reply.status != 200:
            raise self._status_error(reply, "GET", url)

    def list_tags(self, repository: str) -> list[str] | None:
        """All tags of ``repository`` (following ``Link`` paging), sorted; ``None`` if it is unknown."""
        url: str | None = f"{self.base_url}/v2/{repository}/tags/list"
        if self.page_size:
            url += f"?n={self.page_size}"
        tags: set[str] = set()
        seen: set[str] = set()
        while url is not None:
            if url in seen or len(seen) >= MAX_PAGES:
                raise RegistryError(f"registry {self.base_url} keeps paging tags of {repository} ({url})")
            seen.add(url)
            reply = self.call("GET", url)
            if reply.status == 404:
                # NAME_UNKNOWN; on a later page it means the repository vanished while we read it.
                return None
            if reply.status != 200:
                raise self._status_error(reply, "GET", url)
            # distribution answers "tags": null once the last tag of a repository is deleted.
            page = self._json(reply, url).get("tags") or []
            if not isinstance(page, list):
                raise RegistryError(f"registry {self.base_url} sent tags that are not a list for {repository}")
            tags.update(str(tag) for tag in page)
            url = next_page_url(reply.header("Link"), url)
        return sorted(tags)

    def manifest(self, repository: str, reference: str) -> Manifest | None:
        """Digest and media type of a tag or digest; ``None`` when the registry does not have it."""
        url = f"{self.base_url}/v2/{repository}/manifests/{reference}"
        accept = {"Accept": MANIFEST_ACCEPT}
        reply = self.call("HEAD", url, accept)
        method = "HEAD"
        if reply.status == 405 or (reply.status == 200 and not reply.header("Docker-Content-Digest")):
            # Some proxies refuse HEAD or drop the digest header: GET the manifest and hash it.
            method = "GET"
            reply = self.call("GET", url, accept)
        if reply.status == 404:
            return None
        if reply.status != 200:
            raise self._status_error(reply, method, url)
        digest = reply.header("Docker-Content-Digest")
        if not digest:
            digest = reference if is_digest(reference) else "sha256:" + hashlib.sha256(reply.body).hexdigest()
        content_type = reply.header("Content-Type")
        media_type = content_type.split(";", 1)[0].strip() if content_type else None
        return Manifest(digest=digest, media_type=media_type or None)


def image_info(client: RegistryClient, repository: str, reference: str | None = None) -> dict[str, Any]:
    """What the module returns: whether the repository (or the tag/digest in it) exists, tags, digest."""
    result: dict[str, Any] = {
        "repository": repository,
        "tag": reference,
        "exists": False,
        "tags": [],
        "digest": None,
        "media_type": None,
    }
    client.ping()
    tags = client.list_tags(repository)
    if tags is None:
        return result
    result["tags"] = tags
    if reference is None:
        result["exists"] = True
        return result
    manifest = client.manifest(repository, reference)
    if manifest is not None:
        result.update(exists=True, digest=manifest.digest, media_type=manifest.media_type)
    return result
