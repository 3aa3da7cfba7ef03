"""With faults injected (429/500 answers, dropped watches, early compaction) real clients still get there."""

from __future__ import annotations

import json
import threading
import time

import urllib3
from conftest import Sandbox
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

FAULTS = (
    "--fault-seed",
    "7",
    "--fault-error-rate",
    "0.2",
    "--fault-error-codes",
    "429,500",
    "--fault-retry-after",
    "0",
    "--fault-drop-watch-after",
    "1",
)


def retrying(call, *args, attempts: int = 50, **kwargs):
    """Call the Python client until the injected 429/500 answers let it through."""
    for _ in range(attempts):
        try:
            return call(*args, **kwargs)
        except ApiException as error:
            if error.status not in (429, 500):
                raise
            time.sleep(0.05)
    raise AssertionError(f"{call.__name__} kept failing")


def injected_count(sb: Sandbox) -> int:
    lines = (sb.state_dir / "requests.log").read_text().splitlines()
    return sum(1 for line in lines if json.loads(line).get("injected"))


def test_kubectl_wait_survives_errors_and_dropped_watches(start_sandbox) -> None:
    sb = start_sandbox(*FAULTS)
    pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: slow}\nspec: {containers: [{name: c, image: x}]}\n"
    for _ in range(20):  # kubectl apply does not retry a 500 by itself
        if sb.kubectl("apply", "-f", "-", input=pod, check=False).returncode == 0:
            break
    core = client.CoreV1Api(sb.api_client())

    def ready_later() -> None:
        time.sleep(2.5)  # long enough that kubectl's watch is dropped at least once first
        status = {"status": {"conditions": [{"type": "Ready", "status": "True"}], "phase": "Running"}}
        retrying(core.patch_namespaced_pod_status, "slow", "default", status)

    thread = threading.Thread(target=ready_later)
    thread.start()
    result = sb.kubectl("wait", "--for=condition=Ready", "pod/slow", "--timeout=60s", check=False, timeout=90)
    thread.join()
    assert result.returncode == 0, result.stderr
    assert "condition met" in result.stdout
    assert injected_count(sb) > 0


def test_python_client_watch_reaches_the_end(start_sandbox) -> None:
    sb = start_sandbox(*FAULTS, "--fault-history-limit", "4")
    core = client.CoreV1Api(sb.api_client())
    retrying(core.create_namespaced_config_map, "default", {"metadata": {"name": "counter"}, "data": {"n": "0"}})

    def count_up() -> None:
        for n in range(1, 16):
            retrying(core.patch_namespaced_config_map, "counter", "default", {"data": {"n": str(n)}})
            time.sleep(0.1)

    thread = threading.Thread(target=count_up)
    thread.start()
    last_seen, relists, resumes = -1, 0, 0
    rv = None
    deadline = time.monotonic() + 60
    while last_seen < 15 and time.monotonic() < deadline:
        try:
            if rv is None:  # (re)list: the current state and a version to watch from
                listing = retrying(core.list_namespaced_config_map, "default", field_selector="metadata.name=counter")
                last_seen = max(last_seen, int(listing.items[0].data["n"]))
                rv = listing.metadata.resource_version
                relists += 1
            for event in watch.Watch().stream(
                core.list_namespaced_config_map,
                "default",
                resource_version=rv,
                field_selector="metadata.name=counter",
                timeout_seconds=5,
            ):
                rv = event["object"].metadata.resource_version
                last_seen = max(last_seen, int(event["object"].data["n"]))
                if last_seen == 15:
                    break
            resumes += 1
        except ApiException as error:
            if error.status == 410:
                rv = None  # history compacted: list again
            elif error.status not in (429, 500):
                raise
        except (urllib3.exceptions.ProtocolError, urllib3.exceptions.ReadTimeoutError):
            resumes += 1  # the stream was cut: resume from the last version seen
    thread.join()
    assert last_seen == 15
    assert resumes > 0 and relists >= 1
    assert injected_count(sb) > 0
