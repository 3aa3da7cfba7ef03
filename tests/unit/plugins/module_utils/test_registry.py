"""The registry API v2 client, against a real docker-registry process and, for what that registry
cannot show (tag paging, token auth, broken proxies), a small scripted HTTP server."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from ansible_collections.knlab.serverless.plugins.module_utils._registry import (
    DOCKER_MANIFEST,
    OCI_INDEX,
    OCI_MANIFEST,
    RegistryClient,
    RegistryError,
    image_info,
    next_page_url,
    normalize_registry_url,
    parse_challenge,
    validate_host_header,
    validate_reference,
    validate_repository,
)
from ansible_collections.knlab.serverless.tests.unit.registry_server import (
    RegistryServer,
    free_port,
    make_tls_files,
    sha256_digest,
    start_registry,
)

DIGEST = "sha256:" + "ab" * 32

# -- validation (no registry needed) ----------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["hello", "demo/hello", "a/b/c", "my.app", "my_app", "my__app", "my-app", "a--b", "x9"]
)
def test_valid_repository_names_pass(name):
    assert validate_repository(name) == name


@pytest.mark.parametrize(
    ("name", "hint"),
    [
        ("Hello", "lowercase"),
        ("demo/hello:v1", "tag option"),
        ("demo/hello@sha256:00", "tag option"),
        ("127.0.0.1:5000/demo", "registry_url"),
        ("-hello", "path components"),
        ("hello/", "path components"),
        ("a//b", "path components"),
        ("a___b", "path components"),
        ("", "path components"),
        ("a" * 256, "255"),
    ],
)
def test_invalid_repository_names_fail_with_a_hint(name, hint):
    with pytest.raises(RegistryError) as caught:
        validate_repository(name)
    assert hint in caught.value.msg
    assert "\n" not in caught.value.msg


@pytest.mark.parametrize("reference", ["latest", "v1.2.3", "_x", "A" * 128, DIGEST, "sha512:" + "0" * 128])
def test_valid_references_pass(reference):
    assert validate_reference(reference) == reference


@pytest.mark.parametrize("reference", [".v1", "-v1", "A" * 129, "v 1", "sha256:abc", "sha256:" + "AB" * 32, "x:"])
def test_invalid_references_fail(reference):
    with pytest.raises(RegistryError, match="is not a valid"):
        validate_reference(reference)


@pytest.mark.parametrize(
    ("url", "expected"),
    [("http://127.0.0.1:5000", "http://127.0.0.1:5000"), ("https://hub.example/", "https://hub.example")],
)
def test_registry_url_is_normalized(url, expected):
    assert normalize_registry_url(url) == expected


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("127.0.0.1:5000", "must start with http"),
        ("ftp://hub", "must start with http"),
        ("https://hub.example/v2/", "only scheme://host"),
        ("https://user:pw@hub.example", "credentials"),
        ("http://hub:99999", "invalid port"),
    ],
)
def test_bad_registry_urls_fail(url, message):
    with pytest.raises(RegistryError, match=message):
        normalize_registry_url(url)


def test_host_header_refuses_header_injection():
    assert validate_host_header("hub.default.example.com:80") == "hub.default.example.com:80"
    with pytest.raises(RegistryError, match="host_header"):
        validate_host_header("hub\r\nX-Evil: 1")


def test_next_page_url_reads_rel_next_and_resolves_it():
    current = "http://r:5000/v2/a/tags/list?n=2"
    assert (
        next_page_url('</v2/a/tags/list?last=b&n=2>; rel="next"', current) == "http://r:5000/v2/a/tags/list?last=b&n=2"
    )
    assert next_page_url('<http://o/x>; rel="prev", <http://o/y>; rel=next', current) == "http://o/y"
    assert next_page_url('<http://o/x>; rel="prev"', current) is None
    assert next_page_url(None, current) is None


def test_parse_challenge():
    assert parse_challenge('Basic realm="hub"') == ("basic", {"realm": "hub"})
    assert parse_challenge('Bearer realm="https://auth/token",service="reg",scope="repository:a:pull"') == (
        "bearer",
        {"realm": "https://auth/token", "service": "reg", "scope": "repository:a:pull"},
    )


# -- against the real registry ----------------------------------------------------------------------


@dataclass
class Stocked:
    server: RegistryServer
    docker: object
    oci: object
    index: object


@pytest.fixture(scope="module")
def stocked(tmp_path_factory) -> Iterator[Stocked]:
    with start_registry(tmp_path_factory.mktemp("registry")) as server:
        docker = server.push_image("demo/hello", "v1")
        oci = server.push_image("demo/hello", "v2-oci", oci=True, files={"app.py": b"print('v2')\n"})
        index = server.push_index("demo/hello", "multi", [docker, oci])
        for name in ("b", "a", "c"):
            server.push_image("demo/sorted", name, files={"n": name.encode()})
        yield Stocked(server, docker, oci, index)


def client_for(server: RegistryServer, **kwargs) -> RegistryClient:
    return RegistryClient(server.url, **kwargs)


def test_tags_are_listed_sorted(stocked):
    assert client_for(stocked.server).list_tags("demo/sorted") == ["a", "b", "c"]


@pytest.mark.parametrize(
    ("tag", "attribute", "media_type"),
    [("v1", "docker", DOCKER_MANIFEST), ("v2-oci", "oci", OCI_MANIFEST), ("multi", "index", OCI_INDEX)],
)
def test_manifest_digest_and_media_type_of_a_tag(stocked, tag, attribute, media_type):
    manifest = client_for(stocked.server).manifest("demo/hello", tag)
    assert manifest.digest == getattr(stocked, attribute).digest
    assert manifest.media_type == media_type


def test_manifest_by_digest(stocked):
    manifest = client_for(stocked.server).manifest("demo/hello", stocked.oci.digest)
    assert manifest.digest == stocked.oci.digest == sha256_digest(stocked.oci.manifest)
    assert manifest.media_type == OCI_MANIFEST


def test_unknown_repository_and_tag_are_none(stocked):
    client = client_for(stocked.server)
    assert client.list_tags("demo/nothing-here") is None
    assert client.manifest("demo/hello", "no-such-tag") is None
    assert client.manifest("demo/hello", DIGEST) is None


def test_image_info_results(stocked):
    client = client_for(stocked.server)
    assert image_info(client, "demo/hello", "v1") == {
        "repository": "demo/hello",
        "tag": "v1",
        "exists": True,
        "tags": ["multi", "v1", "v2-oci"],
        "digest": stocked.docker.digest,
        "media_type": DOCKER_MANIFEST,
    }
    assert image_info(client, "demo/unknown")["exists"] is False
    missing_tag = image_info(client, "demo/hello", "v9")
    assert missing_tag["exists"] is False
    assert missing_tag["digest"] is None
    assert missing_tag["tags"] == ["multi", "v1", "v2-oci"]


def test_repository_with_every_tag_deleted_exists_with_no_tags(tmp_path):
    with start_registry(tmp_path) as server:
        image = server.push_image("demo/gone", "v1")
        server.delete_manifest("demo/gone", image.digest)
        client = client_for(server)
        # The registry answers "tags": null here; callers get a list.
        assert server.request("GET", "/v2/demo/gone/tags/list").json()["tags"] is None
        assert image_info(client, "demo/gone") == {
            "repository": "demo/gone",
            "tag": None,
            "exists": True,
            "tags": [],
            "digest": None,
            "media_type": None,
        }
        assert image_info(client, "demo/gone", image.digest)["exists"] is False


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory) -> Iterator[RegistryServer]:
    with start_registry(
        tmp_path_factory.mktemp("auth-registry"), auth=("alice", "wonderland"), realm="hub-realm"
    ) as server:
        server.push_image("demo/private", "v1")
        yield server


def test_basic_auth_works_with_the_right_credentials(auth_server):
    client = client_for(auth_server, username="alice", password="wonderland")
    assert image_info(client, "demo/private", "v1")["exists"] is True


def test_missing_credentials_name_the_realm(auth_server):
    with pytest.raises(RegistryError) as caught:
        image_info(client_for(auth_server), "demo/private")
    assert "requires authentication" in caught.value.msg
    assert 'Basic realm="hub-realm"' in caught.value.msg
    assert "set username and password" in caught.value.msg


def test_wrong_password_is_rejected_without_echoing_it(auth_server):
    with pytest.raises(RegistryError) as caught:
        image_info(client_for(auth_server, username="alice", password="not-it"), "demo/private")
    assert "rejected the credentials of user 'alice'" in caught.value.msg
    assert "not-it" not in caught.value.msg


# -- transport failures -----------------------------------------------------------------------------


def test_connection_refused_is_one_clear_line():
    port = free_port()
    with pytest.raises(RegistryError) as caught:
        RegistryClient(f"http://127.0.0.1:{port}").ping()
    assert caught.value.msg == (
        f"cannot connect to 127.0.0.1:{port}: connection refused (is the registry running and registry_url right?)"
    )


def test_silent_server_times_out_with_a_clear_message():
    with socket.socket() as listener:
        # Connections complete in the backlog, but nobody ever answers.
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        with pytest.raises(RegistryError, match=r"no answer from 127\.0\.0\.1:\d+ within 0\.2 seconds"):
            RegistryClient(f"http://127.0.0.1:{port}", timeout=0.2).ping()


def test_missing_ca_file_fails_before_any_request(tmp_path):
    with pytest.raises(RegistryError, match="is not a readable file"):
        RegistryClient("https://hub.example", ca_path=str(tmp_path / "nope.pem"))


def test_a_ca_file_without_a_certificate_fails_before_any_request(tmp_path):
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate\n")
    with pytest.raises(RegistryError, match="holds no usable PEM CA certificate"):
        RegistryClient("https://hub.example", ca_path=str(bad))


def test_one_tls_context_serves_all_of_a_clients_requests(stocked, monkeypatch):
    # Building one reads the system's CA certificates (about 25 ms): once per client, not per request.
    from ansible_collections.knlab.serverless.plugins.module_utils import _registry

    made = []
    real = _registry.make_context
    monkeypatch.setattr(_registry, "make_context", lambda **kwargs: made.append(kwargs) or real(**kwargs))
    assert image_info(client_for(stocked.server), "demo/hello", "v1")["exists"] is True
    assert made == [{"cafile": None, "validate_certs": True}]


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory) -> Iterator[tuple[RegistryServer, object]]:
    directory = tmp_path_factory.mktemp("tls-registry")
    tls = make_tls_files(directory / "pki")
    with start_registry(directory / "registry", tls=tls) as server:
        server.push_image("demo/secure", "v1")
        yield server, tls


def test_untrusted_certificate_says_what_to_do(tls_server):
    server = tls_server[0]
    assert server.url.startswith("https://")
    with pytest.raises(RegistryError) as caught:
        client_for(server).ping()
    assert caught.value.msg.startswith(f"TLS certificate of {server.netloc} is not trusted")
    assert "set ca_path" in caught.value.msg


def test_ca_path_and_validate_certs_false_both_reach_a_tls_registry(tls_server):
    server, tls = tls_server
    assert image_info(client_for(server, ca_path=str(tls.ca)), "demo/secure", "v1")["exists"] is True
    assert image_info(client_for(server, validate_certs=False), "demo/secure", "v1")["exists"] is True


def test_https_url_against_a_plain_http_registry(stocked):
    with pytest.raises(RegistryError, match=r"TLS handshake with .* failed: .*use an http:// registry_url"):
        RegistryClient(f"https://{stocked.server.netloc}").ping()


# -- a scripted server for what the 2.8 registry does not do ----------------------------------------


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]


@dataclass
class Scripted:
    """A tiny HTTP server; ``respond(method, path, headers)`` returns (status, headers, body)."""

    respond: Callable[[str, str, dict[str, str]], tuple[int, dict[str, str], bytes]]
    seen: list[Seen] = field(default_factory=list)
    url: str = ""


@pytest.fixture
def scripted() -> Iterator[Scripted]:
    state = Scripted(respond=lambda method, path, headers: (500, {}, b""))

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            headers = {key.lower(): value for key, value in self.headers.items()}
            state.seen.append(Seen(self.command, self.path, headers))
            status, reply_headers, body = state.respond(self.command, self.path, headers)
            self.send_response(status)
            for key, value in reply_headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        do_GET = do_HEAD = _answer

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def json_reply(document: dict, status: int = 200, **headers: str) -> tuple[int, dict[str, str], bytes]:
    return status, {"Content-Type": "application/json", **headers}, json.dumps(document).encode()


def test_tags_follow_relative_and_absolute_next_links(scripted):
    def respond(method, path, headers):
        if path == "/v2/":
            return json_reply({})
        pages = {
            "/v2/demo/app/tags/list": (["v1", "v2"], '</v2/demo/app/tags/list?last=v2&n=2>; rel="next"'),
            "/v2/demo/app/tags/list?last=v2&n=2": (
                ["v3", "v4"],
                f'<{scripted.url}/v2/demo/app/tags/list?last=v4&n=2>; rel="next"',
            ),
            "/v2/demo/app/tags/list?last=v4&n=2": (["latest"], None),
        }
        tags, link = pages[path]
        return json_reply({"name": "demo/app", "tags": tags}, **({"Link": link} if link else {}))

    scripted.respond = respond
    client = RegistryClient(scripted.url)
    assert client.list_tags("demo/app") == ["latest", "v1", "v2", "v3", "v4"]
    assert [seen.path for seen in scripted.seen] == [
        "/v2/demo/app/tags/list",
        "/v2/demo/app/tags/list?last=v2&n=2",
        "/v2/demo/app/tags/list?last=v4&n=2",
    ]


def test_page_size_asks_for_n(scripted):
    scripted.respond = lambda method, path, headers: json_reply({"tags": ["a"]})
    RegistryClient(scripted.url, page_size=50).list_tags("demo/app")
    assert scripted.seen[-1].path == "/v2/demo/app/tags/list?n=50"


def test_a_paging_loop_is_an_error_not_a_hang(scripted):
    scripted.respond = lambda method, path, headers: json_reply(
        {"tags": ["a"]}, Link='</v2/demo/app/tags/list?last=a>; rel="next"'
    )
    with pytest.raises(RegistryError, match="keeps paging tags of demo/app"):
        RegistryClient(scripted.url).list_tags("demo/app")
    assert len(scripted.seen) == 2


def test_host_header_is_sent_to_the_registry(scripted):
    scripted.respond = lambda method, path, headers: json_reply({"tags": ["v1"]})
    assert RegistryClient(scripted.url, host_header="hub.default.example.com").list_tags("demo/app") == ["v1"]
    assert {seen.headers["host"] for seen in scripted.seen} == {"hub.default.example.com"}


def test_bearer_challenge_gets_a_token_with_the_basic_credentials(scripted):
    def respond(method, path, headers):
        if path.startswith("/token"):
            # The realm is asked with the user's basic credentials and the challenge's scope.
            assert headers.get("authorization", "").startswith("Basic ")
            assert "scope=repository%3Ademo%2Fapp%3Apull" in path
            return json_reply({"token": "t-123"})
        if headers.get("authorization") != "Bearer t-123":
            challenge = f'Bearer realm="{scripted.url}/token",service="hub",scope="repository:demo/app:pull"'
            return json_reply({"errors": [{"code": "UNAUTHORIZED"}]}, 401, **{"WWW-Authenticate": challenge})
        return json_reply({"tags": ["v1"]})

    scripted.respond = respond
    client = RegistryClient(scripted.url, username="u", password="p")
    assert client.list_tags("demo/app") == ["v1"]
    assert [seen.path.split("?")[0] for seen in scripted.seen] == [
        "/v2/demo/app/tags/list",
        "/token",
        "/v2/demo/app/tags/list",
    ]


def test_refused_token_is_a_clear_error(scripted):
    def respond(method, path, headers):
        if path.startswith("/token"):
            return json_reply({"errors": [{"code": "DENIED", "message": "bad login"}]}, 401)
        return json_reply({}, 401, **{"WWW-Authenticate": f'Bearer realm="{scripted.url}/token",service="hub"'})

    scripted.respond = respond
    with pytest.raises(
        RegistryError, match=r"token service 127\.0\.0\.1:\d+ refused user 'u' \(HTTP 401: DENIED: bad login\)"
    ):
        RegistryClient(scripted.url, username="u", password="p").ping()


def test_head_refused_falls_back_to_get_and_hashes_the_manifest(scripted):
    manifest = b'{"schemaVersion": 2}'

    def respond(method, path, headers):
        if method == "HEAD":
            return 405, {}, b""
        assert "application/vnd.oci.image.index.v1+json" in headers["accept"]
        return 200, {"Content-Type": f"{OCI_MANIFEST}; charset=utf-8"}, manifest

    scripted.respond = respond
    found = RegistryClient(scripted.url).manifest("demo/app", "v1")
    assert found.digest == sha256_digest(manifest)
    assert found.media_type == OCI_MANIFEST


def test_server_errors_carry_the_registry_error_codes(scripted):
    scripted.respond = lambda method, path, headers: (
        json_reply({"errors": [{"code": "UNKNOWN", "message": "storage\nbroke"}]}, 500)
        if path != "/v2/"
        else json_reply({})
    )
    with pytest.raises(RegistryError) as caught:
        RegistryClient(scripted.url).list_tags("demo/app")
    assert caught.value.msg.endswith("answered HTTP 500 to GET /v2/demo/app/tags/list: UNKNOWN: storage broke")


def test_something_that_is_not_a_registry(scripted):
    scripted.respond = lambda method, path, headers: (404, {"Content-Type": "text/html"}, b"<h1>nope</h1>")
    with pytest.raises(RegistryError, match=r"does not serve the registry API v2 \(GET /v2/ answered 404\)"):
        RegistryClient(scripted.url).ping()


def test_non_json_tag_list_is_an_error(scripted):
    scripted.respond = lambda method, path, headers: (200, {"Content-Type": "text/html"}, b"<html>")
    with pytest.raises(RegistryError, match="did not answer with a JSON object"):
        RegistryClient(scripted.url).list_tags("demo/app")
