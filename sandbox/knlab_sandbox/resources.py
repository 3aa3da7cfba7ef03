"""`ResourceAPI`: the one path every writer uses, the HTTP handlers and the controllers alike.

create/update/patch run admission (defaulting, generic checks, per-kind validation), keep the
server-owned metadata (uid, creationTimestamp, generation, resourceVersion, managedFields) and
write through the store, whose events feed every watch. delete honours finalizers and
ownerReference garbage collection (Background, Foreground, Orphan). Kinds with a `status`
subresource ignore status on the main resource and everything but status on `/status`.
"""

from __future__ import annotations

import asyncio
import copy
import inspect
import ipaddress
import logging
import random
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from . import fieldmanager, kinds, transitions
from .admission import AdmissionContext, admit, normalize_secret
from .errors import ApiStatusError, already_exists, bad_request, conflict, not_found, unsupported_media_type
from .kinds import ResourceType
from .patching import json_patch, merge_patch, strategic_merge
from .quantity import canonicalize_pod_spec, canonicalize_resources
from .selectors import Selector
from .settings import Settings
from .store import Event, Store

log = logging.getLogger(__name__)

SYSTEM_USER = "system:admin"
NAMESPACE_RT = kinds.lookup("v1", "Namespace")
_GENERATE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # what apimachinery's rand.String uses
_SERVER_META = ("uid", "creationTimestamp", "generation", "deletionTimestamp", "deletionGracePeriodSeconds")

# Seeds: functions returning objects to create at startup if absent (e.g. Knative's ConfigMaps).
SeedFactory = Callable[[Settings], list[dict]]
_SEEDS: list[SeedFactory] = []


def register_seed(factory: SeedFactory) -> None:
    """Have `factory(settings)`'s objects created at server start when they do not exist yet."""
    if factory not in _SEEDS:
        _SEEDS.append(factory)


def base_objects() -> list[dict]:
    """Namespaces every sandbox has, as a fresh cluster does."""
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
        for name in ("default", "kube-system", "kube-public", "knative-serving")
    ]


def _uncovered(schema: dict | None, value: Any, path: str, out: list[str]) -> Any:
    """Drop fields the schema does not know, recording their paths; returns the pruned value."""
    if not schema or (schema.get("x-kubernetes-preserve-unknown-fields") and "properties" not in schema):
        return value
    if isinstance(value, dict):
        props = schema.get("properties")
        extra = schema.get("additionalProperties")
        if props is None and extra is None:
            return value
        result = {}
        for key, child in value.items():
            child_path = f"{path}.{key}" if path else key
            if props is not None and key in props:
                result[key] = _uncovered(props[key], child, child_path, out)
            elif isinstance(extra, dict):
                result[key] = _uncovered(extra, child, child_path, out)
            elif schema.get("x-kubernetes-preserve-unknown-fields"):
                result[key] = child
            else:
                out.append(child_path)
        return result
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [_uncovered(schema["items"], item, f"{path}[{i}]", out) for i, item in enumerate(value)]
    return value


_GO_ZERO_VALUES: dict[str, tuple[Any, ...]] = {"string": ("",), "integer": (0,), "number": (0,), "boolean": (False,)}


def _is_go_zero(schema: dict, value: Any) -> bool:
    """True when `value` is what Go's `omitempty` leaves out for a field of this schema."""
    if value is None:
        return not schema.get("nullable")  # null decodes to nil / the zero value (metav1.Time says null)
    kind = schema.get("type")
    if kind == "array":
        return value == []
    if kind == "object":
        # A map (additionalProperties) is omitted when empty; a struct, even an empty one, never is.
        return value == {} and "additionalProperties" in schema and "properties" not in schema
    # bool is an int in Python: compare the type too, so `false` is not the zero of an integer field.
    return any(type(value) is type(zero) and value == zero for zero in _GO_ZERO_VALUES.get(kind, ()))


def omit_empty(schema: dict | None, value: Any) -> Any:
    """`value` as a Go round trip leaves it: `omitempty` fields holding their zero value are dropped.

    Fields the parent `required`s (no `omitempty` in Go) or marks `zero_kept` (pointers) stay; free-form
    parts (preserve-unknown-fields, int-or-string) and list items are kept as they are."""
    if not schema or (schema.get("x-kubernetes-preserve-unknown-fields") and "properties" not in schema):
        return value
    if isinstance(value, dict):
        props = schema.get("properties")
        if props is None:
            extra = schema.get("additionalProperties")
            return {k: omit_empty(extra, v) for k, v in value.items()} if isinstance(extra, dict) else value
        required = set(schema.get("required") or ())
        result = {}
        for key, child in value.items():
            child_schema = props.get(key)
            if child_schema is None:
                result[key] = child  # kept by preserve-unknown-fields
                continue
            keeps_zero = key in required or child_schema.get(kinds.KEEPS_ZERO)
            if not keeps_zero and _is_go_zero(child_schema, child):
                continue
            result[key] = omit_empty(child_schema, child)
        return result
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [omit_empty(schema["items"], item) for item in value]
    return value


def prune(rt: ResourceType, obj: dict, field_validation: str, warnings: list[str] | None) -> dict:
    """Decode `obj` as the typed kind: unknown fields go (`fieldValidation` Strict rejects them with a
    400, Warn reports them) and so do empty `omitempty` fields, as a Go round trip drops them."""
    unknown: list[str] = []
    pruned = _uncovered(rt.schema, obj, "", unknown)
    if unknown:
        if field_validation == "Strict":
            fields = ", ".join(f'unknown field "{f}"' for f in unknown)
            raise bad_request(f"strict decoding error: {fields}")
        if field_validation == "Warn" and warnings is not None:
            warnings.extend(f'unknown field "{f}"' for f in unknown)
    return omit_empty(rt.schema, pruned)


def _spec_part(obj: dict) -> dict:
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}


def _owned_by(obj: dict, uid: str) -> bool:
    return any(ref.get("uid") == uid for ref in obj.get("metadata", {}).get("ownerReferences") or [])


class ResourceAPI:
    def __init__(self, store: Store, settings: Settings):
        self.store = store
        self.settings = settings
        self._next_cluster_ip = 10

    # --- reads ---------------------------------------------------------------------------------
    def _namespace(self, rt: ResourceType, namespace: str | None) -> str:
        if not rt.namespaced:
            return ""
        return namespace or "default"

    async def get(self, rt: ResourceType, name: str, *, namespace: str | None = None) -> dict:
        obj = self.store.get(rt.storage_key, self._namespace(rt, namespace), name)
        if obj is None:
            raise not_found(rt, name)
        return obj

    def get_nowait(self, rt: ResourceType, name: str, *, namespace: str | None = None) -> dict | None:
        return self.store.get(rt.storage_key, self._namespace(rt, namespace), name)

    async def list(
        self,
        rt: ResourceType,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> tuple[list[dict], str]:
        selector = Selector.parse(rt, label_selector, field_selector)
        ns = namespace if rt.namespaced and namespace else None
        items = [o for o in self.store.list(rt.storage_key, ns) if selector.matches(o)]
        return items, str(self.store.resource_version)

    # --- create --------------------------------------------------------------------------------
    async def create(
        self,
        rt: ResourceType,
        obj: dict,
        *,
        namespace: str | None = None,
        dry_run: bool = False,
        user: str = SYSTEM_USER,
        field_manager: str | None = None,
        field_validation: str = "Ignore",
        warnings: list[str] | None = None,
        managed_fields: list[dict] | None = None,
    ) -> dict:
        obj = self._check_type(rt, copy.deepcopy(obj))
        obj = prune(rt, obj, field_validation, warnings)
        meta = obj.setdefault("metadata", {})
        if meta.get("resourceVersion"):
            raise bad_request("resourceVersion should not be set on objects to be created")
        if rt.namespaced:
            if namespace and meta.get("namespace") and meta["namespace"] != namespace:
                raise bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
            meta["namespace"] = meta.get("namespace") or namespace or "default"
            if self.store.get(NAMESPACE_RT.storage_key, "", meta["namespace"]) is None:
                raise not_found(NAMESPACE_RT, meta["namespace"])
        else:
            meta.pop("namespace", None)
        for key in (*_SERVER_META, "managedFields", "selfLink"):
            meta.pop(key, None)
        if rt.has_status:
            obj.pop("status", None)
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = self._generate_name(rt, meta["namespace"] if rt.namespaced else "", meta["generateName"])
        self._server_defaults(rt, obj, None)
        ctx = AdmissionContext("CREATE", user, self, self.settings, rt, dry_run)
        await admit(rt, obj, None, ctx)
        meta = obj["metadata"]
        ns = meta.get("namespace", "")
        if self.store.get(rt.storage_key, ns, meta["name"]) is not None:
            raise already_exists(rt, meta["name"])
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = fieldmanager.now()
        if rt.has_status or rt.is_custom:
            meta["generation"] = 1
        self._server_status(rt, obj)
        if managed_fields is not None:
            obj["metadata"]["managedFields"] = managed_fields  # created by server-side apply
        else:
            fieldmanager.record_update(rt, None, obj, field_manager or user)
        if rt.has_status and obj.get("status"):
            fieldmanager.record_update(rt, None, obj, field_manager or user, "status")
        if dry_run:
            return obj
        created = self.store.write(rt.storage_key, obj, "ADDED")
        await self._after_create(rt, created)
        return copy.deepcopy(created)

    def _check_type(self, rt: ResourceType, obj: dict) -> dict:
        if not isinstance(obj, dict):
            raise bad_request("the body of the request is not a JSON object")
        api_version = obj.get("apiVersion") or rt.api_version
        kind = obj.get("kind") or rt.kind
        if api_version != rt.api_version:
            raise bad_request(
                f"the API version in the data ({api_version}) does not match the expected API version "
                f"({rt.api_version})"
            )
        if kind != rt.kind:
            raise bad_request(f"the kind in the data ({kind}) does not match the expected kind ({rt.kind})")
        obj["apiVersion"], obj["kind"] = rt.api_version, rt.kind
        if not isinstance(obj.get("metadata", {}), dict):
            raise bad_request("metadata must be an object")
        return obj

    def _generate_name(self, rt: ResourceType, namespace: str, prefix: str) -> str:
        prefix = prefix[:58]
        for _ in range(20):
            name = prefix + "".join(random.choice(_GENERATE_ALPHABET) for _ in range(5))
            if self.store.get(rt.storage_key, namespace, name) is None:
                return name
        raise already_exists(rt, prefix)

    def _server_defaults(self, rt: ResourceType, obj: dict, old: dict | None) -> None:
        """What the built-in kinds' strategies fill in on every write."""
        if rt.kind_key == "v1/Secret":
            normalize_secret(obj)
        elif rt.kind_key == "v1/Service":
            spec = obj.setdefault("spec", {})
            spec.setdefault("type", "ClusterIP")
            spec.setdefault("sessionAffinity", "None")
            for port in spec.get("ports") or []:
                port.setdefault("protocol", "TCP")
                port.setdefault("targetPort", port.get("port"))
            if old is not None:
                spec.setdefault("clusterIP", old.get("spec", {}).get("clusterIP"))
            if spec["type"] != "ExternalName" and not spec.get("clusterIP"):
                spec["clusterIP"] = self._allocate_cluster_ip()
            if spec.get("clusterIP"):
                spec["clusterIPs"] = [spec["clusterIP"]]
        elif rt.kind_key == "v1/Pod":
            spec = obj.setdefault("spec", {})
            spec.setdefault("restartPolicy", "Always")
            spec.setdefault("dnsPolicy", "ClusterFirst")
            spec.setdefault("serviceAccountName", spec.get("serviceAccount") or "default")
            spec.setdefault("terminationGracePeriodSeconds", 30)
            spec.setdefault("schedulerName", "default-scheduler")
            for container in (spec.get("containers") or []) + (spec.get("initContainers") or []):
                container.setdefault("terminationMessagePath", "/dev/termination-log")
                container.setdefault("terminationMessagePolicy", "File")
                image = str(container.get("image", ""))
                latest = ":" not in image.rsplit("/", 1)[-1] or image.endswith(":latest")
                container.setdefault("imagePullPolicy", "Always" if latest and "@" not in image else "IfNotPresent")
            canonicalize_pod_spec(spec)
        elif rt.kind_key == "v1/PersistentVolumeClaim":
            spec = obj.setdefault("spec", {})
            spec.setdefault("volumeMode", "Filesystem")
            spec.setdefault("storageClassName", "standard")
            canonicalize_resources(spec.get("resources"))

    def _allocate_cluster_ip(self) -> str:
        used = {o.get("spec", {}).get("clusterIP") for o in self.store.list("/services")}
        while True:
            self._next_cluster_ip += 1
            ip = str(ipaddress.IPv4Address("10.96.0.0") + self._next_cluster_ip)
            if ip not in used:
                return ip

    def _server_status(self, rt: ResourceType, obj: dict) -> None:
        """Status the API server (or an always-on controller) sets at creation."""
        if rt.kind_key == "v1/Namespace":
            obj["status"] = {"phase": "Active"}
            obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
            obj["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = obj["metadata"]["name"]
        elif rt.kind_key == "v1/PersistentVolumeClaim":
            # Bound at once, like a default StorageClass with Immediate binding.
            spec = obj["spec"]
            spec["volumeName"] = f"pvc-{obj['metadata']['uid']}"
            requested = spec.get("resources", {}).get("requests", {}).get("storage", "1Gi")
            obj["status"] = {
                "phase": "Bound",
                "accessModes": list(spec.get("accessModes") or ["ReadWriteOnce"]),
                "capacity": {"storage": requested},
            }
        elif rt.kind_key == "v1/Pod":
            obj["status"] = {"phase": "Pending", "qosClass": "BestEffort"}
        elif rt.kind_key == "v1/Service":
            obj["status"] = {"loadBalancer": {}}

    async def _after_create(self, rt: ResourceType, obj: dict) -> None:
        if rt.kind_key == "v1/PersistentVolumeClaim":
            self.settings.volume_dir(obj["metadata"]["namespace"], obj["metadata"]["name"]).mkdir(
                parents=True, exist_ok=True
            )
        elif rt.kind_key == "v1/Namespace":
            sa_rt = kinds.lookup("v1", "ServiceAccount")
            if self.store.get(sa_rt.storage_key, obj["metadata"]["name"], "default") is None:
                await self.create(
                    sa_rt,
                    {"metadata": {"name": "default"}},
                    namespace=obj["metadata"]["name"],
                    user="system:serviceaccount:kube-system:service-account-controller",
                )

    # --- update / patch ------------------------------------------------------------------------
    async def update(
        self,
        rt: ResourceType,
        obj: dict,
        *,
        subresource: str | None = None,
        dry_run: bool = False,
        user: str = SYSTEM_USER,
        namespace: str | None = None,
        field_manager: str | None = None,
        field_validation: str = "Ignore",
        warnings: list[str] | None = None,
    ) -> dict:
        obj = self._check_type(rt, copy.deepcopy(obj))
        meta = obj.setdefault("metadata", {})
        name = meta.get("name")
        if not name:
            raise bad_request("name is required for an update (metadata.name)")
        ns = self._namespace(rt, namespace or meta.get("namespace"))
        if rt.namespaced and namespace and meta.get("namespace") and meta["namespace"] != namespace:
            raise bad_request("the namespace of the provided object does not match the namespace sent on the request")
        old = self.store.get(rt.storage_key, ns, name)
        if old is None:
            raise not_found(rt, name)
        if meta.get("resourceVersion") and meta["resourceVersion"] != old["metadata"]["resourceVersion"]:
            raise conflict(rt, name)
        obj = prune(rt, obj, field_validation, warnings)
        return await self._write_update(
            rt, old, obj, subresource=subresource, dry_run=dry_run, user=user, manager=field_manager or user
        )

    async def _write_update(
        self,
        rt: ResourceType,
        old: dict,
        new: dict,
        *,
        subresource: str | None,
        dry_run: bool,
        user: str,
        manager: str,
        applied: bool = False,
    ) -> dict:
        """Common tail of update and patch: keep what the client may not change, admit, store."""
        new = self._merge_subresource(rt, old, new, subresource)
        meta = new.setdefault("metadata", {})
        for key in ("name", "namespace", *_SERVER_META):
            if key in old["metadata"]:
                meta[key] = old["metadata"][key]
            else:
                meta.pop(key, None)
        if not applied:
            meta["managedFields"] = old["metadata"].get("managedFields", [])
        if subresource is None:
            self._server_defaults(rt, new, old)
            ctx = AdmissionContext("UPDATE", user, self, self.settings, rt, dry_run)
            await admit(rt, new, old, ctx)
        if "generation" in meta and _spec_part(new) != _spec_part(old):
            meta["generation"] = int(meta["generation"]) + 1
        if not applied:
            fieldmanager.record_update(rt, old, new, manager, subresource)
        meta["resourceVersion"] = old["metadata"]["resourceVersion"]
        if self._same(old, new):
            return copy.deepcopy(old)  # a no-op write changes nothing, not even the resourceVersion
        if dry_run:
            return new
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            return await self._remove(rt, new)
        stored = self.store.write(rt.storage_key, new, "MODIFIED", prev=old)
        # Committed, and no watcher has run yet: this is the moment a waiter can first learn of it.
        transitions.record(self.settings.transitions_log_path, old, stored, time.time())
        return copy.deepcopy(stored)

    @staticmethod
    def _same(old: dict, new: dict) -> bool:
        def strip(o: dict) -> dict:
            o = copy.deepcopy(o)
            for entry in o.get("metadata", {}).get("managedFields") or []:
                entry.pop("time", None)
            return o

        return strip(old) == strip(new)

    @staticmethod
    def _merge_subresource(rt: ResourceType, old: dict, new: dict, subresource: str | None) -> dict:
        if subresource == "status":
            merged = copy.deepcopy(old)
            if "status" in new:
                merged["status"] = new["status"]
            else:
                merged.pop("status", None)
            return merged
        if subresource is not None:
            raise bad_request(f"subresource {subresource} cannot be written")
        if rt.has_status:
            if "status" in old:
                new["status"] = copy.deepcopy(old["status"])
            else:
                new.pop("status", None)
        return new

    async def patch(
        self,
        rt: ResourceType,
        name: str,
        patch: Any,
        patch_type: str,
        *,
        namespace: str | None = None,
        subresource: str | None = None,
        dry_run: bool = False,
        field_manager: str | None = None,
        force: bool = False,
        user: str = SYSTEM_USER,
        field_validation: str = "Ignore",
        warnings: list[str] | None = None,
    ) -> dict:
        ns = self._namespace(rt, namespace)
        old = self.store.get(rt.storage_key, ns, name)
        if patch_type == "apply":
            return await self._apply(
                rt,
                name,
                ns,
                old,
                patch,
                subresource=subresource,
                dry_run=dry_run,
                field_manager=field_manager,
                force=force,
                user=user,
                field_validation=field_validation,
                warnings=warnings,
            )
        if old is None:
            raise not_found(rt, name)
        if patch_type == "merge":
            if not isinstance(patch, dict):
                raise bad_request("a merge patch must be a JSON object")
            new = merge_patch(old, patch)
        elif patch_type == "json":
            new = json_patch(old, patch)
        elif patch_type == "strategic":
            if rt.is_custom:
                raise unsupported_media_type("application/strategic-merge-patch+json")
            if not isinstance(patch, dict):
                raise bad_request("a strategic merge patch must be a JSON object")
            new = strategic_merge(old, patch, rt.schema)
        else:
            raise bad_request(f"unknown patch type {patch_type!r}")
        if not isinstance(new, dict):
            raise bad_request("the patched object is not a JSON object")
        new = self._check_type(rt, new)
        new_meta = new.get("metadata") or {}
        if new_meta.get("name") != name or (rt.namespaced and new_meta.get("namespace") != ns):
            raise bad_request("metadata.name and metadata.namespace cannot be changed by a patch")
        if new_meta.get("resourceVersion") != old["metadata"]["resourceVersion"]:
            raise conflict(rt, name)  # the patch carried a stale resourceVersion precondition
        new = prune(rt, new, field_validation, warnings)
        manager = field_manager or user
        return await self._write_update(
            rt, old, new, subresource=subresource, dry_run=dry_run, user=user, manager=manager
        )

    async def _apply(
        self,
        rt: ResourceType,
        name: str,
        ns: str,
        old: dict | None,
        config: Any,
        *,
        subresource: str | None,
        dry_run: bool,
        field_manager: str | None,
        force: bool,
        user: str,
        field_validation: str,
        warnings: list[str] | None,
    ) -> dict:
        if not field_manager:
            raise bad_request("PATCH, application/apply-patch+yaml requires fieldManager to be set")
        if not isinstance(config, dict):
            raise bad_request("the apply configuration must be an object")
        config = self._check_type(rt, copy.deepcopy(config))
        meta = config.setdefault("metadata", {})
        if meta.get("name") and meta["name"] != name:
            raise bad_request("the name of the object does not match the name on the URL")
        meta["name"] = name
        if rt.namespaced:
            meta["namespace"] = ns
        config = prune(rt, config, field_validation, warnings)
        if old is None:
            if subresource:
                raise not_found(rt, name)
            created = fieldmanager.apply(rt, None, config, field_manager, force=force)
            entries = created["metadata"].pop("managedFields", [])
            return await self.create(
                rt,
                created,
                namespace=ns or None,
                dry_run=dry_run,
                user=user,
                field_manager=field_manager,
                managed_fields=entries,
            )
        if meta.get("resourceVersion") and meta["resourceVersion"] != old["metadata"]["resourceVersion"]:
            raise conflict(rt, name)
        meta.pop("resourceVersion", None)
        merged = fieldmanager.apply(rt, old, config, field_manager, force=force, subresource=subresource)
        return await self._write_update(
            rt, old, merged, subresource=subresource, dry_run=dry_run, user=user, manager=field_manager, applied=True
        )

    # --- delete --------------------------------------------------------------------------------
    async def delete(
        self,
        rt: ResourceType,
        name: str,
        *,
        namespace: str | None = None,
        propagation: str = "Background",
        dry_run: bool = False,
        preconditions: dict | None = None,
    ) -> dict:
        ns = self._namespace(rt, namespace)
        obj = self.store.get(rt.storage_key, ns, name)
        if obj is None:
            raise not_found(rt, name)
        pre = preconditions or {}
        if pre.get("uid") and pre["uid"] != obj["metadata"]["uid"]:
            raise conflict(
                rt,
                name,
                f"Precondition failed: UID in precondition: {pre['uid']}, UID in object meta: {obj['metadata']['uid']}",
            )
        if pre.get("resourceVersion") and pre["resourceVersion"] != obj["metadata"]["resourceVersion"]:
            raise conflict(rt, name)
        if propagation not in ("Background", "Foreground", "Orphan"):
            raise bad_request(f"propagationPolicy: Unsupported value: {propagation!r}")
        if dry_run:
            return obj
        meta = obj["metadata"]
        if rt.kind_key == "v1/Namespace":
            return await self._delete_namespace(obj)
        if propagation == "Orphan":
            await self._orphan_dependents(meta["uid"])
        if propagation == "Foreground":
            finalizers = meta.setdefault("finalizers", [])
            if "foregroundDeletion" not in finalizers:
                finalizers.append("foregroundDeletion")
        if meta.get("finalizers"):
            if not meta.get("deletionTimestamp"):
                meta["deletionTimestamp"] = fieldmanager.now()
                meta["deletionGracePeriodSeconds"] = 0
                if "generation" in meta:
                    meta["generation"] = int(meta["generation"]) + 1
            prev = self.store.get(rt.storage_key, ns, name)
            obj = self.store.write(rt.storage_key, obj, "MODIFIED", prev=prev)
            if propagation == "Foreground":
                await self._delete_dependents(meta["uid"], "Background")
                await self._finish_foreground(rt, obj)
            return copy.deepcopy(self.store.get(rt.storage_key, ns, name) or obj)
        return await self._remove(rt, obj)

    async def _remove(self, rt: ResourceType, obj: dict) -> dict:
        """Really delete (the object has no finalizers left), then collect what it owned."""
        prev = copy.deepcopy(obj)
        removed = self.store.write(rt.storage_key, obj, "DELETED", prev=prev)
        if rt.kind_key == "v1/PersistentVolumeClaim":
            await self._reclaim_volume(removed)
        await self._delete_dependents(removed["metadata"]["uid"], "Background")
        await self._after_remove(removed)
        return copy.deepcopy(removed)

    async def _reclaim_volume(self, pvc: dict) -> None:
        """The claim's data goes with it, as with the reclaim policy Delete of a default StorageClass."""
        directory = self.settings.volume_dir(pvc["metadata"]["namespace"], pvc["metadata"]["name"])
        await asyncio.to_thread(shutil.rmtree, directory, True)

    def _dependents(self, uid: str) -> list[tuple[ResourceType, dict]]:
        found = []
        for storage_key, obj in self.store.all_objects():
            if _owned_by(obj, uid):
                group, _, plural = storage_key.partition("/")
                rt = next((r for r in kinds.ALL if r.group == group and r.plural == plural), None)
                if rt is not None:
                    found.append((rt, obj))
        return found

    async def _delete_dependents(self, uid: str, propagation: str) -> None:
        for rt, dep in self._dependents(uid):
            if dep["metadata"].get("deletionTimestamp"):
                continue
            try:
                await self.delete(
                    rt, dep["metadata"]["name"], namespace=dep["metadata"].get("namespace"), propagation=propagation
                )
            except ApiStatusError as error:
                if error.code != 404:
                    log.warning("garbage collection of %s failed: %s", dep["metadata"]["name"], error.message)

    async def _orphan_dependents(self, uid: str) -> None:
        for rt, dep in self._dependents(uid):
            prev = copy.deepcopy(dep)
            refs = [r for r in dep["metadata"].get("ownerReferences") or [] if r.get("uid") != uid]
            if refs:
                dep["metadata"]["ownerReferences"] = refs
            else:
                dep["metadata"].pop("ownerReferences", None)
            self.store.write(rt.storage_key, dep, "MODIFIED", prev=prev)

    async def _finish_foreground(self, rt: ResourceType, owner: dict) -> None:
        """Drop the foregroundDeletion finalizer once no dependent is left (then the owner goes)."""
        meta = owner["metadata"]
        if "foregroundDeletion" not in (meta.get("finalizers") or []) or self._dependents(meta["uid"]):
            return
        current = self.store.get(rt.storage_key, meta.get("namespace", ""), meta["name"])
        if current is None:
            return
        prev = copy.deepcopy(current)
        current["metadata"]["finalizers"] = [f for f in current["metadata"]["finalizers"] if f != "foregroundDeletion"]
        if not current["metadata"]["finalizers"]:
            current["metadata"].pop("finalizers")
            await self._remove(rt, current)
        else:
            self.store.write(rt.storage_key, current, "MODIFIED", prev=prev)

    async def _after_remove(self, removed: dict) -> None:
        # An owner waiting in foreground deletion may now be free to go.
        for ref in removed["metadata"].get("ownerReferences") or []:
            for rt in kinds.ALL:
                if rt.kind == ref.get("kind") and rt.api_version == ref.get("apiVersion"):
                    owner = self.store.get(rt.storage_key, removed["metadata"].get("namespace", ""), ref["name"])
                    if owner is not None and owner["metadata"]["uid"] == ref.get("uid"):
                        await self._finish_foreground(rt, owner)
        # A terminating namespace goes once it is empty.
        ns = removed["metadata"].get("namespace")
        if ns:
            namespace = self.store.get(NAMESPACE_RT.storage_key, "", ns)
            if (
                namespace
                and namespace["metadata"].get("deletionTimestamp")
                and not any(True for _ in self.store.all_objects(ns))
            ):
                self.store.write(NAMESPACE_RT.storage_key, namespace, "DELETED", prev=copy.deepcopy(namespace))

    async def _delete_namespace(self, namespace: dict) -> dict:
        name = namespace["metadata"]["name"]
        if not namespace["metadata"].get("deletionTimestamp"):
            prev = copy.deepcopy(namespace)
            namespace["metadata"]["deletionTimestamp"] = fieldmanager.now()
            namespace["status"] = {"phase": "Terminating"}
            namespace = self.store.write(NAMESPACE_RT.storage_key, namespace, "MODIFIED", prev=prev)
        for storage_key, obj in list(self.store.all_objects(name)):
            group, _, plural = storage_key.partition("/")
            rt = next((r for r in kinds.ALL if r.group == group and r.plural == plural), None)
            if rt is not None and not obj["metadata"].get("deletionTimestamp"):
                try:
                    await self.delete(rt, obj["metadata"]["name"], namespace=name)
                except ApiStatusError as error:
                    if error.code != 404:
                        raise
        current = self.store.get(NAMESPACE_RT.storage_key, "", name)
        if current is not None and not any(True for _ in self.store.all_objects(name)):
            return self.store.write(NAMESPACE_RT.storage_key, current, "DELETED", prev=copy.deepcopy(current))
        return current or namespace

    # --- watch ---------------------------------------------------------------------------------
    async def watch(
        self,
        rt: ResourceType,
        *,
        namespace: str | None = None,
        resource_version: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        bookmarks: bool = False,
    ) -> AsyncIterator[dict]:
        """Events for one kind: history after `resource_version` (or the current objects as ADDED when
        it is empty or "0"), then live changes. 410 Expired if that history was compacted."""
        selector = Selector.parse(rt, label_selector, field_selector)
        ns = namespace if rt.namespaced and namespace else None
        queue = self.store.subscribe()  # subscribe first: nothing written from here on is missed
        try:
            # Take the snapshot (and the version it stands for) before yielding anything: writes made
            # while the consumer handles these events arrive through the queue.
            if resource_version in (None, "", "0"):
                initial = [
                    {"type": "ADDED", "object": obj}
                    for obj in self.store.list(rt.storage_key, ns)
                    if selector.matches(obj)
                ]
                last_rv = self.store.resource_version
            else:
                try:
                    start = int(resource_version)
                except ValueError:
                    raise bad_request(f"invalid resource version: {resource_version}") from None
                history = self.store.events_since(start)
                initial = [t for t in (self._translate(rt, ns, selector, e) for e in history) if t]
                last_rv = max([start, *(e.rv for e in history)])
            for event in initial:
                yield event
            while True:
                timeout = self.settings.bookmark_interval if bookmarks else None
                try:
                    event = await asyncio.wait_for(queue.get(), timeout)
                except TimeoutError:
                    rv = str(self.store.resource_version)
                    yield {
                        "type": "BOOKMARK",
                        "object": {"kind": rt.kind, "apiVersion": rt.api_version, "metadata": {"resourceVersion": rv}},
                    }
                    continue
                if event.rv <= last_rv:
                    continue
                translated = self._translate(rt, ns, selector, event)
                if translated:
                    yield translated
        finally:
            self.store.unsubscribe(queue)

    @staticmethod
    def _translate(rt: ResourceType, ns: str | None, selector: Selector, event: Event) -> dict | None:
        """The watch event a client of this kind/namespace/selector sees for a store event, if any."""
        if event.kind_key != rt.storage_key or (ns is not None and event.namespace != ns):
            return None
        now_matches = event.type != "DELETED" and selector.matches(event.obj)
        before_matches = event.prev is not None and selector.matches(event.prev)
        if event.type == "DELETED":
            return {"type": "DELETED", "object": event.obj} if before_matches or selector.matches(event.obj) else None
        if now_matches and (event.type == "ADDED" or before_matches):
            return {"type": event.type, "object": event.obj}
        if now_matches:
            return {"type": "ADDED", "object": event.obj}  # it started matching the selector
        if before_matches:
            return {"type": "DELETED", "object": event.obj}  # it stopped matching
        return None

    # --- helpers for the server and controllers -------------------------------------------------
    async def seed(self, objects: list[dict]) -> None:
        """Create each object unless it exists (startup: namespaces, Knative's ConfigMaps, …)."""
        for obj in objects:
            rt = kinds.lookup(obj["apiVersion"], obj["kind"])
            meta = obj.get("metadata", {})
            if self.store.get(rt.storage_key, meta.get("namespace", "") if rt.namespaced else "", meta["name"]):
                continue
            await self.create(rt, obj, namespace=meta.get("namespace"), user="system:apiserver")

    async def seed_registered(self) -> None:
        await self.seed(base_objects())
        for factory in _SEEDS:
            objects = factory(self.settings)
            if inspect.isawaitable(objects):
                objects = await objects
            await self.seed(objects)

    async def record_event(
        self,
        involved: dict,
        reason: str,
        message: str,
        *,
        type: str = "Normal",
        component: str = "knlab-sandbox",
    ) -> dict:
        """Create a v1 Event about `involved`, as controllers do."""
        meta = involved["metadata"]
        stamp = fieldmanager.now()
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta.get("namespace") or "default"},
            "involvedObject": {
                "apiVersion": involved.get("apiVersion"),
                "kind": involved.get("kind"),
                "name": meta["name"],
                "namespace": meta.get("namespace"),
                "uid": meta.get("uid"),
                "resourceVersion": meta.get("resourceVersion"),
            },
            "reason": reason,
            "message": message,
            "type": type,
            "source": {"component": component},
            "reportingComponent": component,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        }
        return await self.create(kinds.lookup("v1", "Event"), event, user=f"system:{component}")
