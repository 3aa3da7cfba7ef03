"""`kill -9` of knlab-sandbox during a burst of writes: no acknowledged write is lost, and
resourceVersion stays monotonic.

Each round starts the burst (``WORKERS`` threads, each creating ConfigMaps and then updating
them), kills the server's process group with SIGKILL once ``KILL_AFTER`` writes were acknowledged
(answered 2xx), lets the writers run into the dead server, and starts the server again on the same
state dir. Then:

- every acknowledged create is there, with its uid;
- every acknowledged update is there: the object holds that update's counter or a later one (a
  write in flight at the kill may have been committed without its answer), and a resourceVersion
  at least the acknowledged one;
- a write after the restart gets a resourceVersion greater than every acknowledged one, and so
  does the list's.

``SANDBOX_CRASH_ROUNDS`` (default 5) sets the rounds. The last line printed (``-s``) sums up.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from conftest import Sandbox

ROUNDS = int(os.environ.get("SANDBOX_CRASH_ROUNDS", "5"))
WORKERS = 6
KILL_AFTER = 200  # acknowledged writes before the kill, per round
PER_WORKER = 400  # an upper bound, so that a server that does not die cannot keep the burst going
NAMESPACE = "default"

pytestmark = pytest.mark.timeout(30 + 20 * ROUNDS)


@dataclass
class Acked:
    """What the clients were told: per object, its uid, the last counter and resourceVersion acked."""

    uid: dict[str, str] = field(default_factory=dict)
    counter: dict[str, int] = field(default_factory=dict)
    version: dict[str, int] = field(default_factory=dict)
    creates: int = 0
    updates: int = 0
    refused: int = 0  # answered but not 2xx (none expected)
    failed: int = 0  # no answer: the server died under the request (in flight at the kill)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def writes(self) -> int:
        return self.creates + self.updates


def configmap(name: str, counter: int) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"n": str(counter)}}


def writer(sb: Sandbox, prefix: str, acked: Acked, on_ack: Callable[[], None]) -> None:
    """Create a ConfigMap, update it twice, then the next one, until the server stops answering."""
    base = f"/api/v1/namespaces/{NAMESPACE}/configmaps"
    for index in range(PER_WORKER):
        name = f"{prefix}-{index}"
        for counter in range(3):
            body = configmap(name, counter)
            try:
                if counter == 0:
                    status, _, answer = sb.request("POST", base, body, timeout=5)
                else:
                    body["metadata"]["resourceVersion"] = str(acked.version[name])
                    status, _, answer = sb.request("PUT", f"{base}/{name}", body, timeout=5)
            except OSError:
                with acked.lock:
                    acked.failed += 1
                return  # the server is gone: this writer's burst ends with its first unanswered write
            if status // 100 != 2:
                with acked.lock:
                    acked.refused += 1
                return
            with acked.lock:
                acked.uid[name] = answer["metadata"]["uid"]
                acked.counter[name] = counter
                acked.version[name] = int(answer["metadata"]["resourceVersion"])
                if counter == 0:
                    acked.creates += 1
                else:
                    acked.updates += 1
            on_ack()


def burst_and_kill(sb: Sandbox, round_: int) -> Acked:
    acked = Acked()
    enough = threading.Event()
    count = [0]
    count_lock = threading.Lock()

    def on_ack() -> None:
        with count_lock:
            count[0] += 1
            if count[0] >= KILL_AFTER:
                enough.set()

    threads = [
        threading.Thread(target=writer, args=(sb, f"crash{round_}-w{worker}", acked, on_ack), daemon=True)
        for worker in range(WORKERS)
    ]
    for thread in threads:
        thread.start()
    assert enough.wait(timeout=20), f"only {count[0]} writes acknowledged before the kill:\n{sb.server_log()}"
    sb.kill()  # SIGKILL to the server's process group, writers still writing
    for thread in threads:
        thread.join(timeout=15)
    assert not any(thread.is_alive() for thread in threads), "a writer kept going after the kill"
    return acked


def test_kill_9_during_a_burst_loses_no_acknowledged_write(start_sandbox) -> None:
    sb = start_sandbox()
    totals = {"acked": 0, "creates": 0, "updates": 0, "in_flight": 0}
    for round_ in range(ROUNDS):
        acked = burst_and_kill(sb, round_)
        assert acked.refused == 0, f"{acked.refused} writes refused during the burst"
        assert acked.writes >= KILL_AFTER
        sb.start()  # the same state dir and ports

        status, _, listing = sb.request("GET", f"/api/v1/namespaces/{NAMESPACE}/configmaps")
        assert status == 200
        stored = {item["metadata"]["name"]: item for item in listing["items"]}
        lost = [name for name in acked.uid if name not in stored or stored[name]["metadata"]["uid"] != acked.uid[name]]
        older = [
            name
            for name in acked.uid
            if name in stored
            and (
                int(stored[name]["data"]["n"]) < acked.counter[name]
                or int(stored[name]["metadata"]["resourceVersion"]) < acked.version[name]
            )
        ]
        highest = max(acked.version.values())
        status, _, after = sb.request(
            "POST", f"/api/v1/namespaces/{NAMESPACE}/configmaps", configmap(f"after{round_}", 0)
        )
        assert status == 201, after
        next_version = int(after["metadata"]["resourceVersion"])
        list_version = int(listing["metadata"]["resourceVersion"])
        print(
            f"round {round_ + 1}: {acked.writes} acknowledged ({acked.creates} creates, {acked.updates} updates), "
            f"{acked.failed} in flight at the kill; after the restart {len(lost)} lost, {len(older)} older, "
            f"highest acknowledged resourceVersion {highest}, next write {after['metadata']['resourceVersion']}"
        )
        assert not lost, f"acknowledged writes lost after kill -9: {lost[:10]}"
        assert not older, f"objects older than their acknowledged write: {older[:10]}"
        assert next_version > highest, f"a write after the restart got {next_version}, not above {highest}"
        assert list_version >= highest, f"the list after the restart is at {list_version}, below {highest}"
        totals["acked"] += acked.writes
        totals["creates"] += acked.creates
        totals["updates"] += acked.updates
        totals["in_flight"] += acked.failed
    print(
        f"sandbox crash: {ROUNDS} kill -9 rounds, {totals['acked']} acknowledged writes ({totals['creates']} creates, "
        f"{totals['updates']} updates), {totals['in_flight']} in flight at the kill, 0 lost, "
        "0 resourceVersions going back"
    )
