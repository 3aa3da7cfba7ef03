# Copyright (c) knlab serverless developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one adapter between knlab.serverless and kubernetes.core / the ``kubernetes`` library.

No other file of the collection imports either. Auth options and client construction are
kubernetes.core's own (``AUTH_ARG_SPEC``, ``get_api_client``), so a play that works with
``kubernetes.core.k8s`` works here unchanged; ``KubeClient`` puts a small, dict-in/dict-out
surface over the dynamic client and turns its exceptions into ``_errors.ApiError``.

Private to knlab.serverless: not a public API.
"""

from __future__ import annotations

import copy
import json
import traceback
from collections.abc import Callable, Iterator
from typing import Any

from ansible.module_utils.basic import missing_required_lib
from ansible_collections.knlab.serverless.plugins.module_utils._errors import (
    ApiError,
    DryRunUnsupported,
    MissingDependency,
    NotFound,
    ServerlessError,
    api_error,
)

try:
    from ansible_collections.kubernetes.core.plugins.module_utils.args_common import (
        AUTH_ARG_SPEC as _K8S_AUTH_ARG_SPEC,
    )
    from ansible_collections.kubernetes.core.plugins.module_utils.k8s.client import get_api_client
except ImportError:
    _K8S_AUTH_ARG_SPEC = None
    KUBERNETES_CORE_IMPORT_ERROR: str | None = traceback.format_exc()
else:
    KUBERNETES_CORE_IMPORT_ERROR = None

try:
    import urllib3
    from kubernetes.client import CoreV1Api
    from kubernetes.client.rest import ApiException
    from kubernetes.dynamic.exceptions import DynamicApiError, ResourceNotFoundError, ResourceNotUniqueError
except ImportError:
    KUBERNETES_IMPORT_ERROR: str | None = traceback.format_exc()
else:
    KUBERNETES_IMPORT_ERROR = None

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
    if KUBERNETES_IMPORT_ERROR is not None:
        raise MissingDependency(missing_required_lib("kubernetes"), exception=KUBERNETES_IMPORT_ERROR)


def auth_params(params: dict[str, Any]) -> dict[str, Any]:
    """The auth options out of a module's params (unset ones are left to kubernetes.core's env lookup)."""
    return {name: params[name] for name in AUTH_ARG_SPEC if params.get(name) is not None}


def get_client(module: Any) -> KubeClient:
    """Build a ``KubeClient`` from a module's auth params; check mode makes every write a dry run."""
    check_dependencies()
    try:
        k8s_client = get_api_client(**auth_params(module.params))
    except Exception as err:  # kubeconfig parsing raises many types; all mean "cannot configure"
        detail = _one_line(err).removeprefix("Could not create API client: ")  # kubernetes.core's own prefix
        raise ServerlessError(f"Could not create the Kubernetes API client: {detail}") from err
    return KubeClient(k8s_client.client, dry_run=bool(module.check_mode))


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


class KubeClient:
    """Dict-in/dict-out access to the Kubernetes API over kubernetes.core's dynamic client.

    Every method raises ``ApiError`` (``NotFound``/``Conflict``/``Gone``) for an error answer,
    ``ApiError`` with status 0 when no answer came, ``ServerlessError`` when the server does not
    serve the kind at all. With ``dry_run`` (check mode) writes carry ``dryRun=All``.
    """

    def __init__(self, dynamic_client: Any, *, dry_run: bool = False) -> None:
        self._dynamic = dynamic_client
        self.dry_run = dry_run
        self._resources: dict[tuple[str, str], Any] = {}

    # -- reads -------------------------------------------------------------------------------

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> dict:
        resource = self._resource(api_version, kind)
        return self._call(lambda: resource.get(name=name, namespace=namespace, _request_timeout=REQUEST_TIMEOUT))

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
        listed = self._call(
            lambda: resource.get(
                namespace=namespace,
                label_selector=label_selector,
                field_selector=field_selector,
                _request_timeout=REQUEST_TIMEOUT,
            )
        )
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
        core = CoreV1Api(self._dynamic.client)
        kwargs: dict[str, Any] = {"_request_timeout": REQUEST_TIMEOUT}
        if container:
            kwargs["container"] = container
        if previous:
            kwargs["previous"] = True  # the container that ended before the last restart
        if tail_lines is not None:
            kwargs["tail_lines"] = tail_lines
        return self._call(lambda: core.read_namespaced_pod_log(name, namespace, **kwargs), raw=True)

    # -- writes ------------------------------------------------------------------------------

    def create(self, api_version: str, kind: str, body: dict, namespace: str | None = None) -> dict:
        resource = self._resource(api_version, kind)
        return self._write(lambda dry: resource.create(body=body, namespace=namespace, **dry))

    def replace(self, api_version: str, kind: str, body: dict, namespace: str | None = None) -> dict:
        """PUT the whole object; ``metadata.resourceVersion`` in ``body`` makes a stale write a 409."""
        resource = self._resource(api_version, kind)
        return self._write(lambda dry: resource.replace(body=body, namespace=namespace, **dry))

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
        return self._write(
            lambda dry: resource.patch(body=patch, name=name, namespace=namespace, content_type=content_type, **dry)
        )

    def delete(
        self, api_version: str, kind: str, name: str, namespace: str | None = None, *, propagation: str = "Background"
    ) -> dict:
        """Delete by name; returns what the server answered (the object or a ``Status``)."""
        resource = self._resource(api_version, kind)
        return self._write(
            lambda dry: resource.delete(name=name, namespace=namespace, propagation_policy=propagation, **dry)
        )

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
        response = self._call(
            lambda: self._dynamic.request(
                "get",
                resource.path(namespace=namespace),
                watch=True,
                resource_version=resource_version or None,
                field_selector=field_selector,
                label_selector=label_selector,
                allow_watch_bookmarks=True,
                timeout_seconds=timeout_seconds,
                serialize=False,
                _request_timeout=(REQUEST_TIMEOUT[0], read_timeout),
            ),
            raw=True,
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

    # -- plumbing ----------------------------------------------------------------------------

    def _resource(self, api_version: str, kind: str) -> Any:
        key = (api_version, kind)
        if key not in self._resources:
            try:
                self._resources[key] = self._dynamic.resources.get(api_version=api_version, kind=kind)
            except (ResourceNotFoundError, ResourceNotUniqueError) as err:
                raise ServerlessError(
                    f"The API server does not serve {kind} in {api_version}: is the CRD installed? ({_one_line(err)})"
                ) from err
            except Exception as err:
                raise self._translate(err) from err
        return self._resources[key]

    def _write(self, send: Any) -> dict:
        dry = {"dry_run": DRY_RUN_ALL} if self.dry_run else {}
        try:
            return self._call(lambda: send(dry))
        except ApiError as err:
            if self.dry_run and err.status == 400 and "dry run" in err.message.lower():
                raise DryRunUnsupported(err.status, err.reason, err.message) from err
            raise

    def _call(self, request: Any, *, raw: bool = False) -> Any:
        try:
            answer = request()
        except Exception as err:
            raise self._translate(err) from err
        if raw:
            return answer
        return answer.to_dict() if hasattr(answer, "to_dict") else answer

    @staticmethod
    def _translate(err: Exception) -> Exception:
        if isinstance(err, ServerlessError):
            return err
        if isinstance(err, (DynamicApiError, ApiException)):
            reason, message = _status_from_body(getattr(err, "body", None))
            status = int(getattr(err, "status", 0) or 0)
            return api_error(status, reason or str(getattr(err, "reason", "") or "Error"), message or _one_line(err))
        if isinstance(err, (urllib3.exceptions.HTTPError, OSError)):
            return ApiError(0, "ConnectionFailed", f"cannot reach the Kubernetes API server: {_one_line(err)}")
        return err


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
