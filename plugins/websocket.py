"""The WebSocket probe: ``ws://HOST[:PORT]/PATH`` and ``wss://``.

A check connects (phases ``resolve``, ``connect``, and ``tls`` for
``wss://``), sends the HTTP/1.1 upgrade request and wants ``101 Switching
Protocols`` (phase ``upgrade``), optionally sends a text message and reads
the server's first message, which must hold the expected text or pattern
within a byte budget (phase ``message``), then closes: a close frame sent, the
server's close frame awaited briefly (phase ``close``).

wsproto drives the protocol without I/O, on the connection
``ctx.connect()`` opens, so the probe runs on asyncio and trio alike.
Certificate checks come from :mod:`anyprobe.tls`, shared with the HTTP and
TCP probes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import SplitResult, urlsplit

import anyio
from pydantic import Field, field_validator, model_validator

import anyprobe
from anyprobe import CheckFailed, Connection, Expectation, show_bytes
from anyprobe.net import IpFamily
from anyprobe.tls import CERTIFICATE_MODULES, TlsOptions, expiry_verdict

from ._headers import TOKEN, check_headers, check_secret_headers

if TYPE_CHECKING:
    from wsproto import WSConnection
    from wsproto.events import Event

__all__ = ["WebSocketOptions", "WebSocketProbe"]

INSTALL = "anyprobe[websocket]"
#: Longest wait for the server's close frame after ours, in seconds.
CLOSE_WAIT = 1.0
#: Most bytes of the server's answer to the upgrade request read before giving up.
MAX_UPGRADE_BYTES = 65536
#: Headers the upgrade request sets itself: an option may not set them.
RESERVED_HEADERS = frozenset(
    {
        "host",
        "upgrade",
        "connection",
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-protocol",
        "sec-websocket-extensions",
        "content-length",
        "transfer-encoding",
    }
)
#: Close codes (RFC 6455 section 7.4.1) a summary names.
CLOSE_CODES = {
    1000: "normal closure",
    1001: "going away",
    1002: "protocol error",
    1003: "unsupported data",
    1006: "abnormal closure",
    1007: "invalid payload",
    1008: "policy violation",
    1009: "message too big",
    1010: "mandatory extension",
    1011: "internal error",
}


def _not_reserved(names: Iterable[str]) -> None:
    for name in names:
        if name.lower() in RESERVED_HEADERS:
            raise ValueError(f"header {name} is set by the WebSocket upgrade itself")


class WebSocketOptions(TlsOptions, anyprobe.AddressOptions):
    ip_family: IpFamily = Field(
        "any", description="Address family to connect over: any, ipv4 or ipv6."
    )
    headers: dict[str, str] = Field(
        default_factory=dict,
        description="Headers of the upgrade request, e.g. {Origin = 'https://example.com'}; "
        "credential headers (Authorization, Cookie, API keys) are masked in every output.",
    )
    header_env: dict[str, anyprobe.SecretEnv] = Field(
        default_factory=dict,
        description="Secret headers of the upgrade request: header name -> environment "
        "variable holding its value, e.g. {Authorization = 'WS_TOKEN'}.",
    )
    subprotocols: list[str] = Field(
        default_factory=list,
        description="Subprotocols offered (Sec-WebSocket-Protocol), in order of preference.",
    )
    require_subprotocol: bool = Field(
        True,
        description="With subprotocols: a server that chooses none of them is critical; "
        "false accepts it.",
    )
    send: str | None = Field(None, description="A text message to send once the upgrade is done.")
    expect: str | None = Field(
        None,
        description="Text the server's first message (the reply to send, or the "
        "server's own first message without send) must contain.",
    )
    expect_regex: str | None = Field(
        None,
        description="Regular expression (RE2 syntax) the server's first message must "
        "match; instead of expect.",
    )
    max_message_bytes: int = Field(
        65536,
        ge=1,
        le=16 * 1024 * 1024,
        description="Largest reply accepted, in bytes: a longer one is critical.",
    )

    @field_validator("headers")
    @classmethod
    def _valid_headers(cls, value: dict[str, str]) -> dict[str, str]:
        _not_reserved(value)
        return check_headers(value)

    @field_validator("header_env", mode="before")
    @classmethod
    def _read_secret_headers(cls, value: Any) -> Any:
        return anyprobe.SecretEnv.read_each(value, "header")

    @field_validator("header_env")
    @classmethod
    def _valid_secret_headers(
        cls, value: dict[str, anyprobe.SecretEnv]
    ) -> dict[str, anyprobe.SecretEnv]:
        _not_reserved(value)
        return check_secret_headers(value)

    @field_validator("subprotocols")
    @classmethod
    def _valid_subprotocols(cls, value: list[str]) -> list[str]:
        for name in value:
            if not TOKEN.match(name):
                raise ValueError(f"{name!r} is not a subprotocol name (an HTTP token)")
        if len(set(value)) != len(value):
            raise ValueError("a subprotocol is offered twice")
        return value

    @field_validator("expect_regex")
    @classmethod
    def _valid_regex(cls, value: str | None) -> str | None:
        return anyprobe.check_regex(value)

    @model_validator(mode="after")
    def _one_expectation(self) -> WebSocketOptions:
        if self.expect is not None and self.expect_regex is not None:
            raise ValueError("set expect or expect_regex, not both")
        if self.expect == "":
            raise ValueError("expect must not be empty")
        return self


def _expectation(options: WebSocketOptions) -> Expectation | None:
    if options.expect is not None:
        return Expectation.of(options.expect)
    if options.expect_regex is not None:
        return Expectation.of(anyprobe.compile_pattern(options.expect_regex))
    return None


class WebSocketProbe(anyprobe.Probe[WebSocketOptions]):
    """Upgrade to WebSocket, optionally exchange a message, close cleanly."""

    name = "websocket"
    schemes = ("ws", "wss")
    Options = WebSocketOptions
    default_ports = {"ws": 80, "wss": 443}
    description = "WebSocket upgrade, a message and its reply, a clean close."

    def validate_url(self, url: SplitResult, text: str) -> tuple[str, int | None]:
        anyprobe.check_url_shape(url, text, path=True, query=True, user=False)
        return super().validate_url(url, text)

    def load_dependencies(self, targets: Sequence[anyprobe.Target]) -> None:
        """wsproto, and certificate parsing when a target is wss://."""
        import importlib

        anyprobe.require(
            "wsproto", needed_for="the websocket probe (ws://, wss://)", install=INSTALL
        )
        if any(t.url[:4].lower() == "wss:" for t in targets):
            for module in ("anyio.streams.tls", *CERTIFICATE_MODULES):
                importlib.import_module(module)

    async def check(
        self, target: anyprobe.Target, options: WebSocketOptions, ctx: anyprobe.CheckContext
    ) -> anyprobe.Outcome:
        from wsproto import ConnectionType, WSConnection

        assert target.port is not None  # default_ports gives one
        secure = target.url[:4].lower() == "wss:"
        tls = options if secure else None
        server_name = options.server_name or target.host
        async with ctx.connect(
            target.host, target.port, ip_family=options.ip_family, tls=tls,
            server_name=server_name, alpn=("http/1.1",) if secure else (),
        ) as conn:  # fmt: skip
            ctx.metrics.update(address=conn.address, port=target.port)
            if conn.tls is not None:
                ctx.metrics.update(conn.tls.metrics())
            ws = WSConnection(ConnectionType.CLIENT)
            session = _Session(conn, ws, ctx)
            with ctx.phase("upgrade"):
                chosen = await session.upgrade(target, options)
            reply = await _exchange(session, options, ctx)
            with ctx.phase("close"):
                closed_cleanly = await session.close()
        return _outcome(conn, chosen, reply, closed_cleanly, options, ctx)


def _outcome(
    conn: Connection,
    chosen: str | None,
    reply: str | None,
    closed_cleanly: str | None,
    options: WebSocketOptions,
    ctx: anyprobe.CheckContext,
) -> anyprobe.Outcome:
    took = sum(ctx.phases.get(p, 0.0) for p in ("connect", "tls", "upgrade")) * 1000
    parts = [f"upgraded at {conn.where} in {took:.1f} ms"]
    if chosen is not None:
        parts.append(f"subprotocol {chosen}")
    if reply is not None:
        parts.append(reply)
    status = anyprobe.Status.OK
    details: dict[str, Any] = {}
    tls = conn.tls
    if tls is not None:
        details["tls"] = tls.details()
        days = tls.cert_expiry_days()
        if days is not None:
            status, verdict = expiry_verdict(days, options)
            parts.append(verdict)
    if closed_cleanly is not None:
        parts.append(closed_cleanly)
        if status is anyprobe.Status.OK:
            status = anyprobe.Status.WARNING
    return anyprobe.Outcome(status, "; ".join(parts), details=details)


async def _exchange(
    session: _Session, options: WebSocketOptions, ctx: anyprobe.CheckContext
) -> str | None:
    """Send the message, read the reply; what the summary says about it."""
    expectation = _expectation(options)
    if options.send is None and expectation is None:
        return None
    with ctx.phase("message"):
        if options.send is not None:
            await session.send_text(options.send)
        return await session.read_reply(expectation, options.max_message_bytes)


def _close_text(code: int, reason: str) -> str:
    name = CLOSE_CODES.get(code)
    text = f"{code} {name}" if name else str(code)
    return f"{text}: {reason[:60]!r}" if reason else text


class _Session:
    """One WebSocket connection: wsproto's events over a probe's Connection."""

    def __init__(self, conn: Connection, ws: WSConnection, ctx: anyprobe.CheckContext) -> None:
        self.conn = conn
        self.ws = ws
        self.ctx = ctx
        self.received = 0  # bytes received so far

    async def _send(self, event: Event) -> None:
        await self.conn.send(self.ws.send(event))

    async def _events(self, what: str) -> list[Event]:
        """The events of the next bytes received; at the end of the stream, a
        1006 close (after the upgrade) or CheckFailed (during it)."""
        from wsproto.utilities import RemoteProtocolError

        data = await self.conn.receive()
        self.received += len(data)
        try:
            if data:
                self.ws.receive_data(data)
            elif self.ws.state.name in ("CONNECTING", "REJECTING"):
                raise CheckFailed(f"the server closed the connection before {what}")
            else:
                self.ws.receive_data(None)
            return list(self.ws.events())
        except RemoteProtocolError as exc:
            raise CheckFailed(
                f"not a WebSocket server ({exc}): got {show_bytes(data)}", error=exc
            ) from None

    async def upgrade(self, target: anyprobe.Target, options: WebSocketOptions) -> str | None:
        """Send the upgrade request and read the answer; the subprotocol chosen."""
        from wsproto.events import AcceptConnection, RejectConnection, Request

        url = urlsplit(target.url)
        resource = (url.path or "/") + (f"?{url.query}" if url.query else "")
        headers = [(name.encode(), value.encode()) for name, value in options.headers.items()]
        for name, secret in options.header_env.items():
            self.ctx.masker.add_header(name, secret.get_secret_value())
            headers.append((name.encode(), secret.get_secret_value().encode()))
        request = Request(
            host=_host_header(target, options.server_name), target=resource,
            extra_headers=headers, subprotocols=list(options.subprotocols),
        )  # fmt: skip
        self.ctx.trace(f"GET {resource} with Upgrade: websocket")
        await self._send(request)
        while self.received < MAX_UPGRADE_BYTES:
            for event in await self._events("answering the upgrade"):
                if isinstance(event, AcceptConnection):
                    self.ctx.metrics["http_status"] = 101
                    return self._subprotocol(event.subprotocol, options)
                if isinstance(event, RejectConnection):
                    self.ctx.metrics["http_status"] = event.status_code
                    raise CheckFailed(
                        f"expected HTTP 101 (the upgrade), got HTTP {event.status_code}"
                    )
        raise CheckFailed(f"no answer to the upgrade in the first {MAX_UPGRADE_BYTES} bytes")

    def _subprotocol(self, chosen: str | None, options: WebSocketOptions) -> str | None:
        if chosen is not None:
            self.ctx.metrics["subprotocol"] = chosen
            self.ctx.trace(f"the server chose subprotocol {chosen}")
        elif options.subprotocols and options.require_subprotocol:
            offered = ", ".join(options.subprotocols)
            raise CheckFailed(f"offered subprotocols {offered}; the server chose none")
        return chosen

    async def send_text(self, text: str) -> None:
        from wsproto.events import Message

        self.ctx.trace(f"sending a text message of {len(text.encode())} bytes")
        await self._send(Message(data=text))

    async def read_reply(self, expectation: Expectation | None, budget: int) -> str:
        """Read the server's first message (Pings answered on the way), at most
        ``budget`` bytes; it must hold ``expectation``. What the summary says
        about it."""
        from wsproto.events import BytesMessage, CloseConnection, Ping, TextMessage

        message = bytearray()
        total = 0
        # Control frames (a flood of pings) count too: the reading ends.
        start = self.received
        stop_at = start + 16 * budget + MAX_UPGRADE_BYTES
        while self.received < stop_at:
            for event in await self._events("a reply"):
                if isinstance(event, Ping):
                    await self._send(event.response())
                elif isinstance(event, CloseConnection):
                    await self._closed_by_server(event, message, expectation)
                elif isinstance(event, TextMessage | BytesMessage):
                    chunk = event.data.encode() if isinstance(event.data, str) else event.data
                    message += chunk
                    total += len(chunk)
                    self.ctx.metrics["reply_bytes"] = total
                    if total > budget:
                        raise CheckFailed(
                            f"the reply is larger than max_message_bytes ({budget}): "
                            f"{total} bytes so far, {show_bytes(message)}"
                        )
                    if event.message_finished:
                        return await _verdict(expectation, message)
        raise CheckFailed(
            f"no complete reply in {self.received - start} bytes from the server "
            "(control frames, or a reply in many small pieces)"
        )

    async def _closed_by_server(
        self, event: Any, message: bytearray, expectation: Expectation | None
    ) -> None:
        self.ctx.metrics["close_code"] = int(event.code)
        if event.code != 1006:
            # Answer the server's close as RFC 6455 wants; it may be gone already.
            with contextlib.suppress(CheckFailed):
                await self._send(event.response())
        got = f"; got {show_bytes(message)}" if message else ""
        how = (
            "closed the connection without a close frame"
            if event.code == 1006
            else f"closed the WebSocket ({_close_text(event.code, event.reason or '')})"
        )
        raise CheckFailed(f"the server {how} before {_wanted(expectation)}{got}")

    async def close(self) -> str | None:
        """Send a close frame and wait briefly for the server's; None when it came,
        else what went wrong (a warning)."""
        from wsproto.events import CloseConnection, Ping

        try:
            await self._send(CloseConnection(code=1000))
        except CheckFailed as failed:
            return f"the close frame could not be sent: {failed.summary}"
        wait = min(CLOSE_WAIT, max(0.0, self.ctx.remaining() / 2))
        with anyio.move_on_after(wait):
            while True:
                for event in await self._events("its close frame"):
                    if isinstance(event, Ping):
                        continue  # the connection is closing: no Pong is owed
                    if isinstance(event, CloseConnection):
                        self.ctx.metrics["close_code"] = int(event.code)
                        if event.code == 1006:
                            return "the server closed the connection without a close frame"
                        self.ctx.trace(
                            f"the server closed: {_close_text(event.code, event.reason or '')}"
                        )
                        return None
        return f"no close frame from the server within {wait * 1000:.0f} ms"


def _wanted(expectation: Expectation | None) -> str:
    return f"a message with {expectation.text}" if expectation is not None else "a reply"


async def _verdict(expectation: Expectation | None, message: bytearray) -> str:
    if expectation is None:
        return f"got a reply of {len(message)} bytes"
    if await expectation.find(message) is not None:
        return f"got {expectation.text} in {len(message)} bytes"
    raise CheckFailed(
        f"expected {expectation.text} in the reply; got {show_bytes(message)} "
        f"({len(message)} bytes)"
    )


def _host_header(target: anyprobe.Target, server_name: str | None) -> str:
    """``Host``: the server name (``server_name``, as the HTTP probe sends it,
    or the URL's host), with the port unless it is the scheme's own."""
    host = server_name or target.host
    if ":" in host:
        host = f"[{host}]"
    scheme = target.url.split(":", 1)[0].lower()
    if target.port == {"ws": 80, "wss": 443}.get(scheme):
        return host
    return f"{host}:{target.port}"


@anyprobe.hookimpl
def anyprobe_register_probes(register: Any) -> None:
    register(WebSocketProbe)


@anyprobe.hookimpl
def anyprobe_demo_services(register: Any) -> None:
    import importlib.util

    if importlib.util.find_spec("wsproto") is not None:
        from anyprobe.plugins._demo_ws import demo_services

        register(demo_services)
