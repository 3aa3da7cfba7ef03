"""Autodeploy receiver: a push to the hub rolls the bound Knative Service to the pushed digest.

Python 3 standard library only (the image is a base image plus this file).

* ``POST /events`` takes the registry's notification envelope (``{"events": [...]}``). The
  ``Authorization`` header must be exactly ``Bearer <token>``; anything else gets 401 and is not
  read further. An event matters only when it is a ``push`` of a manifest to a bound
  repository and tag; it then queues that binding. Everything else is ignored (and logged).
* The hub is the source of truth: for a queued binding the worker asks the hub for the tag's
  current digest (``HEAD /v2/<repo>/manifests/<tag>``) and, when the Service does not already run
  ``<pull host>/<repo>@<digest>``, sets the Service's first container image to it with a JSON patch
  that tests the old value first. So repeated or late events change nothing, and a push of an
  older digest (a roll back) rolls that digest out again.
* Resync: at start and every ``AUTODEPLOY_RESYNC_SECONDS`` the worker does the same for every
  binding, so pushes made while the receiver was down (the registry keeps undelivered events only
  in memory) still arrive. One worker thread does all the work: events and resync never interleave.
* ``GET /healthz`` answers 200; ``GET /status`` (token required) returns the last decision per
  binding as JSON.

Environment: ``PORT`` (8080), ``AUTODEPLOY_TOKEN`` (required), ``AUTODEPLOY_BINDINGS`` (a JSON
list of ``{"repository", "tag", "service"}``), ``AUTODEPLOY_HUB_URL`` (e.g.
``http://hub.default.svc.cluster.local``), ``AUTODEPLOY_PULL_HOST``, ``AUTODEPLOY_RESYNC_SECONDS``
(60), ``AUTODEPLOY_HUB_USERNAME`` / ``AUTODEPLOY_HUB_PASSWORD`` (basic auth, optional),
``AUTODEPLOY_HUB_HOST_HEADER`` (the Host to send when the hub URL is an ingress address),
``KUBERNETES_SERVICE_HOST`` / ``KUBERNETES_SERVICE_PORT``, ``AUTODEPLOY_LISTEN_ADDRESS`` (all
addresses when empty; tests bind 127.0.0.1). Argument ``--service-account-dir``, else
``AUTODEPLOY_SERVICE_ACCOUNT_DIR``, else ``/var/run/secrets/kubernetes.io/serviceaccount``:
``token``, ``ca.crt``, ``namespace`` (the role names the directory in the env, so that a runtime
that maps paths instead of mounting them - the sandbox - maps it).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hmac
import http.client
import json
import os
import queue
import re
import ssl
import sys
import threading
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

DEFAULT_SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
EVENT_CONTENT_TYPES = (
    "application/vnd.docker.distribution.events.v1+json",
    "application/vnd.docker.distribution.events.v2+json",
    "application/json",
)
MANIFEST_TYPES = (
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
)
# Larger bodies are refused (413): a registry envelope holds at most a few dozen events.
MAX_BODY = 4 * 1024 * 1024
IMAGE_PATH = "/spec/template/spec/containers/0/image"
_RE_REPOSITORY = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*\Z")
_RE_TAG = re.compile(r"[\w][\w.-]{0,127}\Z")
_RE_SERVICE = re.compile(r"(?=.{1,63}\Z)[a-z]([-a-z0-9]*[a-z0-9])?\Z")
_RE_DIGEST = re.compile(r"sha256:[0-9a-f]{64}\Z")


class ConfigError(Exception):
    """A setting the receiver cannot start with."""


class ApiError(Exception):
    """A request to the hub or the Kubernetes API that did not give what was needed."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


def log(message: str) -> None:
    """One line to stdout (the container log)."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    sys.stdout.write(f"{stamp} {message}\n")
    sys.stdout.flush()


def parse_bindings(text: str) -> list[dict[str, str]]:
    """The bindings from their JSON text; ConfigError says what is wrong."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"AUTODEPLOY_BINDINGS is not JSON: {exc}") from None
    if not isinstance(data, list) or not data:
        raise ConfigError("AUTODEPLOY_BINDINGS must be a non-empty JSON list")
    bindings = []
    seen = set()
    for index, item in enumerate(data):
        if not isinstance(item, dict) or set(item) != {"repository", "tag", "service"}:
            raise ConfigError(f"AUTODEPLOY_BINDINGS[{index}] must have exactly repository, tag and service")
        if not all(isinstance(item[key], str) for key in item):
            raise ConfigError(f"AUTODEPLOY_BINDINGS[{index}] values must be strings")
        if not _RE_REPOSITORY.match(item["repository"]):
            raise ConfigError(f"AUTODEPLOY_BINDINGS[{index}].repository is not a repository name")
        if not _RE_TAG.match(item["tag"]):
            raise ConfigError(f"AUTODEPLOY_BINDINGS[{index}].tag is not a tag")
        if not _RE_SERVICE.match(item["service"]):
            raise ConfigError(f"AUTODEPLOY_BINDINGS[{index}].service is not a Knative Service name")
        if item["service"] in seen:
            raise ConfigError(f"AUTODEPLOY_BINDINGS[{index}]: service {item['service']} is bound twice")
        seen.add(item["service"])
        bindings.append(dict(item))
    return bindings


def binding_key(binding: dict[str, str]) -> str:
    return f"{binding['repository']}:{binding['tag']}->{binding['service']}"


def _is_manifest(target: dict[str, Any]) -> bool:
    media_type = target.get("mediaType")
    if media_type:
        return media_type in MANIFEST_TYPES
    # Without a media type, the URL tells a manifest from a blob.
    return "/manifests/" in str(target.get("url", ""))


def relevant_bindings(
    events: list[Any], bindings: list[dict[str, str]]
) -> tuple[list[tuple[dict[str, str], str]], list[str]]:
    """(binding, pushed digest) for each event that concerns a binding, and one reason per event ignored."""
    hits: list[tuple[dict[str, str], str]] = []
    ignored: list[str] = []
    for event in events:
        if not isinstance(event, dict):
            ignored.append("an event that is not an object")
            continue
        action = event.get("action")
        target = event.get("target") if isinstance(event.get("target"), dict) else {}
        what = f"{action} {target.get('repository')}:{target.get('tag')} ({target.get('mediaType')})"
        if action != "push":
            ignored.append(f"{what}: not a push")
            continue
        if not _is_manifest(target):
            ignored.append(f"{what}: not a manifest")
            continue
        matched = [b for b in bindings if b["repository"] == target.get("repository") and b["tag"] == target.get("tag")]
        if not matched:
            ignored.append(f"{what}: no binding for this repository and tag")
            continue
        digest = target.get("digest") if isinstance(target.get("digest"), str) else ""
        for binding in matched:
            if (binding, digest) not in hits:
                hits.append((binding, digest))
    return hits, ignored


class Receiver:
    """The settings, the two API clients and the one worker."""

    def __init__(
        self,
        *,
        token: str,
        bindings: list[dict[str, str]],
        hub_url: str,
        pull_host: str,
        resync_seconds: float,
        sa_dir: str,
        api_host: str,
        api_port: str,
        hub_username: str = "",
        hub_password: str = "",
        hub_host_header: str = "",
        request_timeout: float = 10.0,
        event_settle_delays: tuple[float, ...] = (0.2, 0.4, 0.8, 1.6, 2.0),
    ) -> None:
        if not token:
            raise ConfigError("AUTODEPLOY_TOKEN is empty")
        hub = urllib.parse.urlsplit(hub_url)
        if hub.scheme not in ("http", "https") or not hub.hostname:
            raise ConfigError("AUTODEPLOY_HUB_URL must be an http(s) URL")
        if not pull_host or "/" in pull_host:
            raise ConfigError("AUTODEPLOY_PULL_HOST must be a host[:port]")
        if resync_seconds <= 0:
            raise ConfigError("AUTODEPLOY_RESYNC_SECONDS must be greater than 0")
        if not api_host or not api_port:
            raise ConfigError("KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT must be set")
        self._expected_auth = f"Bearer {token}".encode()
        self.bindings = bindings
        self.hub = hub
        self.pull_host = pull_host
        self.resync_seconds = resync_seconds
        self.sa_dir = sa_dir
        self.api_host = api_host
        self.api_port = int(api_port)
        self.hub_auth = (
            "Basic " + base64.b64encode(f"{hub_username}:{hub_password}".encode()).decode() if hub_username else ""
        )
        self.hub_host_header = hub_host_header
        self.request_timeout = request_timeout
        self.event_settle_delays = event_settle_delays
        try:
            with open(os.path.join(sa_dir, "namespace"), encoding="utf-8") as handle:
                self.namespace = handle.read().strip()
        except OSError as exc:
            raise ConfigError(f"cannot read the namespace from {sa_dir}: {exc.strerror}") from None
        self._ssl = ssl.create_default_context(cafile=os.path.join(sa_dir, "ca.crt"))
        self._queue: queue.Queue[tuple[str, Any]] = queue.Queue()
        # Per binding waiting in the queue: the digests its events named (one queue entry each).
        self._pending: dict[str, set[str]] = {}
        self._pending_lock = threading.Lock()
        self._status_lock = threading.Lock()
        self.status: dict[str, dict[str, Any]] = {}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    # -- authorization ------------------------------------------------------------------------
    def authorized(self, header: str | None) -> bool:
        return hmac.compare_digest((header or "").encode(), self._expected_auth)

    # -- queueing -----------------------------------------------------------------------------
    def enqueue_binding(self, binding: dict[str, str], digest: str = "") -> None:
        """Queue a binding unless it is already waiting (the worker asks the hub anyway)."""
        key = binding_key(binding)
        with self._pending_lock:
            if key in self._pending:
                if digest:
                    self._pending[key].add(digest)
                return
            self._pending[key] = {digest} if digest else set()
        self._queue.put(("binding", binding))

    def enqueue_resync(self) -> None:
        self._queue.put(("resync", None))

    # -- the hub ------------------------------------------------------------------------------
    def hub_digest(self, repository: str, tag: str) -> str | None:
        """The tag's current digest in the hub, or None when the tag is not there."""
        path = self.hub.path.rstrip("/") + f"/v2/{repository}/manifests/{urllib.parse.quote(tag)}"
        headers = {"Accept": ", ".join(MANIFEST_TYPES)}
        if self.hub_auth:
            headers["Authorization"] = self.hub_auth
        if self.hub_host_header:
            headers["Host"] = self.hub_host_header
        conn, target = self._hub_connection(path)
        try:
            conn.request("HEAD", target, headers=headers)
            response = conn.getresponse()
            response.read()
        except (OSError, http.client.HTTPException) as exc:
            raise ApiError(f"hub unreachable: {exc}") from None
        finally:
            conn.close()
        if response.status == 404:
            return None
        if response.status != 200:
            raise ApiError(f"hub answered HEAD {path} with {response.status}", response.status)
        digest = response.getheader("Docker-Content-Digest", "")
        if not _RE_DIGEST.match(digest):
            raise ApiError(f"hub gave no usable Docker-Content-Digest for {repository}:{tag}")
        return digest

    def _hub_connection(self, path: str) -> tuple[http.client.HTTPConnection, str]:
        """A connection to the hub and the request target, through ``http(s)_proxy`` unless ``no_proxy`` says not.

        As Go's and urllib's clients do: plain HTTP goes to the proxy with the absolute URL, HTTPS is
        tunnelled with CONNECT.
        """
        hostname, port = self.hub.hostname or "", self.hub.port
        proxy = ""
        if not urllib.request.proxy_bypass_environment(hostname):
            proxy = urllib.request.getproxies_environment().get(self.hub.scheme, "")
        via = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}") if proxy else None
        if self.hub.scheme == "https":
            context = ssl.create_default_context()
            if via is None:
                return http.client.HTTPSConnection(hostname, port, timeout=self.request_timeout, context=context), path
            tunnel = http.client.HTTPSConnection(
                via.hostname or "", via.port or 80, timeout=self.request_timeout, context=context
            )
            tunnel.set_tunnel(hostname, port or 443)
            return tunnel, path
        if via is None:
            return http.client.HTTPConnection(hostname, port, timeout=self.request_timeout), path
        target = f"http://{self.hub.netloc.rpartition('@')[2]}{path}"
        return http.client.HTTPConnection(via.hostname or "", via.port or 80, timeout=self.request_timeout), target

    # -- the Kubernetes API -------------------------------------------------------------------
    def _api(self, method: str, path: str, body: Any = None, content_type: str = "") -> Any:
        # Bound service-account tokens rotate: read the file for every request.
        try:
            with open(os.path.join(self.sa_dir, "token"), encoding="utf-8") as handle:
                token = handle.read().strip()
        except OSError as exc:
            raise ApiError(f"cannot read the service-account token: {exc.strerror}") from None
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = content_type
        conn = http.client.HTTPSConnection(
            self.api_host, self.api_port, timeout=self.request_timeout, context=self._ssl
        )
        try:
            conn.request(method, path, body=data, headers=headers)
            response = conn.getresponse()
            payload = response.read()
        except (OSError, http.client.HTTPException) as exc:
            raise ApiError(f"Kubernetes API unreachable: {exc}") from None
        finally:
            conn.close()
        if response.status >= 300:
            message = ""
            with contextlib.suppress(ValueError, AttributeError):
                message = json.loads(payload).get("message", "")
            raise ApiError(f"{method} {path}: {response.status} {message}".rstrip(), response.status)
        return json.loads(payload) if payload else {}

    def _service_path(self, name: str) -> str:
        return f"/apis/serving.knative.dev/v1/namespaces/{self.namespace}/services/{name}"

    # -- one decision -------------------------------------------------------------------------
    def _record(self, binding: dict[str, str], decision: str, reason: str, digest: str = "") -> None:
        key = binding_key(binding)
        entry = {"decision": decision, "reason": reason, "digest": digest, "time": time.time()}
        with self._status_lock:
            self.status[key] = entry
        log(f"{key}: {decision}: {reason}")

    def _hub_digest_after_event(self, binding: dict[str, str], pushed: set[str]) -> str | None:
        """The tag's digest, given the hub a moment to catch up with the event.

        The registry queues a manifest push's event before it moves the tag (its manifest handler
        tags after the store's Put, which sends the event), so the event can arrive while the tag
        still names the previous digest. When the hub does not (yet) name a pushed digest, ask
        again for a few seconds; then the hub's answer stands (a late event of an older push).
        A server error counts as "not yet" in that time: distribution 2.8 answers a HEAD of the tag
        with 500 ("invalid checksum digest format") while it writes the tag's link.
        """

        def ask() -> tuple[str | None, ApiError | None]:
            try:
                return self.hub_digest(binding["repository"], binding["tag"]), None
            except ApiError as exc:
                if not pushed or 0 < exc.status < 500:
                    raise
                return None, exc

        digest, failure = ask()
        for delay in self.event_settle_delays:
            if not pushed or (failure is None and digest in pushed):
                break
            time.sleep(delay)
            digest, failure = ask()
        if failure is not None:
            raise failure
        return digest

    def reconcile(self, binding: dict[str, str], why: str, pushed: set[str] | None = None) -> str:
        """Bring one bound Service to the tag's current digest; returns the decision."""
        try:
            digest = self._hub_digest_after_event(binding, pushed or set())
            if digest is None:
                self._record(binding, "ignored", f"{why}: the hub has no {binding['repository']}:{binding['tag']}")
                return "ignored"
            want = f"{self.pull_host}/{binding['repository']}@{digest}"
            service = self._api("GET", self._service_path(binding["service"]))
            containers = (((service.get("spec") or {}).get("template") or {}).get("spec") or {}).get("containers") or []
            if not containers:
                self._record(binding, "error", f"{why}: Service {binding['service']} has no container", digest)
                return "error"
            current = containers[0].get("image")
            if current == want:
                self._record(binding, "already deployed", f"{why}: {want}", digest)
                return "already deployed"
            patch = [
                {"op": "test", "path": IMAGE_PATH, "value": current},
                {"op": "replace", "path": IMAGE_PATH, "value": want},
            ]
            self._api("PATCH", self._service_path(binding["service"]), patch, "application/json-patch+json")
            self._record(binding, "applied", f"{why}: {current} -> {want}", digest)
            return "applied"
        except ApiError as exc:
            self._record(binding, "error", f"{why}: {exc}")
            return "error"

    def _work(self) -> None:
        while not self._stop.is_set():
            try:
                kind, item = self._queue.get(timeout=0.5)
            except queue.Empty:
                continue
            try:
                if kind == "stop":
                    return
                if kind == "resync":
                    for binding in self.bindings:
                        self.reconcile(binding, "resync")
                else:
                    with self._pending_lock:
                        pushed = self._pending.pop(binding_key(item), set())
                    result = self.reconcile(item, "push event", pushed)
                    if result == "error":
                        # A conflict (someone else changed the image in between) or a passing
                        # failure: try once more now; the next resync covers the rest.
                        self.reconcile(item, "push event, retried")
            except Exception as exc:
                log(f"worker: unexpected {type(exc).__name__}: {exc}")
            finally:
                self._queue.task_done()

    def _resync_timer(self) -> None:
        while not self._stop.wait(self.resync_seconds):
            self.enqueue_resync()

    def start(self) -> None:
        self.enqueue_resync()
        for target in (self._work, self._resync_timer):
            thread = threading.Thread(target=target, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        self._queue.put(("stop", None))
        for thread in self._threads:
            thread.join(timeout=5)

    def status_snapshot(self) -> dict[str, Any]:
        with self._status_lock:
            return {key: dict(value) for key, value in self.status.items()}

    # -- events -------------------------------------------------------------------------------
    def handle_events(self, content_type: str, body: bytes) -> tuple[int, str]:
        media = content_type.split(";", 1)[0].strip().lower()
        if media not in EVENT_CONTENT_TYPES:
            return 415, f"unsupported content type {media or '(none)'}"
        try:
            envelope = json.loads(body)
        except ValueError:
            return 400, "body is not JSON"
        if not isinstance(envelope, dict) or not isinstance(envelope.get("events"), list):
            return 400, 'body must be {"events": [...]}'
        hits, ignored = relevant_bindings(envelope["events"], self.bindings)
        for reason in ignored:
            log(f"event ignored: {reason}")
        for binding, digest in hits:
            log(f"{binding_key(binding)}: push event for {digest or 'no digest'} queued")
            self.enqueue_binding(binding, digest)
        return 200, f"{len(hits)} binding(s) queued, {len(ignored)} event(s) ignored"


def make_handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "knlab-autodeploy"
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            # One line per decision is logged by the receiver; the access log would only repeat it.
            return

        def _reply(self, status: int, payload: Any) -> None:
            data = (json.dumps(payload) + "\n").encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if status == 401:
                self.send_header("WWW-Authenticate", 'Bearer realm="autodeploy"')
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            path = urllib.parse.urlsplit(self.path).path
            if path == "/healthz":
                self._reply(200, {"ok": True})
            elif path == "/status":
                if not receiver.authorized(self.headers.get("Authorization")):
                    self._reply(401, {"error": "unauthorized"})
                    return
                self._reply(200, receiver.status_snapshot())
            else:
                self._reply(404, {"error": "not found"})

        def do_POST(self) -> None:
            path = urllib.parse.urlsplit(self.path).path
            if path != "/events":
                self._reply(404, {"error": "not found"})
                return
            if not receiver.authorized(self.headers.get("Authorization")):
                log("event refused: missing or wrong Authorization header")
                self.close_connection = True
                self._reply(401, {"error": "unauthorized"})
                return
            try:
                length = int(self.headers.get("Content-Length", ""))
            except ValueError:
                self.close_connection = True
                self._reply(411, {"error": "Content-Length required"})
                return
            if length < 0 or length > MAX_BODY:
                self.close_connection = True
                self._reply(413, {"error": "body too large"})
                return
            body = self.rfile.read(length)
            status, message = receiver.handle_events(self.headers.get("Content-Type", ""), body)
            self._reply(status, {"result" if status == 200 else "error": message})

    return Handler


def from_environment(sa_dir: str, env: dict[str, str] | None = None) -> Receiver:
    env = dict(os.environ if env is None else env)
    try:
        resync = float(env.get("AUTODEPLOY_RESYNC_SECONDS", "60"))
    except ValueError:
        raise ConfigError("AUTODEPLOY_RESYNC_SECONDS must be a number") from None
    return Receiver(
        token=env.get("AUTODEPLOY_TOKEN", ""),
        bindings=parse_bindings(env.get("AUTODEPLOY_BINDINGS", "")),
        hub_url=env.get("AUTODEPLOY_HUB_URL", ""),
        pull_host=env.get("AUTODEPLOY_PULL_HOST", ""),
        resync_seconds=resync,
        sa_dir=sa_dir,
        api_host=env.get("KUBERNETES_SERVICE_HOST", ""),
        api_port=env.get("KUBERNETES_SERVICE_PORT", ""),
        hub_username=env.get("AUTODEPLOY_HUB_USERNAME", ""),
        hub_password=env.get("AUTODEPLOY_HUB_PASSWORD", ""),
        hub_host_header=env.get("AUTODEPLOY_HUB_HOST_HEADER", ""),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Roll bound Knative Services to the digest pushed to the hub.")
    parser.add_argument(
        "--service-account-dir", default=os.environ.get("AUTODEPLOY_SERVICE_ACCOUNT_DIR") or DEFAULT_SA_DIR
    )
    args = parser.parse_args(argv)
    try:
        receiver = from_environment(args.service_account_dir)
        port = int(os.environ.get("PORT", "8080"))
    except (ConfigError, ValueError) as exc:
        log(f"cannot start: {exc}")
        return 2
    server = ThreadingHTTPServer((os.environ.get("AUTODEPLOY_LISTEN_ADDRESS", ""), port), make_handler(receiver))
    server.daemon_threads = True
    keys = ", ".join(binding_key(b) for b in receiver.bindings)
    log(
        f"listening on :{port}; namespace {receiver.namespace}; bindings {keys};"
        f" resync every {receiver.resync_seconds:g} s"
    )
    receiver.start()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        receiver.stop()
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
