"""The autodeploy receiver (roles/autodeploy/files/receiver/receiver.py), run for real on loopback.

The hub is the real CNCF registry (Debian's docker-registry, tests/unit/registry_server.py), which
also sends its own notifications to the receiver. The Kubernetes API is a small HTTPS server in
this file that keeps Knative Services in a dict and applies JSON patches (test and replace) as
the API server does; the sandbox's real API is used by tests/integration/test_autodeploy.py.
"""

from __future__ import annotations

import contextlib
import http.client
import importlib.util
import json
import ssl
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from registry_server import free_port, make_tls_files, start_registry

RECEIVER_PATH = Path(__file__).resolve().parents[3] / "roles" / "autodeploy" / "files" / "receiver" / "receiver.py"
TOKEN = "s3cret-event-token"
SA_TOKEN_1 = "service-account-token-one"
SA_TOKEN_2 = "service-account-token-two"
PULL_HOST = "hub.default.svc.cluster.local"
SERVICE_PATH = "/apis/serving.knative.dev/v1/namespaces/apps/services/"
EVENTS_V1 = "application/vnd.docker.distribution.events.v1+json"


def _load_receiver() -> Any:
    spec = importlib.util.spec_from_file_location("autodeploy_receiver", RECEIVER_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # No __pycache__ beside it: the build role refuses a source directory with a subdirectory.
    saved, sys.dont_write_bytecode = sys.dont_write_bytecode, True
    try:
        spec.loader.exec_module(module)
    finally:
        sys.dont_write_bytecode = saved
    return module


receiver_mod = _load_receiver()


# -- a Knative Services API over HTTPS --------------------------------------------------------------


class FakeKnativeApi:
    """GET and JSON-patch PATCH of Knative Services in one namespace, bearer token checked."""

    def __init__(self, tls: Any, tokens: set[str]) -> None:
        self.services: dict[str, dict] = {}
        self.patches: list[tuple[str, list]] = []
        self.tokens_seen: list[str] = []
        self.tokens = tokens
        self.lock = threading.Lock()
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return

            def _send(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _name(self) -> str | None:
                auth = self.headers.get("Authorization", "")
                api.tokens_seen.append(auth)
                if auth.removeprefix("Bearer ") not in api.tokens:
                    self._send(401, {"message": "Unauthorized"})
                    return None
                if not self.path.startswith(SERVICE_PATH):
                    self._send(404, {"message": "not found"})
                    return None
                name = self.path[len(SERVICE_PATH) :]
                if name not in api.services:
                    self._send(404, {"message": f'services.serving.knative.dev "{name}" not found'})
                    return None
                return name

            def do_GET(self) -> None:
                name = self._name()
                if name is not None:
                    with api.lock:
                        self._send(200, api.services[name])

            def do_PATCH(self) -> None:
                name = self._name()
                if name is None:
                    return
                assert self.headers["Content-Type"] == "application/json-patch+json"
                ops = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with api.lock:
                    container = api.services[name]["spec"]["template"]["spec"]["containers"][0]
                    for op in ops:
                        assert op["path"] == "/spec/template/spec/containers/0/image"
                        if op["op"] == "test" and container["image"] != op["value"]:
                            self._send(422, {"message": "the test operation failed"})
                            return
                    for op in ops:
                        if op["op"] == "replace":
                            container["image"] = op["value"]
                    api.patches.append((name, ops))
                    self._send(200, api.services[name])

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(tls.certificate), str(tls.key))
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def add_service(self, name: str, image: str) -> None:
        with self.lock:
            self.services[name] = {
                "apiVersion": "serving.knative.dev/v1",
                "kind": "Service",
                "metadata": {"name": name, "namespace": "apps"},
                "spec": {"template": {"spec": {"containers": [{"image": image}]}}},
            }

    def image(self, name: str) -> str:
        with self.lock:
            return self.services[name]["spec"]["template"]["spec"]["containers"][0]["image"]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def sa_dir(tmp_path: Path, tls: Any) -> Path:
    directory = tmp_path / "sa"
    directory.mkdir()
    (directory / "token").write_text(SA_TOKEN_1 + "\n")
    (directory / "ca.crt").write_bytes(tls.ca.read_bytes())
    (directory / "namespace").write_text("apps")
    return directory


@pytest.fixture
def api(tls: Any) -> Iterator[FakeKnativeApi]:
    server = FakeKnativeApi(tls, {SA_TOKEN_1, SA_TOKEN_2})
    server.add_service("hello", "hub.default.svc.cluster.local/hello:latest")
    server.add_service("other", "example.org/other:1")
    yield server
    server.close()


class RunningReceiver:
    def __init__(self, receiver: Any) -> None:
        self.receiver = receiver
        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), receiver_mod.make_handler(receiver))
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def events_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/events"

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict | None = None
    ) -> tuple[int, Any]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return response.status, json.loads(response.read() or b"null")
        finally:
            conn.close()

    def post_events(self, events: list, token: str | None = TOKEN, content_type: str = EVENTS_V1) -> tuple[int, Any]:
        headers = {"Content-Type": content_type}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return self.request("POST", "/events", json.dumps({"events": events}).encode(), headers)

    def status(self) -> dict:
        code, body = self.request("GET", "/status", headers={"Authorization": f"Bearer {TOKEN}"})
        assert code == 200
        return body

    def idle(self, timeout: float = 10) -> None:
        """Wait until the worker has nothing queued and is not inside a decision."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.receiver._queue.unfinished_tasks == 0:
                return
            time.sleep(0.02)
        raise AssertionError("the receiver's worker did not become idle")


@contextlib.contextmanager
def run_receiver(sa_dir: Path, api: FakeKnativeApi, hub_url: str, **overrides: Any) -> Iterator[RunningReceiver]:
    settings: dict[str, Any] = {
        "token": TOKEN,
        "bindings": [{"repository": "hello", "tag": "latest", "service": "hello"}],
        "hub_url": hub_url,
        "pull_host": PULL_HOST,
        "resync_seconds": 3600,
        "sa_dir": str(sa_dir),
        "api_host": "127.0.0.1",
        "api_port": str(api.port),
    }
    settings.update(overrides)
    running = RunningReceiver(receiver_mod.Receiver(**settings))
    running.thread.start()
    running.receiver.start()
    try:
        yield running
    finally:
        running.receiver.stop()
        running.server.shutdown()
        running.server.server_close()


def wait_for(predicate: Any, timeout: float = 20, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def manifest_event(repository: str, tag: str, digest: str, action: str = "push") -> dict:
    return {
        "id": "e1",
        "action": action,
        "target": {
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "digest": digest,
            "repository": repository,
            "tag": tag,
            "url": f"http://hub/v2/{repository}/manifests/{digest}",
        },
    }


# -- pure functions ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "not JSON"),
        ("[]", "non-empty JSON list"),
        ('[{"repository": "hello", "tag": "latest"}]', "exactly repository, tag and service"),
        ('[{"repository": "Hello", "tag": "latest", "service": "hello"}]', "repository is not"),
        ('[{"repository": "hello", "tag": "-x", "service": "hello"}]', "tag is not"),
        ('[{"repository": "hello", "tag": "v1", "service": "Hello"}]', "service is not"),
        (
            '[{"repository": "a", "tag": "v1", "service": "s"}, {"repository": "b", "tag": "v1", "service": "s"}]',
            "bound twice",
        ),
    ],
)
def test_bad_bindings_are_refused(text: str, message: str) -> None:
    with pytest.raises(receiver_mod.ConfigError, match=message):
        receiver_mod.parse_bindings(text)


def test_only_manifest_pushes_of_a_bound_tag_count() -> None:
    bindings = [{"repository": "team/hello", "tag": "latest", "service": "hello"}]
    digest = "sha256:" + "a" * 64
    layer = manifest_event("team/hello", "", digest)
    layer["target"]["mediaType"] = "application/octet-stream"
    layer["target"].pop("tag")
    no_type = manifest_event("team/hello", "latest", digest)
    del no_type["target"]["mediaType"]
    events = [
        manifest_event("team/hello", "latest", digest),
        manifest_event("team/hello", "latest", digest, action="pull"),
        manifest_event("team/other", "latest", digest),
        manifest_event("team/hello", "v2", digest),
        layer,
        no_type,
        "junk",
    ]
    hits, ignored = receiver_mod.relevant_bindings(events, bindings)
    assert hits == [(bindings[0], digest)]
    assert len(ignored) == 5
    assert any("not a push" in reason for reason in ignored)
    assert any("not a manifest" in reason for reason in ignored)


def test_settings_from_the_environment_are_checked(sa_dir: Path) -> None:
    env = {
        "AUTODEPLOY_TOKEN": TOKEN,
        "AUTODEPLOY_BINDINGS": '[{"repository": "hello", "tag": "latest", "service": "hello"}]',
        "AUTODEPLOY_HUB_URL": "http://hub.default.svc.cluster.local",
        "AUTODEPLOY_PULL_HOST": PULL_HOST,
        "KUBERNETES_SERVICE_HOST": "127.0.0.1",
        "KUBERNETES_SERVICE_PORT": "6443",
    }
    receiver = receiver_mod.from_environment(str(sa_dir), env)
    assert receiver.namespace == "apps"
    assert receiver.resync_seconds == 60
    for name, value, message in [
        ("AUTODEPLOY_TOKEN", "", "AUTODEPLOY_TOKEN"),
        ("AUTODEPLOY_HUB_URL", "hub:5000", "AUTODEPLOY_HUB_URL"),
        ("AUTODEPLOY_PULL_HOST", "hub/x", "AUTODEPLOY_PULL_HOST"),
        ("AUTODEPLOY_RESYNC_SECONDS", "0", "AUTODEPLOY_RESYNC_SECONDS"),
        ("AUTODEPLOY_RESYNC_SECONDS", "soon", "AUTODEPLOY_RESYNC_SECONDS"),
        ("KUBERNETES_SERVICE_PORT", "", "KUBERNETES_SERVICE"),
    ]:
        with pytest.raises(receiver_mod.ConfigError, match=message):
            receiver_mod.from_environment(str(sa_dir), {**env, name: value})


# -- against the real registry ----------------------------------------------------------------------


def test_pushes_roll_out_the_hubs_digest_once(tmp_path: Path, sa_dir: Path, api: FakeKnativeApi) -> None:
    port = free_port()
    endpoint = {
        "name": "autodeploy",
        "url": f"http://127.0.0.1:{port}/events",
        "headers": {"Authorization": [f"Bearer {TOKEN}"]},
        "timeout": "2s",
        "threshold": 3,
        "backoff": "1s",
        "ignoredmediatypes": ["application/octet-stream"],
        "ignore": {"actions": ["pull"]},
    }
    with start_registry(tmp_path / "hub", notifications=[endpoint]) as hub:
        receiver = receiver_mod.Receiver(
            token=TOKEN,
            bindings=[{"repository": "hello", "tag": "latest", "service": "hello"}],
            hub_url=hub.url,
            pull_host=PULL_HOST,
            resync_seconds=3600,
            sa_dir=str(sa_dir),
            api_host="127.0.0.1",
            api_port=str(api.port),
        )
        running = RunningReceiver(receiver)
        running.server.server_close()
        running.server = ThreadingHTTPServer(("127.0.0.1", port), receiver_mod.make_handler(receiver))
        running.port = port
        running.thread = threading.Thread(target=running.server.serve_forever, daemon=True)
        running.thread.start()
        receiver.start()
        try:
            running.idle()
            # The start's resync found no tag in the hub: nothing to do.
            assert running.status()["hello:latest->hello"]["decision"] == "ignored"
            assert api.patches == []

            # The registry's own notification (no event is posted by the test) rolls v1 out.
            first = hub.push_image("hello", "latest", files={"app.py": b"v1"})
            want_first = f"{PULL_HOST}/hello@{first.digest}"
            wait_for(lambda: api.image("hello") == want_first, what="v1 rolled out")
            assert len(api.patches) == 1
            name, ops = api.patches[0]
            assert name == "hello"
            assert ops == [
                {"op": "test", "path": "/spec/template/spec/containers/0/image", "value": f"{PULL_HOST}/hello:latest"},
                {"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": want_first},
            ]

            # Another repository, and a tag nobody bound: nothing.
            hub.push_image("other", "latest", files={"app.py": b"other"})
            hub.push_image("hello", "v9", files={"app.py": b"v9"})
            # A duplicate of the first push (what a registry retry looks like): nothing.
            assert running.post_events([manifest_event("hello", "latest", first.digest)])[0] == 200
            time.sleep(1.5)
            running.idle()
            assert len(api.patches) == 1
            assert running.status()["hello:latest->hello"]["decision"] == "already deployed"

            # A new digest, then the older one again (a roll back): each is one patch.
            second = hub.push_image("hello", "latest", files={"app.py": b"v2"})
            wait_for(lambda: api.image("hello") == f"{PULL_HOST}/hello@{second.digest}", what="v2 rolled out")
            again = hub.push_image("hello", "latest", files={"app.py": b"v1"})
            assert again.digest == first.digest
            wait_for(lambda: api.image("hello") == want_first, what="roll back to v1")
            assert len(api.patches) == 3

            # A late event for v2 changes nothing: the hub says v1.
            assert running.post_events([manifest_event("hello", "latest", second.digest)])[0] == 200
            time.sleep(0.3)
            running.idle()
            assert api.image("hello") == want_first
            assert len(api.patches) == 3
            assert api.image("other") == "example.org/other:1"
        finally:
            receiver.stop()
            running.server.shutdown()
            running.server.server_close()


def test_wrong_or_missing_token_is_refused(tmp_path: Path, sa_dir: Path, api: FakeKnativeApi) -> None:
    with start_registry(tmp_path / "hub") as hub, run_receiver(sa_dir, api, hub.url) as running:
        running.idle()
        image = hub.push_image("hello", "latest", files={"app.py": b"v1"})
        event = [manifest_event("hello", "latest", image.digest)]
        assert running.post_events(event, token="wrong")[0] == 401
        assert running.post_events(event, token=None)[0] == 401
        assert running.post_events(event, token=TOKEN + "x")[0] == 401
        code = running.request(
            "POST", "/events", json.dumps({"events": event}).encode(), {"Authorization": f"bearer {TOKEN}"}
        )[0]
        assert code == 401
        assert running.request("GET", "/status")[0] == 401
        assert running.request("GET", "/healthz")[0] == 200
        time.sleep(0.3)
        running.idle()
        assert api.patches == []
        # The right token, a bad body and a bad content type are told apart from a refusal.
        assert running.post_events(event, content_type="text/plain")[0] == 415
        assert (
            running.request("POST", "/events", b"{", {"Authorization": f"Bearer {TOKEN}", "Content-Type": EVENTS_V1})[0]
            == 400
        )
        code = running.post_events(event, content_type="application/vnd.docker.distribution.events.v2+json")[0]
        assert code == 200
        wait_for(lambda: len(api.patches) == 1, what="the v2+json event's roll-out")


def test_resync_catches_up_pushes_made_while_down(tmp_path: Path, sa_dir: Path, api: FakeKnativeApi) -> None:
    with start_registry(tmp_path / "hub", auth=("alice", "wonderland")) as hub:
        hub.push_image("hello", "latest", files={"app.py": b"v1"})
        newest = hub.push_image("hello", "latest", files={"app.py": b"v2"})
        with run_receiver(sa_dir, api, hub.url, hub_username="alice", hub_password="wonderland") as running:
            wait_for(lambda: len(api.patches) == 1, what="the start's resync")
            assert api.image("hello") == f"{PULL_HOST}/hello@{newest.digest}"
            running.idle()
        # Wrong hub credentials: an error is recorded, nothing is patched.
        with run_receiver(sa_dir, api, hub.url, hub_username="alice", hub_password="nope") as running:
            running.idle()
            decision = running.status()["hello:latest->hello"]
            assert decision["decision"] == "error"
            assert "401" in decision["reason"]
        assert len(api.patches) == 1


def test_periodic_resync_and_token_rotation(tmp_path: Path, sa_dir: Path, api: FakeKnativeApi) -> None:
    with start_registry(tmp_path / "hub") as hub, run_receiver(sa_dir, api, hub.url, resync_seconds=0.5) as running:
        running.idle()
        (sa_dir / "token").write_text(SA_TOKEN_2)
        image = hub.push_image("hello", "latest", files={"app.py": b"v1"})
        # No event is sent: the periodic resync finds the push.
        wait_for(lambda: api.image("hello") == f"{PULL_HOST}/hello@{image.digest}", what="the periodic resync")
        assert api.tokens_seen[-1] == f"Bearer {SA_TOKEN_2}"
        assert len(api.patches) == 1


def test_a_service_changed_in_between_is_not_overwritten_blindly(
    tmp_path: Path, sa_dir: Path, api: FakeKnativeApi
) -> None:
    """The JSON patch tests the old image: a change between read and patch makes it fail, then retry."""
    with start_registry(tmp_path / "hub") as hub, run_receiver(sa_dir, api, hub.url) as running:
        running.idle()
        image = hub.push_image("hello", "latest", files={"app.py": b"v1"})
        original_get = running.receiver._api
        changed = []

        def racing_api(method: str, path: str, body: Any = None, content_type: str = "") -> Any:
            result = original_get(method, path, body, content_type)
            if method == "GET" and not changed:
                changed.append(True)
                api.add_service("hello", "example.org/someone-else:2")
            return result

        running.receiver._api = racing_api
        assert running.post_events([manifest_event("hello", "latest", image.digest)])[0] == 200
        wait_for(lambda: api.image("hello") == f"{PULL_HOST}/hello@{image.digest}", what="the retried roll-out")
        assert len(api.patches) == 1
        assert api.patches[0][1][0] == {
            "op": "test",
            "path": "/spec/template/spec/containers/0/image",
            "value": "example.org/someone-else:2",
        }


def test_the_token_never_shows_in_the_log(
    tmp_path: Path, sa_dir: Path, api: FakeKnativeApi, capsys: pytest.CaptureFixture[str]
) -> None:
    with start_registry(tmp_path / "hub") as hub, run_receiver(sa_dir, api, hub.url) as running:
        image = hub.push_image("hello", "latest", files={"app.py": b"v1"})
        running.post_events([manifest_event("hello", "latest", image.digest)], token="wrong")
        running.post_events([manifest_event("hello", "latest", image.digest)])
        wait_for(lambda: len(api.patches) == 1, what="the roll-out")
        running.idle()
    out = capsys.readouterr().out
    assert "event refused" in out
    assert "applied" in out
    assert TOKEN not in out
    assert SA_TOKEN_1 not in out


class FlakyHub:
    """A hub that answers HEAD of hello:latest with 500 ``failures`` times, then with ``digest``.

    distribution 2.8 answers 500 ("invalid checksum digest format") while it writes a tag's link,
    which is when the push's event arrives.
    """

    def __init__(self, digest: str, failures: int) -> None:
        self.heads = 0
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_HEAD(self) -> None:
                hub.heads += 1
                if hub.heads <= failures:
                    self.send_response(500)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Docker-Content-Digest", digest)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


DIGEST_A = "sha256:" + "a" * 64


@pytest.mark.parametrize(("failures", "decision"), [(3, "applied"), (50, "error")])
def test_a_hub_error_right_after_a_push_event_is_asked_again(
    sa_dir: Path, api: FakeKnativeApi, failures: int, decision: str
) -> None:
    hub = FlakyHub(DIGEST_A, failures)
    try:
        with run_receiver(sa_dir, api, hub.url, event_settle_delays=(0.05, 0.05, 0.05)) as running:
            running.idle()
            # The start's resync is not an event: its 500 is an error at once (one HEAD).
            assert running.status()["hello:latest->hello"]["decision"] == "error"
            start_heads = hub.heads
            assert running.post_events([manifest_event("hello", "latest", DIGEST_A)])[0] == 200
            wait_for(lambda: "push event" in running.status()["hello:latest->hello"]["reason"], what="the event")
            running.idle()
            status = running.status()["hello:latest->hello"]
            if decision == "applied":
                assert status["decision"] == "applied", status
                assert api.image("hello") == f"{PULL_HOST}/hello@{DIGEST_A}"
                assert len(api.patches) == 1
            else:
                # Four asks for the event, one more for the retry; the last answer stands.
                assert status["decision"] == "error", status
                assert "500" in status["reason"]
                assert hub.heads - start_heads == 5
                assert api.patches == []
    finally:
        hub.close()


class RecordingProxy:
    """An HTTP proxy that answers every request itself with ``digest``, recording the request line and Host."""

    def __init__(self, digest: str) -> None:
        self.requests: list[tuple[str, str]] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_HEAD(self) -> None:
                proxy.requests.append((self.requestline, self.headers.get("Host", "")))
                self.send_response(200)
                self.send_header("Docker-Content-Digest", digest)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_the_hub_is_reached_through_http_proxy_unless_no_proxy_names_it(
    sa_dir: Path, api: FakeKnativeApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    # In a pod that has http_proxy (the sandbox gives every pod one to reach cluster-local names),
    # the hub's cluster-local URL goes to the proxy in absolute form, as Go's and urllib's clients do.
    proxy = RecordingProxy(DIGEST_A)
    try:
        for name in ("http_proxy", "HTTP_PROXY", "no_proxy", "NO_PROXY"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("http_proxy", proxy.url)
        monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
        receiver = receiver_mod.Receiver(
            token=TOKEN,
            bindings=[{"repository": "hello", "tag": "latest", "service": "hello"}],
            hub_url="http://hub.default.svc.cluster.local",
            pull_host=PULL_HOST,
            resync_seconds=3600,
            sa_dir=str(sa_dir),
            api_host="127.0.0.1",
            api_port=str(api.port),
        )
        assert receiver.hub_digest("hello", "latest") == DIGEST_A
        assert proxy.requests == [
            (
                "HEAD http://hub.default.svc.cluster.local/v2/hello/manifests/latest HTTP/1.1",
                "hub.default.svc.cluster.local",
            )
        ]
        # no_proxy naming the hub: straight to it (a hub on localhost, no name lookup leaves the machine).
        hub = RecordingProxy(DIGEST_A)
        try:
            receiver.hub = receiver_mod.urllib.parse.urlsplit(f"http://localhost:{hub.server.server_address[1]}")
            assert receiver.hub_digest("hello", "latest") == DIGEST_A
            monkeypatch.setenv("no_proxy", "127.0.0.1")
            assert receiver.hub_digest("hello", "latest") == DIGEST_A
        finally:
            hub.close()
        assert hub.requests[0][0] == "HEAD /v2/hello/manifests/latest HTTP/1.1"
        assert len(hub.requests) == 1
        assert proxy.requests[1][0].startswith("HEAD http://localhost:")
        assert len(proxy.requests) == 2
    finally:
        proxy.close()
