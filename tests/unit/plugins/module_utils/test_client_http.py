"""The real adapter (kubernetes.core's client + the kubernetes library) against a tiny local API server.

The server speaks just enough of the Kubernetes API (discovery, get, create, merge patch, watch)
to check what goes over the wire: dry-run and patch content types, watch parameters, a watch
stream that drops mid-way, and a 410 ``ERROR`` event.
"""

from __future__ import annotations

import json
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace
from urllib.parse import parse_qs, urlsplit

import pytest
from ansible_collections.knlab.serverless.plugins.module_utils._client import get_client
from ansible_collections.knlab.serverless.plugins.module_utils._errors import Gone, NotFound, ServerlessError

SERVICE_PATH = "/apis/serving.knative.dev/v1/namespaces/default/services"
DISCOVERY = {
    "/version": {"major": "1", "minor": "32", "gitVersion": "v1.32.0"},
    "/api": {"kind": "APIVersions", "versions": ["v1"]},
    "/apis": {
        "kind": "APIGroupList",
        "groups": [
            {
                "name": "serving.knative.dev",
                "versions": [{"groupVersion": "serving.knative.dev/v1", "version": "v1"}],
                "preferredVersion": {"groupVersion": "serving.knative.dev/v1", "version": "v1"},
            }
        ],
    },
    "/api/v1": {"kind": "APIResourceList", "groupVersion": "v1", "resources": []},
    "/apis/serving.knative.dev/v1": {
        "kind": "APIResourceList",
        "groupVersion": "serving.knative.dev/v1",
        "resources": [
            {
                "name": "services",
                "singularName": "service",
                "namespaced": True,
                "kind": "Service",
                "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
                "shortNames": ["ksvc"],
            }
        ],
    },
}


def ksvc(version: str) -> dict:
    return {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "metadata": {"name": "hello", "namespace": "default", "resourceVersion": version},
    }


class FakeApiServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.seen: list[tuple[str, str, dict, str | None, bytes]] = []
        self.watch_streams: list[list[dict]] = []


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: FakeApiServer

    def log_message(self, *args) -> None:  # keep pytest output clean
        return

    def _record(self) -> tuple[str, dict]:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        query = parse_qs(url.query)
        self.server.seen.append((self.command, url.path, query, self.headers.get("Content-Type"), body))
        return url.path, query

    def _json(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        path, query = self._record()
        if path in DISCOVERY:
            self._json(200, DISCOVERY[path])
        elif path == SERVICE_PATH and query.get("watch") == ["true"]:
            self._watch()
        elif path == f"{SERVICE_PATH}/hello":
            self._json(200, ksvc("7"))
        else:
            status = {"kind": "Status", "status": "Failure", "reason": "NotFound", "message": "not here", "code": 404}
            self._json(404, status)

    def do_POST(self) -> None:
        self._record()
        self._json(201, ksvc("8"))

    def do_PATCH(self) -> None:
        self._record()
        self._json(200, ksvc("9"))

    def _watch(self) -> None:
        # Chunked, like a real watch; closing the connection after the script is a "dropped" stream.
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Connection", "close")
        self.end_headers()
        events = self.server.watch_streams.pop(0) if self.server.watch_streams else []
        for item in events:
            line = json.dumps(item).encode() + b"\n"
            self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")
        self.close_connection = True


@pytest.fixture
def server(monkeypatch, tmp_path):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # kubernetes.core's discovery cache
    for name in ("KUBECONFIG", "K8S_AUTH_KUBECONFIG", "K8S_AUTH_HOST", "K8S_AUTH_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    api = FakeApiServer()
    thread = threading.Thread(target=api.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield api
    api.shutdown()
    api.server_close()
    thread.join()


def client_for(api: FakeApiServer, *, check_mode: bool = False):
    host = f"http://127.0.0.1:{api.server_address[1]}"
    params = {"host": host, "api_key": "token", "validate_certs": False}
    return get_client(SimpleNamespace(params=params, check_mode=check_mode))


def requests_to(api: FakeApiServer, prefix: str) -> list:
    return [seen for seen in api.seen if seen[1].startswith(prefix)]


def test_get_and_not_found(server):
    client = client_for(server)
    assert client.get("serving.knative.dev/v1", "Service", "hello", "default")["metadata"]["resourceVersion"] == "7"
    with pytest.raises(NotFound, match="not here"):
        client.get("serving.knative.dev/v1", "Service", "other", "default")


def test_check_mode_writes_are_server_dry_runs_and_patches_are_merge_patches(server):
    client = client_for(server, check_mode=True)
    client.create("serving.knative.dev/v1", "Service", ksvc(""), "default")
    client.patch("serving.knative.dev/v1", "Service", "hello", {"spec": {}}, "default")
    (create, patch) = [seen for seen in requests_to(server, SERVICE_PATH) if seen[0] in ("POST", "PATCH")]
    assert create[2]["dryRun"] == ["All"]
    assert patch[2]["dryRun"] == ["All"]
    assert patch[3] == "application/merge-patch+json"
    assert json.loads(patch[4]) == {"spec": {}}


def test_watch_parameters_and_a_dropped_stream(server):
    server.watch_streams = [
        [
            {"type": "MODIFIED", "object": ksvc("11")},
            {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "12"}}},
        ]
    ]
    client = client_for(server)
    events = list(
        client.watch(
            "serving.knative.dev/v1",
            "Service",
            "default",
            resource_version="10",
            field_selector="metadata.name=hello",
            timeout_seconds=30,
        )
    )
    assert [e["type"] for e in events] == ["MODIFIED", "BOOKMARK"]
    assert events[0]["object"]["metadata"]["resourceVersion"] == "11"
    (watch,) = [seen for seen in requests_to(server, SERVICE_PATH) if "watch" in seen[2]]
    assert watch[2]["resourceVersion"] == ["10"]
    assert watch[2]["fieldSelector"] == ["metadata.name=hello"]
    assert watch[2]["allowWatchBookmarks"] == ["true"]
    assert watch[2]["timeoutSeconds"] == ["30"]


def test_watch_410_error_event_raises_gone(server):
    expired = {"kind": "Status", "code": 410, "reason": "Expired", "message": "too old resource version: 10 (99)"}
    server.watch_streams = [[{"type": "ERROR", "object": expired}]]
    client = client_for(server)
    with pytest.raises(Gone, match="too old resource version"):
        list(client.watch("serving.knative.dev/v1", "Service", "default", resource_version="10"))


def test_a_token_with_a_control_character_is_refused_without_showing_it_or_sending_a_request(server):
    # Issue 11 item 3: http.client's ValueError would quote the whole header, the token with it.
    host = f"http://127.0.0.1:{server.server_address[1]}"
    params = {"host": host, "api_key": "s3cret-token\nX-Injected: 1", "validate_certs": False}
    client = get_client(SimpleNamespace(params=params, check_mode=False))
    with pytest.raises(ServerlessError) as raised:
        client.get("serving.knative.dev/v1", "Service", "hello", "default")
    assert "control characters" in raised.value.msg
    assert "s3cret-token" not in raised.value.msg
    assert server.seen == []
