"""The client: auth spec, discovery, error translation, watch stream parsing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest
import urllib3
from ansible_collections.knlab.serverless.plugins.module_utils import _client
from ansible_collections.knlab.serverless.plugins.module_utils._errors import (
    ApiError,
    Conflict,
    DryRunUnsupported,
    Gone,
    MissingDependency,
    NotFound,
    ServerlessError,
)
from ansible_collections.kubernetes.core.plugins.module_utils.args_common import AUTH_ARG_SPEC as K8S_AUTH_ARG_SPEC


def test_auth_spec_is_kubernetes_cores_and_the_fallback_copy_matches_it():
    assert _client.AUTH_ARG_SPEC == K8S_AUTH_ARG_SPEC
    assert _client._AUTH_ARG_SPEC_COPY == K8S_AUTH_ARG_SPEC


def test_missing_library_gives_the_standard_message(monkeypatch):
    monkeypatch.setattr(_client, "URLLIB3_IMPORT_ERROR", "Traceback: No module named 'urllib3'")
    with pytest.raises(MissingDependency, match=r"Failed to import the required Python library \(urllib3\)"):
        _client.get_client(SimpleNamespace(params={}, check_mode=False))


def test_unreadable_kubeconfig_is_a_one_line_error(tmp_path):
    missing = tmp_path / "nope.yaml"
    module = SimpleNamespace(params={"kubeconfig": str(missing)}, check_mode=False)
    with pytest.raises(ServerlessError, match="Could not create the Kubernetes API client") as caught:
        _client.get_client(module)
    assert "\n" not in caught.value.msg


def test_the_modules_do_not_import_the_kubernetes_library():
    # Its import alone costs about a second per module run (issue 9): only exec/auth-provider users need it.
    code = (
        "import sys; import ansible_collections.knlab.serverless.plugins.modules.knative_service, "
        "ansible_collections.knlab.serverless.plugins.modules.tekton_taskrun, "
        "ansible_collections.knlab.serverless.plugins.modules.tekton_taskrun_wait; "
        "print(sorted(m for m in sys.modules if m == 'kubernetes' or m.startswith('kubernetes.')))"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path for path in sys.path if path)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert done.stdout.strip() == "[]"


DISCOVERY = {
    "/api/v1": {"resources": [{"name": "configmaps", "kind": "ConfigMap", "namespaced": True}]},
    "/apis/serving.knative.dev/v1": {
        "resources": [
            {"name": "services", "kind": "Service", "namespaced": True},
            {"name": "services/status", "kind": "Service", "namespaced": True},
        ]
    },
}


class FakeTransport:
    """Answers requests from a script: discovery documents, then ``answer`` for everything else."""

    def __init__(self, answer):
        self.answer = answer
        self.calls = []

    def request(self, method, path, query=None, **kwargs):
        if method == "GET" and path in DISCOVERY:
            return DISCOVERY[path]
        self.calls.append((method, path, dict(query or []), kwargs))
        if isinstance(self.answer, Exception):
            raise self.answer
        return dict(self.answer)


def status_error(status: int, reason: str, message: str) -> Exception:
    body = json.dumps({"kind": "Status", "status": "Failure", "reason": reason, "message": message}).encode()
    return _client.HttpError(status, "Some Reason", body)


def client_with(transport, *, dry_run=False):
    return _client.KubeClient(transport, dry_run=dry_run)


@pytest.mark.parametrize(
    ("status", "reason", "cls"),
    [(404, "NotFound", NotFound), (409, "Conflict", Conflict), (410, "Expired", Gone), (422, "Invalid", ApiError)],
)
def test_api_errors_become_typed_one_line_errors(status, reason, cls):
    client = client_with(FakeTransport(status_error(status, reason, "something\nwent wrong")))
    with pytest.raises(cls) as caught:
        client.get("v1", "ConfigMap", "x", "default")
    assert caught.value.status == status
    assert caught.value.reason == reason
    assert caught.value.message == "something went wrong"


def test_an_error_without_a_status_body_keeps_the_http_reason():
    client = client_with(FakeTransport(_client.HttpError(502, "Bad Gateway", b"<html>upstream</html>")))
    with pytest.raises(ApiError) as caught:
        client.get("v1", "ConfigMap", "x", "default")
    error = caught.value
    assert (error.status, error.reason, error.message) == (502, "Bad Gateway", "<html>upstream</html>")


def test_connection_failure_is_status_zero():
    client = client_with(FakeTransport(urllib3.exceptions.MaxRetryError(None, "/api", "refused")))
    with pytest.raises(ApiError) as caught:
        client.get("v1", "ConfigMap", "x", "default")
    assert caught.value.status == 0
    assert "cannot reach the Kubernetes API server" in caught.value.msg


class ScriptedTransport(FakeTransport):
    """Raises each of ``failures`` in turn for non-discovery requests, then answers ``answer``."""

    def __init__(self, failures, answer):
        super().__init__(answer)
        self.failures = list(failures)

    def request(self, method, path, query=None, **kwargs):
        if not (method == "GET" and path in DISCOVERY) and self.failures:
            self.calls.append((method, path, dict(query or []), kwargs))
            raise self.failures.pop(0)
        return super().request(method, path, query, **kwargs)


class FakeClock:
    def __init__(self):
        self.now = 1000.0
        self.sleeps = []

    def monotonic(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


def refused():
    message = "Failed to establish a new connection: [Errno 111] Connection refused"
    reason = urllib3.exceptions.NewConnectionError(None, message)
    return urllib3.exceptions.MaxRetryError(None, "/api/v1/namespaces/default/configmaps", reason)


@pytest.fixture
def clock(monkeypatch):
    fake = FakeClock()
    monkeypatch.setattr(_client.time, "monotonic", fake.monotonic)
    monkeypatch.setattr(_client.time, "sleep", fake.sleep)
    return fake


def test_a_refused_connection_is_tried_again_until_the_server_answers(clock):
    # A write too: a connection that was never made carried nothing, so sending again is safe.
    transport = ScriptedTransport([refused(), refused(), refused()], {"kind": "ConfigMap", "metadata": {"name": "x"}})
    created = client_with(transport).create("v1", "ConfigMap", {"metadata": {"name": "x"}}, "default")
    assert created["metadata"]["name"] == "x"
    assert [call[0] for call in transport.calls] == ["POST"] * 4
    assert clock.sleeps == [0.25, 0.5, 1.0]


def test_a_server_that_stays_unreachable_fails_after_the_retry_time(clock):
    transport = ScriptedTransport([refused()] * 100, {})
    with pytest.raises(ApiError) as caught:
        client_with(transport).get("v1", "ConfigMap", "x", "default")
    assert caught.value.status == 0
    assert "cannot reach the Kubernetes API server for 30 s: " in caught.value.msg
    assert "Connection refused" in caught.value.msg
    assert 28 <= sum(clock.sleeps) <= 30
    assert max(clock.sleeps) == 2.0


@pytest.mark.parametrize(
    "error",
    [
        urllib3.exceptions.ReadTimeoutError(None, "/api", "read timed out"),
        urllib3.exceptions.ProtocolError("Connection aborted.", ConnectionResetError(104, "reset")),
        urllib3.exceptions.MaxRetryError(None, "/api", urllib3.exceptions.ProxyError("proxy", OSError("down"))),
        ConnectionResetError(104, "Connection reset by peer"),
    ],
    ids=["read-timeout", "reset-after-send", "proxy", "reset"],
)
def test_a_request_that_may_have_been_sent_is_not_sent_again(clock, error):
    transport = ScriptedTransport([error], {})
    with pytest.raises(ApiError) as caught:
        client_with(transport).create("v1", "ConfigMap", {"metadata": {"name": "x"}}, "default")
    assert caught.value.status == 0
    assert len(transport.calls) == 1
    assert clock.sleeps == []


def test_unknown_kind_says_which_one():
    client = client_with(FakeTransport({}))
    with pytest.raises(ServerlessError, match=r"does not serve Task in v1: is the CRD installed\?"):
        client.get("v1", "Task", "x", "default")
    with pytest.raises(ServerlessError, match=r"does not serve Task in tekton.dev/v1: is the CRD installed\?"):
        client_with(FakeTransport(status_error(404, "NotFound", "nope"))).get("tekton.dev/v1", "Task", "x", "default")


def test_paths_come_from_discovery_and_subresources_are_not_kinds():
    transport = FakeTransport({"metadata": {"name": "x"}})
    client = client_with(transport)
    client.get("serving.knative.dev/v1", "Service", "hello", "default")
    client.list("v1", "ConfigMap", "default", label_selector="a=b")
    client.create("v1", "ConfigMap", {"metadata": {"name": "x", "namespace": "other"}})
    client.delete("v1", "ConfigMap", "x", "default", propagation="Foreground")
    assert [(c[0], c[1], c[2]) for c in transport.calls] == [
        ("GET", "/apis/serving.knative.dev/v1/namespaces/default/services/hello", {}),
        ("GET", "/api/v1/namespaces/default/configmaps", {"fieldSelector": None, "labelSelector": "a=b"}),
        ("POST", "/api/v1/namespaces/other/configmaps", {}),
        ("DELETE", "/api/v1/namespaces/default/configmaps/x", {"propagationPolicy": "Foreground"}),
    ]


def test_writes_are_dry_run_in_check_mode_and_reads_are_not():
    transport = FakeTransport({"metadata": {"name": "x"}})
    client = client_with(transport, dry_run=True)
    client.get("v1", "ConfigMap", "x", "default")
    client.create("v1", "ConfigMap", {"metadata": {"name": "x"}}, "default")
    client.patch("v1", "ConfigMap", "x", {"data": {}}, "default")
    (get_call, create_call, patch_call) = transport.calls
    assert "dryRun" not in get_call[2]
    assert create_call[2]["dryRun"] == "All"
    assert patch_call[2]["dryRun"] == "All"
    assert patch_call[3]["content_type"] == "application/merge-patch+json"


def test_a_webhook_without_dry_run_support_is_reported_as_such():
    transport = FakeTransport(status_error(400, "BadRequest", 'admission webhook "x" does not support dry run'))
    with pytest.raises(DryRunUnsupported):
        client_with(transport, dry_run=True).create("v1", "ConfigMap", {"metadata": {"name": "x"}}, "default")


class FakeStream:
    def __init__(self, chunks, error=None):
        self.chunks = chunks
        self.error = error
        self.released = False
        self.closed = False

    def stream(self, amt=None, decode_content=True):
        yield from self.chunks
        if self.error:
            raise self.error

    def release_conn(self):
        self.released = True

    def close(self):
        self.closed = True


def watch_client(response):
    transport = SimpleNamespace(request=lambda method, path, query=None, **kwargs: DISCOVERY.get(path, response))
    return _client.KubeClient(transport)


def lines(*events):
    return b"".join(json.dumps(e).encode() + b"\n" for e in events)


def test_watch_splits_events_across_chunks_and_ends_quietly_on_a_dropped_connection():
    payload = lines(
        {"type": "ADDED", "object": {"metadata": {"resourceVersion": "1"}}},
        {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "2"}}},
    )
    response = FakeStream([payload[:10], payload[10:50], payload[50:]], error=urllib3.exceptions.ProtocolError("reset"))
    events = list(watch_client(response).watch("v1", "ConfigMap", "default", resource_version="0"))
    assert [e["type"] for e in events] == ["ADDED", "BOOKMARK"]
    assert events[1]["object"]["metadata"]["resourceVersion"] == "2"
    assert response.released
    assert not response.closed  # read to its end: its connection may be reused


def test_a_watch_left_early_closes_its_connection():
    payload = lines(
        {"type": "ADDED", "object": {"metadata": {"resourceVersion": "1"}}},
        {"type": "MODIFIED", "object": {"metadata": {"resourceVersion": "2"}}},
    )
    response = FakeStream([payload])
    events = watch_client(response).watch("v1", "ConfigMap", "default", resource_version="0")
    assert next(events)["type"] == "ADDED"
    events.close()  # what the waiter does when a verdict or a new window comes mid-stream
    assert response.closed and response.released


def test_watch_error_event_410_raises_gone():
    response = FakeStream(
        [lines({"type": "ERROR", "object": {"code": 410, "reason": "Expired", "message": "too old"}})]
    )
    with pytest.raises(Gone, match="too old"):
        list(watch_client(response).watch("v1", "ConfigMap", "default", resource_version="5"))
    assert response.closed


def test_get_or_none_is_none_for_404_only():
    assert client_with(FakeTransport(status_error(404, "NotFound", "gone"))).get_or_none("v1", "ConfigMap", "x") is None
    assert client_with(FakeTransport({"metadata": {"name": "x"}})).get_or_none("v1", "ConfigMap", "x") == {
        "metadata": {"name": "x"}
    }
    with pytest.raises(ApiError, match="Forbidden"):
        client_with(FakeTransport(status_error(403, "Forbidden", "no"))).get_or_none("v1", "ConfigMap", "x")


def test_a_refused_dry_run_falls_back_with_a_warning():
    def refused():
        raise DryRunUnsupported(400, "BadRequest", "does not support dry run")

    warnings = []
    local = {"metadata": {"name": "x"}}
    assert _client.write_or_fallback(refused, local, warn=warnings.append, what="the change to x") is local
    assert warnings == ["The API server could not dry-run the change to x; it was not validated."]
    assert _client.write_or_fallback(lambda: {"written": True}, local) == {"written": True}


def test_other_write_errors_are_not_swallowed_by_the_fallback():
    def denied():
        raise ApiError(400, "BadRequest", "admission webhook denied the request")

    with pytest.raises(ApiError, match="denied"):
        _client.write_or_fallback(denied, {})
