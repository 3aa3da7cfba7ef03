"""Decoding of Kubernetes protobuf request bodies for the built-in kinds kubectl creates.

kubectl's typed clients (`kubectl create configmap|secret|namespace|serviceaccount|service|role|
rolebinding|clusterrole|clusterrolebinding`) send
`application/vnd.kubernetes.protobuf`: the magic `k8s\\0` and a `runtime.Unknown` envelope around
the object's protobuf encoding. Responses are always JSON (every client also accepts it). The
tables below carry the field numbers of k8s.io/api/core/v1, rbac/v1 and apimachinery's ObjectMeta for the
fields those commands send; other kinds get a clear 415.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

from .errors import ApiStatusError

MAGIC = b"k8s\x00"
CONTENT_TYPE = "application/vnd.kubernetes.protobuf"

# Field tables: number → (json name, type). Types: str, bytes, int, bool, ptrbool (kept when false),
# map (string→string), bmap (string→bytes, base64 in JSON), strs (repeated string), time,
# intstr, or a nested table (message) / [table] (repeated message).
TIME = "time"
OWNER_REFERENCE = {
    1: ("kind", "str"),
    3: ("name", "str"),
    4: ("uid", "str"),
    5: ("apiVersion", "str"),
    6: ("controller", "ptrbool"),
    7: ("blockOwnerDeletion", "ptrbool"),
}
OBJECT_META = {
    1: ("name", "str"),
    2: ("generateName", "str"),
    3: ("namespace", "str"),
    4: ("selfLink", "str"),
    5: ("uid", "str"),
    6: ("resourceVersion", "str"),
    7: ("generation", "int"),
    8: ("creationTimestamp", TIME),
    9: ("deletionTimestamp", TIME),
    10: ("deletionGracePeriodSeconds", "int"),
    11: ("labels", "map"),
    12: ("annotations", "map"),
    13: ("ownerReferences", [OWNER_REFERENCE]),
    14: ("finalizers", "strs"),
}
OBJECT_REFERENCE = {
    1: ("kind", "str"),
    2: ("namespace", "str"),
    3: ("name", "str"),
    4: ("uid", "str"),
    5: ("apiVersion", "str"),
    6: ("resourceVersion", "str"),
    7: ("fieldPath", "str"),
}
SERVICE_PORT = {
    1: ("name", "str"),
    2: ("protocol", "str"),
    3: ("port", "int"),
    4: ("targetPort", "intstr"),
    5: ("nodePort", "int"),
    6: ("appProtocol", "str"),
}
SERVICE_SPEC = {
    1: ("ports", [SERVICE_PORT]),
    2: ("selector", "map"),
    3: ("clusterIP", "str"),
    4: ("type", "str"),
    5: ("externalIPs", "strs"),
    7: ("sessionAffinity", "str"),
    8: ("loadBalancerIP", "str"),
    9: ("loadBalancerSourceRanges", "strs"),
    10: ("externalName", "str"),
    11: ("externalTrafficPolicy", "str"),
    12: ("healthCheckNodePort", "int"),
    13: ("publishNotReadyAddresses", "bool"),
    17: ("ipFamilyPolicy", "str"),
    18: ("clusterIPs", "strs"),
    19: ("ipFamilies", "strs"),
    20: ("allocateLoadBalancerNodePorts", "ptrbool"),
    21: ("loadBalancerClass", "str"),
    22: ("internalTrafficPolicy", "str"),
}
POLICY_RULE = {
    1: ("verbs", "strs"),
    2: ("apiGroups", "strs"),
    3: ("resources", "strs"),
    4: ("resourceNames", "strs"),
    5: ("nonResourceURLs", "strs"),
}
SUBJECT = {1: ("kind", "str"), 2: ("apiGroup", "str"), 3: ("name", "str"), 4: ("namespace", "str")}
ROLE_REF = {1: ("apiGroup", "str"), 2: ("kind", "str"), 3: ("name", "str")}
RESOURCE_ATTRIBUTES = {
    1: ("namespace", "str"),
    2: ("verb", "str"),
    3: ("group", "str"),
    4: ("version", "str"),
    5: ("resource", "str"),
    6: ("subresource", "str"),
    7: ("name", "str"),
}
NON_RESOURCE = {1: ("path", "str"), 2: ("verb", "str")}
KINDS: dict[str, dict] = {
    "ConfigMap": {
        1: ("metadata", OBJECT_META),
        2: ("data", "map"),
        3: ("binaryData", "bmap"),
        4: ("immutable", "ptrbool"),
    },
    "Secret": {
        1: ("metadata", OBJECT_META),
        2: ("data", "bmap"),
        3: ("type", "str"),
        4: ("stringData", "map"),
        5: ("immutable", "ptrbool"),
    },
    "Namespace": {
        1: ("metadata", OBJECT_META),
        2: ("spec", {1: ("finalizers", "strs")}),
        3: ("status", {1: ("phase", "str")}),
    },
    "ServiceAccount": {
        1: ("metadata", OBJECT_META),
        2: ("secrets", [OBJECT_REFERENCE]),
        3: ("imagePullSecrets", [{1: ("name", "str")}]),
        4: ("automountServiceAccountToken", "ptrbool"),
    },
    "Service": {1: ("metadata", OBJECT_META), 2: ("spec", SERVICE_SPEC), 3: ("status", {})},
    # k8s.io/api/rbac/v1 (kubectl create role|clusterrole|rolebinding|clusterrolebinding)
    "Role": {1: ("metadata", OBJECT_META), 2: ("rules", [POLICY_RULE])},
    "ClusterRole": {1: ("metadata", OBJECT_META), 2: ("rules", [POLICY_RULE])},
    "RoleBinding": {1: ("metadata", OBJECT_META), 2: ("subjects", [SUBJECT]), 3: ("roleRef", ROLE_REF)},
    "ClusterRoleBinding": {1: ("metadata", OBJECT_META), 2: ("subjects", [SUBJECT]), 3: ("roleRef", ROLE_REF)},
    # k8s.io/api/authorization/v1 (kubectl auth can-i)
    "SelfSubjectAccessReview": {
        1: ("metadata", OBJECT_META),
        2: ("spec", {1: ("resourceAttributes", RESOURCE_ATTRIBUTES), 2: ("nonResourceAttributes", NON_RESOURCE)}),
    },
}

API_VERSIONS = {
    kind: "rbac.authorization.k8s.io/v1"
    if kind.endswith(("Role", "RoleBinding"))
    else "authorization.k8s.io/v1"
    if kind.endswith("AccessReview")
    else "v1"
    for kind in KINDS
}


def _unsupported(message: str) -> ApiStatusError:
    return ApiStatusError(415, "UnsupportedMediaType", message)


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise _unsupported("truncated protobuf body")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return result, pos


def _fields(data: bytes) -> list[tuple[int, int | bytes]]:
    """(field number, value) pairs of one message; lengths-delimited values stay bytes."""
    out: list[tuple[int, int | bytes]] = []
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
            out.append((number, value))
        elif wire == 2:
            length, pos = _varint(data, pos)
            out.append((number, data[pos : pos + length]))
            pos += length
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        else:
            raise _unsupported(f"unsupported protobuf wire type {wire}")
    return out


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _time(data: bytes) -> str | None:
    seconds = next((_signed(v) for n, v in _fields(data) if n == 1 and isinstance(v, int)), 0)
    if not seconds:
        return None
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _map_entry(data: bytes, value_bytes: bool) -> tuple[str, str]:
    key, value = "", b""
    for number, raw in _fields(data):
        if number == 1 and isinstance(raw, bytes):
            key = raw.decode()
        elif number == 2 and isinstance(raw, bytes):
            value = raw
    return key, base64.b64encode(value).decode() if value_bytes else value.decode()


def _intstr(data: bytes) -> int | str:
    kind, int_value, str_value = 0, 0, ""
    for number, raw in _fields(data):
        if number == 1 and isinstance(raw, int):
            kind = raw
        elif number == 2 and isinstance(raw, int):
            int_value = _signed(raw)
        elif number == 3 and isinstance(raw, bytes):
            str_value = raw.decode()
    return str_value if kind == 1 else int_value


def decode_message(data: bytes, table: dict) -> dict:
    obj: dict[str, Any] = {}
    for number, raw in _fields(data):
        if number not in table:
            continue
        name, kind = table[number]
        if isinstance(kind, dict):
            value = decode_message(raw, kind) if isinstance(raw, bytes) else {}
            if value:
                obj[name] = value
        elif isinstance(kind, list):
            obj.setdefault(name, []).append(decode_message(raw, kind[0]) if isinstance(raw, bytes) else {})
        elif kind == "str" and isinstance(raw, bytes) and raw:
            obj[name] = raw.decode()
        elif kind == "strs" and isinstance(raw, bytes):
            obj.setdefault(name, []).append(raw.decode())
        elif kind == "int" and isinstance(raw, int) and raw:
            obj[name] = _signed(raw)
        elif kind == "bool" and isinstance(raw, int) and raw:
            obj[name] = True
        elif kind == "ptrbool" and isinstance(raw, int):
            obj[name] = bool(raw)
        elif kind in ("map", "bmap") and isinstance(raw, bytes):
            key, value = _map_entry(raw, kind == "bmap")
            obj.setdefault(name, {})[key] = value
        elif kind == TIME and isinstance(raw, bytes):
            stamp = _time(raw)
            if stamp:
                obj[name] = stamp
        elif kind == "intstr" and isinstance(raw, bytes):
            obj[name] = _intstr(raw)
    return obj


def decode(body: bytes) -> dict:
    """The JSON-shaped object inside a Kubernetes protobuf body; 415 for what this sandbox cannot read."""
    if not body.startswith(MAGIC):
        raise _unsupported("protobuf body without the k8s magic prefix")
    api_version = kind = ""
    raw = b""
    for number, value in _fields(body[len(MAGIC) :]):
        if number == 1 and isinstance(value, bytes):
            for sub, text in _fields(value):
                if sub == 1 and isinstance(text, bytes):
                    api_version = text.decode()
                elif sub == 2 and isinstance(text, bytes):
                    kind = text.decode()
        elif number == 2 and isinstance(value, bytes):
            raw = value
    table = KINDS.get(kind) if API_VERSIONS.get(kind) == api_version else None
    if table is None:
        raise _unsupported(
            f"the knlab sandbox reads protobuf only for {', '.join(f'{API_VERSIONS[k]} {k}' for k in KINDS)}, "
            f"not {api_version} {kind}; send JSON"
        )
    return {"apiVersion": api_version, "kind": kind, **decode_message(raw, table)}
