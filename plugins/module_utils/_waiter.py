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
# The longest one watch request may last. A watch connection can go silent without being closed
# (a proxy or NAT that drops it, the API server's end gone): nothing arrives and nothing says so,
# and the client notices only when its read timeout (the watch's length + 15 s) passes. Asking for
# short watches bounds that blind spot: found by the fault campaign (tests/faults), where a wait of
# 240 s on a silent connection missed a TaskRun that finished after 25 s and timed out.
_WATCH_MAX_SECONDS = 30
_BACKOFF_FIRST = 0.2
_BACKOFF_MAX = 2.0


class WaitFailed(ServerlessError):
    """``check`` (or ``probe``) returned a terminal failure; ``obj`` is the object last judged.

    ``diagnosis`` is the probe's latest finding (a ``Verdict``) or None.
    """

    def __init__(self, reason: str, message: str, obj: dict | None, diagnosis: Verdict | None = None) -> None:
        super().__init__(f"{reason}: {message}" if message else reason)
        self.reason = reason
        self.message = message
        self.obj = obj
        self.diagnosis = diagnosis


class WaitTimeout(ServerlessError):
    """The deadline passed; the message carries the last conditions seen (and the probe's finding)."""

    def __init__(self, msg: str, obj: dict | None, diagnosis: Verdict | None = None) -> None:
        super().__init__(msg)
        self.obj = obj
        self.diagnosis = diagnosis


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
        probe: Callable[[dict | None], Verdict | None] | None = None,
        probe_interval: float = 2.0,
        observe: Callable[[dict | None], None] | None = None,
    ) -> None:
        self.client = client
        # ``probe`` looks past the object (at its pods, say) while it is not done: a failed verdict
        # ends the wait at once, any other verdict is kept as the diagnosis for a later message.
        self.probe = probe
        self.probe_interval = probe_interval
        self.next_probe = clock()
        self.diagnosis: Verdict | None = None
        # ``observe`` sees every version of the object the wait reads (progress reports).
        self.observe = observe
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
        if self.observe is not None:
            self.observe(obj)
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
            self.last_look()
            raise WaitFailed(verdict.reason or "Failed", verdict.message or "", obj, self.diagnosis)
        self.failing_since = None
        return True

    def last_look(self) -> None:
        """One more probe before a failure or timeout is reported, so that it carries what the
        probe sees now (the object may fail before the probe's next turn)."""
        if self.probe is None:
            return
        try:
            verdict = self.probe(self.obj)
        except ApiError:
            return
        if verdict is not None:
            self.diagnosis = verdict

    def probe_if_due(self) -> None:
        """Run the probe when its interval has passed; a failed verdict ends the wait."""
        if self.probe is None or self.clock() < self.next_probe:
            return
        self.next_probe = self.clock() + self.probe_interval
        try:
            verdict = self.probe(self.obj)
        except ApiError as err:
            if err.status not in _TRANSIENT:
                self.probe = None  # no right to look (403), or nothing to look at: wait without it
            return
        if verdict is None:
            return
        self.diagnosis = verdict
        if verdict.failed:
            raise WaitFailed(verdict.reason or "Failed", verdict.message or "", self.obj, verdict)

    def probe_left(self) -> float:
        """Seconds until the probe is due (infinite without a probe)."""
        if self.probe is None:
            return math.inf
        return max(0.0, self.next_probe - self.clock())

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
            self.last_look()
            where = f"{self.namespace}/{self.name}" if self.namespace else self.name
            found = f"; {self.diagnosis.message}" if self.diagnosis is not None and self.diagnosis.message else ""
            raise WaitTimeout(
                f"Timed out after {self.timeout:g}s waiting for {self.kind} {where}; "
                f"last seen: {describe_conditions(self.obj)}{found}",
                self.obj,
                self.diagnosis,
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
        # A pending failure is judged again when its window ends, and a probe runs when it is due,
        # even if no event comes.
        # A silent connection is left after at most _WATCH_MAX_SECONDS (+ the read margin).
        limit = max(
            1,
            math.ceil(min(self.remaining(), self.settle_left() or math.inf, self.probe_left(), _WATCH_MAX_SECONDS)),
        )
        opened = self.clock()
        events = self.client.watch(
            self.api_version,
            self.kind,
            self.namespace,
            resource_version=self.version,
            field_selector=self.field_selector,
            timeout_seconds=limit,
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
                self.probe_if_due()
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
        self.probe_if_due()
        if progressed or self.clock() - opened >= limit:
            # Events came, or the stream lasted as long as it was asked to: no back-off.
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
            self.probe_if_due()

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
    probe: Callable[[dict | None], Verdict | None] | None = None,
    probe_interval: float = 2.0,
    observe: Callable[[dict | None], None] | None = None,
) -> dict | None:
    """Wait until ``check`` says done; return the object that satisfied it (None: it is gone).

    ``initial`` is the object the caller just read or wrote; without it the wait starts with a
    list by name. ``check(obj_or_None)`` returns a ``Verdict`` or None (keep waiting). Raises
    ``WaitFailed`` on a terminal verdict and ``WaitTimeout`` after ``timeout`` seconds. With
    ``settle``, a failure verdict ends the wait only when every verdict for ``settle`` seconds has
    been that failure (a False that turns Unknown or True in time does not count), as kn's
    ``--wait-window``. ``probe(obj)`` runs every ``probe_interval`` seconds while the object is
    not done, to look at what the object cannot say yet (its pods): a failed verdict ends the wait
    with ``WaitFailed`` at once, any other verdict becomes the ``diagnosis`` that a later
    ``WaitFailed``/``WaitTimeout`` carries. ``observe(obj)`` sees every version read (progress).
    ``clock``/``sleep`` are for tests.
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
        probe=probe,
        probe_interval=probe_interval,
        observe=observe,
    )
    # The wait retries a request that found no server itself, until its own deadline (the client
    # would otherwise spend up to CONNECT_RETRY_SECONDS on each request, past that deadline).
    connect_retry = getattr(client, "connect_retry_seconds", None)
    if connect_retry is not None:
        client.connect_retry_seconds = 0
    try:
        return wait.run(initial)
    finally:
        if connect_retry is not None:
            client.connect_retry_seconds = connect_retry
