"""Fault injection and the request log.

Faults make the sandbox behave like a cluster having a bad day, reproducibly (seeded): a fraction
of API requests answered with 429/500/503 (with Retry-After, which client-go honours), added
latency, watch streams cut after N seconds, and an event history so short that resuming a watch
soon gets 410 Expired. The request log (JSON lines) lets benchmarks count requests.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import IO

from aiohttp import web

from .errors import ApiStatusError
from .settings import FaultSettings

# Health endpoints stay honest: `up` and readiness probes must see the server as it is.
EXEMPT_PATHS = ("/healthz", "/readyz", "/livez")

_REASONS = {429: "TooManyRequests", 500: "InternalError", 503: "ServiceUnavailable"}
_MESSAGES = {
    429: "the server has received too many requests and has asked us to try again later",
    500: "an error on the server (injected by knlab-sandbox fault injection) has prevented the request from succeeding",
    503: "the server is currently unable to handle the request",
}


def injected_error(code: int, retry_after: int) -> ApiStatusError:
    error = ApiStatusError(code, _REASONS.get(code, "InternalError"), _MESSAGES.get(code, _MESSAGES[500]))
    # client-go retries a 429/5xx that carries Retry-After (0 = at once); a negative value sends none.
    if retry_after >= 0:
        error.details = {"retryAfterSeconds": retry_after}
        error.headers["Retry-After"] = str(retry_after)
    return error


class Faults:
    def __init__(self, settings: FaultSettings, request_log: Path | None):
        self.settings = settings
        self._rng = random.Random(settings.seed)
        self._log: IO[str] | None = request_log.open("a", buffering=1) if request_log else None
        self.injected = 0

    def close(self) -> None:
        if self._log:
            self._log.close()
            self._log = None

    def pick_error(self, path: str) -> int | None:
        """The status to inject for this request, if any (deterministic for a given seed and order)."""
        if not self.settings.error_rate or path in EXEMPT_PATHS:
            return None
        if self._rng.random() >= self.settings.error_rate:
            return None
        self.injected += 1
        return self._rng.choice(self.settings.error_codes)

    @property
    def watch_lifetime(self) -> float | None:
        return self.settings.drop_watch_after or None

    def log_request(self, request: web.BaseRequest, status: int, started: float, injected: bool) -> None:
        if not self._log:
            return
        record = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{int(time.time() * 1000) % 1000:03d}Z",
            "method": request.method,
            "path": request.path,
            "query": request.query_string,
            "user_agent": request.headers.get("User-Agent", ""),
            "status": status,
            "duration_ms": round((time.monotonic() - started) * 1000, 2),
        }
        if injected:
            record["injected"] = True
        self._log.write(json.dumps(record) + "\n")

    def middleware(
        self, error_response: Callable[[ApiStatusError], web.Response]
    ) -> Callable[[web.Request, Callable[[web.Request], Awaitable[web.StreamResponse]]], Awaitable[web.StreamResponse]]:
        @web.middleware
        async def faults_middleware(
            request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
        ) -> web.StreamResponse:
            started = time.monotonic()
            status = 500
            injected = False
            try:
                if self.settings.latency and request.path not in EXEMPT_PATHS:
                    await asyncio.sleep(self.settings.latency)
                code = self.pick_error(request.path)
                if code is not None:
                    injected = True
                    response: web.StreamResponse = error_response(injected_error(code, self.settings.retry_after))
                else:
                    response = await handler(request)
                status = response.status
                return response
            except web.HTTPException as exc:
                status = exc.status
                raise
            finally:
                self.log_request(request, status, started, injected)

        return faults_middleware
