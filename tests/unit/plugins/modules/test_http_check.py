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

    def do_GET(self) -> None:
        App.calls.append({"path": self.path, "host": self.headers.get("Host", "")})
        if len(App.calls) <= App.ready_after:
            status, body = 503, b"not yet"
        else:
            status, body = 200, f"Hello {self.headers.get('Host')}!\n".encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def app() -> Iterator[str]:
    App.calls, App.ready_after = [], 0
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
        ({"url": "http://host/#top"}, "must not contain spaces or a #fragment"),
        ({"url": "http://host:70000/"}, "has an invalid host or port"),
        ({"url": "http://host/\n"}, "url must not contain control characters"),
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
