# Copyright (c) knlab serverless developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Owned-field comparison: only what the user set decides ``changed``.

A server adds defaults (Knative's webhook fills container names, probes, timeouts, traffic...)
and other writers add their own keys. Comparing the whole object would report a change on every
run; comparing only the keys present in ``desired`` does not. The rules:

- dicts: keys of ``desired`` only; a ``None`` value means "must be absent".
- empty is absent: Knative's webhook decodes every object into Go types and encodes it back
  (knative.dev/pkg ``roundTripPatch``), which drops empty lists, empty maps and empty
  ``omitempty`` strings. So ``None`` (must be absent) accepts a live ``[]`` or ``""``, a desired
  ``[]`` accepts a missing key, and a dict accepts a missing map when all it wants is absence.
  A desired ``""`` still needs a live ``""``: map values (labels, annotations) keep empty strings,
  so callers write ``None`` for an ``omitempty`` field they want empty.
- lists of dicts that all have a ``name`` (env, volumes, imagePullSecrets): matched by name, and
  the user owns the whole list, so an extra or missing name is a change.
- other lists: element by element, same length.
- scalars: equal.

``overlay`` builds what to write with the same rules, keeping the server's keys the user does
not own inside list items (a JSON merge patch replaces lists whole).

Private to knlab.serverless: not a public API.
"""

from __future__ import annotations

import copy
from typing import Any


def _named(items: Any) -> bool:
    return (
        isinstance(items, list)
        and bool(items)
        and all(isinstance(item, dict) and isinstance(item.get("name"), str) for item in items)
    )


def project(desired: Any, live: Any) -> Any:
    """``live`` cut down to the shape of ``desired`` (what the user owns of it)."""
    if isinstance(desired, dict) and isinstance(live, dict):
        return {key: project(value, live[key]) for key, value in desired.items() if key in live}
    if isinstance(desired, list) and isinstance(live, list):
        if _named(desired) and _named(live):
            live_by_name = {item["name"]: item for item in live}
            wanted = [item["name"] for item in desired]
            owned = [project(item, live_by_name[item["name"]]) for item in desired if item["name"] in live_by_name]
            return owned + [copy.deepcopy(item) for item in live if item["name"] not in wanted]
        paired = [project(item, live[index]) for index, item in enumerate(desired) if index < len(live)]
        return paired + copy.deepcopy(live[len(desired) :])
    return copy.deepcopy(live)


def _empty(value: Any) -> bool:
    """Absent as far as a Go round trip is concerned (see the module doc)."""
    return value is None or value in ([], "")


def same(desired: Any, live: Any) -> bool:
    """True when ``live`` already has everything ``desired`` says (see the module doc)."""
    if desired is None:
        return _empty(live)
    if isinstance(desired, dict):
        if live is None:
            live = {}  # an empty map is dropped: {"key": None} is already true of it
        if not isinstance(live, dict):
            return False
        return all(same(value, live.get(key)) for key, value in desired.items())
    if isinstance(desired, list):
        if live is None:
            return not desired
        if not isinstance(live, list) or len(desired) != len(live):
            return False
        if _named(desired) and _named(live):
            live_by_name = {item["name"]: item for item in live}
            return len(live_by_name) == len(live) and all(
                item["name"] in live_by_name and same(item, live_by_name[item["name"]]) for item in desired
            )
        return all(same(item, live[index]) for index, item in enumerate(desired))
    if isinstance(desired, bool) or isinstance(live, bool):
        return desired is live
    return desired == live


def without_none(value: Any) -> Any:
    """A copy with every ``None`` dict value dropped (for create bodies and diff output)."""
    if isinstance(value, dict):
        return {key: without_none(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [without_none(item) for item in value]
    return value


def owned_diff(desired: dict, live: dict | None) -> tuple[bool, dict, dict]:
    """(changed, before, after): ``before`` is live's owned part, ``after`` is what the user wants."""
    after = without_none(desired)
    if live is None:
        return True, {}, after
    return not same(desired, live), project(desired, live), after


def overlay(desired: Any, live: Any) -> Any:
    """``desired`` written over ``live``: live keys the user does not own survive, ``None`` deletes."""
    if isinstance(desired, dict):
        result = copy.deepcopy(live) if isinstance(live, dict) else {}
        for key, value in desired.items():
            if value is None:
                result.pop(key, None)
            else:
                result[key] = overlay(value, result.get(key))
        return result
    if isinstance(desired, list):
        if not isinstance(live, list):
            return without_none(desired)
        if _named(desired) and _named(live):
            live_by_name = {item["name"]: item for item in live}
            return [overlay(item, live_by_name.get(item["name"])) for item in desired]
        return [overlay(d, live[i] if i < len(live) else None) for i, d in enumerate(desired)]
    return copy.deepcopy(desired)


def merge_patch(desired: dict, live: dict) -> dict:
    """An RFC 7386 merge patch that makes ``live`` have what ``desired`` owns.

    Maps are patched key by key (``None`` deletes); lists, which a merge patch can only replace,
    are sent whole as ``overlay`` computed them from ``live``.
    """
    patch: dict = {}
    for key, value in desired.items():
        current = live.get(key) if isinstance(live, dict) else None
        if isinstance(value, dict):
            patch[key] = merge_patch(value, current if isinstance(current, dict) else {})
        elif isinstance(value, list):
            patch[key] = overlay(value, current)
        else:
            patch[key] = value
    return patch
