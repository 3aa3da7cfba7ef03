"""The terminal-status log: when a write made an object's top-level condition final.

Benchmarks measure how long a waiter (a module, ``kubectl wait``, ``kubernetes.core.k8s_info``)
takes to notice that an object is done. That needs the moment the server stored the status that
made it done, taken on the server and not guessed by the client. ``ResourceAPI`` calls ``record``
right after the store committed a write (before any watcher can have seen it: watchers run on the
same event loop, and the writer has not yielded yet), and a JSON line goes to
``<state-dir>/transitions.log``::

    {"time": 1767225600.123456, "apiVersion": "tekton.dev/v1", "kind": "TaskRun", "namespace": "bench",
     "name": "tr-1", "uid": "...", "resourceVersion": "812", "generation": 1, "condition": "Succeeded",
     "status": "True", "reason": "Succeeded"}

The top-level condition is ``Succeeded`` for TaskRuns and ``Ready`` for everything else. It is
terminal when its status is True or False and, for objects that report ``status.observedGeneration``
(Knative's), that generation is the object's current one: a Ready left over from the previous
generation is not a new terminal state, as the collection's waiter rule says (docs/INTERNALS.md).
A line is written when a write enters a terminal state: from a non-terminal one, or from another
terminal one (True→False, or a newer generation).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

log = logging.getLogger(__name__)

SUCCEEDED_KINDS = frozenset({"tekton.dev/TaskRun"})


def _condition_type(obj: dict) -> str:
    group = (obj.get("apiVersion") or "").partition("/")[0]
    return "Succeeded" if f"{group}/{obj.get('kind')}" in SUCCEEDED_KINDS else "Ready"


def terminal_state(obj: dict | None) -> tuple[int, str, str] | None:
    """(generation, status, reason) when the object's top-level condition is final, else None."""
    if not obj:
        return None
    status = obj.get("status") or {}
    wanted = _condition_type(obj)
    condition = next((c for c in status.get("conditions") or [] if c.get("type") == wanted), None)
    if condition is None or condition.get("status") not in ("True", "False"):
        return None
    generation = int((obj.get("metadata") or {}).get("generation") or 0)
    observed = status.get("observedGeneration")
    if observed is not None and int(observed) < generation:
        return None
    return generation, condition["status"], condition.get("reason") or ""


def record(path: Path, old: dict | None, new: dict, stored_at: float | None = None) -> dict | None:
    """Append a line when ``new`` entered a terminal state that ``old`` was not in; returns the record."""
    state = terminal_state(new)
    if state is None or state[:2] == (terminal_state(old) or (None, None))[:2]:
        return None
    meta = new.get("metadata") or {}
    entry = {
        "time": round(time.time() if stored_at is None else stored_at, 6),
        "apiVersion": new.get("apiVersion"),
        "kind": new.get("kind"),
        "namespace": meta.get("namespace", ""),
        "name": meta.get("name"),
        "uid": meta.get("uid"),
        "resourceVersion": meta.get("resourceVersion"),
        "generation": state[0],
        "condition": _condition_type(new),
        "status": state[1],
        "reason": state[2],
    }
    try:
        with path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry) + "\n")
    except OSError as error:  # a full disk must not fail the write that was already committed
        log.warning("cannot append to %s: %s", path, error)
    return entry
