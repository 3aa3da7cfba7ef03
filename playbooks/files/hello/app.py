"""The demo app: answers GET / with a greeting, using only the standard library.

Knative tells the container which port to listen on through PORT; TARGET is whom to greet.
HOST is the address to bind: unset (all interfaces) in a pod; the sandbox sets 127.0.0.1, where
apps run as processes on the machine's own network.
"""

from __future__ import annotations

import os
import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Greeter(BaseHTTPRequestHandler):
    server_version = "hello/1.0"

    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] != "/":
            self._answer(404, "Not found\n")
            return
        target = os.environ.get("TARGET", "World")
        self._answer(200, f"Hello {target}!\n")

    def _answer(self, status: int, text: str) -> None:
        body = text.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def main() -> None:
    port = int(os.environ.get("PORT", "8080"))
    server = ThreadingHTTPServer((os.environ.get("HOST", ""), port), Greeter)
    # Kubernetes stops a pod with SIGTERM; end cleanly instead of being killed after the grace period.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"hello: listening on port {port}", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
