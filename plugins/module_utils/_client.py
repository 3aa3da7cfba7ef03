# Copyright (c) knlab serverless developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Kubernetes API client of knlab.serverless: auth options in, dicts in and out.

Auth options are kubernetes.core's own (``AUTH_ARG_SPEC``), resolved by ``_kubeconfig`` with
kubernetes.core's rules, so a play that works with ``kubernetes.core.k8s`` works here unchanged.
The requests go over urllib3, as the ``kubernetes`` library's do, but without that library: its
import alone (about 700 generated model classes) took longer than all of a module's API calls.
``KubeClient`` is a small dict-in/dict-out surface over the REST API that turns error answers
into ``_errors.ApiError``.

Private to knlab.serverless: not a public API.
"""

from __future__ import annotations

import copy
import ipaddress
import json
import time
import traceback
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote, urlencode, urlparse

from ansible.module_utils.basic import missing_required_lib
from ansible_collections.knlab.serverless.plugins.module_utils._errors import (
    ApiError,
    DryRunUnsupported,
    MissingDependency,
    NotFound,
    ServerlessError,
    api_error,
)
from ansible_collections.knlab.serverless.plugins.module_utils._kubeconfig import Connection, connection
from ansible_collections.knlab.serverless.plugins.module_utils._validation import has_control_characters

try:
    from ansible_collections.kubernetes.core.plugins.module_utils.args_common import (
        AUTH_ARG_SPEC as _K8S_AUTH_ARG_SPEC,
    )
except ImportError:
    _K8S_AUTH_ARG_SPEC = None
    KUBERNETES_CORE_IMPORT_ERROR: str | None = traceback.format_exc()
else:
    KUBERNETES_CORE_IMPORT_ERROR = None

try:
    import urllib3
except ImportError:
    URLLIB3_IMPORT_ERROR: str | None = traceback.format_exc()
else:
    URLLIB3_IMPORT_ERROR = None

# kubernetes.core's auth options, verbatim. The copy is only used when kubernetes.core cannot be
# imported: the module can then still parse its options and fail with a clear "missing
# kubernetes.core" message instead of "unsupported parameter kubeconfig". A unit test keeps the
# copy equal to kubernetes.core's args_common.AUTH_ARG_SPEC.
_AUTH_ARG_SPEC_COPY: dict[str, dict[str, Any]] = {
    "kubeconfig": {"type": "raw", "no_log": True},
    "context": {},
    "host": {},
    "api_key": {"no_log": True},
    "username": {},
    "password": {"no_log": True},
    "validate_certs": {"type": "bool", "aliases": ["verify_ssl"]},
    "ca_cert": {"type": "path", "aliases": ["ssl_ca_cert"]},
    "client_cert": {"type": "path", "aliases": ["cert_file"]},
    "client_key": {"type": "path", "aliases": ["key_file"]},
    "proxy": {"type": "str"},
    "no_proxy": {"type": "str"},
    "proxy_headers": {
        "type": "dict",
        "options": {
            "proxy_basic_auth": {"type": "str", "no_log": True},
            "basic_auth": {"type": "str", "no_log": True},
            "user_agent": {"type": "str"},
        },
    },
    "persist_config": {"type": "bool"},
    "impersonate_user": {},
    "impersonate_groups": {"type": "list", "elements": "str"},
}

AUTH_ARG_SPEC: dict[str, dict[str, Any]] = copy.deepcopy(_K8S_AUTH_ARG_SPEC or _AUTH_ARG_SPEC_COPY)

# Server-side dry run: the API server runs validation and admission (Knative's and Tekton's
# webhooks declare sideEffects None, so they take part) and persists nothing.
DRY_RUN_ALL = "All"
# (connect, read) seconds for ordinary requests; a watch sets its own read timeout.
REQUEST_TIMEOUT = (10, 60)
# A request whose connection was never made (refused, or no answer to the connect) reached nothing,
# so sending it again is safe whatever its method. It is tried again for this long, with a short
# back-off, before the module gives up: long enough for an API server that restarts (a few seconds
# here; a control plane upgrade takes longer), short enough that a wrong address fails soon.
# Found by the fault campaign (tests/faults): a module whose first request met a restarting
# kube-apiserver failed at once, where a wait already watching rode the restart out.
CONNECT_RETRY_SECONDS = 30.0
_CONNECT_BACKOFF_FIRST = 0.25
_CONNECT_BACKOFF_MAX = 2.0

_PATCH_CONTENT_TYPES = {
    "merge": "application/merge-patch+json",
    "json": "application/json-patch+json",
    "strategic": "application/strategic-merge-patch+json",
}


def check_dependencies() -> None:
    """Raise ``MissingDependency`` (with Ansible's standard wording) when a library is absent."""
    if KUBERNETES_CORE_IMPORT_ERROR is not None:
        raise MissingDependency(
            missing_required_lib("the kubernetes.core collection (ansible-galaxy collection install kubernetes.core)"),
            exception=KUBERNETES_CORE_IMPORT_ERROR,
        )
    if URLLIB3_IMPORT_ERROR is not None:
        raise MissingDependency(missing_required_lib("urllib3"), exception=URLLIB3_IMPORT_ERROR)


def auth_params(params: dict[str, Any]) -> dict[str, Any]:
    """The auth options out of a module's params (unset ones are left to the ``K8S_AUTH_*`` lookup)."""
    return {name: params[name] for name in AUTH_ARG_SPEC if params.get(name) is not None}


def get_client(module: Any) -> KubeClient:
    """Build a ``KubeClient`` from a module's auth params; check mode makes every write a dry run."""
    return client_from_params(module.params, dry_run=bool(module.check_mode))


def client_from_params(params: dict[str, Any], *, dry_run: bool = False) -> KubeClient:
    """A ``KubeClient`` from auth options (and the K8S_AUTH_* environment), as a module builds it."""
    check_dependencies()
    try:
        conn = connection(auth_params(params))
        transport = Transport(conn)
    except MissingDependency:
        raise
    except Exception as err:  # kubeconfig parsing raises many types; all mean "cannot configure"
        raise ServerlessError(f"Could not create the Kubernetes API client: {_one_line(err)}") from err
    return KubeClient(transport, dry_run=dry_run)


def write_or_fallback(
    write: Callable[[], dict], fallback: dict, *, warn: Callable[[str], None] | None = None, what: str = "the change"
) -> dict:
    """``write()``, or ``fallback`` when it was a dry run the server refused (check mode only).

    In check mode every write is a server dry run (``dryRun=All``). An admission webhook without
    dry-run support makes the server refuse it (``DryRunUnsupported``, raised only for dry runs);
    the module then reports ``fallback`` (the local body, or the object as read) and, with
    ``warn``, says that ``what`` was not validated. A real write's errors are never swallowed.
    """
    try:
        return write()
    except DryRunUnsupported:
        if warn is not None:
            warn(f"The API server could not dry-run {what}; it was not validated.")
        return fallback


def _one_line(err: object) -> str:
    return " ".join(str(err).split())


def _status_from_body(body: Any) -> tuple[str, str]:
    """(reason, message) from a Kubernetes ``Status`` body, or the raw text when it is not one."""
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    try:
        status = json.loads(body) if body else {}
    except ValueError:
        return "", _one_line(body)
    if not isinstance(status, dict):
        return "", _one_line(body)
    return str(status.get("reason") or ""), _one_line(status.get("message") or "")


class HttpError(Exception):
    """An answer of 400 or more, before it becomes an ``ApiError``."""

    def __init__(self, status: int, reason: str, body: bytes) -> None:
        super().__init__(f"({status}) Reason: {reason}")
        self.status = status
        self.reason = reason
        self.body = body


def bypasses_proxy(url: str, no_proxy: str) -> bool:
    """Whether ``url`` matches the comma-separated ``no_proxy`` rules (the ``kubernetes`` library's rules)."""
    parsed = urlparse(url)
    if not parsed.hostname:
        return True
    host = parsed.hostname.lower()
    host_and_port = parsed.netloc.lower()
    try:
        host_ip = ipaddress.ip_address(host)
    except ValueError:
        host_ip = None
    for entry in (entry.strip().lower() for entry in no_proxy.split(",")):
        if not entry:
            continue
        if entry == "*":
            return True
        if host_ip is not None:
            try:
                if host_ip in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                pass
        domain = entry.lstrip(".")
        if (
            host == domain
            or host.endswith("." + domain)
            or host_and_port == domain
            or host_and_port.endswith("." + domain)
        ):
            return True
    return False


class Transport:
    """HTTP(S) to one API server over urllib3, set up as the ``kubernetes`` library's ``RESTClientObject``."""

    USER_AGENT = "knlab.serverless"

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.host = conn.host
        # kubernetes.core turns urllib3's warnings off (validate_certs=false would warn on every request).
        urllib3.disable_warnings()
        pool_args: dict[str, Any] = {
            "cert_reqs": "CERT_REQUIRED" if conn.verify_ssl else "CERT_NONE",
            "ca_certs": conn.ssl_ca_cert,
            "cert_file": conn.cert_file,
            "key_file": conn.key_file,
        }
        if conn.tls_server_name:
            pool_args["server_hostname"] = conn.tls_server_name
        if conn.proxy and not bypasses_proxy(conn.host, conn.no_proxy or ""):
            if conn.proxy.lower().startswith(("socks4", "socks5")):
                from urllib3.contrib.socks import SOCKSProxyManager  # noqa: PLC0415 (needs PySocks: only for a socks proxy)

                self.pool: Any = SOCKSProxyManager(conn.proxy, headers=conn.proxy_headers, **pool_args)
            else:
                self.pool = urllib3.ProxyManager(conn.proxy, proxy_headers=conn.proxy_headers, **pool_args)
        else:
            self.pool = urllib3.PoolManager(**pool_args)

    def request(
        self,
        method: str,
        path: str,
        query: list[tuple[str, Any]] | None = None,
        *,
        body: Any = None,
        content_type: str = "application/json",
        timeout: tuple[float, float] = (10, 60),
        stream: bool = False,
    ) -> Any:
        """Send one request; the decoded JSON (or text) of a 2xx answer, the open response with ``stream``.

        An answer of 400 or more raises ``HttpError``; no answer raises urllib3's or the OS's error.
        """
        url = self.host + path
        pairs = [(key, _query_value(value)) for key, value in (query or []) if value is not None]
        if pairs:
            url += "?" + urlencode(pairs)
        headers = urllib3.HTTPHeaderDict({"Accept": "application/json", "User-Agent": self.USER_AGENT})
        for name, value in self.conn.headers.items():
            for item in value if isinstance(value, list) else [value]:
                headers.add(name, item)
        authorization = self.conn.authorization()
        if authorization and has_control_characters(authorization):
            # http.client would refuse the header with a ValueError that quotes it, the token included.
            raise ServerlessError(
                "The bearer token (api_key, K8S_AUTH_API_KEY or the kubeconfig user's token) contains control"
                " characters (newline, tab, NUL, ...); the token is not shown"
            )
        if authorization:
            headers["Authorization"] = authorization
        data = None
        if body is not None:
            headers["Content-Type"] = content_type
            data = json.dumps(body)
        response = self.pool.request(
            method,
            url,
            body=data,
            headers=headers,
            timeout=urllib3.Timeout(connect=timeout[0], read=timeout[1]),
            preload_content=False,
        )
        if response.status >= 400:
            try:
                payload = response.read()
            finally:
                response.release_conn()
            raise HttpError(response.status, response.reason or "", payload)
        if stream:
            return response
        try:
            payload = response.read()
        finally:
            response.release_conn()
        if not payload:
            return {}
        if "json" not in (response.headers.get("Content-Type") or "application/json"):
            return payload.decode("utf-8", "replace")
        return json.loads(payload)


def _query_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class Resource:
    """One kind as discovery describes it: where its objects live."""

    def __init__(self, api_version: str, kind: str, plural: str, namespaced: bool) -> None:
        self.api_version = api_version
        self.kind = kind
        self.plural = plural
        self.namespaced = namespaced

    def path(self, namespace: str | None = None, name: str | None = None) -> str:
        prefix = "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"
        parts = [prefix]
        if self.namespaced and namespace:
            parts.append(f"namespaces/{quote(namespace, safe='')}")
        parts.append(self.plural)
        if name:
            parts.append(quote(name, safe=""))
        return "/".join(parts)


class KubeClient:
    """Dict-in/dict-out access to the Kubernetes API.

    Every method raises ``ApiError`` (``NotFound``/``Conflict``/``Gone``) for an error answer,
    ``ApiError`` with status 0 when no answer came, ``ServerlessError`` when the server does not
    serve the kind at all. With ``dry_run`` (check mode) writes carry ``dryRun=All``.
    """

    def __init__(self, transport: Any, *, dry_run: bool = False) -> None:
        self._transport = transport
        self.dry_run = dry_run
        self.connect_retry_seconds = CONNECT_RETRY_SECONDS
        self._resources: dict[tuple[str, str], Resource] = {}
        self._discovered: dict[str, list[dict]] = {}

    # -- reads -------------------------------------------------------------------------------

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> dict:
        resource = self._resource(api_version, kind)
        return self._call("GET", resource.path(namespace, name))

    def get_or_none(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> dict | None:
        """``get``, with None for an object that does not exist (404)."""
        try:
            return self.get(api_version, kind, name, namespace)
        except NotFound:
            return None

    def list(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> tuple[list[dict], str]:
        """The matching objects and the list's resourceVersion (where a watch can start)."""
        resource = self._resource(api_version, kind)
        query = [("fieldSelector", field_selector), ("labelSelector", label_selector)]
        listed = self._call("GET", resource.path(namespace), query)
        items = listed.get("items") or []
        for item in items:  # list items come without apiVersion/kind; callers expect whole objects
            item.setdefault("apiVersion", api_version)
            item.setdefault("kind", kind)
        return items, str((listed.get("metadata") or {}).get("resourceVersion") or "")

    def pod_log(
        self,
        name: str,
        namespace: str,
        container: str | None = None,
        tail_lines: int | None = None,
        *,
        previous: bool = False,
    ) -> str:
        path = f"/api/v1/namespaces/{quote(namespace, safe='')}/pods/{quote(name, safe='')}/log"
        # previous: the container that ended before the last restart (a crash loop's last run).
        query = [
            ("container", container or None),
            ("tailLines", tail_lines),
            ("previous", "true" if previous else None),
        ]
        answer = self._call("GET", path, query)
        if not answer:
            return ""  # an empty log (the transport reads an empty body as {})
        return answer if isinstance(answer, str) else json.dumps(answer)

    # -- writes ------------------------------------------------------------------------------

    def create(self, api_version: str, kind: str, body: dict, namespace: str | None = None) -> dict:
        resource = self._resource(api_version, kind)
        path = resource.path(self._namespace_of(resource, namespace, body))
        return self._write("POST", path, body)

    def replace(self, api_version: str, kind: str, body: dict, namespace: str | None = None) -> dict:
        """PUT the whole object; ``metadata.resourceVersion`` in ``body`` makes a stale write a 409."""
        resource = self._resource(api_version, kind)
        name = (body.get("metadata") or {}).get("name")
        return self._write("PUT", resource.path(self._namespace_of(resource, namespace, body), name), body)

    def patch(
        self,
        api_version: str,
        kind: str,
        name: str,
        patch: dict | list,
        namespace: str | None = None,
        *,
        patch_type: str = "merge",
    ) -> dict:
        """``patch_type``: ``merge`` (RFC 7386, works for custom resources), ``json`` or ``strategic``."""
        resource = self._resource(api_version, kind)
        content_type = _PATCH_CONTENT_TYPES[patch_type]
        return self._write("PATCH", resource.path(namespace, name), patch, content_type=content_type)

    def delete(
        self, api_version: str, kind: str, name: str, namespace: str | None = None, *, propagation: str = "Background"
    ) -> dict:
        """Delete by name; returns what the server answered (the object or a ``Status``)."""
        resource = self._resource(api_version, kind)
        return self._write("DELETE", resource.path(namespace, name), None, query=[("propagationPolicy", propagation)])

    # -- watch -------------------------------------------------------------------------------

    def watch(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        *,
        resource_version: str | None,
        field_selector: str | None = None,
        label_selector: str | None = None,
        timeout_seconds: int | None = None,
    ) -> Iterator[dict]:
        """Yield watch events ``{"type": ADDED|MODIFIED|DELETED|BOOKMARK, "object": dict}``.

        Bookmarks are requested. The generator simply ends when the server closes the stream or the
        connection drops (the caller resumes from the last resourceVersion it saw); an expired
        resourceVersion raises ``Gone`` whether it comes as an HTTP 410 or as an ERROR event.
        """
        resource = self._resource(api_version, kind)
        # The server ends the watch after timeout_seconds; the read timeout only guards against a
        # connection that silently stalls, so it is a little longer.
        read_timeout = (timeout_seconds or 300) + 15
        query = [
            ("fieldSelector", field_selector),
            ("labelSelector", label_selector),
            ("resourceVersion", resource_version or None),
            ("timeoutSeconds", timeout_seconds),
            ("allowWatchBookmarks", True),
            ("watch", True),
        ]
        response = self._call(
            "GET", resource.path(namespace), query, stream=True, timeout=(REQUEST_TIMEOUT[0], read_timeout)
        )
        finished = False
        try:
            yield from self._events(response)
            finished = True
        finally:
            if not finished:
                # Left early (a verdict, a new window, an error): the stream still holds unread
                # data, so its connection must never go back to the pool.
                response.close()
            response.release_conn()

    @staticmethod
    def _events(response: Any) -> Iterator[dict]:
        buffer = b""
        try:
            for chunk in response.stream(amt=None, decode_content=True):
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    event = _parse_event(line)
                    if event is not None:
                        yield event
        except (urllib3.exceptions.HTTPError, OSError):
            return  # a dropped connection ends the stream; the waiter resumes from its last version

    def namespaced(self, api_version: str, kind: str) -> bool:
        """Whether objects of ``kind`` live in namespaces (from discovery)."""
        return self._resource(api_version, kind).namespaced

    # -- plumbing ----------------------------------------------------------------------------

    def _resource(self, api_version: str, kind: str) -> Resource:
        """Where ``kind`` lives, from the API server's discovery document of ``api_version`` (once per client)."""
        key = (api_version, kind)
        if key in self._resources:
            return self._resources[key]
        if api_version not in self._discovered:
            path = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
            try:
                listed = self._call("GET", path)
            except NotFound as err:
                raise ServerlessError(
                    f"The API server does not serve {kind} in {api_version}: is the CRD installed?"
                    f" (no group version {api_version})"
                ) from err
            self._discovered[api_version] = [
                item for item in listed.get("resources") or [] if "/" not in str(item.get("name", ""))
            ]
        matches = [item for item in self._discovered[api_version] if item.get("kind") == kind]
        if len(matches) != 1:
            why = f"{len(matches)} resources have kind {kind}" if matches else f"no resource has kind {kind}"
            raise ServerlessError(
                f"The API server does not serve {kind} in {api_version}: is the CRD installed? ({why})"
            )
        found = matches[0]
        self._resources[key] = Resource(api_version, kind, str(found["name"]), bool(found.get("namespaced")))
        return self._resources[key]

    @staticmethod
    def _namespace_of(resource: Resource, namespace: str | None, body: dict) -> str | None:
        """The namespace a write goes to: the one given, else the body's (as the dynamic client did)."""
        if not resource.namespaced:
            return None
        found = namespace or (body.get("metadata") or {}).get("namespace")
        if not found:
            raise ServerlessError(f"A namespace is required to write {resource.kind} objects")
        return found

    def _write(
        self,
        method: str,
        path: str,
        body: Any,
        *,
        content_type: str = "application/json",
        query: list[tuple[str, Any]] | None = None,
    ) -> dict:
        query = list(query or [])
        if self.dry_run:
            query.append(("dryRun", DRY_RUN_ALL))
        try:
            return self._call(method, path, query, body=body, content_type=content_type)
        except ApiError as err:
            if self.dry_run and err.status == 400 and "dry run" in err.message.lower():
                raise DryRunUnsupported(err.status, err.reason, err.message) from err
            raise

    def _call(self, method: str, path: str, query: list[tuple[str, Any]] | None = None, **kwargs: Any) -> Any:
        kwargs.setdefault("timeout", REQUEST_TIMEOUT)
        deadline = None
        delay = _CONNECT_BACKOFF_FIRST
        while True:
            try:
                return self._transport.request(method, path, query, **kwargs)
            except Exception as err:
                if not never_connected(err):
                    raise self._translate(err) from err
                now = time.monotonic()
                if deadline is None:
                    deadline = now + self.connect_retry_seconds
                if now + delay > deadline:
                    waited = f" for {self.connect_retry_seconds:g} s" if self.connect_retry_seconds > 0 else ""
                    raise ApiError(
                        0, "ConnectionFailed", f"cannot reach the Kubernetes API server{waited}: {_one_line(err)}"
                    ) from err
                time.sleep(delay)
                delay = min(delay * 2, _CONNECT_BACKOFF_MAX)

    @staticmethod
    def _translate(err: Exception) -> Exception:
        if isinstance(err, ServerlessError):
            return err
        if isinstance(err, HttpError):
            reason, message = _status_from_body(err.body)
            return api_error(err.status, reason or err.reason or "Error", message or _one_line(err))
        if isinstance(err, (urllib3.exceptions.HTTPError, OSError)):
            return ApiError(0, "ConnectionFailed", f"cannot reach the Kubernetes API server: {_one_line(err)}")
        return err


def never_connected(err: BaseException) -> bool:
    """True when a request failed before its connection was made: nothing reached the server."""
    if isinstance(err, urllib3.exceptions.MaxRetryError):
        err = err.reason or err
    if isinstance(err, urllib3.exceptions.ProxyError):
        return False  # the proxy was reached: the request may have gone on
    # NewConnectionError (refused, no route to host) is a ConnectTimeoutError too.
    return isinstance(err, (urllib3.exceptions.ConnectTimeoutError, ConnectionRefusedError))


def _parse_event(line: bytes) -> dict | None:
    line = line.strip()
    if not line:
        return None
    try:
        event = json.loads(line)
    except ValueError:
        return None  # a torn line at a dropped connection; the resume re-delivers what matters
    obj = event.get("object") or {}
    if event.get("type") == "ERROR":
        raise api_error(int(obj.get("code") or 0), str(obj.get("reason") or "Error"), _one_line(obj.get("message")))
    return {"type": event.get("type"), "object": obj}
