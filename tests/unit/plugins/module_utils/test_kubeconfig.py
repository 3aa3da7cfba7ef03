"""Module auth options -> connection: kubernetes.core's rules, and the same result as the library's loader."""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path

import pytest
import yaml
from ansible_collections.knlab.serverless.plugins.module_utils import _kubeconfig
from ansible_collections.knlab.serverless.plugins.module_utils._errors import ServerlessError
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config

CA = b"-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----\n"
CERT = b"-----BEGIN CERTIFICATE-----\nCLIENT\n-----END CERTIFICATE-----\n"
KEY = b"-----BEGIN PRIVATE KEY-----\nKEY\n-----END PRIVATE KEY-----\n"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def kubeconfig(users: dict, clusters: dict, contexts: dict, current: str | None) -> dict:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": value} for name, value in clusters.items()],
        "users": [{"name": name, "user": value} for name, value in users.items()],
        "contexts": [{"name": name, "context": {"cluster": c, "user": u}} for name, (c, u) in contexts.items()],
    }
    if current:
        config["current-context"] = current
    return config


def write(path: Path, config: dict) -> str:
    path.write_text(yaml.safe_dump(config))
    return str(path)


def library(**kwargs):
    configuration = k8s_client.Configuration()
    k8s_config.load_kube_config(client_configuration=configuration, persist_config=False, **kwargs)
    return configuration


def read(path: str | None) -> bytes | None:
    return Path(path).read_bytes() if path else None


def same_as_library(conn: _kubeconfig.Connection, configuration) -> None:
    assert conn.host == configuration.host
    assert conn.verify_ssl == configuration.verify_ssl
    assert read(conn.ssl_ca_cert) == read(configuration.ssl_ca_cert)
    assert read(conn.cert_file) == read(configuration.cert_file)
    assert read(conn.key_file) == read(configuration.key_file)
    assert conn.tls_server_name == configuration.tls_server_name
    assert conn.proxy == configuration.proxy
    assert conn.authorization() == configuration.get_api_key_with_prefix("BearerToken", alias="authorization")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    for name in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT"):
        monkeypatch.delenv(name, raising=False)
    for name in list(__import__("os").environ):
        if name.startswith("K8S_AUTH_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.kube/config of the machine's


CLUSTERS = {
    "tls": {"server": "https://127.0.0.1:6443/", "certificate-authority-data": b64(CA), "tls-server-name": "api.local"},
    "files": {
        "server": "https://10.0.0.1:443",
        "certificate-authority": "pki/ca.crt",
        "proxy-url": "http://proxy:3128",
    },
    "plain": {"server": "http://127.0.0.1:8080", "insecure-skip-tls-verify": True},
}
USERS = {
    "token": {"token": "abc"},
    "certs": {"client-certificate-data": b64(CERT), "client-key-data": b64(KEY)},
    "cert-files": {"client-certificate": "pki/client.crt", "client-key": "pki/client.key"},
    "basic": {"username": "ann", "password": "s3cret"},
    "token-file": {"tokenFile": "pki/token"},
}


@pytest.mark.parametrize(
    ("context", "cluster", "user"),
    [
        ("a", "tls", "token"),
        ("b", "tls", "certs"),
        ("c", "files", "cert-files"),
        ("d", "plain", "basic"),
        ("e", "files", "token-file"),
        ("f", "plain", "certs"),  # no client certificate over http, as the library
    ],
)
def test_a_kubeconfig_gives_what_the_library_gives(tmp_path, context, cluster, user):
    (tmp_path / "pki").mkdir()
    for name, data in (("ca.crt", CA), ("client.crt", CERT), ("client.key", KEY), ("token", b"from-file")):
        (tmp_path / "pki" / name).write_bytes(data)
    path = write(tmp_path / "config", kubeconfig(USERS, CLUSTERS, {context: (cluster, user)}, context))
    conn = _kubeconfig.connection({"kubeconfig": path})
    same_as_library(conn, library(config_file=path))


def test_context_option_env_and_merged_files(tmp_path, monkeypatch):
    first = write(tmp_path / "one", kubeconfig(USERS, CLUSTERS, {"a": ("tls", "token"), "b": ("plain", "basic")}, "a"))
    second = write(tmp_path / "two", kubeconfig({"token": {"token": "shadowed"}}, {}, {"z": ("tls", "token")}, "z"))
    paths = f"{first}:{second}:{tmp_path / 'missing'}"
    monkeypatch.setenv("KUBECONFIG", paths)
    # (the library reads KUBECONFIG when it is imported, so it is given the same list here)
    same_as_library(_kubeconfig.connection({}), library(config_file=paths))  # current-context: the last file's, z
    assert _kubeconfig.connection({}).authorization() == "Bearer abc"  # the first file's user wins
    same_as_library(_kubeconfig.connection({"context": "b"}), library(config_file=paths, context="b"))
    monkeypatch.setenv("K8S_AUTH_CONTEXT", "b")
    assert _kubeconfig.connection({}).host == "http://127.0.0.1:8080"


def test_options_override_the_kubeconfig(tmp_path):
    path = write(tmp_path / "config", kubeconfig(USERS, CLUSTERS, {"a": ("tls", "token")}, "a"))
    conn = _kubeconfig.connection(
        {"kubeconfig": path, "host": "https://other:6443/", "validate_certs": False, "ca_cert": "/x/ca.crt"}
    )
    assert (conn.host, conn.verify_ssl, conn.ssl_ca_cert, conn.authorization()) == (
        "https://other:6443",
        False,
        "/x/ca.crt",
        "Bearer abc",
    )


def test_host_with_a_token_needs_no_kubeconfig_and_env_settings_count(monkeypatch):
    monkeypatch.setenv("KUBECONFIG", "/does/not/exist")
    monkeypatch.setenv("K8S_AUTH_HOST", "https://h:6443")
    monkeypatch.setenv("K8S_AUTH_API_KEY", "t0k")
    monkeypatch.setenv("K8S_AUTH_VERIFY_SSL", "no")
    monkeypatch.setenv("K8S_AUTH_IMPERSONATE_GROUPS", "a,,b")
    monkeypatch.setenv("K8S_AUTH_PROXY_HEADERS_USER_AGENT", "me")
    conn = _kubeconfig.connection({"impersonate_user": "bob"})
    assert (conn.host, conn.authorization(), conn.verify_ssl) == ("https://h:6443", "Bearer t0k", False)
    assert conn.headers == {"Impersonate-User": "bob", "Impersonate-Group": ["a", "b"]}
    assert conn.proxy_headers == {"user-agent": "me"}


def test_no_configuration_at_all_is_an_error():
    with pytest.raises(ServerlessError, match="No configuration found"):
        _kubeconfig.connection({})


def test_a_missing_context_is_named(tmp_path):
    path = write(tmp_path / "config", kubeconfig(USERS, CLUSTERS, {"a": ("tls", "token")}, "a"))
    with pytest.raises(ServerlessError, match="Expected object with name nope in kube-config/contexts list"):
        _kubeconfig.connection({"kubeconfig": path, "context": "nope"})


def test_in_cluster_comes_first_without_kubeconfig_options(tmp_path, monkeypatch):
    (tmp_path / "token").write_text("sa-token")
    (tmp_path / "ca.crt").write_bytes(CA)
    monkeypatch.setattr(_kubeconfig, "SERVICE_ACCOUNT_DIR", str(tmp_path))
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "fd00::1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    conn = _kubeconfig.connection({})
    assert (conn.host, conn.ssl_ca_cert, conn.authorization()) == (
        "https://[fd00::1]:443",
        str(tmp_path / "ca.crt"),
        "Bearer sa-token",
    )


def test_an_exec_plugin_user_goes_through_the_library(tmp_path):
    plugin = tmp_path / "plugin.py"
    credential = {
        "apiVersion": "client.authentication.k8s.io/v1",
        "kind": "ExecCredential",
        "status": {"token": "from-exec"},
    }
    plugin.write_text(f"import json\nprint(json.dumps({credential!r}))\n")
    user = {"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": sys.executable, "args": [str(plugin)]}}
    path = write(tmp_path / "config", kubeconfig({"x": user}, CLUSTERS, {"a": ("tls", "x")}, "a"))
    conn = _kubeconfig.connection({"kubeconfig": path})
    same_as_library(conn, library(config_file=path))
    assert conn.authorization() == "Bearer from-exec"


def test_a_kubeconfig_given_as_a_dict(tmp_path):
    config = kubeconfig(USERS, CLUSTERS, {"a": ("tls", "certs")}, "a")
    conn = _kubeconfig.connection({"kubeconfig": json.loads(json.dumps(config))})
    configuration = k8s_client.Configuration()
    k8s_config.load_kube_config_from_dict(config, client_configuration=configuration, persist_config=False)
    same_as_library(conn, configuration)
