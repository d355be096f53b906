"""The HTTP(S) probe: ``http://`` and ``https://`` targets.

Each check opens a fresh connection, because a health check must see the
handshake a client sees. The probe resolves the name itself (``resolve``
phase, honouring ``ip_family``), connects to the address (``connect``), does
the TLS handshake with SNI set to the name (``tls``), sends the request and
waits for the response head (``first_byte``), then reads the body up to
``max_body_bytes`` (``transfer``). HTTP/1.1 is parsed by httptools (llhttp)
when installed, else by h11 (``ANYPROBE_HTTP_PARSER=h11`` forces h11); when
``http2`` is on and the server picks ``h2`` in ALPN, the request goes through
httpcore's HTTP/2 connection over the same socket.

By default nothing is pooled between checks except the SSL contexts (one per
distinct TLS options, through ``ctx.shared``): a shared connection pool would
hide the handshake and, under load, queue healthy checks into false timeouts.

``reuse_connections`` (off by default) is for many URLs on one host: each
check takes an idle HTTP/1.1 connection of the run's :class:`ConnectionPool`
or opens its own, never waits for one, and gives it back only when its parser says
the connection can carry another request. A reused check has no ``resolve``,
``connect`` or ``tls`` phase; it reports the certificate of its connection's
handshake. A connection the server closed while it was idle is replaced by a
fresh one within the same check.
"""

from __future__ import annotations

import time
from collections.abc import Hashable, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import SplitResult, urljoin, urlsplit

import anyio
from anyio.abc import ByteStream

import anyprobe
from anyprobe.masking import Masker, is_credential_header, mask_url_password
from anyprobe.net import check_destination, connect_tcp
from anyprobe.tls import CERTIFICATE_MODULES, TlsInfo, start_tls

from ._http1 import HttpRequest, Response, parser_name
from ._http_client import (
    StaleConnection,
    exchange_h2,
    exchange_http1,
    io_failure,
    new_http1_parser,
    open_tunnel,
)
from ._http_defaults import HTTP_DEFAULTS, auth_header, needs_h11
from ._http_pool import ConnectionPool, PooledConnection, close_all, why_not_reusable
from ._http_request import (
    DEFAULT_PORTS,
    PLANS,
    REDIRECT_CODES,
    Hop,
    Plan,
    Redirects,
    add_host_header,
    first_hop,
    make_hop,
    parser_of,
    plan_for,
    pool_key,
    request_target,
    split_url,
    tunnel_authority,
)
from ._http_verdict import Exchange, verdict

if TYPE_CHECKING:
    from ._http_options import HttpOptions


def _follow(
    hop: Hop,
    response: Response,
    walk: Redirects,
    options: HttpOptions,
    ctx: anyprobe.CheckContext,
    redactor: Masker,
    exchange: Exchange,
) -> str | None:
    """The URL ``response`` redirects the check to, or None when the walk ends
    there; a refused destination, a loop or too many redirects fail the check."""
    if response.status not in REDIRECT_CODES or not options.follow_redirects:
        return None
    location = response.header("location")
    if not location:
        return None
    next_url = urljoin(hop.url, location.strip())
    shown = redactor.text(mask_url_password(next_url))
    try:
        check_destination(split_url(next_url)[2])
    except anyprobe.CheckFailed as refused:
        raise anyprobe.CheckFailed(
            f"redirect {response.status} to {shown} refused: {refused.summary}",
            metrics={"http_status": response.status},
        ) from None
    if ctx.explain:
        ctx.trace(f"redirect {response.status} to {shown}")
    exchange.redirects.append({"status": response.status, "location": shown})
    ctx.metrics["redirects"] = len(exchange.redirects)
    if shown in walk.seen:
        loop = " -> ".join([*walk.seen[walk.seen.index(shown) :], shown])
        raise anyprobe.CheckFailed(
            f"redirect loop: {redactor.text(loop)}",
            metrics={"http_status": response.status},
        )
    if len(exchange.redirects) > options.max_redirects:
        raise anyprobe.CheckFailed(
            f"more than {options.max_redirects} redirects (last to {shown})",
            metrics={"http_status": response.status},
        )
    walk.seen.append(shown)
    if response.status == 303 or (response.status in (301, 302) and walk.method == "POST"):
        walk.method = "HEAD" if walk.method == "HEAD" else "GET"
        walk.body = walk.content_type = None
    return next_url


#: Whether a response header is a credential, by name (they repeat in every response).
_CREDENTIAL_HEADERS: dict[str, bool] = {}


def _is_credential_header(name: str) -> bool:
    """:func:`anyprobe.masking.is_credential_header`, remembered by name."""
    secret = _CREDENTIAL_HEADERS.get(name)
    if secret is None:
        if len(_CREDENTIAL_HEADERS) >= 4096:
            _CREDENTIAL_HEADERS.clear()  # a bound: a server inventing names
        secret = _CREDENTIAL_HEADERS[name] = is_credential_header(name)
    return secret


def _give_back(
    pool: ConnectionPool, key: Hashable, connection: PooledConnection
) -> tuple[bool, Sequence[PooledConnection], str | None]:
    """Give ``connection`` back to ``pool`` if its parser says it can carry another
    request: whether it was kept, the idle connections it displaced (to
    close), and why it was not kept."""
    protocol = connection.protocol
    why_not = why_not_reusable(protocol)
    if why_not is not None:
        return False, (), why_not
    protocol.start_next_cycle()
    kept, displaced = pool.give_back(key, connection)
    return kept, displaced, None if kept else "the run is over"


def __getattr__(name: str) -> Any:
    if name == "HttpOptions":  # still importable from here
        return HttpProbe.Options
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class HttpProbe(anyprobe.Probe["HttpOptions"]):
    """Send one HTTP request (following redirects) over a fresh connection."""

    name = "http"
    schemes = ("http", "https")
    # The model is imported when a target sets an option: a check with none
    # needs no pydantic (see anyprobe.lazy_model; tests/test_cold_start.py).
    Options = anyprobe.lazy_model("anyprobe.plugins._http_options:HttpOptions")
    option_defaults = HTTP_DEFAULTS
    default_ports = DEFAULT_PORTS
    description = "HTTP(S) request with assertions, like blackbox's http prober and check_http."

    def load_dependencies(self, targets: Sequence[anyprobe.Target]) -> None:
        """The HTTP/1.1 parser (httptools when used; h11 when used, or when a
        target may need it beside httptools); certificate parsing for https;
        httpcore and h2 for HTTP/2."""
        import importlib

        parser = parser_name()
        modules = ["json", "anyio.streams.tls", parser]
        if parser == "httptools" and any(needs_h11(t.options) for t in targets):
            modules.append("h11")
        https = [t for t in targets if t.url[:6].lower() == "https:" or t.options.proxy]
        if https:
            modules.extend(CERTIFICATE_MODULES)
        if any(t.options.http2 for t in https):
            anyprobe.require("h2", needed_for="http2 = true", install="anyprobe[http2]")
            modules.append("httpcore")
        if any(t.options.json_assertions for t in targets):
            modules.append("jmespath.visitor")
        for module in modules:
            importlib.import_module(module)

    async def check(
        self, target: anyprobe.Target, options: HttpOptions, ctx: anyprobe.CheckContext
    ) -> anyprobe.Outcome:
        started = time.perf_counter()
        plans: dict[int, Plan] = ctx.shared(PLANS, dict)
        plan = plans.get(id(options))
        if plan is None or plan.options is not options:
            if len(plans) >= 1024:
                plans.clear()  # a bound: many distinct options, each used rarely
            plan = plans[id(options)] = plan_for(options)
        url = target.url
        # Core masks the outcome, trace and metrics with ctx.masker at the end.
        masker = ctx.masker
        if plan.secrets:
            masker.update(plan.secrets)
        if plan.routes is not None:
            first = first_hop(url, plan, ctx)
            if first is not None:
                return await self._check(
                    url, None, options, ctx, masker, plan, None, started, first
                )
        split = split_url(url)
        auth = plan.auth
        if "@" in url:
            masker.add_url(url)
            if auth is None:
                auth = auth_header(options, split[0])
                if auth is not None:
                    masker.add_header("Authorization", auth)
        return await self._check(url, split, options, ctx, masker, plan, auth, started)

    async def _check(
        self,
        url: str,
        split: tuple[SplitResult, str, str, int] | None,
        options: HttpOptions,
        ctx: anyprobe.CheckContext,
        redactor: Masker,
        plan: Plan,
        auth: str | None,
        started: float,
        first: Hop | None = None,
    ) -> anyprobe.Outcome:
        """The check of ``url``: its first request is ``first`` when given
        (through its origin's route, see :func:`first_hop`), else made of ``split``."""
        if first is not None:
            scheme, host, port = first.scheme, first.host, first.port
        else:
            assert split is not None
            _, scheme, host, port = split
        walk = Redirects((scheme, host, port), options.method, plan.body, plan.content_type, [])
        walk.seen.append(mask_url_password(url))
        exchange = Exchange()
        while True:
            if first is not None:
                hop, first = first, None
            else:
                assert split is not None
                hop = make_hop(url, split, walk, options, plan.base_headers, auth)
            response = await self._request(hop, options, ctx, redactor, exchange)
            next_url = _follow(hop, response, walk, options, ctx, redactor, exchange)
            if next_url is None:
                break
            url, split = next_url, split_url(next_url)
        elapsed = time.perf_counter() - started
        return await verdict(
            response, options, exchange, elapsed, ctx, redactor, status_only=plan.status_only
        )

    async def _request(
        self,
        hop: Hop,
        options: HttpOptions,
        ctx: anyprobe.CheckContext,
        redactor: Masker,
        exchange: Exchange,
    ) -> Response:
        route = hop.route
        if route is not None:
            # A first request through its origin's route: all worked out but its target.
            server_name, proxy, target = route.server_name, None, hop.target
        else:
            server_name = options.server_name or hop.host
            proxy = urlsplit(options.proxy) if options.proxy else None
            target = request_target(hop, proxy)
            add_host_header(hop, server_name, proxy)
        if options.reuse_connections and proxy is None:
            response = await self._pooled_request(
                hop, target, options, ctx, redactor, exchange, server_name
            )
        else:
            if options.reuse_connections:
                # Reuse through a proxy is not supported: one connection per request.
                ctx.metrics["connection_reused"] = False
            connection = await self._connect(hop, options, ctx, exchange, server_name, proxy)
            async with connection.socket:
                response = await self._send(
                    connection, hop, target, options, ctx, redactor, server_name
                )
        for name, value in response.headers:
            if _is_credential_header(name):
                redactor.add_header(name, value)  # a Set-Cookie value is a secret from now on
        if ctx.explain:
            ctx.trace(f"< HTTP/{response.http_version} {response.status} {response.reason}")
            for name, value in response.headers:
                ctx.trace(f"< {name}: {redactor.header(name, value)}")
            ctx.trace(f"read {response.body_bytes} bytes of body")
        return response

    async def _pooled_request(
        self,
        hop: Hop,
        target: str,
        options: HttpOptions,
        ctx: anyprobe.CheckContext,
        redactor: Masker,
        exchange: Exchange,
        server_name: str,
    ) -> Response:
        """One request on an idle connection of the run's pool, or on a new one.

        The connection goes back to the pool only when the exchange finished
        and its parser says it can carry another request; on any error, a timeout or
        a cancellation it is closed instead.
        """
        pool = ctx.shared(ConnectionPool.SHARED_KEY, ConnectionPool)
        route = hop.route
        if route is not None and ctx.pinned is None:
            key = route.pool_key
        else:
            key = pool_key(hop, options, server_name, ctx)
        connection, expired = pool.take(key)
        kept = False
        try:
            if expired:
                await close_all(expired)
            response: Response | None = None
            if connection is not None:
                response = await self._send_reused(
                    connection, hop, target, options, ctx, redactor, exchange, server_name
                )
                if response is None:
                    stale_connection, connection = connection, None
                    await close_all([stale_connection])
            if connection is None:
                ctx.metrics["connection_reused"] = False
                connection = await self._connect(hop, options, ctx, exchange, server_name, None)
                if connection.tls is None or connection.tls.alpn != "h2":
                    connection.protocol = new_http1_parser(name=parser_of(ctx))
                connection.requests = 1
                response = await self._send(
                    connection, hop, target, options, ctx, redactor, server_name
                )
            assert response is not None
            kept, displaced, why_not = _give_back(pool, key, connection)
            if displaced:
                await close_all(displaced)
            if ctx.explain:
                ctx.trace(
                    "connection kept open for the next check"
                    if kept
                    else f"connection closed: {why_not}"
                )
            return response
        finally:
            if not kept:
                pool.release()
                if connection is not None:
                    await close_all([connection])

    async def _send_reused(
        self,
        connection: PooledConnection,
        hop: Hop,
        target: str,
        options: HttpOptions,
        ctx: anyprobe.CheckContext,
        redactor: Masker,
        exchange: Exchange,
        server_name: str,
    ) -> Response | None:
        """The request on an idle connection of the pool; None when the server
        had closed it (the caller then opens a fresh one)."""
        check_destination(hop.host, [connection.address])
        connection.requests += 1
        ctx.metrics["connection_reused"] = True
        if ctx.explain:
            ctx.trace(
                f"reusing the connection to {connection.address} port {hop.port} "
                f"(request {connection.requests} on it; no new handshake)"
            )
        try:
            response = await self._send(
                connection, hop, target, options, ctx, redactor, server_name, reused=True
            )
        except StaleConnection as stale:
            if ctx.explain:
                ctx.trace(
                    f"the server had closed the idle connection ({stale}); "
                    "retrying on a fresh connection"
                )
            return None
        if connection.tls is not None:
            exchange.tls.append((hop.display, connection.tls))
        return response

    async def _connect(
        self,
        hop: Hop,
        options: HttpOptions,
        ctx: anyprobe.CheckContext,
        exchange: Exchange,
        server_name: str,
        proxy: SplitResult | None,
    ) -> PooledConnection:
        """Resolve, connect, tunnel through the proxy, TLS handshake: a new connection."""
        connect_host, connect_port = (
            (proxy.hostname or "", proxy.port or 80) if proxy else (hop.host, hop.port)
        )
        if proxy is not None:
            # The proxy resolves the name: it must be allowed as it is.
            check_destination(hop.host, [hop.host])
        addresses = await ctx.resolve(connect_host, connect_port, options.ip_family)
        # ctx.phase("connect"), inlined: once for every check.
        outer = ctx.current_phase
        ctx.current_phase = "connect"
        started = time.perf_counter()
        try:
            stream, address = await connect_tcp(addresses, connect_port)
        finally:
            ctx.phases["connect"] = ctx.phases.get("connect", 0.0) + time.perf_counter() - started
        ctx.current_phase = outer
        if ctx.explain:
            ctx.trace(f"connected to {address} port {connect_port}")
        try:
            transport: ByteStream = stream
            if proxy is not None and hop.scheme == "https":
                await open_tunnel(stream, tunnel_authority(hop), proxy, ctx)
            tls: TlsInfo | None = None
            if hop.scheme == "https":
                transport, tls = await self._handshake(
                    stream, hop, address, server_name, options, ctx
                )
                exchange.tls.append((hop.display, tls))
        except BaseException:
            await anyio.aclose_forcefully(stream)
            raise
        return PooledConnection(stream, transport, address, tls)

    async def _send(
        self,
        connection: PooledConnection,
        hop: Hop,
        target: str,
        options: HttpOptions,
        ctx: anyprobe.CheckContext,
        redactor: Masker,
        server_name: str,
        *,
        reused: bool = False,
    ) -> Response:
        """Send the request on ``connection`` and read the response."""
        if ctx.explain:
            ctx.trace(f"> {hop.method} {redactor.text(target)}")
            for name, value in hop.headers:
                ctx.trace(f"> {name}: {redactor.header(name, value)}")
        route = hop.route
        request = HttpRequest(
            hop.method, target, hop.headers, hop.body, None if route is None else route.head
        )
        limit, keep = options.max_body_bytes, options.needs_body
        transport = connection.transport
        try:
            if connection.tls is not None and connection.tls.alpn == "h2":
                response = await exchange_h2(
                    transport, request, hop.origin, ctx, max_body_bytes=limit, keep_body=keep
                )
            else:
                response = await exchange_http1(
                    transport,
                    request,
                    ctx,
                    max_body_bytes=limit,
                    keep_body=keep,
                    protocol=connection.protocol or new_http1_parser(name=parser_of(ctx)),
                    reused=reused,
                )
        except (anyprobe.CheckFailed, StaleConnection):
            raise
        except (OSError, anyio.BrokenResourceError, anyio.EndOfStream) as exc:
            raise io_failure(exc, server_name) from None
        response.address = connection.address
        response.tls = connection.tls
        return response

    async def _handshake(
        self,
        stream: ByteStream,
        hop: Hop,
        address: str,
        server_name: str,
        options: HttpOptions,
        ctx: anyprobe.CheckContext,
    ) -> tuple[ByteStream, TlsInfo]:
        alpn = ("h2", "http/1.1") if options.http2 else ("http/1.1",)
        # Through a proxy the certificate cannot be fetched again directly.
        peek_at = (address, hop.port) if options.proxy is None else None
        with ctx.phase("tls"):
            return await start_tls(stream, server_name, options, ctx, alpn=alpn, peek_at=peek_at)


@anyprobe.hookimpl
def anyprobe_register_probes(register: Any) -> None:
    register(HttpProbe)


@anyprobe.hookimpl
def anyprobe_demo_services(register: Any) -> None:
    from ._demo_http import demo_services

    register(demo_services)
