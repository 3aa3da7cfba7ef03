"""http_check run as Ansible runs it (arguments in, JSON out) against a real HTTP server on loopback."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from ansible.module_utils.testing import patch_module_args
from ansible_collections.knlab.serverless.plugins.modules import http_check


class App(BaseHTTPRequestHandler):
    """Answers 503 until it has been asked ``ready_after`` times, then 200 with a greeting."""

    calls: list[dict[str, str]] = []
    ready_after = 0
    redirect = ""  # answer the first request with a redirect to this path
    charset = ""  # name it in Content-Type and encode the greeting with it

    def do_GET(self) -> None:
        host = self.headers.get("Host", "")
        App.calls.append({"path": self.path, "host": host})
        if App.redirect and len(App.calls) == 1:
            self.send_response(302)
            self.send_header("Location", App.redirect)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if len(App.calls) <= App.ready_after:
            status, body = 503, b"not yet"
        else:
            status, body = 200, f"Hello {host}!\n".encode(App.charset or "utf-8")
        self.send_response(status)
        if App.charset:
            self.send_header("Content-Type", f"text/plain; charset={App.charset}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def app() -> Iterator[str]:
    App.calls, App.ready_after, App.redirect, App.charset = [], 0, "", ""
    server = ThreadingHTTPServer(("127.0.0.1", 0), App)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def run_module(capsys, check_mode: bool = False, **args) -> dict:
    if check_mode:
        args["_ansible_check_mode"] = True
    with patch_module_args(args), pytest.raises(SystemExit):
        http_check.main()
    return json.loads(capsys.readouterr().out)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_the_expected_answer_on_the_first_try(app, capsys):
    result = run_module(capsys, url=app + "/hi?x=1", headers={"Host": "hello.default.example.com"}, contains="Hello")
    assert result["changed"] is False
    assert "failed" not in result
    assert result["status"] == 200
    assert result["content"] == "Hello hello.default.example.com!\n"
    assert result["attempts"] == 1
    assert App.calls == [{"path": "/hi?x=1", "host": "hello.default.example.com"}]


def test_tries_again_until_the_answer_is_the_expected_one(app, capsys):
    App.ready_after = 2
    result = run_module(capsys, url=app + "/", contains="Hello", attempts=5, delay=0)
    assert result["status"] == 200
    assert result["attempts"] == 3
    assert len(App.calls) == 3


def test_fails_after_the_last_attempt_with_what_it_got(app, capsys):
    App.ready_after = 10
    result = run_module(capsys, url=app + "/", attempts=2, delay=0)
    assert result["failed"] is True
    assert result["msg"] == f"{app}/ did not answer HTTP 200 after 2 attempts; got 503: 'not yet'"
    assert (result["status"], result["content"], result["attempts"]) == (503, "not yet", 2)


def test_a_body_without_the_text_is_not_the_expected_answer(app, capsys):
    result = run_module(capsys, url=app + "/", contains="Goodbye")
    assert result["failed"] is True
    assert "did not answer HTTP 200 with a body containing 'Goodbye' after 1 attempt; got 200:" in result["msg"]


def test_no_answer_says_why(capsys):
    url = f"http://127.0.0.1:{closed_port()}/"
    result = run_module(capsys, url=url, attempts=2, delay=0)
    assert result["failed"] is True
    assert result["status"] == 0 and result["attempts"] == 2
    assert "got no answer (cannot connect to 127.0.0.1:" in result["msg"]
    assert "connection refused (is the server running and url right?)" in result["msg"]


def test_check_mode_reads_as_well(app, capsys):
    result = run_module(capsys, check_mode=True, url=app + "/")
    assert result["status"] == 200
    assert len(App.calls) == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"url": "ftp://host/"}, "url 'ftp://host/' must start with http:// or https://"),
        ({"url": "http://user:pw@host/"}, "url must not carry credentials"),
        ({"url": "http://host/#top"}, "must not contain a #fragment"),
        ({"url": "http://host/ a"}, "url must be 1 to 2048 ASCII characters without spaces"),
        ({"url": "http://host/été"}, "url must be 1 to 2048 ASCII characters"),
        ({"url": "http://[::1/"}, "is not a valid URL: Invalid IPv6 URL"),
        ({"url": "http://h/", "headers": {"X": "caf€"}}, "headers: the value of X must be at most 8192 Latin-1"),
        ({"url": "http://host:70000/"}, "is not a valid URL: Port out of range"),
        ({"url": "http://bad_host!/"}, "has an invalid host or port"),
        ({"url": "http://host/\n"}, "url must be 1 to 2048 ASCII characters without spaces or control"),
        ({"url": "http://h/", "headers": {"Bad Name": "x"}}, "headers: 'Bad Name' is not an HTTP header name"),
        ({"url": "http://h/", "headers": {"Host": "a\r\nX: y"}}, "headers: the value of Host must be"),
        ({"url": "http://h/", "status_code": 99}, "status_code must be between 100 and 599, got 99"),
        ({"url": "http://h/", "attempts": 0}, "attempts must be between 1 and 10000, got 0"),
        ({"url": "http://h/", "delay": -1}, "delay must be between 0 and 3600, got -1"),
        ({"url": "http://h/", "timeout": 0}, "timeout must be greater than 0"),
        ({"url": "http://h/", "ca_path": ""}, "ca_path must not be empty"),
    ],
)
def test_bad_input_is_refused_before_any_request(app, capsys, args, message):
    result = run_module(capsys, **args)
    assert result["failed"] is True
    assert message in result["msg"]
    assert "\n" not in result["msg"]
    assert App.calls == []


@pytest.mark.parametrize(
    "url", ["ftp://user:s3cret@127.0.0.1/", "http//user:s3cret@127.0.0.1/", "http://user:s3cret@h/\n"]
)
def test_credentials_in_the_url_are_refused_without_showing_them(app, capsys, url):
    result = run_module(capsys, url=url)
    assert result["failed"] is True
    assert result["msg"] == "url must not carry credentials (user:password@)"
    assert "s3cret" not in json.dumps(result)


def test_a_path_with_an_at_sign_is_fine(app, capsys):
    assert run_module(capsys, url=app + "/users/@me")["status"] == 200


def test_a_ca_path_that_holds_no_certificate_is_refused_before_any_request(app, capsys, tmp_path):
    not_pem = tmp_path / "ca.pem"
    not_pem.write_text("not a certificate\n")
    result = run_module(capsys, url=app + "/", ca_path=str(not_pem), attempts=3)
    assert result["failed"] is True
    assert result["msg"].startswith(f"ca_path '{not_pem}' holds no PEM CA certificate")
    assert App.calls == []


def test_headers_go_along_a_redirect_on_the_same_host(app, capsys):
    App.redirect = "/moved"
    result = run_module(capsys, url=app + "/old", headers={"Host": "hello.example.com"}, contains="Hello")
    assert result["status"] == 200
    assert App.calls == [
        {"path": "/old", "host": "hello.example.com"},
        {"path": "/moved", "host": "hello.example.com"},
    ]


def test_the_body_is_read_in_the_charset_it_names(app, capsys):
    App.charset = "latin-1"
    result = run_module(capsys, url=app + "/", headers={"Host": "Grüße"}, contains="Grüße")
    assert result["content"] == "Hello Grüße!\n"
