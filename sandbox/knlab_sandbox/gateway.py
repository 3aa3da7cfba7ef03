"""The ingress: one HTTP listener that routes by Host header to revision processes, as Kourier does.

Knative gives every Service an external host (``name.ns.<domain>``) and a cluster-local one
(``name.ns.svc.cluster.local``); the Knative controller registers both here for the revision that
serves the Service's traffic. A request is routed by its ``Host`` header (port stripped,
case-insensitive); an unknown host gets a 404, as an ingress with no matching virtual host does.

The proxy streams both ways, so registry blob uploads of any size pass through without being
buffered, and keeps the client's ``Host`` so a registry builds its ``Location`` URLs with the name
the client used. A ``Location`` that still points at the backend's loopback address is rewritten to
that name, so the next request of an upload comes back through the gateway.

Pod processes reach Services by their cluster-local names through the same listener: the runtime
gives each one ``http_proxy`` pointing here, so their HTTP clients send absolute-form requests
(``POST http://name.ns.svc.cluster.local/events HTTP/1.1``), routed by the target's host exactly
as by a Host header (port 80, or the gateway's own, only). CONNECT (an HTTPS tunnel) is refused.

Inside the sandbox, builds and the runtime reach a hub the way a pod reaches a Knative Service:
`Gateway.resolve` turns its host into the endpoint of the process behind it.

server.py builds and starts it::

    gateway = Gateway(settings.gateway_port, host=settings.gateway_host)
    await gateway.start()          # gateway.address is then the bound (host, port)
    ...
    await gateway.stop()
"""

from __future__ import annotations

import time
from typing import NamedTuple
from urllib.parse import urlsplit, urlunsplit

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

# Hop-by-hop headers (RFC 9110 §7.6.1) belong to one connection and are never forwarded.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "expect",
    }
)
CHUNK_SIZE = 64 * 1024
CONNECT_TIMEOUT = 5.0


class Endpoint(NamedTuple):
    """Where a process listens: always a loopback address and a port."""

    host: str
    port: int


def normalise_host(host: str) -> str:
    """``Hub.Default.svc.cluster.local.:80`` → ``hub.default.svc.cluster.local``."""
    host = host.strip().lower()
    if host.startswith("["):  # an IPv6 literal keeps its brackets, loses its port
        return host.split("]", 1)[0] + "]"
    return host.rsplit(":", 1)[0].rstrip(".") if ":" in host else host.rstrip(".")


def _port_of(host: str) -> int | None:
    tail = host.rsplit("]", 1)[-1]
    if ":" not in tail:
        return None
    try:
        return int(tail.rsplit(":", 1)[1])
    except ValueError:
        return -1


class Pool:
    """The ready instances of one scaled revision, and what the autoscaler reads about its load.

    A route still names one endpoint; when that endpoint belongs to a pool the request goes to the
    pool's instance with the fewest requests in flight (ties in turn). Endpoints stay mapped to their
    pool after their process is gone, so a route that names a dead instance keeps reaching the others.
    """

    def __init__(self) -> None:
        self.endpoints: list[Endpoint] = []
        self.in_flight = 0
        self.per_endpoint: dict[Endpoint, int] = {}
        self.served: dict[Endpoint, int] = {}  # requests sent to each instance, for tests and demos
        self.started = 0  # requests begun since the last sample
        self._turn = 0
        self._area = 0.0  # in-flight x seconds since the last sample
        self._changed = self._sampled = time.monotonic()

    def pick(self, exclude: tuple[Endpoint, ...] = ()) -> Endpoint | None:
        candidates = [e for e in self.endpoints if e not in exclude]
        if not candidates:
            return None
        self._turn += 1
        rotated = candidates[self._turn % len(candidates) :] + candidates[: self._turn % len(candidates)]
        return min(rotated, key=lambda e: self.per_endpoint.get(e, 0))

    def _account(self) -> None:
        moment = time.monotonic()
        self._area += self.in_flight * (moment - self._changed)
        self._changed = moment

    def begin(self, endpoint: Endpoint) -> None:
        self._account()
        self.in_flight += 1
        self.started += 1
        self.per_endpoint[endpoint] = self.per_endpoint.get(endpoint, 0) + 1
        self.served[endpoint] = self.served.get(endpoint, 0) + 1

    def end(self, endpoint: Endpoint) -> None:
        self._account()
        self.in_flight -= 1
        self.per_endpoint[endpoint] = self.per_endpoint.get(endpoint, 1) - 1

    def sample(self) -> tuple[float, float]:
        """(average in-flight, requests per second) since the last sample."""
        self._account()
        elapsed = max(self._changed - self._sampled, 1e-6)
        result = (self._area / elapsed, self.started / elapsed)
        self._area, self.started, self._sampled = 0.0, 0, self._changed
        return result


class Gateway:
    """Host-header router and streaming reverse proxy; see the module docstring for how it is built."""

    def __init__(self, port: int = 0, *, host: str = "127.0.0.1"):
        self._bind = (host, port)
        self._routes: dict[str, Endpoint] = {}
        self._pools: dict[str, Pool] = {}
        self._pool_of: dict[Endpoint, str] = {}
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self.address: tuple[str, int] = (host, port)

    # -- routes ---------------------------------------------------------------------------------

    def set_route(self, hosts: list[str], endpoint: Endpoint) -> None:
        for host in hosts:
            self._routes[normalise_host(host)] = Endpoint(*endpoint)

    def remove_route(self, hosts: list[str]) -> None:
        for host in hosts:
            self._routes.pop(normalise_host(host), None)

    def set_pool(self, name: str, endpoints: list[Endpoint]) -> Pool:
        """The ready instances of the scaled revision ``name``; its endpoints now route to the pool."""
        pool = self._pools.setdefault(name, Pool())
        pool.endpoints = [Endpoint(*e) for e in endpoints]
        for endpoint in pool.endpoints:
            self._pool_of[endpoint] = name
        return pool

    def remove_pool(self, name: str) -> None:
        self._pools.pop(name, None)
        for endpoint in [e for e, owner in self._pool_of.items() if owner == name]:
            del self._pool_of[endpoint]

    def pool(self, name: str) -> Pool | None:
        return self._pools.get(name)

    def _pool_for(self, endpoint: Endpoint) -> Pool | None:
        pool = self._pools.get(self._pool_of.get(endpoint, ""))
        return pool if pool is not None and pool.endpoints else None

    def resolve(self, host: str) -> Endpoint | None:
        """The endpoint behind ``host`` as seen from inside the sandbox, or None.

        Knative Services listen on port 80 (the gateway's own port also works, for names written
        from the outside); any other port is not served, as on a cluster.
        """
        port = _port_of(host.strip())
        if port not in (None, 80, self.address[1]):
            return None
        endpoint = self._routes.get(normalise_host(host))
        pool = self._pool_for(endpoint) if endpoint is not None else None
        return pool.pick() if pool is not None else endpoint

    @property
    def routes(self) -> dict[str, Endpoint]:
        return dict(self._routes)

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application(middlewares=[_refuse_connect])
        app.router.add_route("*", "/{tail:.*}", self._proxy)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._bind[0], self._bind[1], reuse_address=True)
        await site.start()
        server = site._server  # aiohttp exposes the bound port only through the server sockets
        sockets = server.sockets if server is not None else ()
        self.address = sockets[0].getsockname()[:2] if sockets else self._bind
        self._session = aiohttp.ClientSession(
            auto_decompress=False,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT),
            connector=aiohttp.TCPConnector(limit=0, force_close=False),
            skip_auto_headers=("User-Agent", "Accept-Encoding", "Content-Type"),
        )

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- proxy ----------------------------------------------------------------------------------

    async def _proxy(self, request: web.Request) -> web.StreamResponse:
        proxied = absolute_target_host(request.raw_path)
        if proxied is not None:
            # A pod process asking through its HTTP_PROXY: the target names the host (RFC 9112
            # §3.2.2, Host is then ignored), and only ports a Knative Service serves are routed.
            client_host = proxied
            endpoint = self.resolve(proxied)
        else:
            client_host = request.headers.get("Host", "")
            endpoint = self._routes.get(normalise_host(client_host))
        if endpoint is None:
            return web.Response(
                status=404,
                text=f"no route for host {normalise_host(client_host) or '(none)'!r} in the sandbox gateway\n",
            )
        assert self._session is not None
        headers = self._upstream_headers(request)
        if proxied is not None:
            headers["Host"] = proxied
        body = None
        if request.body_exists:
            body = request.content.iter_chunked(CHUNK_SIZE)
        pool = self._pool_for(endpoint)
        if pool is None:
            return await self._forward(request, endpoint, headers, body, client_host)
        # A scaled revision: the least busy instance. A request without a body whose instance refuses
        # the connection (its process just died) is tried once more on another one, as Envoy's
        # connect-failure retry would; a request with a body cannot be replayed.
        tried: tuple[Endpoint, ...] = ()
        while True:
            chosen = pool.pick(exclude=tried) or endpoint
            tried += (chosen,)
            pool.begin(chosen)
            try:
                return await self._forward(
                    request, chosen, headers, body, client_host, retry=body is None and len(tried) < 2
                )
            except _ConnectRefused:
                continue
            finally:
                pool.end(chosen)

    async def _forward(
        self,
        request: web.Request,
        endpoint: Endpoint,
        headers: CIMultiDict[str],
        body,
        client_host: str,
        *,
        retry: bool = False,
    ) -> web.StreamResponse:
        assert self._session is not None
        url = f"http://{endpoint.host}:{endpoint.port}{request.rel_url}"
        try:
            upstream = await self._session.request(
                request.method, url, headers=headers, data=body, allow_redirects=False
            )
        except (aiohttp.ClientError, OSError) as error:
            if retry and isinstance(error, aiohttp.ClientConnectorError):
                raise _ConnectRefused from error
            return web.Response(
                status=502, text=f"upstream for {normalise_host(client_host)!r} is not reachable: {error}\n"
            )
        try:
            return await self._relay(request, upstream, endpoint, client_host)
        finally:
            upstream.release()

    @staticmethod
    def _upstream_headers(request: web.Request) -> CIMultiDict[str]:
        # Host goes through unchanged: the backend names itself after what the client asked for.
        headers = CIMultiDict(
            (name, value) for name, value in request.headers.items() if name.lower() not in HOP_BY_HOP
        )
        peer = request.remote or ""
        forwarded_for = request.headers.get("X-Forwarded-For")
        headers["X-Forwarded-For"] = f"{forwarded_for}, {peer}" if forwarded_for else peer
        headers.setdefault("X-Forwarded-Proto", request.scheme)
        return headers

    async def _relay(
        self, request: web.Request, upstream: aiohttp.ClientResponse, endpoint: Endpoint, client_host: str
    ) -> web.StreamResponse:
        response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
        for name, value in upstream.headers.items():
            lowered = name.lower()
            if lowered in HOP_BY_HOP:
                continue
            if lowered == "location":
                response.headers.add(name, rewrite_location(value, endpoint, client_host))
            else:
                response.headers.add(name, value)
        if "Content-Length" not in upstream.headers and request.method != "HEAD" and upstream.status not in (204, 304):
            response.enable_chunked_encoding()
        await response.prepare(request)
        if request.method != "HEAD":
            try:
                async for chunk in upstream.content.iter_chunked(CHUNK_SIZE):
                    await response.write(chunk)
            except (aiohttp.ClientPayloadError, ConnectionResetError):
                # Half a body must not look whole: drop the client connection instead of ending it.
                if request.transport is not None:
                    request.transport.close()
                return response
        await response.write_eof()
        return response


class _ConnectRefused(Exception):
    """The chosen instance refused the connection; another one may take the request."""


@web.middleware
async def _refuse_connect(request: web.Request, handler) -> web.StreamResponse:
    # Before routing matters: a CONNECT target (``host:443``) is no path any route matches.
    if request.method == "CONNECT":
        return web.Response(
            status=405, text="the sandbox gateway proxies plain HTTP only: CONNECT tunnels are not supported\n"
        )
    return await handler(request)


def absolute_target_host(target: str) -> str | None:
    """The ``host[:port]`` of an absolute-form request target (``http://name/path``), else None.

    Clients send that form to a proxy; ``http_proxy`` in every pod process points at the gateway.
    """
    if target.startswith("/") or "://" not in target:
        return None
    parts = urlsplit(target)
    if parts.scheme.lower() != "http" or not parts.netloc:
        return None
    return parts.netloc.rsplit("@", 1)[-1]


def rewrite_location(location: str, endpoint: Endpoint, client_host: str) -> str:
    """Point an absolute ``Location`` at the backend's own address back at the host the client used."""
    parts = urlsplit(location)
    if not parts.netloc or not client_host:
        return location
    backend = {f"{endpoint.host}:{endpoint.port}", f"localhost:{endpoint.port}"}
    if parts.netloc.lower() not in backend:
        return location
    return urlunsplit(("http", client_host, parts.path, parts.query, parts.fragment))
