"""Scripted stand-ins for the Kubernetes API, shared by the unit tests of every module.

``FakeKubeClient`` has the surface of ``_client.KubeClient``: it serves objects from a dict,
records every request (``requests``, ``writes``), and plays watch streams from a script, so a test
can say "the stream drops here, then the server answers 410" without a server.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable, Iterator
from typing import Any

from ansible_collections.knlab.serverless.plugins.module_utils._errors import ApiError, Conflict, NotFound

WRITE_METHODS = ("create", "replace", "patch", "delete")


class FakeClock:
    """``clock``/``sleep`` for the waiter: sleeping advances time, nothing really waits."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def event(kind: str, obj: dict) -> dict:
    return {"type": kind, "object": copy.deepcopy(obj)}


def bookmark(resource_version: str) -> dict:
    return {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": resource_version}}}


# Go map fields (map[string]string and ResourceList): their empty-string values are data and stay;
# an empty map itself is dropped like any other omitempty field.
_GO_MAP_FIELDS = frozenset(
    {"labels", "annotations", "data", "binaryData", "stringData", "nodeSelector", "requests", "limits"}
)


# Go bool fields tagged omitempty (VolumeMount.readOnly, PersistentVolumeClaimVolumeSource.readOnly):
# false is not encoded, so it comes back absent.
_GO_OMITEMPTY_BOOLS = frozenset({"readOnly"})


def go_round_trip(obj: dict) -> None:
    """Do to ``obj`` (in place) what decoding it into Go types and encoding it back does.

    Knative's webhook round-trips every object it admits (knative.dev/pkg ``roundTripPatch``), so
    the stored object loses empty lists, empty ``omitempty`` strings and empty maps. Empty structs
    (``emptyDir: {}``, ``resources: {}``) are not pointers-to-nothing and stay.
    """
    for key in list(obj):
        value = obj[key]
        if isinstance(value, list):
            for item in value:
                if isinstance(item, dict):
                    go_round_trip(item)
            if not value:
                del obj[key]
        elif isinstance(value, dict):
            if key in _GO_MAP_FIELDS:
                if not value:
                    del obj[key]
            else:
                go_round_trip(value)
        elif value == "" or (value is False and key in _GO_OMITEMPTY_BOOLS):
            del obj[key]


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


class FakeKubeClient:
    """A scripted ``KubeClient``.

    - ``objects``: (api_version, kind, namespace, name) → object; reads and writes use it.
    - ``watch_script``: one entry per ``watch`` call: a list of events (the stream ends after the
      last, like a dropped connection) or an exception to raise. When the script is used up, a
      watch yields nothing (so a test's fake clock runs out).
    - ``errors``: method name → list of exceptions to raise, one per call, before serving it.
    - ``admit``: called as ``admit(obj, old)`` on create/replace/patch, like a defaulting webhook.
    - ``controller``: called as ``controller(obj)`` on the stored object after a real (not dry-run)
      write, like a controller updating status; its change gets a new resourceVersion and is what
      a watch sees when ``watch_store`` is set and the script is used up.
    """

    def __init__(
        self,
        *,
        dry_run: bool = False,
        admit: Callable[[dict, dict | None], None] | None = None,
        controller: Callable[[dict], None] | None = None,
        watch_store: bool = False,
    ) -> None:
        self.dry_run = dry_run
        self.admit = admit
        self.controller = controller
        self.watch_store = watch_store
        self.objects: dict[tuple[str, str, str | None, str], dict] = {}
        self.requests: list[tuple[str, dict]] = []
        self.watch_script: list[list[dict] | Exception] = []
        self.errors: dict[str, list[Exception]] = {}
        self._versions = itertools.count(100)

    # -- test helpers --------------------------------------------------------------------------

    @property
    def writes(self) -> list[tuple[str, dict]]:
        return [request for request in self.requests if request[0] in WRITE_METHODS]

    def methods(self) -> list[str]:
        return [request[0] for request in self.requests]

    def put(self, obj: dict) -> dict:
        """Store ``obj`` as the server would hold it (fills resourceVersion/generation)."""
        stored = copy.deepcopy(obj)
        meta = stored.setdefault("metadata", {})
        meta.setdefault("resourceVersion", str(next(self._versions)))
        meta.setdefault("generation", 1)
        self.objects[self._key(stored["apiVersion"], stored["kind"], meta.get("namespace"), meta["name"])] = stored
        return copy.deepcopy(stored)

    def stored(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> dict | None:
        obj = self.objects.get(self._key(api_version, kind, namespace, name))
        return copy.deepcopy(obj) if obj is not None else None

    # -- KubeClient surface ----------------------------------------------------------------------

    CLUSTER_SCOPED = ("Namespace", "PersistentVolume", "ClusterRole", "ClusterRoleBinding", "StorageClass")

    def namespaced(self, api_version: str, kind: str) -> bool:
        return kind not in self.CLUSTER_SCOPED

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> dict:
        self._record("get", api_version=api_version, kind=kind, name=name, namespace=namespace)
        obj = self.stored(api_version, kind, name, namespace)
        if obj is None:
            raise NotFound(404, "NotFound", f'{kind} "{name}" not found')
        return obj

    def get_or_none(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> dict | None:
        try:
            return self.get(api_version, kind, name, namespace)  # recorded as a "get", as it is sent
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
        self._record(
            "list",
            api_version=api_version,
            kind=kind,
            namespace=namespace,
            label_selector=label_selector,
            field_selector=field_selector,
        )
        items = [
            copy.deepcopy(obj)
            for key, obj in sorted(self.objects.items(), key=lambda kv: kv[0][3])
            if key[:2] == (api_version, kind) and (namespace is None or key[2] == namespace)
        ]
        items = [item for item in items if _matches(item, label_selector, field_selector)]
        return items, str(next(self._versions))

    def create(self, api_version: str, kind: str, body: dict, namespace: str | None = None) -> dict:
        self._record("create", api_version=api_version, kind=kind, body=body, namespace=namespace)
        name = body["metadata"].get("name")
        if name and self.stored(api_version, kind, name, namespace) is not None:
            raise Conflict(409, "AlreadyExists", f'{kind} "{name}" already exists')
        obj = copy.deepcopy(body)
        obj.setdefault("apiVersion", api_version)
        obj.setdefault("kind", kind)
        meta = obj["metadata"]
        meta.setdefault("namespace", namespace)
        if not name:
            meta["name"] = meta.get("generateName", "x-") + f"{next(self._versions):05d}"
        meta["generation"] = 1
        meta["uid"] = f"uid-{meta['name']}"
        return self._store(obj, None)

    def replace(self, api_version: str, kind: str, body: dict, namespace: str | None = None) -> dict:
        self._record("replace", api_version=api_version, kind=kind, body=body, namespace=namespace)
        old = self.get_quiet(api_version, kind, body["metadata"]["name"], namespace)
        sent_version = body["metadata"].get("resourceVersion")
        if sent_version and sent_version != old["metadata"]["resourceVersion"]:
            raise Conflict(
                409, "Conflict", "the object has been modified; please apply your changes to the latest version"
            )
        obj = copy.deepcopy(body)
        obj.setdefault("status", old.get("status"))
        return self._store(obj, old)

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
        self._record(
            "patch",
            api_version=api_version,
            kind=kind,
            name=name,
            patch=patch,
            namespace=namespace,
            patch_type=patch_type,
        )
        if patch_type != "merge":
            raise AssertionError(f"the fake only speaks merge patch, not {patch_type}")
        old = self.get_quiet(api_version, kind, name, namespace)
        sent_version = (patch.get("metadata") or {}).get("resourceVersion") if isinstance(patch, dict) else None
        if sent_version and sent_version != old["metadata"]["resourceVersion"]:
            raise Conflict(
                409, "Conflict", "the object has been modified; please apply your changes to the latest version"
            )
        return self._store(merge_patch(old, patch), old)

    def delete(
        self, api_version: str, kind: str, name: str, namespace: str | None = None, *, propagation: str = "Background"
    ) -> dict:
        self._record("delete", api_version=api_version, kind=kind, name=name, namespace=namespace)
        obj = self.get_quiet(api_version, kind, name, namespace)
        if not self.dry_run:
            del self.objects[self._key(api_version, kind, namespace, name)]
        return obj

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
        self._record(
            "watch",
            api_version=api_version,
            kind=kind,
            namespace=namespace,
            resource_version=resource_version,
            field_selector=field_selector,
            timeout_seconds=timeout_seconds,
        )
        if not self.watch_script:
            return iter(self._store_events(api_version, kind, namespace, field_selector, resource_version))
        step = self.watch_script.pop(0)
        if isinstance(step, Exception):
            raise step
        return iter([copy.deepcopy(item) for item in step])

    def pod_log(
        self,
        name: str,
        namespace: str,
        container: str | None = None,
        tail_lines: int | None = None,
        *,
        previous: bool = False,
    ) -> str:
        extra = {"previous": True} if previous else {}
        self._record("pod_log", name=name, namespace=namespace, container=container, tail_lines=tail_lines, **extra)
        obj = self.stored("v1", "Pod", name, namespace)
        if obj is None:
            raise NotFound(404, "NotFound", f'pods "{name}" not found')
        logs = obj.get("logs") or {}
        text = logs.get(container or "", "")
        lines = text.splitlines()
        if tail_lines is not None:
            lines = lines[-tail_lines:]
        return "".join(line + "\n" for line in lines)

    # -- plumbing ------------------------------------------------------------------------------

    @staticmethod
    def _key(api_version: str, kind: str, namespace: str | None, name: str) -> tuple[str, str, str | None, str]:
        return (api_version, kind, namespace, name)

    def get_quiet(self, api_version: str, kind: str, name: str, namespace: str | None) -> dict:
        obj = self.stored(api_version, kind, name, namespace)
        if obj is None:
            raise NotFound(404, "NotFound", f'{kind} "{name}" not found')
        return obj

    def _record(self, method: str, **details: Any) -> None:
        self.requests.append((method, copy.deepcopy(details) | {"dry_run": self.dry_run}))
        pending = self.errors.get(method)
        if pending:
            raise pending.pop(0)

    def _store(self, obj: dict, old: dict | None) -> dict:
        if self.admit is not None:
            self.admit(obj, old)
        meta = obj["metadata"]
        if old is not None and _spec_changed(old, obj):
            meta["generation"] = int(old["metadata"].get("generation") or 1) + 1
        meta["resourceVersion"] = str(next(self._versions))
        answer = copy.deepcopy(obj)
        if not self.dry_run:
            key = self._key(obj["apiVersion"], obj["kind"], meta.get("namespace"), meta["name"])
            self.objects[key] = obj
            if self.controller is not None:
                reconciled = copy.deepcopy(obj)
                self.controller(reconciled)
                reconciled["metadata"]["resourceVersion"] = str(next(self._versions))
                self.objects[key] = reconciled
        return answer

    def _store_events(
        self, api_version: str, kind: str, namespace: str | None, field_selector: str | None, since: str | None
    ) -> list[dict]:
        """What a server's watch from ``since`` would replay: the current state, if newer."""
        if not self.watch_store:
            return []
        items = [
            obj
            for key, obj in self.objects.items()
            if key[:2] == (api_version, kind) and (namespace is None or key[2] == namespace)
        ]
        newer = [
            obj
            for obj in items
            if _matches(obj, None, field_selector) and int(obj["metadata"]["resourceVersion"]) > int(since or 0)
        ]
        return [event("MODIFIED", obj) for obj in newer]


def _spec_changed(old: dict, new: dict) -> bool:
    return old.get("spec") != new.get("spec")


def _matches(obj: dict, label_selector: str | None, field_selector: str | None) -> bool:
    meta = obj.get("metadata") or {}
    labels = meta.get("labels") or {}
    for term in filter(None, (label_selector or "").split(",")):
        key, value = term.split("=", 1)
        if labels.get(key) != value:
            return False
    for term in filter(None, (field_selector or "").split(",")):
        key, value = term.split("=", 1)
        if key == "metadata.name" and meta.get("name") != value:
            return False
        if key == "metadata.namespace" and meta.get("namespace") != value:
            return False
    return True


def api_error(status: int, reason: str = "Error", message: str = "scripted") -> ApiError:
    return ApiError(status, reason, message)
