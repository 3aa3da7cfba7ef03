"""The autodeploy role's filters: its input checks and what it writes (the hub's endpoint, read by the registry)."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible_collections.knlab.serverless.plugins.filter.autodeploy_input_problems import (
    FilterModule as ProblemsModule,
)
from ansible_collections.knlab.serverless.plugins.filter.autodeploy_input_problems import autodeploy_input_problems
from ansible_collections.knlab.serverless.plugins.filter.autodeploy_settings import (
    FilterModule as SettingsModule,
)
from ansible_collections.knlab.serverless.plugins.filter.autodeploy_settings import autodeploy_settings
from registry_server import free_port, start_registry

ROLE = Path(__file__).resolve().parents[4] / "roles" / "autodeploy"

VALID = {
    "autodeploy_name": "autodeploy",
    "autodeploy_namespace": "default",
    "autodeploy_hub_name": "hub",
    "autodeploy_hub_namespace": "default",
    "autodeploy_bindings": [{"repository": "hello", "tag": "latest", "service": "hello"}],
    "autodeploy_token_secret": "autodeploy-token",
    "autodeploy_endpoints_secret": "hub-notifications",
    "autodeploy_hub_auth_secret": "",
    "autodeploy_resync_seconds": 60,
    "autodeploy_endpoint_timeout": "2s",
    "autodeploy_endpoint_threshold": 5,
    "autodeploy_endpoint_backoff": "1s",
    "autodeploy_pull_host": "hub.default.svc.cluster.local",
    "autodeploy_hub_url": "http://hub.default.svc.cluster.local",
    "autodeploy_wait_timeout": 300,
}


def problems(**changes: Any) -> list[str]:
    return autodeploy_input_problems({**VALID, **changes})


def test_filters_are_exported_and_match_the_argument_spec() -> None:
    assert ProblemsModule().filters() == {"autodeploy_input_problems": autodeploy_input_problems}
    assert SettingsModule().filters() == {"autodeploy_settings": autodeploy_settings}
    spec = yaml.safe_load((ROLE / "meta" / "argument_specs.yml").read_text(encoding="utf-8"))
    assert list(VALID) == list(spec["argument_specs"]["main"]["options"])
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text(encoding="utf-8"))
    assert list(defaults) == list(VALID)


def test_valid_settings_have_no_problem() -> None:
    assert problems() == []
    assert (
        problems(
            autodeploy_bindings=[
                {"repository": "team/hello", "service": "hello"},
                {"repository": "hello", "tag": "v1.2_rc-1", "service": "hello-v1"},
            ],
            autodeploy_hub_auth_secret="hub-reader",
            autodeploy_resync_seconds="30",
            autodeploy_endpoint_timeout="1m30s",
            autodeploy_endpoint_backoff="500ms",
            autodeploy_pull_host="localhost:5001",
            autodeploy_hub_url="https://hub.example:8443/",
        )
        == []
    )


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"autodeploy_name": "a" * 41}, "autodeploy_name must be a DNS-1035 label of at most 40"),
        ({"autodeploy_namespace": "Default"}, "autodeploy_namespace must be a DNS-1123 label"),
        ({"autodeploy_hub_name": "1hub"}, "autodeploy_hub_name must be a Knative Service name"),
        ({"autodeploy_bindings": []}, "autodeploy_bindings must be a non-empty list"),
        ({"autodeploy_bindings": "hello"}, "autodeploy_bindings must be a non-empty list"),
        ({"autodeploy_bindings": ["hello"]}, "autodeploy_bindings[0] must be a dict"),
        ({"autodeploy_bindings": [{"repository": "hello"}]}, "autodeploy_bindings[0] needs service"),
        (
            {"autodeploy_bindings": [{"repository": "x", "service": "x", "image": "y"}]},
            "autodeploy_bindings[0] has unknown keys image",
        ),
        (
            {"autodeploy_bindings": [{"repository": "Hello", "service": "x"}]},
            "autodeploy_bindings[0].repository must be",
        ),
        (
            {"autodeploy_bindings": [{"repository": "x", "tag": "-x", "service": "x"}]},
            "autodeploy_bindings[0].tag must be",
        ),
        ({"autodeploy_bindings": [{"repository": "x", "service": "X"}]}, "autodeploy_bindings[0].service must be"),
        (
            {"autodeploy_bindings": [{"repository": "x", "service": "hub"}]},
            "autodeploy_bindings[0].service must not be the receiver",
        ),
        (
            {"autodeploy_bindings": [{"repository": "a", "service": "s"}, {"repository": "b", "service": "s"}]},
            "autodeploy_bindings binds the Service s more than once",
        ),
        ({"autodeploy_token_secret": "-x"}, "autodeploy_token_secret must be a DNS-1123 subdomain"),
        ({"autodeploy_endpoints_secret": "autodeploy-token"}, "autodeploy_endpoints_secret must not be the same"),
        ({"autodeploy_hub_auth_secret": ["x"]}, "autodeploy_hub_auth_secret must be a string"),
        ({"autodeploy_resync_seconds": 1}, "autodeploy_resync_seconds must be an integer from 5 to 86400"),
        ({"autodeploy_resync_seconds": True}, "autodeploy_resync_seconds must be an integer"),
        ({"autodeploy_endpoint_timeout": "10"}, "autodeploy_endpoint_timeout must be a positive Go duration"),
        ({"autodeploy_endpoint_timeout": "0s"}, "autodeploy_endpoint_timeout must be a positive Go duration"),
        ({"autodeploy_endpoint_threshold": 0}, "autodeploy_endpoint_threshold must be an integer from 1 to 1000"),
        ({"autodeploy_endpoint_backoff": "1s\n"}, "autodeploy_endpoint_backoff must be a positive Go duration"),
        ({"autodeploy_pull_host": "http://hub"}, "autodeploy_pull_host must be a host[:port]"),
        ({"autodeploy_hub_url": "http://hub/v2/"}, "autodeploy_hub_url must be an http(s) URL"),
        ({"autodeploy_wait_timeout": 0}, "autodeploy_wait_timeout must be an integer from 1 to 86400"),
    ],
)
def test_each_bad_value_is_named(changes: dict, expected: str) -> None:
    found = problems(**changes)
    assert len(found) == 1, found
    prefix = "autodeploy_bindings" if expected.startswith("[") else ""
    assert found[0].startswith(prefix + expected), found


SETTINGS = {
    "name": "autodeploy",
    "namespace": "apps",
    "bindings": [{"repository": "hello", "service": "hello"}, {"repository": "x/y", "tag": "v2", "service": "y"}],
    "timeout": "2s",
    "threshold": 5,
    "backoff": "1s",
}


def test_settings_are_stable_and_fill_in_the_tag() -> None:
    first = autodeploy_settings(SETTINGS, "t0ken")
    assert first == autodeploy_settings(dict(SETTINGS), "t0ken")
    assert first["bindings"] == [
        {"repository": "hello", "tag": "latest", "service": "hello"},
        {"repository": "x/y", "tag": "v2", "service": "y"},
    ]
    assert json.loads(first["bindings_json"]) == first["bindings"]
    assert first["events_url"] == "http://autodeploy.apps.svc.cluster.local/events"
    assert yaml.safe_load(first["endpoints"]) == [
        {
            "name": "autodeploy",
            "url": "http://autodeploy.apps.svc.cluster.local/events",
            "headers": {"Authorization": ["Bearer t0ken"]},
            "timeout": "2s",
            "threshold": 5,
            "backoff": "1s",
            "ignoredmediatypes": ["application/octet-stream"],
            "ignore": {"actions": ["pull"]},
        }
    ]
    assert autodeploy_settings(SETTINGS, "other")["endpoints_digest"] != first["endpoints_digest"]
    assert autodeploy_settings({**SETTINGS, "threshold": 6}, "t0ken")["endpoints_digest"] != first["endpoints_digest"]


def test_the_token_digest_changes_with_the_token_only_and_never_holds_it() -> None:
    first = autodeploy_settings(SETTINGS, "t0ken")
    assert first["token_digest"].startswith("sha256:") and len(first["token_digest"]) == 71
    assert "t0ken" not in first["token_digest"]
    assert first["token_digest"] != "sha256:" + hashlib.sha256(b"t0ken").hexdigest()
    assert autodeploy_settings(dict(SETTINGS), "t0ken")["token_digest"] == first["token_digest"]
    assert autodeploy_settings(SETTINGS, "other")["token_digest"] != first["token_digest"]
    # The endpoint's delivery settings are the hub's business: the receiver does not roll for them.
    assert autodeploy_settings({**SETTINGS, "threshold": 6}, "t0ken")["token_digest"] == first["token_digest"]
    # The same token for another receiver gives another digest.
    assert autodeploy_settings({**SETTINGS, "name": "other"}, "t0ken")["token_digest"] != first["token_digest"]


def test_the_real_registry_reads_the_endpoint_from_the_environment(tmp_path: Path) -> None:
    """Debian's docker-registry (2.8.2) with REGISTRY_NOTIFICATIONS_ENDPOINTS as the role writes it."""
    received: list[tuple[str, str, dict]] = []

    class Sink(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            received.append((self.headers.get("Authorization", ""), self.headers.get("Content-Type", ""), body))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

    sink = ThreadingHTTPServer(("127.0.0.1", free_port()), Sink)
    thread = threading.Thread(target=sink.serve_forever, daemon=True)
    thread.start()
    try:
        settings = autodeploy_settings(SETTINGS, "t0ken")
        endpoints = settings["endpoints"].replace(
            settings["events_url"], f"http://127.0.0.1:{sink.server_address[1]}/events"
        )
        with start_registry(tmp_path / "hub", env={"REGISTRY_NOTIFICATIONS_ENDPOINTS": endpoints}) as hub:
            image = hub.push_image("hello", "latest", files={"app.py": b"v1"})
            # A HEAD is a pull: it must not be sent (ignore.actions).
            accept = {"Accept": "application/vnd.docker.distribution.manifest.v2+json"}
            assert hub.request("HEAD", "/v2/hello/manifests/latest", headers=accept).status == 200
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and not received:
                time.sleep(0.05)
            time.sleep(1)
    finally:
        sink.shutdown()
        sink.server_close()
    events = [event for delivery in received for event in delivery[2]["events"]]
    assert {delivery[0] for delivery in received} == {"Bearer t0ken"}
    assert {delivery[1] for delivery in received} == {"application/vnd.docker.distribution.events.v1+json"}
    # Only the manifest push: no layer pushes (ignoredmediatypes), no pulls (ignore.actions).
    assert [
        (e["action"], e["target"]["repository"], e["target"].get("tag"), e["target"]["digest"]) for e in events
    ] == [("push", "hello", "latest", image.digest)]
