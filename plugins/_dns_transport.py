"""How the DNS probe asks: over UDP on a connected datagram socket; over TCP,
TLS (RFC 7858) and HTTPS (RFC 8484, HTTP/1.1 POST) on a connection
``ctx.connect()`` opens.

dnspython only builds and reads the messages over TCP, TLS and HTTPS: the
connection's phases, address policy and error summaries are the toolkit's,
the certificate checks those of :mod:`anyprobe.tls`, and DNS over HTTPS goes
through the HTTP probe's HTTP/1.1 client. (A truncated UDP answer is asked
again over TCP by dnspython's async API, as part of the UDP exchange.)
"""

from __future__ import annotations

import ssl
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio

import anyprobe
from anyprobe.net import fail_from_os_error
from anyprobe.plugins.udp import DatagramSocket
from anyprobe.tls import (
    TlsInfo,
    client_certificate_expiry_days,
)

from ._dns_options import DEFAULT_PORTS, DnsOptions
from ._http_client import HttpRequest, Response, exchange_h11, io_failure

if TYPE_CHECKING:
    import dns.message
    from anyio.abc import ByteStream

#: The largest DNS message over TLS or HTTPS (DNS over TLS frames it with two bytes).
MAX_MESSAGE = 65535
DNS_MESSAGE_TYPE = "application/dns-message"
#: The longest HTTP response head a DNS over HTTPS server may send.
DOH_HEAD_BYTES = 16 * 1024


def join_host_port(host: str, port: int) -> str:
    """``host:port``, with an IPv6 address in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def system_nameservers(path: str, ctx: anyprobe.CheckContext) -> list[str]:
    """The nameservers in ``path``, read once per run off the event loop."""
    cache: dict[str, list[str] | str] = ctx.shared(("dns", "resolv.conf"), dict)
    found = cache.get(path)
    if found is None:

        def read() -> list[str] | str:
            import dns.resolver

            try:
                with open(path, encoding="utf-8", errors="replace") as file:
                    resolver = dns.resolver.Resolver(filename=file)
            except dns.resolver.NoResolverConfiguration:
                return f"no nameserver in {path}"
            except OSError as exc:
                return f"cannot read {path}: {(exc.strerror or str(exc)).lower()}"
            return [str(n) for n in resolver.nameservers]

        found = cache[path] = await anyio.to_thread.run_sync(read)
    if isinstance(found, str):
        raise anyprobe.CheckFailed(found, status=anyprobe.Status.UNKNOWN)
    if ctx.explain:
        ctx.trace(f"nameservers from {path}: {', '.join(found)}")
    return found


async def ask(
    query: dns.message.Message,
    servers: Sequence[str],
    port: int,
    options: DnsOptions,
    ctx: anyprobe.CheckContext,
    backend: Any,
) -> tuple[dns.message.Message, str, str]:
    """Send ``query`` to each server in turn until one answers; the response,
    the server that gave it and the transport used.

    Each server but the last gets an equal share of the time left. The last
    one runs until the check's deadline, the hard limit that core enforces
    ("timed out after 5 s during query").
    """
    failures: list[str] = []
    for index, server in enumerate(servers):
        where = join_host_port(server, port)
        left = len(servers) - index
        ctx.metrics["server"] = where
        if left == 1:
            answered = await _query_one(query, server, port, where, options, ctx, backend)
        else:
            share = ctx.remaining() / left
            with anyio.move_on_after(share) as scope:
                answered = await _query_one(query, server, port, where, options, ctx, backend)
            if scope.cancelled_caught:
                answered = _Failure(
                    f"no response from {where} over {options.transport} in {share:.1f} s"
                )
        if not isinstance(answered, _Failure):
            return answered[0], server, answered[1]
        ctx.trace(answered.summary)
        failures.append(answered.summary)
        if left == 1:
            summary = failures[0] if len(failures) == 1 else "; ".join(failures)
            raise anyprobe.CheckFailed(summary, error=answered.error)
    raise anyprobe.CheckFailed("no nameserver to ask", status=anyprobe.Status.UNKNOWN)


@dataclass(frozen=True, slots=True)
class _Failure:
    summary: str
    error: BaseException | None = None


async def _query_one(
    query: dns.message.Message,
    server: str,
    port: int,
    where: str,
    options: DnsOptions,
    ctx: anyprobe.CheckContext,
    backend: Any,
) -> tuple[dns.message.Message, str] | _Failure:
    """Ask one server; the response and transport, or why there is none.
    Over TCP the connection is ``ctx.connect()``'s (phases ``resolve``,
    ``connect``, ``query``); over UDP the exchange is phase ``query``."""
    import dns.asyncquery
    import dns.exception
    import dns.message
    import dns.query
    import dns.rcode

    if options.transport == "tcp":
        try:
            response, _, _ = await ask_over_stream(query, server, port, options, ctx)
        except anyprobe.CheckFailed as not_answered:
            return _Failure(not_answered.summary, not_answered.error)
        return response, "tcp"
    if ctx.explain:
        ctx.trace(f"asking {where} over udp: {query.question[0].to_text()}")
    transport = "udp"
    try:
        with ctx.phase("query"):
            answer = await _exchange_udp(query, server, port)
            if answer is None:  # truncated: the whole answer over TCP
                ctx.trace("UDP answer truncated: asked again over TCP")
                transport = "tcp"
                answer = await dns.asyncquery.tcp(query, server, port=port, backend=backend)
            response = answer
    except OSError as exc:
        failed = fail_from_os_error(exc, f"query to {where} over {transport}")
        return _Failure(failed.summary, failed.error)
    except anyprobe.CheckFailed as failed:  # the socket could not be connected
        return _Failure(failed.summary, failed.error)
    except EOFError as exc:  # dnspython's TCP read of a connection closed mid-answer
        return _Failure(f"{where} closed the connection before a complete answer over tcp", exc)
    except (dns.exception.FormError, dns.query.BadResponse) as exc:
        return _Failure(f"malformed response from {where}: {exc}", exc)
    except dns.exception.DNSException as exc:
        return _Failure(f"query to {where} failed: {exc}", exc)
    if ctx.explain:
        ctx.trace(
            f"{dns.rcode.to_text(response.rcode())} from {where} over {transport},"
            f" {len(response.answer)} answer RRsets"
        )
    return response, transport


async def _exchange_udp(
    query: dns.message.Message, server: str, port: int
) -> dns.message.Message | None:
    """One query over UDP on a connected socket; the response, or None when
    it is truncated (then the caller asks over TCP, as dnspython's
    ``udp_with_fallback`` does). An ICMP port unreachable is
    ConnectionRefusedError on both backends, as dig reports "connection
    refused" (dnspython's asyncio socket can miss it and wait out the
    timeout); a datagram that is not DNS, or not the response to this query,
    is ``dns.exception.FormError`` or ``dns.query.BadResponse``."""
    import dns.message
    import dns.query

    with DatagramSocket.connect(server, port) as udp:
        await udp.send(query.to_wire())
        wire = await udp.receive_soon()
        if wire is None:
            wire = await udp.receive()
    try:
        response = dns.message.from_wire(
            wire, keyring=query.keyring, request_mac=query.request_mac, raise_on_truncation=True
        )
    except dns.message.Truncated:
        return None
    if not query.is_response(response):
        raise dns.query.BadResponse
    return response


# -- DNS over TCP, TLS and HTTPS ------------------------------------------------


async def ask_over_stream(
    query: dns.message.Message,
    host: str,
    port: int,
    options: DnsOptions,
    ctx: anyprobe.CheckContext,
) -> tuple[dns.message.Message, str, TlsInfo | None]:
    """Ask ``host`` over TCP, TLS or HTTPS on a connection ``ctx.connect()``
    opens (phases ``resolve``, ``connect``, ``tls`` over TLS and HTTPS), then
    send the query and read the answer (phase ``query``); the response, the
    address that gave it and what the handshake showed (None over TCP)."""
    transport = options.transport
    encrypted = transport in ("tls", "https")
    connected = False
    try:
        async with ctx.connect(
            host,
            port,
            ip_family=options.ip_family,
            tls=options if encrypted else None,
            server_name=options.server_name or host,
            alpn=("http/1.1",) if transport == "https" else (),
        ) as conn:
            connected = True
            where = conn.where
            ctx.metrics["server"] = where
            if conn.tls is not None:
                ctx.metrics.update(conn.tls.metrics())
                client_days = client_certificate_expiry_days(options, ctx)
                if client_days is not None:
                    ctx.metrics["client_cert_expiry_days"] = client_days
            wire = query.to_wire()
            with ctx.phase("query"):
                if transport == "https":
                    answer = await _exchange_doh(conn.stream, wire, host, port, where, options, ctx)
                else:
                    if ctx.explain:
                        ctx.trace(f"asking {where} over {transport}: {query.question[0].to_text()}")
                    answer = await _exchange_framed(conn, wire, where, transport)
    except anyprobe.CheckFailed as failed:
        if connected or ctx.current_phase != "connect":
            raise
        raise anyprobe.CheckFailed(
            f"query to {join_host_port(host, port)} over {transport}: {failed.summary}",
            error=failed.error,
        ) from None
    with ctx.phase("query"):
        response = _read_response(query, answer, where)
    if ctx.explain:
        import dns.rcode

        ctx.trace(
            f"{dns.rcode.to_text(response.rcode())} from {where} over {transport},"
            f" {len(response.answer)} answer RRsets"
        )
    return response, conn.address, conn.tls


async def _exchange_framed(
    conn: anyprobe.Connection, wire: bytes, where: str, transport: str
) -> bytes:
    """One query over DNS over TCP or TLS: both messages framed by their
    two-byte length."""
    try:
        await conn.send(struct.pack("!H", len(wire)) + wire)
        (length,) = struct.unpack("!H", await conn.read_exactly(2))
        return await conn.read_exactly(length)
    except anyprobe.CheckFailed as failed:
        if failed.error is not None:  # a socket error or a TLS alert
            summary = failed.summary.removeprefix("sending failed: ")
            raise anyprobe.CheckFailed(
                f"query to {where} over {transport}: {summary}", error=failed.error
            ) from None
        if transport == "tcp":
            raise anyprobe.CheckFailed(
                f"{where} closed the connection before a complete answer over tcp"
            ) from None
        raise anyprobe.CheckFailed(
            f"query to {where} over tls: the server closed the connection without an answer"
        ) from None


async def _exchange_doh(
    stream: ByteStream,
    wire: bytes,
    host: str,
    port: int,
    where: str,
    options: DnsOptions,
    ctx: anyprobe.CheckContext,
) -> bytes:
    """One query over DNS over HTTPS: ``POST doh_path`` with the message as its
    body, over HTTP/1.1; the body of a 200 answer of type application/dns-message.
    The caller times it all as the ``query`` phase."""
    authority = host if ":" not in host else f"[{host}]"
    if options.server_name:
        authority = options.server_name
    if port != DEFAULT_PORTS["https"]:
        authority += f":{port}"
    headers = [
        ("Host", authority),
        ("User-Agent", f"anyprobe/{anyprobe.__version__}"),
        ("Accept", DNS_MESSAGE_TYPE),
        ("Content-Type", DNS_MESSAGE_TYPE),
        ("Content-Length", str(len(wire))),
    ]
    request = HttpRequest("POST", options.doh_path, headers, wire)
    if ctx.explain:
        ctx.trace(f"> POST https://{authority}{options.doh_path} ({len(wire)} bytes)")
    try:
        response = await exchange_h11(
            stream,
            request,
            ctx,
            max_body_bytes=MAX_MESSAGE,
            max_head_bytes=DOH_HEAD_BYTES,
            phases=None,
        )
    except anyprobe.CheckFailed as failed:  # not HTTP, or closed before the answer
        raise anyprobe.CheckFailed(
            f"query to {where} over https: {failed.summary}",
            status=failed.status,
            error=failed.error,
            metrics=failed.metrics,
        ) from None
    except (OSError, anyio.BrokenResourceError, ssl.SSLError) as exc:
        lost = io_failure(exc, options.server_name or host)  # a TLS alert or a socket error
        raise anyprobe.CheckFailed(
            f"query to {where} over https: {lost.summary}", error=lost.error
        ) from None
    return _doh_answer(response, where, options.doh_path, ctx)


def _doh_answer(response: Response, where: str, path: str, ctx: anyprobe.CheckContext) -> bytes:
    """The DNS message in a DNS over HTTPS ``response``; anything but a 200 of
    type application/dns-message that fits in a DNS message fails the check."""
    status = response.status
    reason = response.reason or _reason_phrase(status)
    content_type = response.header("content-type") or ""
    ctx.metrics["http_status"] = status
    if ctx.explain:
        ctx.trace(f"< HTTP/{response.http_version} {status} {reason}, {content_type}")
    if status != 200:
        raise anyprobe.CheckFailed(
            f"DNS over HTTPS: {where} answered POST {path} with HTTP {status} {reason}".rstrip()
        )
    if content_type.split(";")[0].strip().lower() != DNS_MESSAGE_TYPE:
        raise anyprobe.CheckFailed(
            f"DNS over HTTPS: {where} answered POST {path} with "
            f"{content_type or 'no Content-Type'}, not {DNS_MESSAGE_TYPE}"
        )
    if response.truncated:
        raise anyprobe.CheckFailed(
            f"DNS over HTTPS: the answer from {where} is longer than {MAX_MESSAGE} bytes"
        )
    return bytes(response.body)


def _reason_phrase(status: int) -> str:
    """The standard reason phrase, for a server that sends none."""
    import http

    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return ""


def _read_response(query: dns.message.Message, wire: bytes, where: str) -> dns.message.Message:
    """The response in ``wire``, checked to answer ``query``."""
    import dns.exception
    import dns.message

    try:
        response = dns.message.from_wire(wire)
    except dns.exception.DNSException as exc:
        raise anyprobe.CheckFailed(f"malformed response from {where}: {exc}", error=exc) from None
    if not query.is_response(response):
        raise anyprobe.CheckFailed(
            f"malformed response from {where}: not an answer to the question asked"
        )
    return response
