"""Admission: generic object checks and the registry of per-kind defaulters and validators.

`ResourceAPI` runs admission on create, update and patch (never on `/status` writes or deletes):
first every registered defaulter for the kind (mutating admission), then the generic checks below
(what kube-apiserver validates itself), then every registered validator (validating admission).
knative_admission.py and tekton_admission.py plug in with `register(...)` at import time.
"""

from __future__ import annotations

import base64
import binascii
import inspect
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import ApiStatusError, bad_request, invalid
from .kinds import ResourceType

if TYPE_CHECKING:
    from .resources import ResourceAPI
    from .settings import Settings

MAX_CONFIG_SIZE = 1024 * 1024  # ConfigMaps and Secrets (data + binaryData)
MAX_ANNOTATIONS_SIZE = 256 * 1024

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
CONFIG_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")

# Kinds whose names must be DNS-1123 labels (they become DNS names); the rest are subdomains.
LABEL_NAMED_KINDS = {"v1/Namespace", "v1/Service"}

Hook = Callable[[dict, dict | None, "AdmissionContext"], Awaitable[None] | None]


@dataclass
class AdmissionContext:
    operation: str  # "CREATE" | "UPDATE"
    user: str
    api: ResourceAPI
    settings: Settings
    rt: ResourceType | None = None
    dry_run: bool = False


@dataclass
class _Hooks:
    defaulters: list[Hook] = field(default_factory=list)
    validators: list[Hook] = field(default_factory=list)


_REGISTRY: dict[str, _Hooks] = {}


def register(kind_key: str, *, default: Hook | None = None, validate: Hook | None = None) -> None:
    """Add a defaulter and/or validator for a kind, e.g. `register("tekton.dev/v1/TaskRun", default=f)`.

    `default(obj, old, ctx)` mutates `obj` in place; `validate(obj, old, ctx)` raises ApiStatusError.
    `old` is None on CREATE. Either may be a coroutine function.
    """
    hooks = _REGISTRY.setdefault(kind_key, _Hooks())
    if default is not None and default not in hooks.defaulters:
        hooks.defaulters.append(default)
    if validate is not None and validate not in hooks.validators:
        hooks.validators.append(validate)


async def _call(hook: Hook, obj: dict, old: dict | None, ctx: AdmissionContext) -> None:
    result = hook(obj, old, ctx)
    if inspect.isawaitable(result):
        await result


async def admit(rt: ResourceType, obj: dict, old: dict | None, ctx: AdmissionContext) -> None:
    """Run defaulters, the generic checks, then validators; raises ApiStatusError to reject."""
    hooks = _REGISTRY.get(rt.kind_key, _Hooks())
    for hook in hooks.defaulters:
        await _call(hook, obj, old, ctx)
    validate_generic(rt, obj, old)
    for hook in hooks.validators:
        await _call(hook, obj, old, ctx)


# --- generic checks (what kube-apiserver itself validates) ------------------------------------


def _name_causes(rt: ResourceType, name: str) -> list[tuple[str, str]]:
    if rt.group == "rbac.authorization.k8s.io":
        # RBAC names are path segments (ValidateRBACName): "system:discovery" is fine.
        if name in (".", ".."):
            return [("metadata.name", f"Invalid value: \"{name}\": may not be '{name}'")]
        for bad in ("/", "%"):
            if bad in name:
                return [("metadata.name", f"Invalid value: \"{name}\": may not contain '{bad}'")]
        return []
    if rt.kind_key in LABEL_NAMED_KINDS:
        if len(name) > 63 or not DNS1123_LABEL.match(name):
            return [
                (
                    "metadata.name",
                    f'Invalid value: "{name}": a lowercase RFC 1123 label must consist of lower case alphanumeric '
                    "characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  "
                    "or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
                )
            ]
        return []
    if len(name) > 253 or not DNS1123_SUBDOMAIN.match(name):
        return [
            (
                "metadata.name",
                f'Invalid value: "{name}": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric '
                "characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', "
                "regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
            )
        ]
    return []


def _qualified_key_causes(path: str, key: str) -> list[tuple[str, str]]:
    prefix, _, name = key.rpartition("/")
    problems = []
    if prefix and (len(prefix) > 253 or not DNS1123_SUBDOMAIN.match(prefix)):
        problems.append("prefix part must be a lowercase RFC 1123 subdomain")
    if not name or len(name) > 63 or not QUALIFIED_NAME.match(name):
        problems.append(
            "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
            "alphanumeric character"
        )
    return [(path, f'Invalid value: "{key}": {p}') for p in problems]


def _metadata_causes(rt: ResourceType, meta: dict) -> list[tuple[str, str]]:
    causes: list[tuple[str, str]] = []
    name = meta.get("name")
    if not name:
        causes.append(("metadata.name", "Required value: name or generateName is required"))
    else:
        causes += _name_causes(rt, name)
    labels = meta.get("labels") or {}
    for key, value in labels.items():
        causes += _qualified_key_causes("metadata.labels", key)
        if not isinstance(value, str) or len(value) > 63 or not LABEL_VALUE.match(value):
            causes.append(
                (
                    "metadata.labels",
                    f'Invalid value: "{value}": a valid label must be an empty string or consist of alphanumeric '
                    "characters, '-', '_' or '.', and must start and end with an alphanumeric character",
                )
            )
    annotations = meta.get("annotations") or {}
    for key in annotations:
        causes += _qualified_key_causes("metadata.annotations", key)
    if sum(len(k) + len(str(v)) for k, v in annotations.items()) > MAX_ANNOTATIONS_SIZE:
        causes.append(("metadata.annotations", f"Too long: must have at most {MAX_ANNOTATIONS_SIZE} bytes"))
    return causes


def _config_key_causes(field_name: str, keys: list[str]) -> list[tuple[str, str]]:
    causes = []
    for key in keys:
        if len(key) > 253 or not CONFIG_KEY.match(key):
            causes.append(
                (
                    f"{field_name}[{key}]",
                    f"Invalid value: \"{key}\": a valid config key must consist of alphanumeric characters, '-', "
                    "'_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is "
                    "'[-._a-zA-Z0-9]+')",
                )
            )
    return causes


def _immutable_causes(obj: dict, old: dict | None, fields: tuple[str, ...]) -> list[tuple[str, str, str]]:
    if not old or not old.get("immutable"):
        return []
    causes = []
    message = "Forbidden: field is immutable when `immutable` is set"
    for name in fields:
        if (obj.get(name) or {}) != (old.get(name) or {}):
            causes.append((name, message, "FieldValueForbidden"))
    if not obj.get("immutable"):
        causes.append(("immutable", message, "FieldValueForbidden"))
    return causes


def _configmap_causes(obj: dict, old: dict | None) -> list[tuple[str, ...]]:
    data = obj.get("data") or {}
    binary = obj.get("binaryData") or {}
    causes: list[tuple[str, ...]] = []
    causes += _config_key_causes("data", list(data))
    causes += _config_key_causes("binaryData", list(binary))
    for key in set(data) & set(binary):
        causes.append((f"data[{key}]", f'Invalid value: "{key}": duplicate of key present in binaryData'))
    size = sum(len(k) + len(str(v).encode()) for k, v in data.items())
    size += sum(len(k) + len(_b64decode(v, f"binaryData[{k}]")) for k, v in binary.items())
    if size > MAX_CONFIG_SIZE:
        causes.append(("[]", f"Too long: must have at most {MAX_CONFIG_SIZE} bytes"))
    causes += _immutable_causes(obj, old, ("data", "binaryData"))
    return causes


def _b64decode(value: Any, path: str) -> bytes:
    try:
        return base64.b64decode(str(value), validate=True)
    except (binascii.Error, ValueError) as exc:
        # Real servers fail to decode the body before validation: a 400, not a 422.
        raise bad_request(f"illegal base64 data in {path}: {exc}") from None


def normalize_secret(obj: dict) -> None:
    """Merge `stringData` into `data` (base64) as the API server does on every write."""
    string_data = obj.pop("stringData", None) or {}
    if string_data:
        data = obj.setdefault("data", {})
        for key, value in string_data.items():
            data[key] = base64.b64encode(str(value).encode()).decode()
    obj.setdefault("type", "Opaque")


def _secret_causes(obj: dict, old: dict | None) -> list[tuple[str, ...]]:
    data = obj.get("data") or {}
    causes: list[tuple[str, ...]] = list(_config_key_causes("data", list(data)))
    size = sum(len(k) + len(_b64decode(v, f"data[{k}]")) for k, v in data.items())
    if size > MAX_CONFIG_SIZE:
        causes.append(("data", f"Too long: must have at most {MAX_CONFIG_SIZE} bytes"))
    if old is not None and old.get("type", "Opaque") != obj.get("type", "Opaque"):
        causes.append(("type", f'Invalid value: "{obj.get("type")}": field is immutable'))
    causes += _immutable_causes(obj, old, ("data",))
    return causes


def validate_generic(rt: ResourceType, obj: dict, old: dict | None) -> None:
    meta = obj.get("metadata") or {}
    causes: list[tuple[str, ...]] = list(_metadata_causes(rt, meta))
    if rt.kind_key == "v1/ConfigMap":
        causes += _configmap_causes(obj, old)
    elif rt.kind_key == "v1/Secret":
        causes += _secret_causes(obj, old)
    if causes:
        raise invalid(rt, meta.get("name") or meta.get("generateName") or "", causes)


__all__ = ["AdmissionContext", "ApiStatusError", "admit", "normalize_secret", "register", "validate_generic"]
