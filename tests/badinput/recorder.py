"""A Kubernetes API, registry and HTTP proxy stand-in that records every request and serves none.

Bad input must be refused before the collection sends anything, so this server has nothing to
give: reads get 404, writes get 403 (nothing is ever stored), and anything sent to it as a proxy
(a download the knative_stack role would make, for instance) is refused too. What matters is the
log: each request with the time it arrived, so the campaign can tell which call sent it.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass(frozen=True)
class Request:
    at: float
    method: str
    target: str

    @property
    def is_write(self) -> bool:
        return self.method in WRITE_METHODS


class _Handler(BaseHTTPRequestHandler):
    server: RecordingServer

    def _answer(self) -> None:
        self.server.record(Request(time.time(), self.command, self.path))
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        forbidden = self.command in WRITE_METHODS or self.command == "CONNECT"
        status = 403 if forbidden else 404
        body = json.dumps(
            {
                "kind": "Status",
                "apiVersion": "v1",
                "status": "Failure",
                "reason": "Forbidden" if forbidden else "NotFound",
                "message": "the bad-input recorder serves nothing",
                "code": status,
            }
        ).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_CONNECT = _answer

    def log_message(self, format: str, *args: object) -> None:
        pass


class RecordingServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self._lock = threading.Lock()
        self.requests: list[Request] = []
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def record(self, request: Request) -> None:
        with self._lock:
            self.requests.append(request)

    def __enter__(self) -> RecordingServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()

    def kubeconfig(self) -> dict:
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "recorder", "cluster": {"server": self.url}}],
            "users": [{"name": "recorder", "user": {"token": "badinput-recorder-token"}}],
            "contexts": [{"name": "recorder", "context": {"cluster": "recorder", "user": "recorder"}}],
            "current-context": "recorder",
        }
