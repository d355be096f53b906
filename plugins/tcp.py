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

import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import anyio

import anyprobe
from anyprobe import CheckFailed, Connection, Expectation, show_bytes
from anyprobe._option_defaults import SOCKET_TLS_DEFAULTS

if TYPE_CHECKING:
    from anyprobe.plugins._tcp_options import TcpOptions
    from anyprobe.tls import TlsInfo

__all__ = ["TcpOptions", "TcpProbe", "show_bytes", "unescape"]

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


#: TcpOptions() as plain values (tests/test_cold_start.py keeps them equal).
TCP_DEFAULTS = {
    **SOCKET_TLS_DEFAULTS,
    "send": None,
    "expect": None,
    "expect_regex": None,
    "expect_timeout": None,
    "max_bytes": 4096,
    "quit": None,
    "starttls": None,
    "helo_name": "localhost",
}


def __getattr__(name: str) -> Any:
    if name == "TcpOptions":  # still importable from here
        return TcpProbe.Options
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _expectation(options: TcpOptions) -> Expectation | None:
    """What the server must send: ``expect`` (a substring) or ``expect_regex``."""
    if options.expect is not None:
        return Expectation.of(unescape(options.expect))
    if options.expect_regex is not None:
        # Bytes, one character a byte, ^ at every line: as re.MULTILINE on bytes.
        return Expectation.of(
            anyprobe.compile_pattern(options.expect_regex, binary=True, multiline=True)
        )
    return None


class TcpProbe(anyprobe.Probe["TcpOptions"]):
    """Open a TCP connection, optionally with TLS and a send/expect exchange."""

    name = "tcp"
    schemes = ("tcp", "tls")
    # The model is imported when a target sets an option: a check with none
    # needs no pydantic (see anyprobe.lazy_model; tests/test_cold_start.py).
    Options = anyprobe.lazy_model("anyprobe.plugins._tcp_options:TcpOptions")
    option_defaults = TCP_DEFAULTS
    description = "TCP connect, TLS handshake, STARTTLS, send/expect; like check_tcp."

    def load_dependencies(self, targets: Sequence[anyprobe.Target]) -> None:
        """Certificate parsing, when a target speaks TLS."""
        import importlib

        if any(t.url[:4].lower() == "tls:" or t.options.starttls for t in targets):
            from anyprobe.tls import CERTIFICATE_MODULES

            for module in ("anyio.streams.tls", *CERTIFICATE_MODULES):
                importlib.import_module(module)

    async def check(
        self, target: anyprobe.Target, options: TcpOptions, ctx: anyprobe.CheckContext
    ) -> anyprobe.Outcome:
        assert target.port is not None
        port = target.port
        # A server that echoes what was sent must not reveal it (``send`` is a
        # secret): core masks it in every output.
        for value in (options.send, options.quit):
            if value is not None:
                ctx.hide(unescape(value))
        direct_tls = target.url[:4].lower() == "tls:"
        if direct_tls and options.starttls:
            raise CheckFailed(
                "starttls applies to tcp:// URLs (a tls:// connection starts with TLS)",
                status=anyprobe.Status.UNKNOWN,
            )
        async with ctx.connect(target.host, port, ip_family=options.ip_family) as conn:
            ctx.metrics.update(address=conn.address, port=port)
            if options.starttls:
                with ctx.phase("starttls"):
                    await starttls(conn, options, ctx)
            if direct_tls or options.starttls:
                # After STARTTLS the certificate cannot be fetched again on a
                # fresh connection: say only what the handshake said.
                tls = await conn.start_tls(
                    options,
                    server_name=options.server_name or target.host,
                    fetch_certificate=not options.starttls,
                )
                ctx.metrics.update(tls.metrics())
                if options.send is None and _expectation(options) is None:
                    await _listen_for_a_refusal(conn, ctx)
            received = await _exchange(conn, options, ctx)
        return _outcome(conn, conn.tls, received, options, ctx)


def _outcome(
    conn: Connection,
    tls: TlsInfo | None,
    received: str | None,
    options: TcpOptions,
    ctx: anyprobe.CheckContext,
) -> anyprobe.Outcome:
    took = sum(ctx.phases.get(p, 0.0) for p in ("connect", "starttls", "tls")) * 1000
    how = f"{tls.version or 'TLS'} to" if tls is not None else "connected to"
    parts = [f"{how} {conn.where} in {took:.1f} ms"]
    if received is not None:
        parts.append(f"got {received}")
    status = anyprobe.Status.OK
    details: dict[str, Any] = {}
    if tls is not None:
        from anyprobe.tls import expiry_verdict

        details["tls"] = tls.details()
        days = tls.cert_expiry_days()
        if days is not None:
            status, verdict = expiry_verdict(days, options)
            parts.append(verdict)
    return anyprobe.Outcome(status, "; ".join(parts), details=details)


async def _listen_for_a_refusal(conn: Connection, ctx: anyprobe.CheckContext) -> None:
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
    failed: CheckFailed | None = None
    with anyio.move_on_after(wait):
        try:
            data = await conn.receive()
        except CheckFailed as exc:
            failed = exc
        else:
            if data:
                ctx.trace(f"the server sent {len(data)} bytes after the handshake")
                return
            failed = CheckFailed("the server closed the connection after the TLS handshake")
    if failed is not None:
        ctx.trace(f"after the handshake: {failed.summary}")
        # The refusal ends the handshake as the server sees it: a tls-phase failure.
        with ctx.phase("tls"):
            raise failed
    ctx.trace(f"no alert from the server within {wait * 1000:.0f} ms of the handshake")


async def _exchange(
    conn: Connection, options: TcpOptions, ctx: anyprobe.CheckContext
) -> str | None:
    """Send, then read until the expectation holds; a description of the reply."""
    expectation = _expectation(options)
    if options.send is not None:
        await conn.send(unescape(options.send))
    received: str | None = None
    if expectation is not None:
        matched = await conn.expect(
            expectation,
            budget=options.max_bytes,
            within=options.expect_timeout,
            phases=("first_byte", "transfer"),
        )
        size = len(matched) + len(conn.buffered)
        ctx.metrics["bytes_received"] = size
        received = f"{expectation.text} in {size} bytes"
    if options.quit is not None:
        try:
            await conn.send(unescape(options.quit))
        except CheckFailed:
            ctx.trace("the server closed the connection before quit could be sent")
    return received


# -- STARTTLS -------------------------------------------------------------------


async def starttls(conn: Connection, options: TcpOptions, ctx: anyprobe.CheckContext) -> None:
    """Run the plain-text part of SMTP, IMAP or POP3 up to the server's go-ahead."""
    protocol = options.starttls
    if protocol == "smtp":
        await _smtp_starttls(conn, options, ctx)
    elif protocol == "imap":
        await _imap_starttls(conn, ctx)
    else:
        await _pop3_starttls(conn, ctx)
    if conn.buffered:
        # Bytes after the go-ahead would be read as if they came over TLS
        # (the STARTTLS command injection flaw): refuse them.
        raise CheckFailed(
            f"{protocol} server sent data after its STARTTLS reply: {show_bytes(conn.buffered)}"
        )
    ctx.trace(f"{protocol} STARTTLS accepted")


async def _line(conn: Connection, protocol: str, ctx: anyprobe.CheckContext) -> str:
    try:
        line = await conn.read_line(limit=MAX_LINE)
    except CheckFailed as failed:
        raise CheckFailed(f"{protocol} STARTTLS: {failed.summary}", error=failed.error) from None
    ctx.trace(f"S: {line}")
    return line


async def _command(conn: Connection, text: str, ctx: anyprobe.CheckContext) -> None:
    ctx.trace(f"C: {text}")
    await conn.send(text.encode("ascii") + b"\r\n")


async def _smtp_reply(conn: Connection, ctx: anyprobe.CheckContext) -> tuple[str, list[str]]:
    """An SMTP reply: its code and its lines' texts (``250-X`` continues, ``250 X`` ends)."""
    lines: list[str] = []
    for _ in range(MAX_REPLY_LINES):
        line = await _line(conn, "smtp", ctx)
        code, sep, text = line[:3], line[3:4], line[4:]
        if not code.isdigit() or sep not in ("-", " ", ""):
            raise CheckFailed(f"not an SMTP reply: {line[:SHOWN_BYTES]!r}")
        lines.append(text)
        if sep != "-":
            return code, lines
    raise CheckFailed(f"SMTP reply longer than {MAX_REPLY_LINES} lines")


async def _smtp_starttls(conn: Connection, options: TcpOptions, ctx: anyprobe.CheckContext) -> None:
    code, lines = await _smtp_reply(conn, ctx)
    if code != "220":
        raise CheckFailed(f"SMTP greeting {code} {lines[0]}".rstrip())
    await _command(conn, f"EHLO {options.helo_name}", ctx)
    code, lines = await _smtp_reply(conn, ctx)
    if code != "250":
        raise CheckFailed(f"SMTP EHLO refused: {code} {lines[0]}".rstrip())
    if not any(line.upper().split(" ")[0] == "STARTTLS" for line in lines[1:]):
        raise CheckFailed("SMTP server does not offer STARTTLS")
    await _command(conn, "STARTTLS", ctx)
    code, lines = await _smtp_reply(conn, ctx)
    if code != "220":
        raise CheckFailed(f"SMTP STARTTLS refused: {code} {lines[0]}".rstrip())


async def _imap_starttls(conn: Connection, ctx: anyprobe.CheckContext) -> None:
    greeting = await _line(conn, "imap", ctx)
    if not greeting.upper().startswith("* OK"):
        raise CheckFailed(f"IMAP greeting is not OK: {greeting[:SHOWN_BYTES]}")
    await _command(conn, "a1 STARTTLS", ctx)
    for _ in range(MAX_REPLY_LINES):
        line = await _line(conn, "imap", ctx)
        if line.startswith("a1 "):
            if not line[3:].upper().startswith("OK"):
                raise CheckFailed(f"IMAP STARTTLS refused: {line[3:SHOWN_BYTES]}")
            return
    raise CheckFailed(f"IMAP STARTTLS: no tagged reply in {MAX_REPLY_LINES} lines")


async def _pop3_starttls(conn: Connection, ctx: anyprobe.CheckContext) -> None:
    greeting = await _line(conn, "pop3", ctx)
    if not greeting.startswith("+OK"):
        raise CheckFailed(f"POP3 greeting is not +OK: {greeting[:SHOWN_BYTES]}")
    await _command(conn, "STLS", ctx)
    reply = await _line(conn, "pop3", ctx)
    if not reply.startswith("+OK"):
        raise CheckFailed(f"POP3 STLS refused: {reply[:SHOWN_BYTES]}")


@anyprobe.hookimpl
def anyprobe_register_probes(register: Any) -> None:
    register(TcpProbe)


@anyprobe.hookimpl
def anyprobe_demo_services(register: Any) -> None:
    from anyprobe.plugins._demo_tcp import demo_services, tls_demo_services

    register(demo_services)
    register(tls_demo_services)
