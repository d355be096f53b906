"""Connections a probe opens through its context: ``ctx.connect()``.

One place for what every socket-based probe does: resolve (phase
``resolve``), connect (phase ``connect``), optionally TLS (phase ``tls``,
with the shared :class:`~anyprobe.tls.TlsOptions` and certificate verdicts),
under the address policy in force and the target's ``ip_family``, with the
``--explain`` trace written and OS errors turned into the standard critical
summaries. The :class:`Connection` it yields reads with limits and fails with
summaries that say what was expected and what came::

    async with ctx.connect(target.host, target.port) as conn:
        await conn.send("PING\\r\\n")
        await conn.expect_line("+PONG")   # expected '+PONG', got '-NOAUTH ...'

``ctx.connect_socket()`` does the same resolve and connect and yields the
connected socket itself, before any stream wraps it, for a library that
wants a socket of its own (asyncssh); ``ctx.connect()`` is built on it.
"""

from __future__ import annotations

import math
import socket
import ssl
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, nullcontext, suppress
from typing import TYPE_CHECKING

import anyio
import anyio.abc

from . import net
from ._errors import CheckFailed
from ._patterns import Pattern

if TYPE_CHECKING:
    from anyio.abc import ByteStream

    from ._probe import CheckContext
    from .net import IpFamily
    from .tls import TlsInfo, TlsOptions

#: Longest line :meth:`Connection.read_line` accepts by default.
MAX_LINE = 8192
#: Most bytes :meth:`Connection.expect` reads by default.
EXPECT_BUDGET = 4096
#: Received bytes quoted in a summary before it is cut.
SHOWN_BYTES = 60
#: Received bytes quoted in one ``--explain`` trace line.
TRACED_BYTES = 200
#: Most bytes one read asks the socket for.
READ_SIZE = 65536

_TRANSPORT_ERRORS = (OSError, anyio.BrokenResourceError, ssl.SSLError)


def show_bytes(data: bytes | bytearray, limit: int = SHOWN_BYTES) -> str:
    """Bytes quoted and escaped for a summary, cut at ``limit`` bytes:
    ``'220 ready\\r\\n'``, ``'HTTP/1.1 200...'``."""
    text = repr(bytes(data[:limit]))[1:]  # b'...' -> '...'
    return text + ("..." if len(data) > limit else "")


def describe_transport_error(exc: BaseException) -> str:
    """A failure on an open connection, in words: a TLS alert (a refused
    client certificate shows here with TLS 1.3) or a socket error."""
    from .net import describe_os_error
    from .tls import describe_tls_error, find_ssl_error

    if find_ssl_error(exc) is not None:
        return describe_tls_error(exc)
    return describe_os_error(exc)


def transport_error_cause(exc: BaseException) -> BaseException:
    """The exception a result's ``error`` should name for ``exc``."""
    from .net import root_os_error
    from .tls import find_ssl_error

    return find_ssl_error(exc) or root_os_error(exc)


def format_address(address: str, port: int) -> str:
    """``127.0.0.1:80``, ``[::1]:80``: an address as a summary shows it."""
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


class Expectation:
    """What a server must send: a text (or bytes), or an anyprobe pattern.

    ``Expectation.of("+PONG")``, ``Expectation.of(anyprobe.compile_pattern(r"^\\+OK",
    binary=True))``; ``text`` is how a summary names it (``'+PONG'``, ``/^\\+OK/``).
    """

    __slots__ = ("needle", "pattern", "text")

    def __init__(self, needle: bytes | None, pattern: Pattern | None, text: str) -> None:
        self.needle = needle
        self.pattern = pattern
        self.text = text

    @classmethod
    def of(cls, expected: str | bytes | Pattern | Expectation) -> Expectation:
        if isinstance(expected, Expectation):
            return expected
        if isinstance(expected, Pattern):
            return cls(None, expected, f"/{expected.pattern}/")
        if isinstance(expected, str):
            expected = expected.encode("utf-8")
        if not isinstance(expected, bytes) or not expected:
            raise TypeError("expect a non-empty str, bytes or anyprobe.Pattern")
        return cls(expected, None, show_bytes(expected, limit=len(expected)))

    async def find(self, data: bytes | bytearray) -> int | None:
        """Where the expectation ends in ``data`` (None: not there yet)."""
        if self.needle is not None:
            at = data.find(self.needle)
            return None if at < 0 else at + len(self.needle)
        assert self.pattern is not None
        subject: str | bytes = bytes(data)
        if not self.pattern.binary:
            subject = bytes(data).decode("utf-8", errors="replace")
        found = await self.pattern.search_off_loop(subject)
        if found is None:
            return None
        if isinstance(subject, str):
            return len(subject[: found.end].encode("utf-8", errors="replace"))
        return found.end


class Connection:
    """A byte stream a probe opened with ``ctx.connect()``; reads are bounded.

    ``address`` is the IP address connected to (``"127.0.0.1"``, ``"::1"``,
    without brackets), ``port`` the port, ``where`` both as a summary shows
    them (``[::1]:6379``), ``tls`` what the TLS handshake showed (None
    without TLS), ``stream`` the anyio byte stream (TLS or plain) for a
    library that wants one. Every method raises :class:`~anyprobe.CheckFailed`
    (critical) with a summary saying what happened; bytes sent and received
    go to the ``--explain`` trace, masked of the check's secrets.
    """

    __slots__ = ("_buffer", "_ctx", "_tcp", "address", "port", "stream", "tls")

    def __init__(
        self, ctx: CheckContext, tcp: anyio.abc.SocketStream, address: str, port: int
    ) -> None:
        self._ctx = ctx
        self._tcp = tcp
        self._buffer = bytearray()
        self.address = address
        self.port = port
        self.stream: ByteStream = tcp
        self.tls: TlsInfo | None = None

    @property
    def where(self) -> str:
        return format_address(self.address, self.port)

    @property
    def buffered(self) -> bytes:
        """Bytes received but not read yet."""
        return bytes(self._buffer)

    def __repr__(self) -> str:
        return f"<Connection to {self.where}{' over TLS' if self.tls else ''}>"

    # -- TLS ------------------------------------------------------------------

    async def start_tls(
        self,
        options: TlsOptions,
        *,
        server_name: str,
        alpn: Sequence[str] = (),
        phase: str = "tls",
        fetch_certificate: bool = True,
    ) -> TlsInfo:
        """Upgrade to TLS (in phase ``phase``), verified as ``options`` say, with
        SNI ``server_name``: after a STARTTLS exchange, or at once through
        ``ctx.connect(tls=...)``. A failed handshake is one CheckFailed saying
        why; with ``fetch_certificate`` a certificate that failed verification
        is fetched again on a fresh connection, so the summary can say how long
        ago it expired or which names it covers (not after STARTTLS: a fresh
        connection would not speak TLS at once)."""
        from .tls import start_tls

        if self.tls is not None:
            raise RuntimeError("start_tls(): the connection already speaks TLS")
        if self._buffer:
            # Bytes sent before the handshake would be read as if they came over
            # TLS (the STARTTLS command injection flaw): refuse them.
            raise CheckFailed(
                f"the server sent data before the TLS handshake: {show_bytes(self._buffer)}"
            )
        peek_at = (self.address, self.port) if fetch_certificate else None
        with self._ctx.phase(phase):
            self.stream, self.tls = await start_tls(
                self._tcp, server_name, options, self._ctx, alpn=alpn, peek_at=peek_at
            )
        return self.tls

    # -- writing --------------------------------------------------------------

    async def send(self, data: bytes | str) -> None:
        """Send ``data`` (text is sent as UTF-8); CheckFailed ``sending failed: ...``."""
        if isinstance(data, str):
            data = data.encode("utf-8")
        elif not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(f"send() takes bytes or str, not {type(data).__name__}")
        try:
            await self.stream.send(data)
        except _TRANSPORT_ERRORS as exc:
            raise CheckFailed(
                f"sending failed: {describe_transport_error(exc)}",
                error=transport_error_cause(exc),
            ) from None
        if self._ctx.explain:
            self._ctx.trace(f"sent {len(data)} bytes: {show_bytes(data, TRACED_BYTES)}")

    # -- reading --------------------------------------------------------------

    async def receive(self, max_bytes: int = READ_SIZE) -> bytes:
        """Bytes as they come (buffered ones first), at most ``max_bytes``;
        ``b""`` when the server has closed the connection."""
        if self._buffer:
            data = bytes(self._buffer[:max_bytes])
            del self._buffer[:max_bytes]
            return data
        return await self._receive_more(max_bytes)

    async def _receive_more(self, max_bytes: int = READ_SIZE) -> bytes:
        """Bytes from the stream (not the buffer); ``b""`` at its end."""
        try:
            data = await self.stream.receive(max_bytes)
        except anyio.EndOfStream:
            return b""
        except _TRANSPORT_ERRORS as exc:
            raise CheckFailed(
                describe_transport_error(exc), error=transport_error_cause(exc)
            ) from None
        if self._ctx.explain:
            self._ctx.trace(f"received {len(data)} bytes: {show_bytes(data, TRACED_BYTES)}")
        return data

    async def _fill(self, what: str) -> None:
        """Read more into the buffer; CheckFailed when the connection ends."""
        data = await self._receive_more()
        if not data:
            if self._buffer:
                raise CheckFailed(
                    f"the server closed the connection before {what}: "
                    f"got {show_bytes(self._buffer)}"
                )
            raise CheckFailed("the server closed the connection")
        self._buffer += data

    async def read_until(self, delimiter: bytes | str, *, limit: int = MAX_LINE) -> bytes:
        """The bytes before the next ``delimiter`` (consumed, not returned);
        CheckFailed when it does not come within ``limit`` bytes."""
        if isinstance(delimiter, str):
            delimiter = delimiter.encode("utf-8")
        if not delimiter:
            raise ValueError("read_until() needs a non-empty delimiter")
        start = 0
        while True:
            at = self._buffer.find(delimiter, start)
            if 0 <= at <= limit:
                data = bytes(self._buffer[:at])
                del self._buffer[: at + len(delimiter)]
                return data
            if len(self._buffer) >= limit + len(delimiter):
                raise CheckFailed(
                    f"no {show_bytes(delimiter)} in the first {limit} bytes: "
                    f"got {show_bytes(self._buffer)}"
                )
            start = max(0, len(self._buffer) - len(delimiter) + 1)
            await self._fill("a line end" if delimiter == b"\n" else show_bytes(delimiter))

    async def read_line(self, *, limit: int = MAX_LINE) -> str:
        """The next line (ending in ``\\n`` or ``\\r\\n``, removed), as text
        (UTF-8, undecodable bytes replaced); at most ``limit`` bytes."""
        line = await self.read_until(b"\n", limit=limit)
        return line.removesuffix(b"\r").decode("utf-8", errors="replace")

    async def read_exactly(self, size: int) -> bytes:
        """Exactly ``size`` bytes; CheckFailed when the connection ends first."""
        if size < 0:
            raise ValueError("read_exactly() needs a size of 0 or more")
        while len(self._buffer) < size:
            data = await self._receive_more(max(READ_SIZE, size - len(self._buffer)))
            if not data:
                raise CheckFailed(
                    f"the server closed the connection after {len(self._buffer)} of {size} bytes"
                )
            self._buffer += data
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    async def expect_line(self, expected: str | Pattern, *, limit: int = MAX_LINE) -> str:
        """Read the next line; it must be ``expected`` (a text, whole) or match
        it (a pattern, searched). Returns the line, or fails with ``expected
        '+PONG', got '-NOAUTH Authentication required'``."""
        if not isinstance(expected, str | Pattern):
            raise TypeError(
                f"expect_line() takes a str or an anyprobe.Pattern, not {type(expected).__name__}"
            )
        line = await self.read_line(limit=limit)
        if isinstance(expected, Pattern):
            subject: str | bytes = line.encode("utf-8") if expected.binary else line
            if await expected.search_off_loop(subject) is not None:
                return line
            wanted = f"/{expected.pattern}/"
        else:
            if line == expected:
                return line
            wanted = show_bytes(expected.encode("utf-8"), limit=SHOWN_BYTES)
        raise CheckFailed(f"expected {wanted}, got {show_bytes(line.encode('utf-8'))}")

    async def expect(
        self,
        expected: str | bytes | Pattern | Expectation,
        *,
        budget: int = EXPECT_BUDGET,
        within: float | None = None,
        phases: tuple[str, str] | None = None,
    ) -> bytes:
        """Read until what came holds ``expected`` (a text or bytes, found
        anywhere; or an anyprobe pattern, searched), at most ``budget`` bytes
        and ``within`` seconds (default: until just before the check's
        deadline). Returns the bytes read up to the end of the match (what
        follows stays for the next read).

        Fails with a summary that quotes what came: ``expected '220' within 2
        s; got 'hello' (5 bytes)``, ``expected 'SSH-2.0' in the first 16
        bytes; got ...``, ``..., but the server closed the connection; got
        ...``; when the check's deadline comes first, ``timed out after 5 s
        during first_byte: expected ..., got ...`` (``bytes_received`` in the
        metrics). ``phases`` (``("first_byte", "transfer")``) times the first
        read and the rest as phases.
        """
        expectation = Expectation.of(expected)
        ctx = self._ctx
        data = bytearray()
        wait = within if within is not None else math.inf
        # Stop reading just before the check's deadline, so that a timeout can
        # still say what the server sent instead of only "timed out".
        until_deadline = max(0.0, ctx.remaining() - min(0.1, ctx.timeout / 10))
        phase = phases[0] if phases else None
        with anyio.move_on_after(min(wait, until_deadline)):
            while True:
                with ctx.phase(phase) if phase else nullcontext():
                    try:
                        chunk = await self.receive(budget - len(data))
                    except CheckFailed as failed:
                        raise _not_found(
                            expectation, data, f", but {failed.summary}", failed.error
                        ) from None
                    if not chunk:
                        raise _not_found(
                            expectation, data, ", but the server closed the connection"
                        )
                    data += chunk
                    end = await expectation.find(data)
                    if end is not None:
                        ctx.trace(f"received {len(data)} bytes, {expectation.text} found")
                        ctx.metrics["bytes_received"] = len(data)
                        self._buffer[:0] = data[end:]
                        return bytes(data[:end])
                    if len(data) >= budget:
                        raise _not_found(expectation, data, f" in the first {budget} bytes")
                if phases:
                    phase = phases[1]
        if wait <= until_deadline:
            raise _not_found(expectation, data, f" within {wait:g} s")
        got = f"got {show_bytes(data)} ({len(data)} bytes)" if data else "got nothing"
        where = f" during {phase}" if phase else ""
        message = f"timed out after {ctx.timeout:g} s{where}: expected {expectation.text}, {got}"
        ctx.trace(f"the deadline came before {expectation.text}; {got}")
        raise CheckFailed(
            message, error=TimeoutError(message), metrics={"bytes_received": len(data)}
        )


def _not_found(
    expectation: Expectation, data: bytearray, how: str, error: BaseException | None = None
) -> CheckFailed:
    """``expected '220' within 2 s; got 'hello' (5 bytes)`` (what came is quoted, and cut)."""
    got = f"got {show_bytes(data)} ({len(data)} bytes)" if data else "got nothing"
    return CheckFailed(
        f"expected {expectation.text}{how}; {got}",
        error=error,
        metrics={"bytes_received": len(data)},
    )


async def resolve_in_phase(
    ctx: CheckContext, host: str, port: int, ip_family: IpFamily = "any"
) -> list[str]:
    """:func:`anyprobe.net.resolve` timed as phase ``resolve``, traced."""
    pinned = ctx.pinned_address(host)
    if pinned is not None:
        # Core resolved the name once and runs this check for one address.
        if ctx.explain:
            ctx.trace(f"checking {host} at {pinned}")
        return [pinned]
    # ctx.phase("resolve"), inlined: once for every check of every probe.
    outer = ctx.current_phase
    ctx.current_phase = "resolve"
    started = time.perf_counter()
    try:
        addresses = await net.resolve(host, port, ip_family)
    finally:
        ctx.phases["resolve"] = ctx.phases.get("resolve", 0.0) + time.perf_counter() - started
    ctx.current_phase = outer
    if ctx.explain:
        ctx.trace(f"resolved {host} to {', '.join(addresses)}")
    return addresses


def _check_arguments(caller: str, host: str, port: int, ip_family: str) -> None:
    if not isinstance(host, str) or not host:
        raise TypeError(f"{caller}() needs a host name, not {host!r}")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise TypeError(f"{caller}() needs a port from 1 to 65535, not {port!r}")
    if ip_family not in ("any", "ipv4", "ipv6"):
        raise ValueError(f"ip_family must be 'any', 'ipv4' or 'ipv6', not {ip_family!r}")


async def _connected_socket(
    ctx: CheckContext, caller: str, host: str, port: int, ip_family: IpFamily
) -> tuple[socket.socket, str]:
    """Resolve (phase ``resolve``), connect to the first address that accepts
    (phase ``connect``), trace both: the socket (the caller closes it) and its address."""
    from .net import _connect_first

    _check_arguments(caller, host, port, ip_family)
    addresses = await resolve_in_phase(ctx, host, port, ip_family)
    with ctx.phase("connect"):
        sock, address = await _connect_first(addresses, port)
    if ctx.explain:
        ctx.trace(f"connected to {address} port {port}")
    return sock, address


@asynccontextmanager
async def open_socket(
    ctx: CheckContext, host: str, port: int, *, ip_family: IpFamily = "any"
) -> AsyncIterator[socket.socket]:
    """What ``ctx.connect_socket()`` does (see :meth:`~anyprobe.CheckContext.connect_socket`)."""
    sock, _address = await _connected_socket(ctx, "connect_socket", host, port, ip_family)
    with sock:  # a no-op for a socket the caller detached
        yield sock


@asynccontextmanager
async def open_connection(
    ctx: CheckContext,
    host: str,
    port: int,
    *,
    ip_family: IpFamily = "any",
    tls: TlsOptions | None = None,
    server_name: str | None = None,
    alpn: Sequence[str] = (),
) -> AsyncIterator[Connection]:
    """What ``ctx.connect()`` does (see :meth:`~anyprobe.CheckContext.connect`):
    :func:`open_socket`'s socket, wrapped in a stream."""
    from .net import _stream_from_socket

    sock, address = await _connected_socket(ctx, "connect", host, port, ip_family)
    with ctx.phase("connect"):
        tcp = await _stream_from_socket(sock)
    conn = Connection(ctx, tcp, address, port)
    try:
        if tls is not None:
            await conn.start_tls(tls, server_name=server_name or tls.server_name or host, alpn=alpn)
        yield conn
    except BaseException:
        with suppress(*_TRANSPORT_ERRORS):
            await anyio.aclose_forcefully(conn.stream)
        raise
    # No TLS close_notify exchange (the stream is not standard-compatible): a
    # check has no use for it, and a server that does not answer it must not
    # hold the check up.
    with suppress(*_TRANSPORT_ERRORS):
        await conn.stream.aclose()
