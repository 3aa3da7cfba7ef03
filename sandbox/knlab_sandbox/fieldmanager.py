"""managedFields and server-side apply.

Field sets are sets of paths in the FieldsV1 vocabulary (`f:<field>`, `k:<json key>` for items of
keyed lists, `v:<json value>` for items of set lists, and `.` for "this map or item itself"). Every
write records which manager owns which fields: an Update takes the fields it changed, an Apply
owns exactly the fields of its configuration. Apply reports conflicts (409) with other managers
that set a field to a different value unless forced, and removes fields the manager applied before
and no longer applies when nobody else owns them.
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from typing import Any

from .errors import ApiStatusError
from .kinds import ResourceType
from .patching import _child_schema

Path = tuple[str, ...]

# Server-owned metadata that no manager owns.
_UNTRACKED_META = {
    "name",
    "namespace",
    "generateName",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
}


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _list_type(schema: dict | None) -> str:
    return (schema or {}).get("x-kubernetes-list-type", "atomic")


def _item_key(item: dict, schema: dict) -> str:
    keys = schema.get("x-kubernetes-list-map-keys") or []
    return "k:" + json.dumps({k: item.get(k) for k in sorted(keys) if k in item}, separators=(",", ":"))


def _collect(value: Any, schema: dict | None, path: Path, out: set[Path]) -> None:
    if isinstance(value, dict) and value:
        if (schema and "additionalProperties" in schema) or (schema or {}).get("x-kubernetes-preserve-unknown-fields"):
            out.add((*path, "."))
        for key, child in value.items():
            _collect(child, _child_schema(schema, key), (*path, f"f:{key}"), out)
    elif isinstance(value, list) and value and _list_type(schema) == "map":
        items_schema = (schema or {}).get("items")
        for item in value:
            if not isinstance(item, dict):
                out.add(path)
                return
            item_path = (*path, _item_key(item, schema or {}))
            out.add((*item_path, "."))
            for key, child in item.items():
                _collect(child, _child_schema(items_schema, key), (*item_path, f"f:{key}"), out)
    elif isinstance(value, list) and value and _list_type(schema) == "set":
        for item in value:
            out.add((*path, "v:" + json.dumps(item, separators=(",", ":"))))
    else:
        out.add(path)


def field_set(rt: ResourceType, obj: dict, subresource: str | None = None) -> set[Path]:
    """The paths of the fields `obj` sets that a manager can own (main resource or status)."""
    out: set[Path] = set()
    schema = rt.schema
    for key, value in obj.items():
        if key in ("apiVersion", "kind"):
            continue
        if (key == "status") != (subresource == "status") and rt.has_status:
            continue
        if key == "metadata":
            meta_schema = _child_schema(schema, "metadata")
            for mkey, mvalue in (value or {}).items():
                if mkey not in _UNTRACKED_META:
                    _collect(mvalue, _child_schema(meta_schema, mkey), ("f:metadata", f"f:{mkey}"), out)
            continue
        _collect(value, _child_schema(schema, key), (f"f:{key}",), out)
    return out


def to_fields_v1(paths: set[Path]) -> dict:
    root: dict = {}
    for path in sorted(paths):
        node = root
        for part in path:
            node = node.setdefault(part, {})
    return root


def from_fields_v1(tree: dict, prefix: Path = ()) -> set[Path]:
    out: set[Path] = set()
    for key, child in (tree or {}).items():
        path = (*prefix, key)
        if key == "." or not child:
            out.add(path)
        else:
            out |= from_fields_v1(child, path)
    return out


_MISSING = object()


def value_at(obj: Any, path: Path) -> Any:
    current = obj
    for part in path:
        if part == ".":
            return current
        kind, _, text = part.partition(":")
        if kind == "f" and isinstance(current, dict):
            current = current.get(text, _MISSING)
        elif kind == "k" and isinstance(current, list):
            want = json.loads(text)
            current = next(
                (i for i in current if isinstance(i, dict) and all(i.get(k) == v for k, v in want.items())), _MISSING
            )
        elif kind == "v" and isinstance(current, list):
            value = json.loads(text)
            current = value if value in current else _MISSING
        else:
            return _MISSING
        if current is _MISSING:
            return _MISSING
    return current


def _remove_path(obj: Any, path: Path) -> None:
    if path and path[-1] == ".":
        path = path[:-1]
    parent = value_at(obj, path[:-1]) if len(path) > 1 else obj
    if parent is _MISSING or not path:
        return
    kind, _, text = path[-1].partition(":")
    if kind == "f" and isinstance(parent, dict):
        parent.pop(text, None)
    elif kind in ("k", "v") and isinstance(parent, list):
        target = value_at(parent, (path[-1],))
        if target is not _MISSING:
            parent[:] = [i for i in parent if i is not target and not (kind == "v" and i == target)]


def describe(path: Path) -> str:
    text = ""
    for part in path:
        kind, _, rest = part.partition(":")
        if kind == "f":
            text += f".{rest}"
        elif kind == "k":
            text += "[" + ",".join(f"{k}={json.dumps(v)}" for k, v in json.loads(rest).items()) + "]"
        elif kind == "v":
            text += f"[={rest}]"
    return text


# --- managedFields bookkeeping ---------------------------------------------------------------


def _entries(obj: dict) -> list[dict]:
    return obj.setdefault("metadata", {}).setdefault("managedFields", [])


def _entry_paths(entry: dict) -> set[Path]:
    return from_fields_v1(entry.get("fieldsV1") or {})


def _store_entries(obj: dict, entries: list[dict]) -> None:
    kept = [e for e in entries if e.get("fieldsV1")]
    if kept:
        obj["metadata"]["managedFields"] = kept
    else:
        obj["metadata"].pop("managedFields", None)


def _covers(paths: set[Path], path: Path) -> bool:
    return any(path[: len(p)] == p for p in paths)


def record_update(rt: ResourceType, old: dict | None, new: dict, manager: str, subresource: str | None = None) -> None:
    """Give `manager` (operation Update) the fields this write changed; drop vanished fields from all."""
    entries = copy.deepcopy((old or {}).get("metadata", {}).get("managedFields") or [])
    new_paths = field_set(rt, new, subresource)
    old_paths = field_set(rt, old, subresource) if old else set()
    changed = {p for p in new_paths if p not in old_paths or value_at(new, p) != value_at(old, p)}
    gone_paths = old_paths - new_paths
    entry = None
    for e in entries:
        paths = _entry_paths(e)
        if (e.get("subresource") or None) == subresource:
            paths -= gone_paths
            paths = {p for p in paths if p not in changed or p[-1] == "."}
        if e.get("manager") == manager and e.get("operation") == "Update" and e.get("subresource") == subresource:
            entry = e
            paths |= changed
        e["fieldsV1"] = to_fields_v1(paths)
    if entry is None and changed:
        entry = {"manager": manager, "operation": "Update", "apiVersion": rt.api_version, "fieldsType": "FieldsV1"}
        if subresource:
            entry["subresource"] = subresource
        entry["fieldsV1"] = to_fields_v1(changed)
        entries.append(entry)
    if entry is not None and changed:
        entry["time"] = now()
    new.setdefault("metadata", {})
    _store_entries(new, entries)


def _merge_applied(live: Any, config: Any, schema: dict | None) -> Any:
    if isinstance(config, dict) and isinstance(live, dict):
        result = dict(live)
        for key, value in config.items():
            result[key] = _merge_applied(live.get(key), value, _child_schema(schema, key))
        return result
    if isinstance(config, list) and isinstance(live, list):
        kind = _list_type(schema)
        if kind == "set":
            return live + [v for v in config if v not in live]
        if kind == "map":
            items_schema = (schema or {}).get("items")
            result = list(live)
            for item in config:
                key = _item_key(item, schema or {}) if isinstance(item, dict) else None
                index = next(
                    (i for i, c in enumerate(result) if isinstance(c, dict) and _item_key(c, schema or {}) == key),
                    None,
                )
                if index is None:
                    result.append(copy.deepcopy(item))
                else:
                    result[index] = _merge_applied(result[index], item, items_schema)
            return result
    return copy.deepcopy(config)


def apply(
    rt: ResourceType,
    live: dict | None,
    config: dict,
    manager: str,
    *,
    force: bool,
    subresource: str | None = None,
) -> dict:
    """Server-side apply of `config` by `manager` onto `live` (None: the object is created)."""
    applied = field_set(rt, config, subresource)
    entries = copy.deepcopy((live or {}).get("metadata", {}).get("managedFields") or [])
    conflicts: list[tuple[str, Path]] = []
    previous: set[Path] = set()
    for e in entries:
        same_manager = e.get("manager") == manager and e.get("operation") == "Apply"
        if (e.get("subresource") or None) != subresource:
            continue
        if same_manager:
            previous = _entry_paths(e)
            continue
        for path in _entry_paths(e) & applied:
            if path[-1] != "." and value_at(live, path) != value_at(config, path):
                conflicts.append((e.get("manager", ""), path))
    if conflicts and not force:
        raise _conflict_error(rt, config, conflicts)
    merged = _merge_applied(copy.deepcopy(live) if live else {}, config, rt.schema)
    others: set[Path] = set()
    for e in entries:
        if e.get("manager") == manager and e.get("operation") == "Apply":
            continue
        paths = _entry_paths(e)
        if force:
            paths -= {p for _, p in conflicts}
        e["fieldsV1"] = to_fields_v1(paths)
        others |= paths
    still_owned = others | applied
    for path in sorted(previous - applied, key=len, reverse=True):
        base = path[:-1] if path[-1] == "." else path
        if not any(o[: len(base)] == base for o in still_owned):
            _remove_path(merged, path)
    entries = [e for e in entries if not (e.get("manager") == manager and e.get("operation") == "Apply")]
    entry = {
        "manager": manager,
        "operation": "Apply",
        "apiVersion": rt.api_version,
        "time": now(),
        "fieldsType": "FieldsV1",
        "fieldsV1": to_fields_v1(applied),
    }
    if subresource:
        entry["subresource"] = subresource
    entries.append(entry)
    merged.setdefault("metadata", {})
    _store_entries(merged, entries)
    return merged


def _conflict_error(rt: ResourceType, config: dict, conflicts: list[tuple[str, Path]]) -> ApiStatusError:
    by_manager: dict[str, list[str]] = {}
    for manager, path in conflicts:
        by_manager.setdefault(manager, []).append(describe(path))
    count = len(conflicts)
    if count == 1:
        manager, path = conflicts[0]
        text = f'conflict with "{manager}" using {rt.api_version}: {describe(path)}'
    else:
        parts = [
            f'conflicts with "{m}" using {rt.api_version}:\n' + "\n".join(f"- {p}" for p in sorted(paths))
            for m, paths in by_manager.items()
        ]
        text = "\n".join(parts)
    plural = "conflict" if count == 1 else "conflicts"
    name = config.get("metadata", {}).get("name", "")
    details: dict[str, Any] = {"name": name, "kind": rt.plural}
    if rt.group:
        details["group"] = rt.group
    details["causes"] = [
        {
            "reason": "FieldManagerConflict",
            "message": f'conflict with "{m}" using {rt.api_version}',
            "field": describe(p),
        }
        for m, p in conflicts
    ]
    return ApiStatusError(409, "Conflict", f"Apply failed with {count} {plural}: {text}", details)
