# Copyright (c) knlab serverless developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one wait implementation: watch, resume, re-list, and poll only when watch is refused.

A wait reacts to the event that ends it, instead of sleeping between polls as
``kubernetes.core.k8s`` does. Whether an object is done is the caller's ``check``; the loop here
only keeps an up-to-date copy of the object in front of it.

Private to knlab.serverless: not a public API.
"""

from __future__ import annotations

import math
import time
from collections import namedtuple
from collections.abc import Callable
from typing import Any

from ansible_collections.knlab.serverless.plugins.module_utils._errors import (
    ApiError,
    Gone,
    ServerlessError,
)

# done or failed ends the wait; reason/message explain a failure (or the success).
Verdict = namedtuple("Verdict", "done failed reason message")

# A watch refused by RBAC or by a server without watch support: fall back to polling.
_WATCH_REFUSED = (403, 405)
# Answers worth retrying while there is time left: no answer at all, throttling, server trouble.
_TRANSIENT = (0, 429, 500, 502, 503, 504)
_BACKOFF_FIRST = 0.2
_BACKOFF_MAX = 2.0


class WaitFailed(ServerlessError):
    """``check`` returned a terminal failure; ``obj`` is the object it judged."""

    def __init__(self, reason: str, message: str, obj: dict | None) -> None:
        super().__init__(f"{reason}: {message}" if message else reason)
        self.reason = reason
        self.message = message
        self.obj = obj


class WaitTimeout(ServerlessError):
    """The deadline passed; the message carries the last conditions seen."""

    def __init__(self, msg: str, obj: dict | None) -> None:
        super().__init__(msg)
        self.obj = obj


def describe_conditions(obj: dict | None) -> str:
    """``Ready=False (RevisionFailed: …); ConfigurationsReady=…`` for messages."""
    if obj is None:
        return "the object does not exist"
    conditions = (obj.get("status") or {}).get("conditions") or []
    if not conditions:
        return "no conditions reported yet"
    parts = []
    for condition in conditions:
        text = f"{condition.get('type')}={condition.get('status')}"
        detail = ": ".join(str(condition[key]) for key in ("reason", "message") if condition.get(key))
        parts.append(f"{text} ({detail})" if detail else text)
    return "; ".join(parts)


def resource_version(obj: dict | None) -> str | None:
    return ((obj or {}).get("metadata") or {}).get("resourceVersion") or None


class _Backoff:
    """0.2 s doubling to 2 s; ``reset`` after progress."""

    def __init__(self) -> None:
        self.delay = _BACKOFF_FIRST

    def next(self) -> float:
        delay = self.delay
        self.delay = min(self.delay * 2, _BACKOFF_MAX)
        return delay

    def reset(self) -> None:
        self.delay = _BACKOFF_FIRST


class _Wait:
    """State of one wait: the latest object, where to resume the watch, the deadline."""

    def __init__(
        self,
        client: Any,
        *,
        api_version: str,
        kind: str,
        name: str,
        namespace: str | None,
        check: Callable[[dict | None], Verdict | None],
        timeout: float,
        clock: Callable[[], float],
        sleep: Callable[[float], None],
        settle: float = 0.0,
    ) -> None:
        self.client = client
        # A failure verdict must last this long before it ends the wait (a transient False on its
        # way to True does not count); None while the latest verdict is not a failure.
        self.settle = settle
        self.failing_since: float | None = None
        self.api_version = api_version
        self.kind = kind
        self.name = name
        self.namespace = namespace
        self.check = check
        self.timeout = timeout
        self.clock = clock
        self.sleep = sleep
        self.deadline = clock() + timeout
        self.obj: dict | None = None
        self.version: str | None = None
        self.backoff = _Backoff()

    # -- verdicts ------------------------------------------------------------------------------

    def judge(self, obj: dict | None) -> bool:
        """Record ``obj``; True when the wait is over (``WaitFailed`` when it failed)."""
        self.obj = obj
        verdict = self.check(obj)
        if verdict is None or not (verdict.done or verdict.failed):
            self.failing_since = None
            return False
        if verdict.failed:
            if self.settle > 0:
                if self.failing_since is None:
                    self.failing_since = self.clock()
                if self.clock() - self.failing_since < self.settle:
                    return False  # not final yet: judged again when the window ends
            raise WaitFailed(verdict.reason or "Failed", verdict.message or "", obj)
        self.failing_since = None
        return True

    def settle_left(self) -> float | None:
        """Seconds until a pending failure counts, or None when none is pending."""
        if self.failing_since is None:
            return None
        return max(0.0, self.failing_since + self.settle - self.clock())

    def remaining(self) -> float:
        return self.deadline - self.clock()

    def expire_if_due(self) -> None:
        if self.remaining() <= 0 and self.failing_since is not None:
            self.settle = 0.0
            self.judge(self.obj)  # the failure seen last is the answer, not a timeout
        if self.remaining() <= 0:
            where = f"{self.namespace}/{self.name}" if self.namespace else self.name
            raise WaitTimeout(
                f"Timed out after {self.timeout:g}s waiting for {self.kind} {where}; "
                f"last seen: {describe_conditions(self.obj)}",
                self.obj,
            )

    def pause(self) -> None:
        self.sleep(max(0.0, min(self.backoff.next(), self.remaining())))

    # -- reads ---------------------------------------------------------------------------------

    def relist(self) -> None:
        """List by name: the object (or its absence) plus a resourceVersion to watch from."""
        items, list_version = self.client.list(
            self.api_version, self.kind, self.namespace, field_selector=self.field_selector
        )
        self.version = list_version or None
        self.obj = items[0] if items else None

    @property
    def field_selector(self) -> str:
        return f"metadata.name={self.name}"

    # -- the loops -------------------------------------------------------------------------------

    def watch_once(self) -> bool:
        """One watch request from ``self.version``; True when the wait is over.

        Returns False when the stream ended without a verdict (server timeout or dropped
        connection): the caller opens the next one from the last version seen.
        """
        events = self.client.watch(
            self.api_version,
            self.kind,
            self.namespace,
            resource_version=self.version,
            field_selector=self.field_selector,
            # A pending failure is judged again when its window ends, even if no event comes.
            timeout_seconds=max(1, math.ceil(min(self.remaining(), self.settle_left() or math.inf))),
        )
        progressed = False
        try:
            for event in events:
                obj = event.get("object") or {}
                self.version = resource_version(obj) or self.version
                progressed = True
                if event.get("type") == "BOOKMARK":
                    continue
                pending_before = self.failing_since is not None
                if self.judge(None if event.get("type") == "DELETED" else obj):
                    return True
                self.expire_if_due()
                if self.failing_since is not None and not pending_before:
                    # A failure began mid-stream, and this stream may stay silent far longer than
                    # the window: leave it, and watch again from here for no longer than the
                    # window, so that a failure that lasts is answered when its window ends.
                    self.backoff.reset()
                    return False
        finally:
            # A stream left early (a verdict, a new window, an error) is closed now, not whenever
            # the garbage collector gets to it: its connection still holds unread data.
            close = getattr(events, "close", None)
            if close is not None:
                close()
        if self.settle_left() == 0.0 and self.judge(self.obj):
            return True  # the failure lasted its window (judge raises WaitFailed)
        if progressed:
            self.backoff.reset()
        else:
            # A stream that ends at once, again and again, must not become a busy loop.
            self.pause()
        return False

    def poll(self) -> dict | None:
        while True:
            self.expire_if_due()
            self.pause()
            try:
                obj = self.client.get_or_none(self.api_version, self.kind, self.name, self.namespace)
            except ApiError as err:
                if err.status not in _TRANSIENT:
                    raise
                continue
            if self.judge(obj):
                return obj

    def run(self, initial: dict | None) -> dict | None:
        if initial is not None:
            self.obj, self.version = initial, resource_version(initial)
            if self.judge(self.obj):
                return self.obj
        # Without a starting object, and after a 410, the next step is a list by name; it sits in
        # the same loop as the watch so that no answer/429/5xx back off and retry for both.
        must_list = initial is None
        while True:
            self.expire_if_due()
            try:
                if must_list:
                    self.relist()
                    must_list = False
                    if self.judge(self.obj):
                        return self.obj
                if self.watch_once():
                    return self.obj
            except Gone:
                # Our resourceVersion was compacted away: read the present state and start over.
                if must_list:
                    self.pause()  # the list itself answered 410: back off rather than spin
                must_list = True
            except ApiError as err:
                if err.status in _WATCH_REFUSED and not must_list:
                    return self.poll()
                if err.status not in _TRANSIENT:
                    raise
                self.pause()


def wait_for(  # noqa: PLR0917 - the positional order is the documented contract (docs/INTERNALS.md)
    client: Any,
    api_version: str,
    kind: str,
    name: str,
    namespace: str | None,
    check: Callable[[dict | None], Verdict | None],
    timeout: float,
    *,
    initial: dict | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    settle: float = 0.0,
) -> dict | None:
    """Wait until ``check`` says done; return the object that satisfied it (None: it is gone).

    ``initial`` is the object the caller just read or wrote; without it the wait starts with a
    list by name. ``check(obj_or_None)`` returns a ``Verdict`` or None (keep waiting). Raises
    ``WaitFailed`` on a terminal verdict and ``WaitTimeout`` after ``timeout`` seconds. With
    ``settle``, a failure verdict ends the wait only when every verdict for ``settle`` seconds has
    been that failure (a False that turns Unknown or True in time does not count), as kn's
    ``--wait-window``. ``clock``/``sleep`` are for tests.
    """
    wait = _Wait(
        client,
        api_version=api_version,
        kind=kind,
        name=name,
        namespace=namespace,
        check=check,
        timeout=timeout,
        clock=clock,
        sleep=sleep,
        settle=settle,
    )
    return wait.run(initial)
