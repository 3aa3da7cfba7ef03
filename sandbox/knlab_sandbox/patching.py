"""The three classic patch formats: JSON merge patch, JSON patch and strategic merge patch.

Strategic merge reads the list semantics (`x-kubernetes-patch-merge-key`, `…-patch-strategy`) from
the kind's schema in kinds.py, and understands the directives kubectl sends (`$patch`,
`$setElementOrder/…`, `$deleteFromPrimitiveList/…`, `$retainKeys`).
"""

from __future__ import annotations

import copy
from typing import Any

from .errors import ApiStatusError, bad_request


def unprocessable(message: str) -> ApiStatusError:
    return ApiStatusError(422, "Invalid", message)


# --- RFC 7386 JSON merge patch -----------------------------------------------------------------


def merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# --- RFC 6902 JSON patch -----------------------------------------------------------------------


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise unprocessable(f'the server rejected our request due to an error in our request: invalid path "{path}"')
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _container(doc: Any, tokens: list[str], path: str) -> Any:
    current = doc
    for token in tokens:
        try:
            current = current[int(token)] if isinstance(current, list) else current[token]
        except (KeyError, IndexError, ValueError, TypeError):
            raise unprocessable(
                f'the server rejected our request due to an error in our request: path "{path}" does not exist'
            ) from None
    return current


def _get(doc: Any, path: str) -> Any:
    return _container(doc, _pointer(path), path)


def _add(doc: Any, path: str, value: Any, *, replace: bool = False) -> Any:
    tokens = _pointer(path)
    if not tokens:
        return copy.deepcopy(value)
    parent = _container(doc, tokens[:-1], path)
    last = tokens[-1]
    if isinstance(parent, list):
        if last == "-" and not replace:
            parent.append(copy.deepcopy(value))
            return doc
        try:
            index = int(last)
        except ValueError:
            raise unprocessable(f'invalid array index "{last}" in "{path}"') from None
        if not 0 <= index <= len(parent) - (1 if replace else 0):
            raise unprocessable(f'index out of range in "{path}"')
        if replace:
            parent[index] = copy.deepcopy(value)
        else:
            parent.insert(index, copy.deepcopy(value))
    elif isinstance(parent, dict):
        if replace and last not in parent:
            raise unprocessable(
                f"the server rejected our request due to an error in our request: "
                f'replace operation does not apply: doc is missing key: "{path}"'
            )
        parent[last] = copy.deepcopy(value)
    else:
        raise unprocessable(f'path "{path}" does not point into an object or array')
    return doc


def _remove(doc: Any, path: str) -> Any:
    tokens = _pointer(path)
    if not tokens:
        raise unprocessable("cannot remove the whole document")
    parent = _container(doc, tokens[:-1], path)
    last = tokens[-1]
    try:
        if isinstance(parent, list):
            del parent[int(last)]
        else:
            del parent[last]
    except (KeyError, IndexError, ValueError, TypeError):
        raise unprocessable(
            f"the server rejected our request due to an error in our request: "
            f'remove operation does not apply: doc is missing path: "{path}"'
        ) from None
    return doc


def json_patch(target: Any, operations: Any) -> Any:
    if not isinstance(operations, list):
        raise bad_request("json: cannot unmarshal object into Go value of type jsonpatch.Patch")
    doc = copy.deepcopy(target)
    for op in operations:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise bad_request(f"invalid JSON patch operation: {op!r}")
        kind, path = op["op"], op["path"]
        if kind in ("add", "replace", "test") and "value" not in op:
            raise bad_request(f'JSON patch operation "{kind}" on "{path}" has no value')
        if kind == "add":
            doc = _add(doc, path, op["value"])
        elif kind == "replace":
            doc = _add(doc, path, op["value"], replace=True)
        elif kind == "remove":
            doc = _remove(doc, path)
        elif kind in ("move", "copy"):
            value = copy.deepcopy(_get(doc, op.get("from", "")))
            if kind == "move":
                doc = _remove(doc, op["from"])
            doc = _add(doc, path, value)
        elif kind == "test":
            if _get(doc, path) != op["value"]:
                raise unprocessable(
                    f"the server rejected our request due to an error in our request: testing value {path} failed"
                )
        else:
            raise bad_request(f'Unexpected kind: "{kind}"')
    return doc


# --- strategic merge patch ---------------------------------------------------------------------


def _child_schema(schema: dict | None, key: str) -> dict | None:
    if not schema:
        return None
    props = schema.get("properties")
    if props and key in props:
        return props[key]
    extra = schema.get("additionalProperties")
    return extra if isinstance(extra, dict) else None


def strategic_merge(target: Any, patch: Any, schema: dict | None) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if patch.get("$patch") == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    if patch.get("$patch") == "delete":
        return None
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    retain = patch.get("$retainKeys")
    orders: dict[str, list] = {}
    for key, value in patch.items():
        if key in ("$patch", "$retainKeys"):
            continue
        if key.startswith("$setElementOrder/"):
            orders[key.split("/", 1)[1]] = value
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            name = key.split("/", 1)[1]
            result[name] = [v for v in result.get(name) or [] if v not in value]
            continue
        if value is None:
            result.pop(key, None)
            continue
        child = _child_schema(schema, key)
        if isinstance(value, list):
            result[key] = _merge_list(result.get(key), value, child)
        elif isinstance(value, dict):
            merged = strategic_merge(result.get(key), value, child)
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
        else:
            result[key] = value
    for name, order in orders.items():
        if isinstance(result.get(name), list):
            result[name] = _apply_order(result[name], order, _child_schema(schema, name))
    if isinstance(retain, list):
        result = {k: v for k, v in result.items() if k in retain}
    return result


def _merge_key(schema: dict | None) -> str | None:
    if schema and schema.get("x-kubernetes-patch-strategy", "").find("merge") >= 0:
        return schema.get("x-kubernetes-patch-merge-key") or ""
    return None


def _merge_list(current: Any, patch: list, schema: dict | None) -> list:
    key = _merge_key(schema)
    if key is None:
        return copy.deepcopy([p for p in patch if not (isinstance(p, dict) and "$patch" in p)])
    current = copy.deepcopy(current) if isinstance(current, list) else []
    if key == "":  # a merged list of scalars: union
        for item in patch:
            if item not in current:
                current.append(item)
        return current
    items_schema = (schema or {}).get("items")
    for item in patch:
        if not isinstance(item, dict):
            raise bad_request(f"strategic merge patch: list item {item!r} is not an object")
        if item.get("$patch") == "replace":
            return copy.deepcopy([p for p in patch if p.get("$patch") != "replace"])
        if key not in item:
            raise bad_request(f"map: {item} does not contain declared merge key: {key}")
        index = next((i for i, c in enumerate(current) if isinstance(c, dict) and c.get(key) == item[key]), None)
        if item.get("$patch") == "delete":
            if index is not None:
                del current[index]
            continue
        if index is None:
            current.append(strategic_merge({}, item, items_schema))
        else:
            current[index] = strategic_merge(current[index], item, items_schema)
    return current


def _apply_order(items: list, order: list, schema: dict | None) -> list:
    key = _merge_key(schema)

    def ident(item: Any) -> Any:
        return item.get(key) if key and isinstance(item, dict) else item

    wanted = [ident(o) for o in order]
    ordered = sorted(
        (i for i in items if ident(i) in wanted), key=lambda i: wanted.index(ident(i))
    )  # items named in the order first, in that order, then the rest as they were
    return ordered + [i for i in items if ident(i) not in wanted]
