"""How tests/integration/hub_scale.py counts the hub replicas that served its load.

"At least two replicas served" must mean two pods serving at the same time: a pod killed mid-load
and the pod that replaces it are one replica, however many pod names the logs show.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
import hub_scale

START = datetime(2026, 12, 7, 1, 0, 0, tzinfo=UTC)


def log_line(seconds: float, uri: str = '"/v2/scale/p0/blobs/sha256:5e3d"', msg: str = "response completed") -> str:
    """A line as docker-registry (logrus, text) writes it, ``seconds`` after START."""
    stamp = (START + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S.%f") + "123Z"  # nanoseconds
    return (
        f'time="{stamp}" level=info msg="{msg}" go.version=go1.19.8 http.request.host=hub '
        f'http.request.id=id-{seconds} http.request.method=GET http.request.remoteaddr="127.0.0.1:4000" '
        f"http.request.uri={uri} http.response.duration=1.2ms http.response.status=200"
    )


def spans(**pods: tuple[float, ...]) -> dict[str, list[float]]:
    return {pod: [START.timestamp() + s for s in seconds] for pod, seconds in pods.items()}


def test_a_killed_pod_and_its_replacement_are_one_replica_not_two() -> None:
    # hub-a served until the kill at 5.5 s; hub-c, its replacement, from 6 s on: never both at once.
    times = spans(hub_a=(0.0, 1.0, 5.0), hub_c=(6.0, 9.0, 15.0))
    assert hub_scale.replicas_at_once(times) == 1


def test_pods_serving_at_the_same_time_are_counted() -> None:
    assert hub_scale.replicas_at_once(spans(a=(0.0, 5.0), b=(4.0, 9.0))) == 2
    # a and c never overlap; b overlaps each: two at once at most, not three.
    assert hub_scale.replicas_at_once(spans(a=(0.0, 4.0), b=(3.0, 8.0), c=(6.0, 10.0))) == 2
    assert hub_scale.replicas_at_once(spans(a=(0.0, 10.0), b=(2.0, 8.0), c=(5.0, 6.0))) == 3
    # A killed pod, its replacement, and one that served throughout: two at once.
    assert hub_scale.replicas_at_once(spans(a=(0.0, 5.0), c=(6.0, 15.0), b=(1.0, 14.0))) == 2


def test_the_edges_of_the_spans() -> None:
    assert hub_scale.replicas_at_once({}) == 0
    assert hub_scale.replicas_at_once(spans(a=(), b=(3.0,))) == 1
    # One request each, at the same instant; and spans that touch: both at once (closed spans).
    assert hub_scale.replicas_at_once(spans(a=(3.0,), b=(3.0,))) == 2
    assert hub_scale.replicas_at_once(spans(a=(0.0, 5.0), b=(5.0, 9.0))) == 2
    assert hub_scale.replicas_at_once(spans(a=(0.0, 5.0), b=(5.000001, 9.0))) == 1


def test_only_the_loads_completed_requests_count_with_their_time() -> None:
    counted = [
        log_line(1.0),
        log_line(2.0, uri="/v2/scale/p1/manifests/t0"),  # logrus quotes a value only when it must
        log_line(3.0, uri='"/v2/scale/p1/blobs/uploads/3f?_state=x"'),
    ]
    ignored = [
        log_line(4.0, uri="/v2/"),  # the probes
        log_line(5.0, uri="/v2/demo/hello/manifests/latest"),  # another repository
        log_line(6.0, msg="response completed with error"),
        'time="2026-12-07T01:00:07Z" level=info msg="listening on [::]:5000"',
    ]
    lines = hub_scale.load_lines("\n".join(counted + ignored) + "\n")
    assert lines == set(counted)
    assert hub_scale.served_times({"hub-a": lines, "hub-b": set()}) == {
        "hub-a": [START.timestamp() + s for s in (1.0, 2.0, 3.0)]
    }
    assert hub_scale.line_time('time="2026-12-07T01:00:00.500000001Z" level=info') == START.timestamp() + 0.5
    assert hub_scale.line_time('level=info time="2026-12-07T01:00:02Z" msg=x') == START.timestamp() + 2
    assert hub_scale.line_time('level=info http.response.time="2026-12-07T01:00:02Z"') is None
    assert hub_scale.line_time("no time here") is None


class FakeHub:
    """A hub whose pods' logs are set by the test: what hub_scale reads with kubectl logs."""

    def __init__(self) -> None:
        self.logs: dict[str, list[str]] = {}

    def served(self, pod: str) -> set[str]:
        return hub_scale.load_lines("\n".join(self.logs.get(pod, [])))


def test_logs_read_more_than_once_add_up_once() -> None:
    hub, tally = FakeHub(), hub_scale.Tally()
    hub.logs = {"hub-a": [log_line(0.0), log_line(1.0)], "hub-b": [log_line(0.5)]}
    tally.read_served(hub, ["hub-a", "hub-b"])  # just before the kill
    # The sandbox restarts the killed process in its pod: a new log under the same pod name.
    hub.logs = {"hub-a": [log_line(7.0)], "hub-b": [log_line(0.5), log_line(8.0)]}
    tally.read_served(hub, ["hub-a", "hub-b"])
    times = hub_scale.served_times(tally.served)
    assert {pod: len(found) for pod, found in times.items()} == {"hub-a": 3, "hub-b": 2}
    assert hub_scale.replicas_at_once(times) == 2


def finished_tally(served: dict[str, list[str]]) -> hub_scale.Tally:
    tally = hub_scale.Tally(pushes=4, pulls=6, killed=["hub pod hub-a (deleted with --grace-period=0 --force)"])
    tally.served = {pod: set(lines) for pod, lines in served.items()}
    tally.killed_at = START.timestamp() + 5.5
    return tally


def run_report(tally: hub_scale.Tally, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    args = argparse.Namespace(pushers=2, pushes=2)
    code = hub_scale.report("cluster", args, tally, checked=0, started=0.0, replaced="")
    return code, capsys.readouterr().out


def test_the_verdict_fails_when_only_a_killed_pod_and_its_replacement_served(
    capsys: pytest.CaptureFixture[str],
) -> None:
    tally = finished_tally({"hub-a": [log_line(0.0), log_line(5.0)], "hub-c": [log_line(6.0), log_line(12.0)]})
    code, output = run_report(tally, capsys)
    assert code == 1
    assert "FAILED: at most 1 replica(s) served the load at the same time (2 pod(s) served it at all" in output
    summary = hub_scale.parse_summary(output.strip().splitlines()[-1])
    assert summary is not None
    assert (summary["at_once"], summary["pods"]) == (1, 2)


def test_the_verdict_passes_when_two_pods_served_at_once(capsys: pytest.CaptureFixture[str]) -> None:
    tally = finished_tally(
        {
            "hub-a": [log_line(0.0), log_line(5.0)],
            "hub-b": [log_line(2.0), log_line(11.0)],
            "hub-c": [log_line(6.0), log_line(12.0)],
        }
    )
    code, output = run_report(tally, capsys)
    assert code == 0, output
    assert "  the kill at +5.50 s" in output
    assert "  hub-a: 2 load requests, from +0.00 s to +5.00 s" in output
    summary = hub_scale.parse_summary(output.strip().splitlines()[-1])
    assert summary is not None
    assert summary["target"] == "cluster"
    assert (summary["at_once"], summary["pods"], summary["pushes"], summary["errors"]) == (2, 3, 4, 0)
