"""Label and field selectors, parsed once and matched against objects."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from .errors import bad_request
from .kinds import ResourceType

_REQUIREMENT = re.compile(
    r"""\s*(?:(?P<not>!)\s*(?P<nkey>[A-Za-z0-9_./-]+)"""
    r"""|(?P<key>[A-Za-z0-9_./-]+)\s*(?:(?P<op>==|!=|=)\s*(?P<value>[A-Za-z0-9_.-]*)"""
    r"""|\s+(?P<setop>in|notin)\s*\((?P<values>[^)]*)\)|))\s*(?:,|$)"""
)


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!"
    values: tuple[str, ...] = ()

    def matches(self, labels: dict[str, str]) -> bool:
        value = labels.get(self.key)
        if self.op == "exists":
            return self.key in labels
        if self.op == "!":
            return self.key not in labels
        if self.op in ("=", "in"):
            return value is not None and value in self.values
        # "!=" and "notin" also match objects without the label, as in Kubernetes.
        return value is None or value not in self.values


def parse_label_selector(text: str | None) -> list[Requirement]:
    if not text:
        return []
    requirements = []
    pos = 0
    while pos < len(text):
        match = _REQUIREMENT.match(text, pos)
        if not match or match.end() == pos:
            raise bad_request(f'unable to parse requirement: found unexpected input in label selector "{text}"')
        pos = match.end()
        if match["nkey"]:
            requirements.append(Requirement(match["nkey"], "!"))
        elif match["op"]:
            op = "!=" if match["op"] == "!=" else "="
            requirements.append(Requirement(match["key"], op, (match["value"],)))
        elif match["setop"]:
            values = tuple(v.strip() for v in match["values"].split(",") if v.strip())
            requirements.append(Requirement(match["key"], match["setop"], values))
        else:
            requirements.append(Requirement(match["key"], "exists"))
    return requirements


def _path_getter(*path: str) -> Callable[[dict], str]:
    def get(obj: dict) -> str:
        value = obj
        for part in path:
            value = value.get(part) if isinstance(value, dict) else None
        return "" if value is None else str(value)

    return get


# Field selectors every kind supports, plus the kind-specific ones the real server offers.
_COMMON_FIELDS = {
    "metadata.name": _path_getter("metadata", "name"),
    "metadata.namespace": _path_getter("metadata", "namespace"),
}
_KIND_FIELDS: dict[str, dict[str, Callable[[dict], str]]] = {
    "v1/Pod": {
        "status.phase": _path_getter("status", "phase"),
        "spec.nodeName": _path_getter("spec", "nodeName"),
        "spec.restartPolicy": _path_getter("spec", "restartPolicy"),
        "spec.serviceAccountName": _path_getter("spec", "serviceAccountName"),
        "status.podIP": _path_getter("status", "podIP"),
    },
    "v1/Secret": {"type": _path_getter("type")},
    "v1/Namespace": {"status.phase": _path_getter("status", "phase")},
    "v1/Event": {
        **{
            f"involvedObject.{f}": _path_getter("involvedObject", f)
            for f in ("kind", "namespace", "name", "uid", "apiVersion", "resourceVersion", "fieldPath")
        },
        "reason": _path_getter("reason"),
        "reportingComponent": _path_getter("reportingComponent"),
        "source": _path_getter("source", "component"),
        "type": _path_getter("type"),
    },
    "v1/PersistentVolumeClaim": {"spec.volumeName": _path_getter("spec", "volumeName")},
}


@dataclass(frozen=True)
class FieldRequirement:
    get: Callable[[dict], str]
    value: str
    negate: bool

    def matches(self, obj: dict) -> bool:
        return (self.get(obj) == self.value) != self.negate


def parse_field_selector(rt: ResourceType, text: str | None) -> list[FieldRequirement]:
    if not text:
        return []
    supported = {**_COMMON_FIELDS, **_KIND_FIELDS.get(rt.kind_key, {})}
    requirements = []
    for raw_part in text.split(","):
        part = raw_part.strip()
        if not part:
            continue
        match = re.fullmatch(r"([A-Za-z0-9_.]+)\s*(==|!=|=)\s*(.*)", part)
        if not match:
            raise bad_request(f"invalid selector: '{text}'; can't understand '{part}'")
        field, op, value = match.groups()
        if field not in supported:
            raise bad_request(f"field label not supported: {field}")
        requirements.append(FieldRequirement(supported[field], value, op == "!="))
    return requirements


@dataclass(frozen=True)
class Selector:
    labels: tuple[Requirement, ...] = ()
    fields: tuple[FieldRequirement, ...] = ()

    @classmethod
    def parse(cls, rt: ResourceType, label_selector: str | None, field_selector: str | None) -> Selector:
        return cls(tuple(parse_label_selector(label_selector)), tuple(parse_field_selector(rt, field_selector)))

    def matches(self, obj: dict | None) -> bool:
        if obj is None:
            return False
        labels = obj.get("metadata", {}).get("labels") or {}
        return all(r.matches(labels) for r in self.labels) and all(f.matches(obj) for f in self.fields)
