# Copyright (c) knlab serverless developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Plain Kubernetes objects for the roles: read some, keep some present, delete some, in one call.

``present`` objects are compared on the fields given only (``_diff``), so server defaults and
other writers never make a change; a difference is written as a JSON merge patch of those
fields. ``absent`` objects are deleted and, with ``wait``, waited for until they are gone.

Private to knlab.serverless: not a public API.
"""

from __future__ import annotations

import base64
import contextlib
from functools import partial
from typing import Any

from ansible_collections.knlab.serverless.plugins.module_utils._client import KubeClient, write_or_fallback
from ansible_collections.knlab.serverless.plugins.module_utils._diff import merge_patch, owned_diff, without_none
from ansible_collections.knlab.serverless.plugins.module_utils._errors import NotFound
from ansible_collections.knlab.serverless.plugins.module_utils._validation import (
    InvalidOption,
    check_range,
    check_string,
    check_wait_seconds,
    is_dns1123_label,
    is_dns1123_subdomain,
)
from ansible_collections.knlab.serverless.plugins.module_utils._waiter import Verdict, wait_for

_GONE = Verdict(True, False, "Deleted", "")


def _ref(option: str, index: int, item: Any, default_namespace: str) -> dict[str, Any]:
    """apiVersion, kind, name, namespace of ``item`` (an object, or a read query), checked."""
    where = f"{option}[{index}]"
    if not isinstance(item, dict):
        raise InvalidOption(f"{where} must be a dict, got {type(item).__name__}")
    if option == "read":
        api_version, kind = item.get("api_version"), item.get("kind")
        name, namespace = item.get("name"), item.get("namespace", default_namespace)
        unknown = sorted(set(item) - {"api_version", "kind", "name", "namespace", "label_selectors"})
        if unknown:
            raise InvalidOption(f"{where} has unknown keys {', '.join(map(str, unknown))}")
    else:
        metadata = item.get("metadata")
        if not isinstance(metadata, dict):
            raise InvalidOption(f"{where}.metadata must be a dict with the object's name")
        api_version, kind = item.get("apiVersion"), item.get("kind")
        name, namespace = metadata.get("name"), metadata.get("namespace", default_namespace)
    key = "api_version" if option == "read" else "apiVersion"
    check_string(f"{where}.{key}", api_version, max_length=253)
    check_string(f"{where}.kind", kind, max_length=253)
    if name is not None or option != "read":
        check_string(f"{where}.name", name, max_length=253)
        if not is_dns1123_subdomain(name):
            raise InvalidOption(f"{where}.name must be a DNS-1123 subdomain, got {name!r:.80}")
    if namespace is not None and not is_dns1123_label(namespace):
        raise InvalidOption(f"{where}.namespace must be a DNS-1123 label, got {namespace!r:.80}")
    return {"api_version": api_version, "kind": kind, "name": name, "namespace": namespace}


def validate(params: dict[str, Any]) -> None:
    """Every option, before any request."""
    namespace = params["namespace"]
    if not is_dns1123_label(namespace):
        raise InvalidOption(f"namespace must be a DNS-1123 label, got {namespace!r:.80}")
    for option in ("read", "present", "absent"):
        for index, item in enumerate(params[option]):
            _ref(option, index, item, namespace)
    for index, query in enumerate(params["read"]):
        selectors = query.get("label_selectors")
        if selectors is not None and (
            not isinstance(selectors, list) or not all(isinstance(s, str) and s for s in selectors)
        ):
            raise InvalidOption(f"read[{index}].label_selectors must be a list of non-empty strings")
        if (query.get("name") is None) == (selectors is None):
            raise InvalidOption(f"read[{index}] needs either name or label_selectors")
    check_wait_seconds("wait_timeout", params["wait_timeout"])
    check_range("wait_timeout", params["wait_timeout"], 1, 86400)


def run_objects(client: KubeClient, params: dict[str, Any], *, check_mode: bool, warn: Any = None) -> dict:
    namespace = params["namespace"]
    result: dict[str, Any] = {"changed": False, "read": [], "objects": [], "deleted": []}
    diffs: list[dict[str, Any]] = []

    for index, query in enumerate(params["read"]):
        ref = _ref("read", index, query, namespace)
        if ref["name"] is not None:
            found = client.get_or_none(ref["api_version"], ref["kind"], ref["name"], ref["namespace"])
            result["read"].append([found] if found is not None else [])
        else:
            selector = ",".join(query["label_selectors"])
            items = client.list(ref["api_version"], ref["kind"], ref["namespace"], label_selector=selector)[0]
            result["read"].append(items)

    for index, desired in enumerate(params["present"]):
        ref = _ref("present", index, desired, namespace)
        body = dict(desired)
        if not client.namespaced(ref["api_version"], ref["kind"]):
            ref["namespace"] = None
        elif ref["namespace"] is not None:
            body["metadata"] = {**desired["metadata"], "namespace": ref["namespace"]}
        live, changed, before, after = _keep(client, ref, body, warn)
        what = f"{ref['kind']} {_display(ref)}"
        if changed:
            result["changed"] = True
            diffs.append({"before_header": what, "after_header": what, "before": before, "after": after})
        result["objects"].append(live)

    for index, item in enumerate(params["absent"]):
        ref = _ref("absent", index, item, namespace)
        try:
            client.delete(ref["api_version"], ref["kind"], ref["name"], ref["namespace"])
        except NotFound:
            continue
        result["changed"] = True
        result["deleted"].append(f"{ref['kind']} {_display(ref)}")
        what = f"{ref['kind']} {_display(ref)}"
        diffs.append({"before_header": what, "after_header": what, "before": {"state": "present"}, "after": {}})
        if params["wait"] and not check_mode:
            wait_for(
                client,
                ref["api_version"],
                ref["kind"],
                ref["name"],
                ref["namespace"],
                lambda obj: _GONE if obj is None else None,
                params["wait_timeout"],
            )

    result["diff"] = diffs
    return result


def _keep(client: KubeClient, ref: dict[str, Any], body: dict, warn: Any) -> tuple[dict, bool, dict, dict]:
    """Create ``body`` or merge-patch the fields it gives: (the object now, changed, before, after)."""
    api_version, kind, name, namespace = ref["api_version"], ref["kind"], ref["name"], ref["namespace"]
    what = f"{kind} {_display(ref)}"
    live = client.get_or_none(api_version, kind, name, namespace)
    changed, before, after = owned_diff(body, live)
    if live is None:
        created = without_none(body)
        create = partial(client.create, api_version, kind, created, namespace)
        live = write_or_fallback(create, created, warn=warn, what=f"the creation of {what}")
    elif changed:
        send = partial(client.patch, api_version, kind, name, merge_patch(body, live), namespace)
        patched = write_or_fallback(send, live, warn=warn, what=f"the change to {what}")
        # The server may store a value in another spelling than given (a quantity such as 1024Mi
        # becomes 1Gi): a patch that leaves the object as it was is no change. (A dry run the
        # server refused returns the live object itself, and stays a change.)
        changed = patched is live or _comparable(patched) != _comparable(live)
        live = patched
    return live, changed, before, after


def _comparable(obj: dict) -> dict:
    """The object without what every write touches (resourceVersion, managedFields)."""
    metadata = {k: v for k, v in (obj.get("metadata") or {}).items() if k not in ("resourceVersion", "managedFields")}
    return {**obj, "metadata": metadata}


def _display(ref: dict[str, Any]) -> str:
    return f"{ref['namespace']}/{ref['name']}" if ref["namespace"] else str(ref["name"])


def secret_values(objects: list[Any]) -> set[str]:
    """What a v1 Secret among ``objects`` holds, as given and as shown: each ``data`` value (base64)
    and its decoded text, each ``stringData`` value and its base64, and their lines. The module adds
    them to Ansible's no_log values, which masks them everywhere in its result (``read``,
    ``objects``, ``diff``, the ``invocation`` that -vvv prints, a failure message)."""
    values: set[str] = set()
    for obj in objects:
        if not isinstance(obj, dict) or obj.get("kind") != "Secret" or obj.get("apiVersion") != "v1":
            continue
        data, string_data = obj.get("data"), obj.get("stringData")
        texts = []
        for value in data.values() if isinstance(data, dict) else ():
            if isinstance(value, str):
                texts.append(value)
                with contextlib.suppress(ValueError):  # binascii.Error and UnicodeDecodeError are ValueErrors
                    texts.append(base64.b64decode(value, validate=True).decode("utf-8"))
        for value in string_data.values() if isinstance(string_data, dict) else ():
            if isinstance(value, str):
                texts += [value, base64.b64encode(value.encode("utf-8")).decode()]
        for text in texts:
            values.update(part for part in (text, text.strip(), *text.splitlines()) if part.strip())
    return values
