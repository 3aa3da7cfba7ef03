"""What the builder and the image puller share: finding a registry, and its credentials."""

from __future__ import annotations

import base64

import pytest
from knlab_sandbox.gateway import Endpoint
from knlab_sandbox.registry_client import docker_config_credentials, registry_address, registry_errors


def auth(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize(
    ("key", "registry"),
    [
        ("hub.default.svc.cluster.local", "hub.default.svc.cluster.local"),
        ("https://Hub.Default.svc.cluster.local/v2/", "hub.default.svc.cluster.local"),
        ("http://127.0.0.1:5000", "127.0.0.1:5000"),
        ("https://index.docker.io/v1/", "docker.io"),
        ("docker.io", "index.docker.io"),
    ],
)
def test_credentials_are_found_under_any_spelling_of_the_registry(key, registry):
    document = {"auths": {"other.example": {"auth": auth("x", "y")}, key: {"auth": auth("alice", "a:b")}}}
    assert docker_config_credentials(document, registry) == ("alice", "a:b")


def test_auth_wins_over_username_and_a_bad_auth_falls_back_to_it():
    both = {"auths": {"r.example": {"auth": auth("alice", "pw"), "username": "bob", "password": "other"}}}
    assert docker_config_credentials(both, "r.example") == ("alice", "pw")
    for broken in ("%%%", base64.b64encode(b"no colon").decode(), base64.b64encode(b"\xff:x").decode()):
        entry = {"auth": broken, "username": "bob", "password": "other"}
        assert docker_config_credentials({"auths": {"r.example": entry}}, "r.example") == ("bob", "other")


@pytest.mark.parametrize(
    "document",
    [{}, {"auths": None}, {"auths": []}, {"auths": {"r.example": "text"}}, {"auths": {"other.example": {}}}, []],
)
def test_no_credentials(document):
    assert docker_config_credentials(document, "r.example") is None


def test_loopback_registries_are_direct_and_others_only_through_the_resolver():
    routes = {"hub.default.svc.cluster.local": Endpoint("127.0.0.1", 4321)}
    assert registry_address("localhost:5000", routes.get) == ("127.0.0.1", 5000)
    assert registry_address("127.0.0.1:5000", None) == ("127.0.0.1", 5000)
    assert registry_address("hub.default.svc.cluster.local", routes.get) == ("127.0.0.1", 4321)
    assert registry_address("hub.default.svc.cluster.local", None) is None
    assert registry_address("127.0.0.1", routes.get) is None  # no port: nothing listens on 127.0.0.1:80
    assert registry_address("registry.example:5000", routes.get) is None


def test_registry_errors():
    body = b'{"errors": [{"code": "NAME_UNKNOWN", "message": "repository name not known"}, {"message": "x"}]}'
    assert registry_errors(body) == ["NAME_UNKNOWN: repository name not known", "UNKNOWN: x"]
    assert registry_errors(b"<html>bad gateway</html>") == registry_errors(b'"text"') == []
