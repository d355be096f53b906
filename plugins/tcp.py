"""The TCP probe: ``tcp://HOST:PORT`` and ``tls://HOST:PORT``.

A check connects (phases ``resolve`` and ``connect``), optionally upgrades
the connection to TLS: at once for ``tls://``, or after the plain-text
STARTTLS exchange of SMTP, IMAP or POP3 (phases ``starttls`` and ``tls``),
then optionally sends a payload and waits for an expected reply (phases
``first_byte`` and ``transfer``), like check_tcp's ``-s``/``-e`` and
blackbox_exporter's ``query_response``.

Certificate checks (verification, expiry thresholds, the presented chain)
come from :mod:`anyprobe.tls`, shared with the HTTP probe.
"""

from __future__ import annotations

import datetime
import functools
import math
import shutil
import ssl
import tempfile
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import anyio
from anyio.abc import ByteStream
from anyio.streams.buffered import BufferedByteReceiveStream
from anyio.streams.tls import TLSStream
from pydantic import Field, field_validator, model_validator

import anyprobe
from anyprobe._inputs import host_problem
from anyprobe.masking import masked_check, options_masker
from anyprobe.net import IpFamily, connect_tcp, describe_os_error, resolve, root_os_error
from anyprobe.tls import (
    CERTIFICATE_MODULES,
    TlsInfo,
    TlsOptions,
    describe_tls_error,
    expiry_verdict,
    find_ssl_error,
    start_tls,
)

#: Longest line accepted in a STARTTLS exchange, and most lines in one reply.
MAX_LINE = 8192
MAX_REPLY_LINES = 100
#: Received bytes quoted in a summary before it is cut.
SHOWN_BYTES = 60
#: Bounds of the read after a TLS handshake that catches a refused client
#: certificate when nothing is sent or expected (see _listen_for_a_refusal).
REFUSAL_WAIT_MIN = 0.05
REFUSAL_WAIT_MAX = 1.0

_ESCAPES = {"r": b"\r", "n": b"\n", "t": b"\t", "0": b"\0", "e": b"\x1b", "\\": b"\\"}


@functools.lru_cache(maxsize=1024)
def unescape(text: str) -> bytes:
    r"""``text`` as bytes, with ``\r \n \t \0 \e \\`` and ``\xHH`` turned into bytes.

    >>> unescape(r"QUIT\r\n")
    b'QUIT\r\n'
    """
    out = bytearray()
    index = 0
    while index < len(text):
        char = text[index]
        if char != "\\":
            out += char.encode("utf-8")
            index += 1
            continue
        code = text[index + 1 : index + 2]
        if code == "x":
            digits = text[index + 2 : index + 4]
            if len(digits) != 2 or not all(c in "0123456789abcdefABCDEF" for c in digits):
                raise ValueError(f"\\x needs two hex digits (at {text[index : index + 4]!r})")
            out.append(int(digits, 16))
            index += 4
        elif code in _ESCAPES:
            out += _ESCAPES[code]
            index += 2
        elif not code:
            raise ValueError("a lone backslash at the end (write \\\\ for a backslash)")
        else:
            raise ValueError(f"unknown escape \\{code} (known: \\r \\n \\t \\0 \\e \\\\ \\xHH)")
    return bytes(out)


class TcpOptions(TlsOptions):
    ip_family: IpFamily = Field(
        "any", description="Address family to connect over: any, ipv4 or ipv6."
    )
    send: str | None = Field(
        None,
        description=r"Bytes to send once connected (after TLS), with escapes \r \n \t \0 "
        r"\e \\ \xHH. Never shown in results.",
        json_schema_extra={"secret": True},
    )
    expect: str | None = Field(
        None,
        description="Text (same escapes) that must appear in what the server sends, "
        "read until it does, the connection closes or max_bytes arrive.",
    )
    expect_regex: str | None = Field(
        None,
        description="Regular expression (RE2 syntax, on bytes, multi-line: ^ matches at "
        "each line) that what the server sends must match; instead of expect.",
    )
    expect_timeout: float | None = Field(
        None,
        gt=0,
        description="Seconds to wait for the expected reply; default: until the check's "
        "timeout. A reply that does not come in time is critical.",
    )
    max_bytes: int = Field(
        4096, ge=1, le=16 * 1024 * 1024, description="Most bytes read looking for expect."
    )
    quit: str | None = Field(
        None, description="Bytes (same escapes) to send before closing, e.g. QUIT\\r\\n."
    )
    starttls: Literal["smtp", "imap", "pop3"] | None = Field(
        None,
        description="On tcp://, upgrade to TLS with the protocol's STARTTLS command "
        "(SMTP on 25/587, IMAP on 143, POP3 on 110), then check the certificate.",
    )
    helo_name: str = Field(
        "localhost", description="Name sent in SMTP's EHLO when starttls = smtp."
    )

    @field_validator("send", "expect", "quit")
    @classmethod
    def _valid_escapes(cls, value: str | None) -> str | None:
        if value is not None:
            unescape(value)
        return value

    @field_validator("expect_regex")
    @classmethod
    def _valid_regex(cls, value: str | None) -> str | None:
        return anyprobe.check_regex(value, binary=True, multiline=True)

    @field_validator("helo_name")
    @classmethod
    def _helo_name_is_a_host(cls, value: str) -> str:
        # Sent in the EHLO line: a CR or LF would start another SMTP command.
        if value.startswith("[") and value.endswith("]"):
            problem = None if _is_address(value[1:-1]) else f"{value} is not an address"
        else:
            problem = host_problem(value)
        if problem is not None:
            raise ValueError(
                f"must be a host name or an address literal like [192.0.2.1] ({problem})"
            )
        return value

    @model_validator(mode="after")
    def _one_expectation(self) -> TcpOptions:
        if self.expect is not None and self.expect_regex is not None:
            raise ValueError("set expect or expect_regex, not both")
        if self.expect == "":
            raise ValueError("expect must not be empty")
        if self.expect_timeout is not None and self.expect is None and self.expect_regex is None:
            raise ValueError("expect_timeout needs expect or expect_regex")
        return self


def _is_address(text: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(text.removeprefix("IPv6:"))
    except ValueError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class _Expectation:
    """What the server must send: a substring or a regular expression."""

    text: str
    needle: bytes | None
    pattern: anyprobe.Pattern | None

    @classmethod
    def of(cls, options: TcpOptions) -> _Expectation | None:
        if options.expect is not None:
            needle = unescape(options.expect)
            return cls(show_bytes(needle, limit=len(needle)), needle, None)
        if options.expect_regex is not None:
            # Bytes, one character a byte, ^ at every line: as re.MULTILINE on bytes.
            pattern = anyprobe.compile_pattern(options.expect_regex, binary=True, multiline=True)
            return cls(f"/{options.expect_regex}/", None, pattern)
        return None

    async def found(self, data: bytes | bytearray) -> bool:
        if self.needle is not None:
            return self.needle in data
        assert self.pattern is not None
        return await self.pattern.search_off_loop(bytes(data)) is not None


def show_bytes(data: bytes | bytearray, limit: int = SHOWN_BYTES) -> str:
    """Received bytes, quoted and escaped for a summary, cut at ``limit`` bytes."""
    text = repr(bytes(data[:limit]))[1:]  # b'...' -> '...'
    return text + ("..." if len(data) > limit else "")


class TcpProbe(anyprobe.Probe[TcpOptions]):
    """Open a TCP connection, optionally with TLS and a send/expect exchange."""

    name = "tcp"
    schemes = ("tcp", "tls")
    Options = TcpOptions
    description = "TCP connect, TLS handshake, STARTTLS, send/expect; like check_tcp."

    def load_dependencies(self, targets: Sequence[anyprobe.Target]) -> None:
        """Certificate parsing, when a target speaks TLS."""
        import importlib

        if any(t.url[:4].lower() == "tls:" or t.options.starttls for t in targets):
            for module in ("anyio.streams.tls", *CERTIFICATE_MODULES):
                importlib.import_module(module)

    async def check(
        self, target: anyprobe.Target, options: TcpOptions, ctx: anyprobe.CheckContext
    ) -> anyprobe.Outcome:
        # What the server sends back is quoted in summaries: a server that
        # echoes ``send`` must not reveal it (anyprobe.masking's one rule).
        masker = options_masker(options)
        for value in (options.send, options.quit):
            if value is not None:
                masker.add_bytes(unescape(value))
        return await masked_check(lambda: self._check(target, options, ctx), ctx, masker)

    async def _check(
        self, target: anyprobe.Target, options: TcpOptions, ctx: anyprobe.CheckContext
    ) -> anyprobe.Outcome:
        assert target.port is not None
        port = target.port
        direct_tls = target.url[:4].lower() == "tls:"
        if direct_tls and options.starttls:
            raise anyprobe.CheckFailed(
                "starttls applies to tcp:// URLs (a tls:// connection starts with TLS)",
                status=anyprobe.Status.UNKNOWN,
            )
        server_name = options.server_name or target.host
        with ctx.phase("resolve"):
            addresses = await resolve(target.host, port, options.ip_family)
        if ctx.explain:
            ctx.trace(f"resolved {target.host} to {', '.join(addresses)}")
        with ctx.phase("connect"):
            tcp, address = await connect_tcp(addresses, port)
        if ctx.explain:
            ctx.trace(f"connected to {address} port {port}")
        where = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
        ctx.metrics.update(address=address, port=port)
        stream: ByteStream = tcp
        tls: TlsInfo | None = None
        try:
            if options.starttls:
                with ctx.phase("starttls"):
                    await starttls(tcp, options, ctx)
            if direct_tls or options.starttls:
                with ctx.phase("tls"):
                    # After STARTTLS the certificate cannot be fetched again on a
                    # fresh connection: say only what the handshake said.
                    peek_at = None if options.starttls else (address, port)
                    stream, tls = await start_tls(tcp, server_name, options, ctx, peek_at=peek_at)
                ctx.metrics.update(tls.metrics())
                if options.send is None and _Expectation.of(options) is None:
                    await _listen_for_a_refusal(stream, ctx)
            received = await _exchange(stream, options, ctx)
        except BaseException:
            with suppress(OSError, anyio.BrokenResourceError, ssl.SSLError):
                await anyio.aclose_forcefully(stream)
            raise
        # No TLS close_notify exchange (the stream is not standard-compatible):
        # a check has no use for it, and a server that does not answer it must
        # not hold the check up.
        with suppress(OSError, anyio.BrokenResourceError, ssl.SSLError):
            await stream.aclose()

        parts = []
        if tls is not None:
            parts.append(f"{tls.version or 'TLS'} to {where}")
        else:
            parts.append(f"connected to {where}")
        took = sum(ctx.phases.get(p, 0.0) for p in ("connect", "starttls", "tls")) * 1000
        parts[0] += f" in {took:.1f} ms"
        if received is not None:
            parts.append(f"got {received}")
        status = anyprobe.Status.OK
        details: dict[str, Any] = {}
        if tls is not None:
            details["tls"] = tls.details()
            days = tls.cert_expiry_days()
            if days is not None:
                status, verdict = expiry_verdict(days, options)
                parts.append(verdict)
        return anyprobe.Outcome(status, "; ".join(parts), details=details)


async def _listen_for_a_refusal(stream: ByteStream, ctx: anyprobe.CheckContext) -> None:
    """Read briefly after the handshake, for a check that neither sends nor expects.

    With TLS 1.3 the client's handshake ends before the server has seen the
    client's certificate (or its absence): a server that refuses the client
    says so with an alert one round trip later, on the first read. Without
    this read such a check would pass. The wait is twice the time connect and
    handshake took (the round trip, with the server's own delays), at least
    :data:`REFUSAL_WAIT_MIN` and at most :data:`REFUSAL_WAIT_MAX` seconds, and
    ends early when the server sends (a banner) or closes. A server that
    waits for its client to speak first passes.
    """
    spent = ctx.phases.get("connect", 0.0) + ctx.phases.get("tls", 0.0)
    wait = min(max(REFUSAL_WAIT_MIN, 2 * spent), REFUSAL_WAIT_MAX, ctx.remaining() / 2)
    failed: anyprobe.CheckFailed | None = None
    with anyio.move_on_after(wait):
        try:
            data = await stream.receive()
        except anyio.EndOfStream:
            failed = anyprobe.CheckFailed(
                "the server closed the connection after the TLS handshake"
            )
        except (OSError, anyio.BrokenResourceError, ssl.SSLError) as exc:
            failed = anyprobe.CheckFailed(_describe(exc), error=_cause(exc))
        else:
            ctx.trace(f"the server sent {len(data)} bytes after the handshake")
            return
    if failed is not None:
        ctx.trace(f"after the handshake: {failed.summary}")
        # The refusal ends the handshake as the server sees it: a tls-phase failure.
        with ctx.phase("tls"):
            raise failed
    ctx.trace(f"no alert from the server within {wait * 1000:.0f} ms of the handshake")


async def _exchange(
    stream: ByteStream, options: TcpOptions, ctx: anyprobe.CheckContext
) -> str | None:
    """Send, then read until the expectation holds; a description of the reply."""
    expectation = _Expectation.of(options)
    if options.send is not None:
        payload = unescape(options.send)
        try:
            await stream.send(payload)
        except (OSError, anyio.BrokenResourceError, ssl.SSLError) as exc:
            raise anyprobe.CheckFailed(
                f"sending failed: {_describe(exc)}", error=_cause(exc)
            ) from None
        ctx.trace(f"sent {len(payload)} bytes")
    received: str | None = None
    if expectation is not None:
        data = await _read_until(stream, expectation, options, ctx)
        ctx.metrics["bytes_received"] = len(data)
        received = f"{expectation.text} in {len(data)} bytes"
    if options.quit is not None:
        try:
            await stream.send(unescape(options.quit))
        except (OSError, anyio.BrokenResourceError, ssl.SSLError):
            ctx.trace("the server closed the connection before quit could be sent")
    return received


async def _read_until(
    stream: ByteStream,
    expectation: _Expectation,
    options: TcpOptions,
    ctx: anyprobe.CheckContext,
) -> bytearray:
    """Read until ``expectation`` holds; CheckFailed (with what came) when it does not."""
    data = bytearray()
    wait = options.expect_timeout if options.expect_timeout is not None else math.inf
    # Stop reading just before the check's deadline, so that a timeout can
    # still say what the server sent instead of only "timed out".
    until_deadline = max(0.0, ctx.remaining() - min(0.1, ctx.timeout / 10))
    phase = "first_byte"
    with anyio.move_on_after(min(wait, until_deadline)):
        while True:
            with ctx.phase(phase):
                try:
                    chunk = await stream.receive(options.max_bytes - len(data))
                except anyio.EndOfStream:
                    raise _not_found(
                        expectation, data, ", but the server closed the connection"
                    ) from None
                except (OSError, anyio.BrokenResourceError, ssl.SSLError) as exc:
                    raise _not_found(
                        expectation, data, f", but {_describe(exc)}", _cause(exc)
                    ) from None
                data += chunk
                if await expectation.found(data):
                    ctx.trace(f"received {len(data)} bytes, {expectation.text} found")
                    return data
                if len(data) >= options.max_bytes:
                    raise _not_found(expectation, data, f" in the first {options.max_bytes} bytes")
            phase = "transfer"
    if wait <= until_deadline:
        raise _not_found(expectation, data, f" within {wait:g} s")
    got = f"got {show_bytes(data)} ({len(data)} bytes)" if data else "got nothing"
    message = (
        f"timed out after {ctx.timeout:g} s during {phase}: expected {expectation.text}, {got}"
    )
    ctx.trace(f"the deadline came before {expectation.text}; {got}")
    raise anyprobe.CheckFailed(
        message, error=TimeoutError(message), metrics={"bytes_received": len(data)}
    )


def _describe(exc: BaseException) -> str:
    """A transport failure after the handshake, in words: a TLS alert (a
    refused client certificate shows here with TLS 1.3) or a socket error."""
    if find_ssl_error(exc) is not None:
        return describe_tls_error(exc)
    return describe_os_error(exc)


def _cause(exc: BaseException) -> BaseException:
    return find_ssl_error(exc) or root_os_error(exc)


def _not_found(
    expectation: _Expectation,
    data: bytearray,
    how: str,
    error: BaseException | None = None,
) -> anyprobe.CheckFailed:
    """``expected '220' within 2 s, got 'hello'`` (what came is quoted, and cut)."""
    got = f"got {show_bytes(data)} ({len(data)} bytes)" if data else "got nothing"
    return anyprobe.CheckFailed(
        f"expected {expectation.text}{how}; {got}",
        error=error,
        metrics={"bytes_received": len(data)},
    )


# -- STARTTLS -------------------------------------------------------------------


async def starttls(
    tcp: anyio.abc.SocketStream, options: TcpOptions, ctx: anyprobe.CheckContext
) -> None:
    """Run the plain-text part of SMTP, IMAP or POP3 up to the server's go-ahead."""
    reader = BufferedByteReceiveStream(tcp)
    protocol = options.starttls
    if protocol == "smtp":
        await _smtp_starttls(tcp, reader, options, ctx)
    elif protocol == "imap":
        await _imap_starttls(tcp, reader, ctx)
    else:
        await _pop3_starttls(tcp, reader, ctx)
    if reader.buffer:
        # Bytes after the go-ahead would be read as if they came over TLS
        # (the STARTTLS command injection flaw): refuse them.
        raise anyprobe.CheckFailed(
            f"{protocol} server sent data after its STARTTLS reply: {show_bytes(reader.buffer)}"
        )
    ctx.trace(f"{protocol} STARTTLS accepted")


async def _line(
    reader: BufferedByteReceiveStream, protocol: str, ctx: anyprobe.CheckContext
) -> str:
    try:
        raw = await reader.receive_until(b"\n", MAX_LINE)
    except anyio.IncompleteRead:
        raise anyprobe.CheckFailed(
            f"{protocol} server closed the connection before STARTTLS"
        ) from None
    except anyio.DelimiterNotFound:
        raise anyprobe.CheckFailed(
            f"{protocol} server sent a line longer than {MAX_LINE} bytes"
        ) from None
    except (OSError, anyio.BrokenResourceError) as exc:
        raise anyprobe.CheckFailed(
            f"{protocol} STARTTLS: {describe_os_error(exc)}", error=root_os_error(exc)
        ) from None
    line = raw.rstrip(b"\r").decode("utf-8", errors="replace")
    ctx.trace(f"S: {line}")
    return line


async def _command(tcp: anyio.abc.SocketStream, text: str, ctx: anyprobe.CheckContext) -> None:
    ctx.trace(f"C: {text}")
    try:
        await tcp.send(text.encode("ascii") + b"\r\n")
    except (OSError, anyio.BrokenResourceError) as exc:
        raise anyprobe.CheckFailed(
            f"STARTTLS: {describe_os_error(exc)}", error=root_os_error(exc)
        ) from None


async def _smtp_reply(
    reader: BufferedByteReceiveStream, ctx: anyprobe.CheckContext
) -> tuple[str, list[str]]:
    """An SMTP reply: its code and its lines' texts (``250-X`` continues, ``250 X`` ends)."""
    lines: list[str] = []
    for _ in range(MAX_REPLY_LINES):
        line = await _line(reader, "smtp", ctx)
        code, sep, text = line[:3], line[3:4], line[4:]
        if not code.isdigit() or sep not in ("-", " ", ""):
            raise anyprobe.CheckFailed(f"not an SMTP reply: {line[:SHOWN_BYTES]!r}")
        lines.append(text)
        if sep != "-":
            return code, lines
    raise anyprobe.CheckFailed(f"SMTP reply longer than {MAX_REPLY_LINES} lines")


async def _smtp_starttls(
    tcp: anyio.abc.SocketStream,
    reader: BufferedByteReceiveStream,
    options: TcpOptions,
    ctx: anyprobe.CheckContext,
) -> None:
    code, lines = await _smtp_reply(reader, ctx)
    if code != "220":
        raise anyprobe.CheckFailed(f"SMTP greeting {code} {lines[0]}".rstrip())
    await _command(tcp, f"EHLO {options.helo_name}", ctx)
    code, lines = await _smtp_reply(reader, ctx)
    if code != "250":
        raise anyprobe.CheckFailed(f"SMTP EHLO refused: {code} {lines[0]}".rstrip())
    if not any(line.upper().split(" ")[0] == "STARTTLS" for line in lines[1:]):
        raise anyprobe.CheckFailed("SMTP server does not offer STARTTLS")
    await _command(tcp, "STARTTLS", ctx)
    code, lines = await _smtp_reply(reader, ctx)
    if code != "220":
        raise anyprobe.CheckFailed(f"SMTP STARTTLS refused: {code} {lines[0]}".rstrip())


async def _imap_starttls(
    tcp: anyio.abc.SocketStream, reader: BufferedByteReceiveStream, ctx: anyprobe.CheckContext
) -> None:
    greeting = await _line(reader, "imap", ctx)
    if not greeting.upper().startswith("* OK"):
        raise anyprobe.CheckFailed(f"IMAP greeting is not OK: {greeting[:SHOWN_BYTES]}")
    await _command(tcp, "a1 STARTTLS", ctx)
    for _ in range(MAX_REPLY_LINES):
        line = await _line(reader, "imap", ctx)
        if line.startswith("a1 "):
            if not line[3:].upper().startswith("OK"):
                raise anyprobe.CheckFailed(f"IMAP STARTTLS refused: {line[3:SHOWN_BYTES]}")
            return
    raise anyprobe.CheckFailed(f"IMAP STARTTLS: no tagged reply in {MAX_REPLY_LINES} lines")


async def _pop3_starttls(
    tcp: anyio.abc.SocketStream, reader: BufferedByteReceiveStream, ctx: anyprobe.CheckContext
) -> None:
    greeting = await _line(reader, "pop3", ctx)
    if not greeting.startswith("+OK"):
        raise anyprobe.CheckFailed(f"POP3 greeting is not +OK: {greeting[:SHOWN_BYTES]}")
    await _command(tcp, "STLS", ctx)
    reply = await _line(reader, "pop3", ctx)
    if not reply.startswith("+OK"):
        raise anyprobe.CheckFailed(f"POP3 STLS refused: {reply[:SHOWN_BYTES]}")


# -- demo -----------------------------------------------------------------------


@asynccontextmanager
async def demo_services() -> AsyncIterator[list[anyprobe.DemoCheck]]:
    """A port that accepts connections and one that refuses them."""

    async def accept_and_close(stream: Any) -> None:
        await stream.aclose()

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    open_port = listener.extra(anyio.abc.SocketAttribute.local_port)
    closed_port = await _unused_port()
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, accept_and_close)
        yield [
            anyprobe.DemoCheck(
                "tcp: listening port", f"tcp://127.0.0.1:{open_port}", anyprobe.Status.OK
            ),
            anyprobe.DemoCheck(
                "tcp: closed port", f"tcp://127.0.0.1:{closed_port}", anyprobe.Status.CRITICAL
            ),
        ]
        tg.cancel_scope.cancel()


@asynccontextmanager
async def tls_demo_services() -> AsyncIterator[list[anyprobe.DemoCheck]]:
    """TLS servers with certificates made for the demo: one valid for 90 days
    (sending a banner), one that expired two days ago."""
    directory = Path(await anyio.to_thread.run_sync(tempfile.mkdtemp, "", "anyprobe-tls-demo-"))
    try:
        ca_file, contexts = await anyio.to_thread.run_sync(
            _demo_certificates, directory, (90.0, -2.0)
        )

        async def banner(stream: Any, context: ssl.SSLContext) -> None:
            async with stream:
                with suppress(Exception):  # a client that gives up ends one connection
                    tls = await TLSStream.wrap(
                        stream, server_side=True, ssl_context=context, standard_compatible=False
                    )
                    await tls.send(b"220 demo.test ready\r\n")
                    await tls.receive()

        async with anyio.create_task_group() as tg:
            ports = []
            for context in contexts:
                listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
                ports.append(listener.extra(anyio.abc.SocketAttribute.local_port))
                tg.start_soon(listener.serve, functools.partial(banner, context=context))
            options = {"ca_file": str(ca_file), "server_name": "localhost"}
            yield [
                anyprobe.DemoCheck(
                    "tls: valid certificate and banner",
                    f"tls://127.0.0.1:{ports[0]}",
                    anyprobe.Status.OK,
                    options={**options, "expect": "220 "},
                ),
                anyprobe.DemoCheck(
                    "tls: expired certificate",
                    f"tls://127.0.0.1:{ports[1]}",
                    anyprobe.Status.CRITICAL,
                    options=options,
                ),
            ]
            tg.cancel_scope.cancel()
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(shutil.rmtree, directory, True)


def _demo_certificates(
    directory: Path, days_left: tuple[float, ...]
) -> tuple[Path, list[ssl.SSLContext]]:
    """A throwaway CA (its PEM file in ``directory``) and a server context per
    entry of ``days_left``, whose certificate for localhost expires then."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "anyprobe demo CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_file = directory / "ca.pem"
    ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    contexts = []
    for index, days in enumerate(days_left):
        key = ec.generate_private_key(ec.SECP256R1())
        not_after = now + datetime.timedelta(days=days)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(min(now, not_after) - datetime.timedelta(days=30))
            .not_valid_after(not_after)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
            .add_extension(
                x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                critical=False,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                critical=False,
            )
            .sign(ca_key, hashes.SHA256())
        )
        pem = directory / f"server{index}.pem"
        pem.write_bytes(
            cert.public_bytes(serialization.Encoding.PEM)
            + key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(pem)
        contexts.append(context)
    return ca_file, contexts


async def _unused_port() -> int:
    """A loopback port nothing listens on: bound, then released."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port: int = listener.extra(anyio.abc.SocketAttribute.local_port)
    await listener.aclose()
    return port


@anyprobe.hookimpl
def anyprobe_register_probes(register: Any) -> None:
    register(TcpProbe)


@anyprobe.hookimpl
def anyprobe_demo_services(register: Any) -> None:
    register(demo_services)
    register(tls_demo_services)
