"""The HTTP API of a running sandbox: auth, TLS, discovery, Status errors, Table, watch, OpenAPI."""

from __future__ import annotations

import http.client
import json
import ssl
import time

import pytest
from conftest import Sandbox
from knlab_sandbox.certs import make_ca


def test_requests_without_a_valid_token_get_401(sandbox: Sandbox) -> None:
    for token in (None, "wrong"):
        status, _, body = sandbox.request("GET", "/api/v1/namespaces", token=token)
        assert status == 401
        assert body["kind"] == "Status" and body["reason"] == "Unauthorized"


def test_tls_needs_the_sandbox_ca(sandbox: Sandbox, tmp_path) -> None:
    from cryptography.hazmat.primitives import serialization

    _, other_ca = make_ca("someone-else")
    other = tmp_path / "other-ca.crt"
    other.write_bytes(other_ca.public_bytes(serialization.Encoding.PEM))
    with pytest.raises(ssl.SSLCertVerificationError):
        sandbox.request("GET", "/version", ca=other)
    status, _, version = sandbox.request("GET", "/version")
    assert status == 200 and version["major"] == "1"


def test_discovery(sandbox: Sandbox) -> None:
    _, _, core = sandbox.request("GET", "/api/v1")
    by_name = {r["name"]: r for r in core["resources"]}
    assert by_name["configmaps"]["shortNames"] == ["cm"] and by_name["configmaps"]["namespaced"] is True
    assert by_name["namespaces"]["namespaced"] is False
    assert by_name["pods/log"]["verbs"] == ["get"]
    assert set(by_name["services/status"]["verbs"]) == {"get", "patch", "update"}
    _, _, groups = sandbox.request("GET", "/apis")
    assert {g["name"] for g in groups["groups"]} == {
        "authorization.k8s.io",
        "rbac.authorization.k8s.io",
        "serving.knative.dev",
        "tekton.dev",
    }
    _, _, serving = sandbox.request("GET", "/apis/serving.knative.dev/v1")
    ksvc = next(r for r in serving["resources"] if r["name"] == "services")
    assert ksvc["kind"] == "Service" and ksvc["singularName"] == "service"
    assert ksvc["shortNames"] == ["kservice", "ksvc"] and ksvc["categories"] == ["all", "knative", "serving"]
    _, _, tekton = sandbox.request("GET", "/apis/tekton.dev/v1")
    taskruns = next(r for r in tekton["resources"] if r["name"] == "taskruns")
    assert taskruns["shortNames"] == ["tr", "trs"] and taskruns["categories"] == ["tekton", "tekton-pipelines"]
    status, _, _ = sandbox.request("GET", "/apis/nope.example.com/v1")
    assert status == 404


def test_status_errors(sandbox: Sandbox, namespace: str) -> None:
    base = f"/api/v1/namespaces/{namespace}/configmaps"
    status, _, body = sandbox.request("GET", f"{base}/missing")
    assert (status, body["reason"], body["details"]["kind"]) == (404, "NotFound", "configmaps")
    assert body["message"] == 'configmaps "missing" not found'
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "dup"}}
    assert sandbox.request("POST", base, cm)[0] == 201
    status, _, body = sandbox.request("POST", base, cm)
    assert (status, body["reason"]) == (409, "AlreadyExists")
    status, _, body = sandbox.request("POST", base, {**cm, "metadata": {"name": "x"}, "data": {"a b": "1"}})
    assert (status, body["reason"]) == (422, "Invalid")
    # As apimachinery's NewInvalid: the field only in `field`, and in the top-level message.
    cause = body["details"]["causes"][0]
    assert cause["field"] == "data[a b]"
    assert cause["message"].startswith('Invalid value: "a b": ')
    assert body["message"].startswith('ConfigMap "x" is invalid: data[a b]: Invalid value: "a b": ')
    status, _, body = sandbox.request("POST", base, b"{not json")
    assert (status, body["reason"]) == (400, "BadRequest")
    status, _, body = sandbox.request("PUT", base, cm)
    assert (status, body["reason"]) == (405, "MethodNotAllowed")
    status, _, body = sandbox.request("PATCH", f"{base}/dup", {"data": {}}, headers={"Content-Type": "text/plain"})
    assert (status, body["reason"]) == (415, "UnsupportedMediaType")


def test_field_validation_and_dry_run(sandbox: Sandbox, namespace: str) -> None:
    base = f"/api/v1/namespaces/{namespace}/configmaps"
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "v"}, "spec": {"foo": 1}}
    status, _, error = sandbox.request("POST", f"{base}?fieldValidation=Strict", body)
    assert status == 400 and error["message"] == 'strict decoding error: unknown field "spec"'
    status, headers, created = sandbox.request("POST", f"{base}?fieldValidation=Warn&dryRun=All", body)
    assert status == 201 and "spec" not in created  # a dry-run create answers like a real one
    assert 'unknown field \\"spec\\"' in headers["warning"]
    assert sandbox.request("GET", f"{base}/v")[0] == 404  # the dry run stored nothing
    apply = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "v"}}
    headers = {"Content-Type": "application/apply-patch+yaml"}
    status, _, _ = sandbox.request("PATCH", f"{base}/v?fieldManager=t&dryRun=All", apply, headers=headers)
    assert status == 201  # server-side apply that would create: 201, dry run or not
    assert sandbox.request("GET", f"{base}/v")[0] == 404


def test_table_output(sandbox: Sandbox, namespace: str) -> None:
    sandbox.request(
        "POST", f"/api/v1/namespaces/{namespace}/configmaps", {"metadata": {"name": "t"}, "data": {"a": "1", "b": "2"}}
    )
    accept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
    _, _, table = sandbox.request("GET", f"/api/v1/namespaces/{namespace}/configmaps", headers={"Accept": accept})
    assert table["kind"] == "Table"
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Data", "Age"]
    assert table["rows"][0]["cells"][:2] == ["t", 2]
    _, _, ksvc_table = sandbox.request(
        "GET", f"/apis/serving.knative.dev/v1/namespaces/{namespace}/services", headers={"Accept": accept}
    )
    assert [c["name"] for c in ksvc_table["columnDefinitions"]] == [
        "Name",
        "URL",
        "LatestCreated",
        "LatestReady",
        "Ready",
        "Reason",
    ]
    _, _, tr_table = sandbox.request("GET", "/apis/tekton.dev/v1/taskruns", headers={"Accept": accept})
    assert [c["name"] for c in tr_table["columnDefinitions"]] == [
        "Name",
        "Succeeded",
        "Reason",
        "StartTime",
        "CompletionTime",
    ]


def test_watch_resumes_from_a_resource_version(sandbox: Sandbox, namespace: str) -> None:
    base = f"/api/v1/namespaces/{namespace}/configmaps"
    _, _, created = sandbox.request("POST", base, {"metadata": {"name": "w"}})
    rv = created["metadata"]["resourceVersion"]
    sandbox.request(
        "PATCH", f"{base}/w", {"data": {"a": "1"}}, headers={"Content-Type": "application/merge-patch+json"}
    )
    sandbox.request("DELETE", f"{base}/w")
    status, _, text = sandbox.request("GET", f"{base}?watch=1&resourceVersion={rv}&timeoutSeconds=1")
    assert status == 200
    events = [json.loads(line) for line in text.splitlines()] if isinstance(text, str) else [text]
    assert [e["type"] for e in events] == ["MODIFIED", "DELETED"]
    assert int(events[1]["object"]["metadata"]["resourceVersion"]) > int(
        events[0]["object"]["metadata"]["resourceVersion"]
    )


def _request_log_lines(sb: Sandbox, path: str) -> list[dict]:
    lines = (sb.state_dir / "requests.log").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["path"] == path and "watch=1" in r["query"]]


def test_a_watch_client_that_disconnects_ends_the_stream_quietly(start_sandbox) -> None:
    sb = start_sandbox()
    base = "/api/v1/namespaces/default/configmaps"
    host, port = sb.api_url.removeprefix("https://").rsplit(":", 1)
    watcher = http.client.HTTPSConnection(host, int(port), context=sb.ssl_context(), timeout=10)
    watcher.request("GET", f"{base}?watch=1", headers={"Authorization": f"Bearer {sb.token}"})
    response = watcher.getresponse()
    assert response.status == 200
    watcher.close()  # the client stops watching
    # No write follows, so nothing is sent on the closed connection: the handler must notice the
    # disconnect by itself, as a real API server does (faults.py logs a request when its handler returns).
    deadline = time.monotonic() + 10
    while not _request_log_lines(sb, base) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [r["status"] for r in _request_log_lines(sb, base)] == [200]
    server_log = sb.server_log()
    assert "Traceback" not in server_log and " ERROR " not in server_log, server_log


def test_watch_gets_410_after_compaction(start_sandbox) -> None:
    sb = start_sandbox("--fault-history-limit", "3")
    base = "/api/v1/namespaces/default/configmaps"
    _, _, created = sb.request("POST", base, {"metadata": {"name": "c"}})
    for i in range(6):
        sb.request(
            "PATCH", f"{base}/c", {"data": {"i": str(i)}}, headers={"Content-Type": "application/merge-patch+json"}
        )
    status, _, body = sb.request("GET", f"{base}?watch=1&resourceVersion={created['metadata']['resourceVersion']}")
    assert status == 200
    assert body["type"] == "ERROR"
    assert body["object"]["code"] == 410 and body["object"]["reason"] == "Expired"


def test_bookmarks(sandbox: Sandbox, namespace: str) -> None:
    _, _, listing = sandbox.request("GET", f"/api/v1/namespaces/{namespace}/configmaps")
    rv = listing["metadata"]["resourceVersion"]
    status, _, body = sandbox.request(
        "GET",
        f"/api/v1/namespaces/{namespace}/configmaps?watch=true&allowWatchBookmarks=true&resourceVersion={rv}"
        "&timeoutSeconds=7",
    )
    assert status == 200
    assert body["type"] == "BOOKMARK" and int(body["object"]["metadata"]["resourceVersion"]) >= int(rv)


def test_openapi_documents(sandbox: Sandbox) -> None:
    _, _, root = sandbox.request("GET", "/openapi/v3")
    assert {"api/v1", "apis/serving.knative.dev/v1", "apis/tekton.dev/v1"} <= set(root["paths"])
    _, _, core = sandbox.request("GET", root["paths"]["api/v1"]["serverRelativeURL"])
    patch = core["paths"]["/api/v1/namespaces/{namespace}/configmaps/{name}"]["patch"]
    assert patch["x-kubernetes-group-version-kind"] == {"group": "", "version": "v1", "kind": "ConfigMap"}
    assert "fieldValidation" in {p["name"] for p in patch["parameters"]}
    pod = core["components"]["schemas"]["io.k8s.api.core.v1.Pod"]
    containers = pod["properties"]["spec"]["properties"]["containers"]
    assert containers["x-kubernetes-patch-merge-key"] == "name"
    _, _, v2 = sandbox.request("GET", "/openapi/v2")
    assert "dev.knative.serving.v1.Service" in v2["definitions"]


def test_request_log_counts_requests(sandbox: Sandbox) -> None:
    sandbox.request("GET", "/api/v1/namespaces/default/configmaps?labelSelector=counted%3Dyes")
    lines = (sandbox.state_dir / "requests.log").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    mine = [r for r in records if "counted%3Dyes" in r["query"] or "counted=yes" in r["query"]]
    assert mine and mine[-1]["method"] == "GET" and mine[-1]["status"] == 200
    assert {"time", "path", "user_agent", "duration_ms"} <= set(mine[-1])


def test_the_admin_may_impersonate_and_admission_sees_the_impersonated_user(sandbox: Sandbox, namespace: str) -> None:
    # kubectl --as=bob --as-group=devs sends these headers; the webhook records bob, not the admin.
    base = f"/apis/serving.knative.dev/v1/namespaces/{namespace}/services"
    ksvc = {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "metadata": {"name": "as-bob"},
        "spec": {"template": {"spec": {"containers": [{"image": "127.0.0.1:5000/hello:v1"}]}}},
    }
    as_bob = {"Impersonate-User": "bob", "Impersonate-Group": "devs"}
    # The impersonated user is authorised as kube-apiserver does it: by RBAC, here through the group.
    status, _, body = sandbox.request("POST", f"{base}?dryRun=All", ksvc, headers=as_bob)
    assert (status, body["reason"]) == (403, "Forbidden")
    assert body["message"] == (
        f'services.serving.knative.dev is forbidden: User "bob" cannot create resource "services" in API group '
        f'"serving.knative.dev" in the namespace "{namespace}"'
    )
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "devs-admin"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
        "subjects": [{"kind": "Group", "name": "devs"}],
    }
    bindings = f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/rolebindings"
    assert sandbox.request("POST", bindings, binding)[0] == 201
    status, _, created = sandbox.request("POST", f"{base}?dryRun=All", ksvc, headers=as_bob)
    assert status == 201
    annotations = created["metadata"]["annotations"]
    assert (annotations["serving.knative.dev/creator"], annotations["serving.knative.dev/lastModifier"]) == (
        "bob",
        "bob",
    )
    status, _, body = sandbox.request("POST", f"{base}?dryRun=All", ksvc, headers={"Impersonate-Group": "devs"})
    assert (status, body["reason"]) == (500, "InternalError")
    assert "without impersonating a user" in body["message"]
