"""The waiter against scripted watch streams: drop, 410, stale generation, terminal False, timeout."""

from __future__ import annotations

import pytest
from ansible_collections.knlab.serverless.plugins.module_utils._errors import ApiError, Gone
from ansible_collections.knlab.serverless.plugins.module_utils._waiter import (
    Verdict,
    WaitFailed,
    WaitTimeout,
    describe_conditions,
    wait_for,
)
from fakes import FakeClock, FakeKubeClient, api_error, bookmark, event

API = "serving.knative.dev/v1"
KIND = "Service"


def ksvc(version: str, generation: int, observed: int | None, ready: str | None, *details: str):
    reason, message = (*details, "", "")[:2]
    status: dict = {}
    if observed is not None:
        status["observedGeneration"] = observed
    if ready is not None:
        status["conditions"] = [{"type": "Ready", "status": ready, "reason": reason, "message": message}]
    return {
        "apiVersion": API,
        "kind": KIND,
        "metadata": {"name": "hello", "namespace": "default", "resourceVersion": version, "generation": generation},
        "status": status,
    }


def ready_check(obj):
    """Generation-aware readiness, the rule the Knative check follows."""
    if obj is None:
        return None
    status = obj.get("status") or {}
    if (status.get("observedGeneration") or 0) < obj["metadata"]["generation"]:
        return None
    for condition in status.get("conditions") or []:
        if condition["type"] == "Ready" and condition["status"] == "True":
            return Verdict(True, False, "Ready", "")
        if condition["type"] == "Ready" and condition["status"] == "False":
            return Verdict(False, True, condition["reason"], condition["message"])
    return None


def gone_check(obj):
    return Verdict(True, False, "Deleted", "") if obj is None else None


@pytest.fixture
def clock():
    return FakeClock()


def wait(client, clock, check=ready_check, timeout=60, initial=None):
    return wait_for(
        client, API, KIND, "hello", "default", check, timeout, initial=initial, clock=clock, sleep=clock.sleep
    )


def watches(client):
    return [details for method, details in client.requests if method == "watch"]


def test_initial_object_already_done_needs_no_watch(clock):
    client = FakeKubeClient()
    done = ksvc("10", 2, 2, "True")
    assert wait(client, clock, initial=done) == done
    assert client.requests == []


def test_watch_starts_at_the_initial_version_and_ignores_a_stale_ready(clock):
    client = FakeKubeClient()
    client.watch_script = [
        [
            # Ready=True still describes generation 1: the controller has not seen the update.
            event("MODIFIED", ksvc("11", 2, 1, "True")),
            event("MODIFIED", ksvc("12", 2, 2, "Unknown", "RevisionMissing")),
            event("MODIFIED", ksvc("13", 2, 2, "True")),
        ]
    ]
    result = wait(client, clock, initial=ksvc("10", 2, 1, "True"))
    assert result["metadata"]["resourceVersion"] == "13"
    (only,) = watches(client)
    assert only["resource_version"] == "10"
    assert only["field_selector"] == "metadata.name=hello"
    assert only["timeout_seconds"] == 30  # the cap, not the whole 60 s of the wait


def test_dropped_stream_resumes_from_last_version_seen(clock):
    client = FakeKubeClient()
    client.watch_script = [
        [event("MODIFIED", ksvc("11", 2, 2, "Unknown"))],  # the connection drops here
        [bookmark("15")],  # a quiet stream ends at its timeout
        [event("MODIFIED", ksvc("16", 2, 2, "True"))],
    ]
    result = wait(client, clock, initial=ksvc("10", 2, 1, "Unknown"))
    assert result["metadata"]["resourceVersion"] == "16"
    assert [w["resource_version"] for w in watches(client)] == ["10", "11", "15"]


def test_no_watch_is_longer_than_the_cap_so_a_silent_connection_is_left_in_time(clock):
    """A watch connection that goes silent (cut by a proxy without a close) delivers nothing, and
    the client notices only at its read timeout (the watch's length + 15 s): a long wait must ask
    for short watches and resume, not for one watch as long as the wait (found by tests/faults)."""
    client = FakeKubeClient()
    client.watch_script = [
        [],  # silent until the server's timeout (or the client's read timeout) ends it
        [event("MODIFIED", ksvc("16", 2, 2, "True"))],
    ]
    result = wait(client, clock, timeout=600, initial=ksvc("10", 2, 1, "Unknown"))
    assert result["metadata"]["resourceVersion"] == "16"
    assert [w["timeout_seconds"] for w in watches(client)] == [30, 30]


def test_gone_relists_then_watches_from_the_list_version(clock):
    client = FakeKubeClient()
    client.put(ksvc("50", 2, 2, "Unknown"))
    client.watch_script = [
        Gone(410, "Expired", "too old resource version: 10 (40)"),
        [event("MODIFIED", ksvc("60", 2, 2, "True"))],
    ]
    result = wait(client, clock, initial=ksvc("10", 2, 1, "Unknown"))
    assert result["metadata"]["resourceVersion"] == "60"
    assert client.methods() == ["watch", "list", "watch"]
    listed = client.requests[1][1]
    assert listed["field_selector"] == "metadata.name=hello"
    second_watch = watches(client)[1]
    assert second_watch["resource_version"] not in (None, "10")  # the list's version, not the expired one


def test_gone_relist_can_finish_the_wait_by_itself(clock):
    client = FakeKubeClient()
    client.put(ksvc("50", 2, 2, "True"))
    client.watch_script = [Gone(410, "Expired", "too old")]
    result = wait(client, clock, initial=ksvc("10", 2, 1, "Unknown"))
    assert result["status"]["conditions"][0]["status"] == "True"
    assert client.methods() == ["watch", "list"]


def test_without_initial_object_the_wait_starts_with_a_list(clock):
    client = FakeKubeClient()
    client.put(ksvc("5", 1, 1, "True"))
    assert wait(client, clock)["metadata"]["name"] == "hello"
    assert client.methods() == ["list"]


def test_terminal_false_fails_at_once_with_reason_and_message(clock):
    client = FakeKubeClient()
    client.watch_script = [
        [
            event("MODIFIED", ksvc("11", 2, 2, "False", "RevisionFailed", 'Revision "hello-00002" failed')),
            event("MODIFIED", ksvc("12", 2, 2, "True")),  # never reached
        ]
    ]
    with pytest.raises(WaitFailed) as caught:
        wait(client, clock, initial=ksvc("10", 2, 1, "Unknown"))
    assert caught.value.reason == "RevisionFailed"
    assert caught.value.msg == 'RevisionFailed: Revision "hello-00002" failed'
    assert caught.value.obj["metadata"]["resourceVersion"] == "11"


def test_false_for_an_old_generation_is_not_terminal(clock):
    client = FakeKubeClient()
    client.watch_script = [
        [
            event("MODIFIED", ksvc("11", 3, 2, "False", "RevisionFailed", "old revision")),
            event("MODIFIED", ksvc("12", 3, 3, "True")),
        ]
    ]
    assert wait(client, clock, initial=ksvc("10", 3, 2, "False", "RevisionFailed"))["metadata"]["generation"] == 3


def test_timeout_reports_the_last_conditions(clock):
    client = FakeKubeClient()
    client.watch_script = [[event("MODIFIED", ksvc("11", 2, 2, "Unknown", "RevisionMissing", "not yet ready"))]]
    with pytest.raises(WaitTimeout) as caught:
        wait(client, clock, timeout=5, initial=ksvc("10", 2, 1, "Unknown"))
    assert "Timed out after 5s waiting for Service default/hello" in caught.value.msg
    assert "Ready=Unknown (RevisionMissing: not yet ready)" in caught.value.msg
    assert caught.value.obj["metadata"]["resourceVersion"] == "11"
    # The empty streams after the script backed off instead of spinning.
    assert clock.slept and max(clock.slept) <= 2.0
    assert len(watches(client)) < 40


def test_refused_watch_falls_back_to_polling(clock):
    client = FakeKubeClient()
    client.put(ksvc("20", 2, 2, "Unknown"))
    client.watch_script = [api_error(403, "Forbidden", "cannot watch services")]
    polls = []

    def sleep(seconds):
        clock.sleep(seconds)
        polls.append(seconds)
        if len(polls) == 3:
            client.put(ksvc("21", 2, 2, "True"))

    result = wait_for(
        client,
        API,
        KIND,
        "hello",
        "default",
        ready_check,
        60,
        initial=ksvc("10", 2, 1, "Unknown"),
        clock=clock,
        sleep=sleep,
    )
    assert result["status"]["conditions"][0]["status"] == "True"
    assert client.methods() == ["watch", "get", "get", "get"]
    assert polls == [0.2, 0.4, 0.8]


def test_transient_errors_are_retried_until_the_watch_works(clock):
    client = FakeKubeClient()
    client.watch_script = [
        api_error(0, "ConnectionFailed", "connection refused"),
        api_error(503, "ServiceUnavailable", "etcd leader changed"),
        [event("MODIFIED", ksvc("11", 2, 2, "True"))],
    ]
    assert wait(client, clock, initial=ksvc("10", 2, 1, "Unknown"))["metadata"]["resourceVersion"] == "11"
    assert [w["resource_version"] for w in watches(client)] == ["10", "10", "10"]


def test_a_transient_error_of_the_relist_after_gone_is_retried(clock):
    client = FakeKubeClient()
    client.put(ksvc("50", 2, 2, "Unknown"))
    client.watch_script = [Gone(410, "Expired", "too old"), [event("MODIFIED", ksvc("60", 2, 2, "True"))]]
    client.errors["list"] = [api_error(503, "ServiceUnavailable", "etcd leader changed")]
    result = wait(client, clock, initial=ksvc("10", 2, 1, "Unknown"))
    assert result["metadata"]["resourceVersion"] == "60"
    assert client.methods() == ["watch", "list", "list", "watch"]
    assert clock.slept == [0.2]  # backed off once before listing again
    assert watches(client)[1]["resource_version"] not in (None, "10")


def test_a_transient_error_of_the_first_list_is_retried(clock):
    client = FakeKubeClient()
    client.put(ksvc("5", 1, 1, "True"))
    client.errors["list"] = [
        api_error(503, "ServiceUnavailable", "etcd leader changed"),
        api_error(0, "ConnectionFailed", "connection refused"),
    ]
    assert wait(client, clock)["metadata"]["resourceVersion"] == "5"
    assert client.methods() == ["list", "list", "list"]
    assert clock.slept == [0.2, 0.4]


def test_a_list_failing_until_the_deadline_times_out(clock):
    client = FakeKubeClient()
    client.errors["list"] = [api_error(429, "TooManyRequests", "slow down") for _attempt in range(100)]
    with pytest.raises(WaitTimeout, match="Timed out after 5s"):
        wait(client, clock, timeout=5)
    assert set(client.methods()) == {"list"}


def test_a_refused_list_is_not_mistaken_for_a_refused_watch(clock):
    client = FakeKubeClient()
    client.errors["list"] = [api_error(403, "Forbidden", "cannot list services")]
    with pytest.raises(ApiError, match="cannot list services"):
        wait(client, clock)
    assert client.methods() == ["list"]


def test_other_api_errors_end_the_wait(clock):
    client = FakeKubeClient()
    client.watch_script = [api_error(401, "Unauthorized", "token expired")]
    with pytest.raises(ApiError, match="token expired"):
        wait(client, clock, initial=ksvc("10", 2, 1, "Unknown"))


def test_waiting_for_deletion_ends_on_the_deleted_event(clock):
    client = FakeKubeClient()
    client.watch_script = [[event("MODIFIED", ksvc("11", 2, 2, "True")), event("DELETED", ksvc("12", 2, 2, "True"))]]
    assert wait(client, clock, check=gone_check, initial=ksvc("10", 2, 2, "True")) is None


def test_waiting_for_deletion_of_an_absent_object_returns_at_once(clock):
    client = FakeKubeClient()
    assert wait(client, clock, check=gone_check) is None
    assert client.methods() == ["list"]


def test_describe_conditions():
    obj = ksvc("1", 1, 1, "False", "RevisionFailed", "boom")
    obj["status"]["conditions"].append({"type": "RoutesReady", "status": "Unknown"})
    assert describe_conditions(obj) == "Ready=False (RevisionFailed: boom); RoutesReady=Unknown"
    assert describe_conditions(None) == "the object does not exist"
    assert describe_conditions({"status": {}}) == "no conditions reported yet"


# -- the wait window (kn's --wait-window): a False must last before it counts -------------------------


def windowed(client, clock, settle=2.0, timeout=60, initial=None):
    return wait_for(
        client,
        API,
        KIND,
        "hello",
        "default",
        ready_check,
        timeout,
        initial=initial,
        clock=clock,
        sleep=clock.sleep,
        settle=settle,
    )


def timed_watches(client, clock):
    """A watch whose stream ends without events only after its timeoutSeconds, as a server's does."""
    original = client.watch

    def watch(*args, **kwargs):
        events = list(original(*args, **kwargs))
        if not events:
            clock.now += kwargs.get("timeout_seconds") or 0
        return iter(events)

    client.watch = watch


def test_a_false_that_turns_true_within_the_window_is_not_final(clock):
    # Right after a template change Knative can still show the old revision's failure.
    client = FakeKubeClient()
    client.watch_script = [
        # The waiter leaves the stream when the failure begins, and watches again from it for no
        # longer than the window (see the silent-stream test below); the server goes on from there.
        [event("MODIFIED", ksvc("11", 2, 2, "False", "RevisionMissing", "old revision failed"))],
        [event("MODIFIED", ksvc("12", 2, 2, "Unknown")), event("MODIFIED", ksvc("13", 2, 2, "True"))],
    ]
    done = windowed(client, clock, initial=ksvc("10", 2, 1, "Unknown"))
    assert done["metadata"]["resourceVersion"] == "13"
    assert [w["resource_version"] for w in watches(client)] == ["10", "11"]
    assert watches(client)[1]["timeout_seconds"] == 2


def test_a_false_that_lasts_the_window_fails_with_its_reason(clock):
    client = FakeKubeClient()
    timed_watches(client, clock)
    client.watch_script = [
        [event("MODIFIED", ksvc("11", 2, 2, "False", "RevisionFailed", "exit code 1"))],
        [],  # nothing more happens
    ]
    start = clock.now
    with pytest.raises(WaitFailed) as caught:
        windowed(client, clock, initial=ksvc("10", 2, 1, "Unknown"))
    assert caught.value.reason == "RevisionFailed"
    # The second watch only lasted until the window ended, not until the deadline.
    assert watches(client)[1]["timeout_seconds"] == 2
    assert clock.now - start <= 3


def test_a_false_that_lasts_the_window_on_a_silent_stream_fails_when_the_window_ends(clock):
    # Seen on the sandbox by tests/conformance: a crash turns the Service False once, and nothing
    # else happens. The stream that showed the False stays open and silent until its own timeout
    # (the whole wait), so the failure must not wait for that stream to end.
    client = FakeKubeClient()
    raw = client.watch
    streams = []
    timeouts = []

    def first_stream(timeout_seconds):
        yield event("MODIFIED", ksvc("11", 2, 2, "False", "RevisionFailed", "exit code 3"))
        clock.now += timeout_seconds  # silent until the server ends it
        streams.append("read to its end")

    def watch(*args, **kwargs):
        timeouts.append(kwargs["timeout_seconds"])
        if len(timeouts) == 1:
            return first_stream(kwargs["timeout_seconds"])
        events = list(raw(*args, **kwargs))
        if not events:
            clock.now += kwargs["timeout_seconds"]
        return iter(events)

    client.watch = watch
    client.watch_script = [[]]  # the next watch: nothing happens within the window
    start = clock.now
    with pytest.raises(WaitFailed) as caught:
        windowed(client, clock, timeout=300, initial=ksvc("10", 2, 1, "Unknown"))
    assert caught.value.reason == "RevisionFailed"
    assert streams == []  # the first stream was left when the failure began
    assert timeouts == [30, 2]  # the first watch capped at 30 s, then the rest of the window
    assert clock.now - start <= 3


def test_a_false_pending_at_the_deadline_is_the_answer_not_a_timeout(clock):
    client = FakeKubeClient()
    client.watch_script = [[event("MODIFIED", ksvc("11", 2, 2, "False", "RevisionFailed", "exit code 1"))]]
    with pytest.raises(WaitFailed):
        windowed(client, clock, settle=30, timeout=5, initial=ksvc("10", 2, 1, "Unknown"))


def test_during_a_wait_the_client_does_not_retry_connects_itself(clock):
    # The wait retries a refused connect until its own deadline; the client's 30 s of retries per
    # request would carry a wait past it. The client's setting is back once the wait is over.
    client = FakeKubeClient()
    client.connect_retry_seconds = 30.0
    seen = []
    client.watch_script = [
        api_error(0, "ConnectionFailed", "connection refused"),
        [event("MODIFIED", ksvc("11", 2, 2, "True"))],
    ]
    real_watch = client.watch

    def watch(*args, **kwargs):
        seen.append(client.connect_retry_seconds)
        return real_watch(*args, **kwargs)

    client.watch = watch
    assert wait(client, clock, initial=ksvc("10", 2, 1, "Unknown"))["metadata"]["resourceVersion"] == "11"
    assert seen == [0, 0]
    assert client.connect_retry_seconds == 30.0
