"""The DNS probe: ``dns://[SERVER[:PORT]]/NAME?type=T`` asks a server one question.

Without a server (``dns://NAME?type=T``) the question goes to the nameservers
of the system's resolver configuration (``/etc/resolv.conf``), in order.

Over UDP and TCP the question goes through dnspython's async API, imported on
first use. Its async backend is passed explicitly on every call: dnspython
otherwise detects the event loop once and caches it for the whole process,
which breaks a process that runs asyncio and then trio.

DNS over TLS (RFC 7858) and over HTTPS (RFC 8484, HTTP/1.1 POST) are spoken
here, on anyio's TLS streams and h11, with dnspython only building and reading
the messages: the certificate checks of :mod:`anyprobe.tls` apply, and both
work on trio (dnspython's own DNS over HTTPS needs httpx2 and finds its event
loop by the cached detection above).
"""

from __future__ import annotations

import functools
import ipaddress
import os
import ssl
import struct
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import SplitResult, parse_qsl, unquote, urlsplit

import anyio
from pydantic import Field, field_validator, model_validator

import anyprobe
from anyprobe._inputs import find_control
from anyprobe.net import (
    IpFamily,
    check_destination,
    connect_tcp,
    fail_from_os_error,
    resolve,
)
from anyprobe.tls import (
    CERTIFICATE_MODULES,
    TlsInfo,
    TlsOptions,
    client_certificate_expiry_days,
    describe_tls_error,
    expiry_verdict,
    find_ssl_error,
    start_tls,
)

if TYPE_CHECKING:
    import dns.message
    import dns.name
    import dns.rdataclass
    import dns.rdatatype
    from anyio.abc import ByteStream

DEFAULT_PORT = 53
#: The port each transport uses when the URL gives none.
DEFAULT_PORTS = {"udp": DEFAULT_PORT, "tcp": DEFAULT_PORT, "tls": 853, "https": 443}
#: The largest DNS message over TLS or HTTPS (DNS over TLS frames it with two bytes).
MAX_MESSAGE = 65535
DNS_MESSAGE_TYPE = "application/dns-message"
#: Answers shown in a summary before "(+N more)".
SUMMARY_ANSWERS = 4
#: Lines of each response section kept in a result's details.
DETAIL_LINES = 50
#: EDNS UDP payload size advertised when ``edns`` is on (the DNS flag day value).
EDNS_PAYLOAD = 1232


class DnsOptions(TlsOptions):
    record_type: str = Field(
        "A",
        description="Record type to ask for (A, AAAA, CNAME, MX, NS, TXT, SOA, SRV, PTR, "
        "CAA...); the URL's ?type= wins over it.",
    )
    record_class: str = Field("IN", description="Record class: IN, CH or HS.")
    transport: Literal["udp", "tcp", "tls", "https"] = Field(
        "udp",
        description="udp (retried over TCP when the answer is truncated), tcp, tls (DNS over "
        "TLS, port 853) or https (DNS over HTTPS, port 443, POST to doh_path).",
    )
    doh_path: str = Field(
        "/dns-query",
        description="With transport https: the path of the DNS over HTTPS endpoint on the "
        "URL's server.",
    )
    recursion_desired: bool = Field(
        True, description="Set the RD flag: ask the server to recurse for us."
    )
    edns: bool = Field(True, description=f"Send EDNS0 with a {EDNS_PAYLOAD}-byte UDP payload size.")
    expect_rcode: str = Field(
        "NOERROR",
        description="Response code that passes: NOERROR, NXDOMAIN, SERVFAIL, REFUSED...",
    )
    expect_answers: list[str] = Field(
        default_factory=list,
        description="Every one of these must be among the answers (rdata text; for MX and "
        "SRV the host name alone also matches).",
    )
    expect_any_answer: list[str] = Field(
        default_factory=list, description="At least one of these must be among the answers."
    )
    answers_match: str | None = Field(
        None,
        description="Regular expression (RE2 syntax) every answer's text must match "
        "(searched, not anchored).",
    )
    any_answer_matches: str | None = Field(
        None, description="Regular expression (RE2 syntax) at least one answer's text must match."
    )
    min_answers: int | None = Field(
        None,
        ge=0,
        description="Fewest answers that pass; default 1 when expecting NOERROR, else 0.",
    )
    resolv_conf: str = Field(
        "/etc/resolv.conf",
        description="Resolver configuration read when the URL names no server.",
    )
    ip_family: IpFamily = Field(
        "any", description="Address family for a server given by name: any, ipv4 or ipv6."
    )

    @field_validator("record_type")
    @classmethod
    def _known_type(cls, value: str) -> str:
        return _check_record_type(value)

    @field_validator("record_class")
    @classmethod
    def _known_class(cls, value: str) -> str:
        import dns.rdataclass

        try:
            dns.rdataclass.from_text(value)
        except Exception:
            raise ValueError(f"unknown record class {value!r}") from None
        return value.upper()

    @field_validator("expect_rcode")
    @classmethod
    def _known_rcode(cls, value: str) -> str:
        import dns.rcode

        try:
            dns.rcode.from_text(value)
        except Exception:
            raise ValueError(
                f"unknown response code {value!r} (NOERROR, NXDOMAIN, SERVFAIL, REFUSED...)"
            ) from None
        return value.upper()

    @field_validator("doh_path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("doh_path must start with /")
        if any(c.isspace() or not c.isprintable() or not c.isascii() for c in value):
            raise ValueError("doh_path must be printable ASCII without spaces (percent-encode)")
        if "#" in value:
            raise ValueError("doh_path takes no #fragment")
        return value

    @field_validator("answers_match", "any_answer_matches")
    @classmethod
    def _valid_regex(cls, value: str | None) -> str | None:
        return anyprobe.check_regex(value)

    @model_validator(mode="after")
    def _resolv_conf_exists(self) -> DnsOptions:
        # The default is only read for a URL without a server: a system
        # without /etc/resolv.conf may still ask servers named in URLs.
        if "resolv_conf" in self.model_fields_set and not os.path.isfile(self.resolv_conf):
            reason = "is not a file" if os.path.exists(self.resolv_conf) else "does not exist"
            raise ValueError(f"resolv_conf {self.resolv_conf} {reason}")
        return self

    @model_validator(mode="after")
    def _answers_need_noerror(self) -> DnsOptions:
        wants_answers = (
            self.expect_answers
            or self.expect_any_answer
            or self.any_answer_matches
            or self.min_answers
        )
        if wants_answers and self.expect_rcode != "NOERROR":
            raise ValueError("answers can only be expected with expect_rcode NOERROR")
        return self


def _check_record_type(value: str) -> str:
    import dns.rdatatype

    try:
        rdtype = dns.rdatatype.from_text(value)
    except Exception:
        raise ValueError(f"unknown record type {value!r}") from None
    if dns.rdatatype.is_metatype(rdtype) and rdtype != dns.rdatatype.ANY:
        raise ValueError(f"{value.upper()} is not a record type one can query")
    return value.upper()


@functools.lru_cache(maxsize=4096)
def _question_codes(
    name: str, record_type: str, record_class: str
) -> tuple[dns.name.Name, dns.rdatatype.RdataType, dns.rdataclass.RdataClass, str]:
    """The name, type and class to ask for, and how summaries call the question
    (``MX for example.com``): worked out once, dnspython's parsing is not free."""
    import dns.rdataclass
    import dns.rdatatype

    qname = _to_dns_name(name, record_type)
    what = f"{record_type} for {qname.to_text(omit_final_dot=True) or '.'}"
    rdtype = dns.rdatatype.from_text(record_type)
    return qname, rdtype, dns.rdataclass.from_text(record_class), what


@dataclass(frozen=True, slots=True)
class DnsQuestion:
    """What a ``dns://`` URL asks: of which server (None: the system's), for what."""

    server: str | None
    port: int | None  # None: the transport's default
    name: str
    record_type: str | None


@functools.lru_cache(maxsize=4096)
def parse_dns_url(text: str) -> DnsQuestion:
    """Split a ``dns://`` URL into server, port, name and ``?type=``; ValueError if bad.

    ``dns://1.1.1.1/example.com?type=MX`` asks 1.1.1.1; ``dns://example.com``
    and ``dns:///example.com`` ask the system's resolvers.
    """
    url = urlsplit(text)
    return _parse(url)


@functools.lru_cache(maxsize=4096)
def _parse(url: SplitResult) -> DnsQuestion:
    if url.username is not None or url.password is not None:
        raise ValueError("a dns:// URL takes no user or password")
    if url.fragment:
        raise ValueError("a dns:// URL takes no #fragment")
    path = unquote(url.path).strip("/")
    if path:
        if "/" in path:
            raise ValueError(f"{path!r} is not a domain name (one path segment expected)")
        server = url.hostname or None
        port = url.port or None
        name = path
    else:
        if url.port is not None:
            raise ValueError("a port needs a server: dns://SERVER:PORT/NAME")
        server = None
        port = None
        name = unquote(url.hostname or url.netloc)
    if not name:
        raise ValueError("no name to look up (dns://[SERVER[:PORT]]/NAME?type=T)")
    control = find_control(name)
    if control is not None:
        raise ValueError(f"a control character ({control}) in the name to look up")
    record_type = None
    for key, value in parse_qsl(url.query, keep_blank_values=True):
        if key.lower() != "type":
            raise ValueError(f"unknown URL parameter {key!r} (only ?type= is known)")
        record_type = _check_record_type(value)
    _to_dns_name(name, record_type)
    return DnsQuestion(server, port, name.rstrip(".").lower() or ".", record_type)


@functools.lru_cache(maxsize=4096)
def _to_dns_name(name: str, record_type: str | None) -> dns.name.Name:
    """The name to ask for; an IP address with type PTR becomes its reverse name."""
    import dns.exception
    import dns.name
    import dns.reversename

    if record_type == "PTR":
        try:
            return dns.reversename.from_address(name)
        except (ValueError, dns.exception.SyntaxError):
            pass
    try:
        return dns.name.from_text(name)
    except Exception as exc:
        raise ValueError(f"{name!r} is not a domain name: {exc}") from None


#: What a query imports on its way (dnspython imports much of itself lazily).
_DNS_MODULES = (
    "dns.asyncbackend",
    "dns.asyncquery",
    "dns.edns",
    "dns.exception",
    "dns.flags",
    "dns.message",
    "dns.name",
    "dns.query",
    "dns.rcode",
    "dns.rdataclass",
    "dns.rdatatype",
    "dns.resolver",
    "dns.reversename",
    "dns.rrset",
    "dns.rdtypes.ANY.OPT",
    "dns.rdtypes.ANY.SOA",
    "dns.rdtypes.ANY.PTR",
    "dns.rdtypes.ANY.TSIG",
    "hashlib",
    "hmac",
)
#: Record types whose rdata modules are imported before the run (others on first use).
_COMMON_TYPES = ("A", "AAAA", "CNAME", "MX", "NS", "PTR", "SOA", "SRV", "TXT", "CAA")


class DnsProbe(anyprobe.Probe[DnsOptions]):
    """Ask one DNS question and compare the response code and answers."""

    name = "dns"
    schemes = ("dns",)
    Options = DnsOptions
    description = (
        "DNS query (UDP, TCP, TLS or HTTPS) with rcode, answer and certificate assertions."
    )

    def load_dependencies(self, targets: Sequence[anyprobe.Target]) -> None:
        """dnspython's query, message and rdata modules (it imports the module of
        each record type on first use), its backends, and TLS for DoT/DoH."""
        import importlib

        for module in _DNS_MODULES:
            importlib.import_module(module)
        for backend in ("dns._asyncio_backend", "dns._trio_backend"):
            with suppress(ImportError):  # trio's only when trio is installed
                importlib.import_module(backend)
        import dns.rdata
        import dns.rdataclass
        import dns.rdatatype

        for record_type in _COMMON_TYPES:
            rdtype = dns.rdatatype.from_text(record_type)
            dns.rdata.get_rdata_class(dns.rdataclass.IN, rdtype)  # type: ignore[no-untyped-call]
        if any(t.options.transport in ("tls", "https") for t in targets):
            for module in ("h11", "anyio.streams.tls", *CERTIFICATE_MODULES):
                importlib.import_module(module)

    def validate_url(self, url: SplitResult, text: str) -> tuple[str, int | None]:
        """The host is the server when the URL names one (the per-host limit then
        protects that server); without one it is the name being looked up."""
        try:
            question = _parse(url)
        except ValueError as exc:
            raise anyprobe.TargetError(f"{text}: {exc}") from None
        if question.server is None:
            return question.name, None
        return question.server, question.port or DEFAULT_PORT

    async def check(
        self, target: anyprobe.Target, options: DnsOptions, ctx: anyprobe.CheckContext
    ) -> anyprobe.Outcome:
        import dns.asyncbackend
        import dns.flags
        import dns.message
        import sniffio

        backend = dns.asyncbackend.get_backend(sniffio.current_async_library())
        question = parse_dns_url(target.url)
        type_text = question.record_type or options.record_type
        qname, rdtype, rdclass, what = _question_codes(
            question.name, type_text, options.record_class
        )
        query = dns.message.make_query(
            qname,
            rdtype,
            rdclass,
            use_edns=0 if options.edns else False,
            payload=EDNS_PAYLOAD,
        )
        if not options.recursion_desired:
            query.flags &= ~dns.flags.RD
        ctx.metrics["record_type"] = type_text

        encrypted = options.transport in ("tls", "https")
        if question.server is None:
            if encrypted:
                raise anyprobe.CheckFailed(
                    f"transport {options.transport} needs a server in the URL "
                    "(dns://SERVER[:PORT]/NAME): the system's resolvers are asked over UDP",
                    status=anyprobe.Status.UNKNOWN,
                )
            servers = await _system_nameservers(options.resolv_conf, ctx)
            for server in servers:  # the address policy (serve's allow_targets) holds here too
                check_destination(server, [server])
            port = DEFAULT_PORT
        else:
            port = question.port or DEFAULT_PORTS[options.transport]
            with ctx.phase("resolve"):
                servers = await resolve(question.server, port, options.ip_family)
            if servers != [question.server]:
                ctx.trace(f"resolved {question.server} to {', '.join(servers)}")

        tls: TlsInfo | None = None
        if encrypted:
            assert question.server is not None
            response, server, tls = await _ask_encrypted(
                query, question.server, servers, port, options, ctx
            )
            transport: str = options.transport
        else:
            response, server, transport = await _ask(
                query, servers[:1] if question.server else servers, port, options, ctx, backend
            )
        ctx.metrics["server"] = _join_host_port(server, port)
        ctx.metrics["transport"] = transport
        outcome = await _judge(what, rdtype, response, options, ctx)
        if tls is not None:
            _add_certificate_verdict(outcome, tls, options, ctx)
        return outcome


async def _system_nameservers(path: str, ctx: anyprobe.CheckContext) -> list[str]:
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


async def _ask(
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
        where = _join_host_port(server, port)
        left = len(servers) - index
        ctx.metrics["server"] = where
        if ctx.explain:
            ctx.trace(f"asking {where} over {options.transport}: {query.question[0].to_text()}")
        with ctx.phase("query"):
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
    """Ask one server; the response and transport, or why there is none."""
    import dns.asyncquery
    import dns.exception
    import dns.message
    import dns.query
    import dns.rcode

    try:
        if options.transport == "tcp":
            response = await dns.asyncquery.tcp(query, server, port=port, backend=backend)
            transport = "tcp"
        else:
            response, used_tcp = await dns.asyncquery.udp_with_fallback(
                query, server, port=port, backend=backend
            )
            transport = "tcp" if used_tcp else "udp"
            if used_tcp:
                ctx.trace("UDP answer truncated: asked again over TCP")
    except OSError as exc:
        failed = fail_from_os_error(exc, f"query to {where} over {options.transport}")
        return _Failure(failed.summary, failed.error)
    except EOFError as exc:  # dnspython's TCP read of a connection closed mid-answer
        return _Failure(f"{where} closed the connection before a complete answer over tcp", exc)
    except dns.message.Truncated:
        return _Failure(f"truncated answer from {where}")
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


# -- DNS over TLS and over HTTPS ------------------------------------------------


async def _ask_encrypted(
    query: dns.message.Message,
    host: str,
    addresses: list[str],
    port: int,
    options: DnsOptions,
    ctx: anyprobe.CheckContext,
) -> tuple[dns.message.Message, str, TlsInfo]:
    """Ask over TLS or HTTPS: connect (trying each address in turn), handshake,
    send the query and read the answer; the response, the address that gave it
    and what the handshake showed. Phases ``connect``, ``tls`` and ``query``."""
    transport = options.transport
    server_name = options.server_name or host
    try:
        with ctx.phase("connect"):
            tcp, address = await connect_tcp(addresses, port)
    except anyprobe.CheckFailed as exc:
        where = _join_host_port(host, port)
        raise anyprobe.CheckFailed(
            f"query to {where} over {transport}: {exc.summary}", error=exc.error
        ) from None
    where = _join_host_port(address, port)
    ctx.metrics["server"] = where
    ctx.trace(f"connected to {where}")
    stream: ByteStream = tcp
    try:
        with ctx.phase("tls"):
            alpn = ("http/1.1",) if options.transport == "https" else ()
            stream, tls = await start_tls(
                tcp, server_name, options, ctx, alpn=alpn, peek_at=(address, port)
            )
        ctx.metrics.update(tls.metrics())
        client_days = client_certificate_expiry_days(options, ctx)
        if client_days is not None:
            ctx.metrics["client_cert_expiry_days"] = client_days
        wire = query.to_wire()
        with ctx.phase("query"):
            if transport == "tls":
                if ctx.explain:
                    ctx.trace(f"asking {where} over tls: {query.question[0].to_text()}")
                answer = await _exchange_dot(stream, wire, where)
            else:
                answer = await _exchange_doh(stream, wire, host, port, where, options, ctx)
    finally:
        # No close_notify exchange: a check has no use for it, and a server
        # that never answers it must not hold the check up.
        with suppress(OSError, anyio.BrokenResourceError, ssl.SSLError):
            await anyio.aclose_forcefully(stream)
    with ctx.phase("query"):
        response = _read_response(query, answer, where)
    if ctx.explain:
        import dns.rcode

        ctx.trace(
            f"{dns.rcode.to_text(response.rcode())} from {where} over {transport},"
            f" {len(response.answer)} answer RRsets"
        )
    return response, address, tls


def _io_failure(exc: BaseException, where: str, transport: str) -> anyprobe.CheckFailed:
    """A failure to send or receive over TLS: a TLS alert (a refused client
    certificate shows here with TLS 1.3) or a socket error."""
    error = find_ssl_error(exc)
    if error is not None:
        return anyprobe.CheckFailed(
            f"query to {where} over {transport}: {describe_tls_error(exc)}", error=error
        )
    return fail_from_os_error(exc, f"query to {where} over {transport}")


async def _exchange_dot(stream: ByteStream, wire: bytes, where: str) -> bytes:
    """One query over DNS over TLS: both messages framed by their two-byte length."""
    from anyio.streams.buffered import BufferedByteReceiveStream

    reader = BufferedByteReceiveStream(stream)
    try:
        await stream.send(struct.pack("!H", len(wire)) + wire)
        (length,) = struct.unpack("!H", await reader.receive_exactly(2))
        return await reader.receive_exactly(length)
    except (anyio.IncompleteRead, anyio.EndOfStream):
        raise anyprobe.CheckFailed(
            f"query to {where} over tls: the server closed the connection without an answer"
        ) from None
    except (OSError, anyio.BrokenResourceError, ssl.SSLError) as exc:
        raise _io_failure(exc, where, "tls") from None


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
    body, over HTTP/1.1; the body of a 200 answer of type application/dns-message."""
    import h11

    authority = host if ":" not in host else f"[{host}]"
    if options.server_name:
        authority = options.server_name
    if port != DEFAULT_PORTS["https"]:
        authority += f":{port}"
    path = options.doh_path
    connection = h11.Connection(h11.CLIENT, max_incomplete_event_size=16 * 1024)
    request = h11.Request(
        method="POST",
        target=path,
        headers=[
            ("Host", authority),
            ("User-Agent", f"anyprobe/{anyprobe.__version__}"),
            ("Accept", DNS_MESSAGE_TYPE),
            ("Content-Type", DNS_MESSAGE_TYPE),
            ("Content-Length", str(len(wire))),
        ],
    )
    data = connection.send(request) + connection.send(h11.Data(data=wire))
    data += connection.send(h11.EndOfMessage())
    if ctx.explain:
        ctx.trace(f"> POST https://{authority}{path} ({len(wire)} bytes)")

    async def next_event() -> Any:
        while True:
            try:
                event = connection.next_event()
            except h11.RemoteProtocolError as exc:
                raise anyprobe.CheckFailed(
                    f"invalid HTTP answer from {where}: {exc}", error=exc
                ) from None
            if event is not h11.NEED_DATA:
                return event
            try:
                chunk = await stream.receive(MAX_MESSAGE)
            except anyio.EndOfStream:
                chunk = b""
            connection.receive_data(chunk)

    try:
        await stream.send(data)
        event = await next_event()
        while isinstance(event, h11.InformationalResponse):
            event = await next_event()
        if isinstance(event, h11.ConnectionClosed):
            raise anyprobe.CheckFailed(
                f"query to {where} over https: the server closed the connection without an answer"
            )
        status = event.status_code
        reason = event.reason.decode("latin-1", errors="replace") or _reason_phrase(status)
        content_type = ""
        for name, value in event.headers:
            if name == b"content-type":
                content_type = value.decode("latin-1", errors="replace")
        ctx.metrics["http_status"] = status
        if ctx.explain:
            ctx.trace(f"< HTTP/{event.http_version.decode()} {status} {reason}, {content_type}")
        body = bytearray()
        while True:
            event = await next_event()
            if isinstance(event, h11.Data):
                body += event.data
                if len(body) > MAX_MESSAGE:
                    break
            elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                break
    except (OSError, anyio.BrokenResourceError, ssl.SSLError) as exc:
        raise _io_failure(exc, where, "https") from None
    if status != 200:
        raise anyprobe.CheckFailed(
            f"DNS over HTTPS: {where} answered POST {path} with HTTP {status} {reason}".rstrip()
        )
    if content_type.split(";")[0].strip().lower() != DNS_MESSAGE_TYPE:
        raise anyprobe.CheckFailed(
            f"DNS over HTTPS: {where} answered POST {path} with "
            f"{content_type or 'no Content-Type'}, not {DNS_MESSAGE_TYPE}"
        )
    if len(body) > MAX_MESSAGE:
        raise anyprobe.CheckFailed(
            f"DNS over HTTPS: the answer from {where} is longer than {MAX_MESSAGE} bytes"
        )
    return bytes(body)


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


def _add_certificate_verdict(
    outcome: anyprobe.Outcome, tls: TlsInfo, options: DnsOptions, ctx: anyprobe.CheckContext
) -> None:
    """The server certificate's expiry joins the answer's verdict; the worse one counts."""
    days = tls.cert_expiry_days()
    if days is not None:
        status, verdict = expiry_verdict(days, options)
        outcome.summary += f"; {verdict}"
        if status > outcome.status:
            outcome.status = status
    if ctx.explain or outcome.status is not anyprobe.Status.OK:
        outcome.details["tls"] = tls.details()


async def _judge(
    what: str,
    rdtype: int,
    response: dns.message.Message,
    options: DnsOptions,
    ctx: anyprobe.CheckContext,
) -> anyprobe.Outcome:
    """Compare the response with what the options expect; the outcome."""
    import dns.flags
    import dns.rcode

    rcode = dns.rcode.to_text(response.rcode())
    answers: list[Answer] = []
    ttls: list[int] = []
    for rrset in response.answer:
        if rrset.rdtype == rdtype:
            ttls.append(rrset.ttl)
            answers.extend(Answer.of(rdata) for rdata in rrset)
    # A set of records has no order; sorted, summaries do not change between runs.
    answers.sort(key=lambda a: a.text)
    texts = [a.text for a in answers]
    metrics: dict[str, Any] = {
        "rcode": rcode,
        "answer_count": len(answers),
        "answers": texts,
        "authoritative": bool(response.flags & dns.flags.AA),
    }
    if ttls:
        metrics["min_ttl"] = min(ttls)
    ctx.metrics.update(metrics)
    server = ctx.metrics["server"]
    took = ctx.phases.get("query", 0.0) * 1000
    transport = ctx.metrics.get("transport", "udp")
    via = f"from {server}" + (f" over {transport}" if transport != "udp" else "")

    def sections() -> dict[str, list[str]]:
        # The response as text, for reading a failure; a passing check's
        # answers are in its metrics already.
        return {
            name: [line for rrset in rrsets for line in rrset.to_text().splitlines()][:DETAIL_LINES]
            for name, rrsets in (("answer", response.answer), ("authority", response.authority))
            if rrsets
        }

    details = sections() if ctx.explain else {}

    def fail(reason: str) -> anyprobe.Outcome:
        return anyprobe.Outcome.critical(f"{what}: {reason}", metrics=metrics, details=sections())

    if rcode != options.expect_rcode:
        found = f"{rcode} with {_show(texts)}" if texts else rcode
        return fail(f"expected {options.expect_rcode}, got {found} {via}")
    if options.expect_rcode != "NOERROR":
        return anyprobe.Outcome.ok(
            f"{what}: {rcode}, as expected ({via}, {took:.1f} ms)",
            metrics=metrics,
            details=details,
        )
    minimum = options.min_answers if options.min_answers is not None else 1
    if len(answers) < minimum:
        if not answers:
            return fail(
                f"NOERROR but no {what.split()[0]} records {via} (expected at least {minimum})"
            )
        return fail(f"expected at least {minimum} answers, got {len(answers)}: {_show(texts)}")
    missing = [e for e in options.expect_answers if not any(a.matches(e) for a in answers)]
    if missing:
        return fail(f"expected {_show(missing, limit=len(missing))}, got {_show(texts)}")
    if options.expect_any_answer and not any(
        a.matches(e) for a in answers for e in options.expect_any_answer
    ):
        return fail(f"expected one of {', '.join(options.expect_any_answer)}, got {_show(texts)}")
    if options.answers_match is not None:
        pattern = anyprobe.compile_pattern(options.answers_match)
        bad = await _not_matching(pattern, texts)
        if bad:
            return fail(f"{_show(bad)} do not match /{options.answers_match}/")
    if options.any_answer_matches is not None:
        pattern = anyprobe.compile_pattern(options.any_answer_matches)
        if len(await _not_matching(pattern, texts)) == len(texts):
            return fail(f"no answer matches /{options.any_answer_matches}/, got {_show(texts)}")
    shown = _show(texts) if texts else "no records"
    return anyprobe.Outcome.ok(
        f"{what}: {shown} ({rcode} {via}, {took:.1f} ms)", metrics=metrics, details=details
    )


async def _not_matching(pattern: anyprobe.Pattern, texts: list[str]) -> list[str]:
    """The texts ``pattern`` does not match; searched off the loop when long
    (a 64 KiB response of TXT records and a pattern with a large program)."""

    def not_matching() -> list[str]:
        return [text for text in texts if pattern.search(text) is None]

    work = sum(pattern.work(len(text)) for text in texts)
    return await anyprobe.off_loop(not_matching, work=work)


class Answer:
    """One answer's text as shown and compared: names without the final dot,
    TXT strings unquoted and joined, addresses in canonical form."""

    __slots__ = ("_keys", "rdata", "text")

    def __init__(self, text: str, rdata: Any) -> None:
        self.text = text
        self.rdata = rdata
        self._keys: frozenset[str] | None = None

    @classmethod
    def of(cls, rdata: Any) -> Answer:
        import dns.rdatatype

        if rdata.rdtype in (dns.rdatatype.TXT, dns.rdatatype.SPF):
            return cls(b"".join(rdata.strings).decode("utf-8", errors="replace"), rdata)
        return cls(rdata.to_text(omit_final_dot=True), rdata)

    @property
    def keys(self) -> frozenset[str]:
        """The forms an expected value may take: the text; for MX and SRV the host too."""
        if self._keys is None:
            import dns.rdatatype

            keys = {_normalise(self.text)}
            if self.rdata.rdtype == dns.rdatatype.MX:
                keys.add(_normalise(self.rdata.exchange.to_text(omit_final_dot=True)))
            elif self.rdata.rdtype == dns.rdatatype.SRV:
                keys.add(_normalise(self.rdata.target.to_text(omit_final_dot=True)))
            self._keys = frozenset(keys)
        return self._keys

    def matches(self, expected: str) -> bool:
        return _normalise(expected) in self.keys


def _normalise(text: str) -> str:
    text = " ".join(text.split()).rstrip(".").lower()
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return text


#: Characters of one answer a summary shows (a TXT record can hold 64 KB).
SUMMARY_ANSWER_CHARS = 200


def _show(texts: Sequence[str], limit: int = SUMMARY_ANSWERS) -> str:
    shown = ", ".join(
        text if len(text) <= SUMMARY_ANSWER_CHARS else text[:SUMMARY_ANSWER_CHARS] + "..."
        for text in texts[:limit]
    )
    if len(texts) > limit:
        shown += f" (+{len(texts) - limit} more)"
    return shown


def _join_host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@asynccontextmanager
async def demo_services() -> AsyncIterator[list[anyprobe.DemoCheck]]:
    """A tiny authoritative server for ``demo.test`` on loopback UDP and TCP."""
    async with _demo_dns_server() as port:
        server = f"127.0.0.1:{port}"
        yield [
            anyprobe.DemoCheck(
                "dns: A record",
                f"dns://{server}/www.demo.test?type=A",
                anyprobe.Status.OK,
                options={"expect_answers": ["127.0.0.1"]},
            ),
            anyprobe.DemoCheck(
                "dns: missing name",
                f"dns://{server}/missing.demo.test",
                anyprobe.Status.CRITICAL,
            ),
            anyprobe.DemoCheck(
                "dns: wrong MX",
                f"dns://{server}/demo.test?type=MX",
                anyprobe.Status.CRITICAL,
                options={"expect_answers": ["mail.demo.test"]},
            ),
        ]


_DEMO_ZONE = {
    ("www.demo.test.", "A"): "127.0.0.1",
    ("demo.test.", "MX"): "10 mx2.demo.test.",
}


@asynccontextmanager
async def _demo_dns_server() -> AsyncIterator[int]:
    """Serve :data:`_DEMO_ZONE` over UDP on an ephemeral port until the block ends."""
    import dns.flags
    import dns.message
    import dns.rcode
    import dns.rdatatype
    import dns.rrset

    def answer(wire: bytes) -> bytes | None:
        try:
            query = dns.message.from_wire(wire)
        except Exception:
            return None
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        if query.question:
            question = query.question[0]
            name = question.name.to_text().lower()
            rdtype = dns.rdatatype.to_text(question.rdtype)
            rdata = _DEMO_ZONE.get((name, rdtype))
            if rdata is not None:
                response.answer.append(dns.rrset.from_text(name, 60, "IN", rdtype, rdata))
            elif not any(key[0] == name for key in _DEMO_ZONE):
                response.set_rcode(dns.rcode.NXDOMAIN)
        return response.to_wire()

    async def serve(udp: anyio.abc.UDPSocket) -> None:
        async for wire, peer in udp:
            reply = answer(wire)
            if reply is not None:
                await udp.sendto(reply, *peer)

    async with (
        await anyio.create_udp_socket(local_host="127.0.0.1", local_port=0) as udp,
        anyio.create_task_group() as tg,
    ):
        tg.start_soon(serve, udp)
        yield udp.extra(anyio.abc.SocketAttribute.local_port)
        tg.cancel_scope.cancel()


@anyprobe.hookimpl
def anyprobe_register_probes(register: Any) -> None:
    register(DnsProbe)


@anyprobe.hookimpl
def anyprobe_demo_services(register: Any) -> None:
    register(demo_services)
