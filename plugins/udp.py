"""The UDP probe: ``udp://HOST:PORT``, send a datagram and expect a reply.

A check resolves the host (phase ``resolve``), sends one datagram (phase
``send``: the ``send`` payload, or an empty datagram) and waits for the first
datagram that comes back (phase ``reply``), which must hold ``expect`` or
match ``expect_regex`` when one is set, like check_udp's ``-s``/``-e``. The
escapes of ``send`` and ``expect`` are the TCP probe's.

The socket is connected (``connect()`` on a datagram socket), so the kernel
hands back what ICMP says about the destination: a port unreachable makes
the next read fail with ``ECONNREFUSED``, reported as refused. When ICMP is
filtered on the way, a closed port and a dropped datagram look the same: no
reply.

:class:`DatagramSocket` is that socket on anyio's ``wait_readable``, shared
with the NTP probe.
"""

from __future__ import annotations

import errno
import functools
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any

import anyio
import anyio.lowlevel
from pydantic import Field, field_validator, model_validator

import anyprobe
from anyprobe import show_bytes
from anyprobe.net import IpFamily, check_destination, describe_os_error
from anyprobe.plugins.tcp import unescape

#: Largest datagram read: the most a UDP datagram can carry over IPv4.
MAX_DATAGRAM = 65535
#: Part of the check's timeout kept back after the wait for a reply, so that
#: the check can still say that nothing came instead of only "timed out".
DEADLINE_MARGIN = 0.1
#: Where the system has it (Linux), a socket created non-blocking: one system
#: call less than ``setblocking(False)`` after.
_SOCK_NONBLOCK: int = getattr(socket, "SOCK_NONBLOCK", 0)
_NONBLOCKING_DATAGRAM = socket.SOCK_DGRAM | _SOCK_NONBLOCK


def where(address: str, port: int) -> str:
    """``127.0.0.1:53``, ``[::1]:53``: an address as a summary shows it."""
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


class DatagramSocket:
    """A UDP socket connected to one address and port, on anyio.

    ``anyio.create_connected_udp_socket`` drops ICMP errors on asyncio (its
    protocol stores them and never wakes the reader; anyio pull request 1295
    proposes to change that), so a closed port would look like a silent one
    there. This socket reads with ``recv()`` after
    ``anyio.wait_readable()``: the error reaches the reader on both backends.
    """

    __slots__ = ("address", "port", "sock")

    def __init__(self, sock: socket.socket, address: str, port: int) -> None:
        self.sock = sock
        self.address = address
        self.port = port

    @classmethod
    def connect(cls, address: str, port: int) -> DatagramSocket:
        """A socket connected to ``address`` (an IP address) and ``port``,
        once the address policy in force allows it; use it as ``with
        DatagramSocket.connect(address, port) as udp:``, which closes it.
        (Opening and closing never wait, so this is a plain context manager:
        no coroutine to run on every check.)"""
        check_destination(address, [address])
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        sock = socket.socket(family, _NONBLOCKING_DATAGRAM)
        try:
            if not _SOCK_NONBLOCK:
                sock.setblocking(False)
            sock.connect((address, port))
        except OSError as exc:
            sock.close()
            raise anyprobe.CheckFailed(
                f"cannot send to {where(address, port)}: {describe_os_error(exc)}", error=exc
            ) from None
        except BaseException:
            sock.close()
            raise
        return cls(sock, address, port)

    def __enter__(self) -> DatagramSocket:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.sock.close()

    def send_nowait(self, data: bytes) -> bool:
        """Send one datagram if the socket takes it at once (True), else False
        (then :meth:`send` waits); OSError when the kernel refuses it."""
        try:
            self.sock.send(data)
        except BlockingIOError:
            return False
        return True

    async def send(self, data: bytes) -> None:
        """Send one datagram; OSError when the kernel refuses it."""
        await anyio.lowlevel.checkpoint_if_cancelled()
        for _ in range(1000):
            try:
                self.sock.send(data)
                return
            except BlockingIOError:
                await anyio.wait_writable(self.sock)
        raise OSError(errno.ENOBUFS, "the socket stayed unwritable")

    async def receive_soon(self) -> bytes | None:
        """The next datagram if one is there once the other tasks have had
        their turn (a checkpoint), else None; OSError as :meth:`receive`.

        Over loopback or a LAN the reply to a datagram sent just before is
        often there by then: reading it straight away spares the event loop
        registering the socket with its selector (epoll) and removing it,
        which costs more than the checkpoint. Call :meth:`receive` when this
        gives None."""
        await anyio.lowlevel.checkpoint()
        try:
            return self.sock.recv(MAX_DATAGRAM)
        except BlockingIOError:
            return None

    async def receive(self) -> bytes:
        """The next datagram; OSError (ConnectionRefusedError for an ICMP port
        unreachable) when the kernel reports an error for the destination."""
        # Wait first (a checkpoint too), then read: receive_soon() has read
        # already. A wake-up with nothing to read (a datagram with a bad
        # checksum is dropped only on read) waits again.
        for _ in range(1000):
            await anyio.wait_readable(self.sock)
            try:
                return self.sock.recv(MAX_DATAGRAM)
            except BlockingIOError:
                continue
        raise OSError(errno.EAGAIN, "the socket kept waking up with nothing to read")


def reply_deadline(
    reply_timeout: float | None, ctx: anyprobe.CheckContext, sent: float | None = None
) -> tuple[float, bool]:
    """When to stop waiting for a reply (on ``anyio.current_time()``'s clock,
    ``reply_timeout`` after ``sent``, default now), and whether that is
    ``reply_timeout``'s doing (else it is the check's deadline, less a margin
    to say what happened)."""
    last = ctx.deadline - min(DEADLINE_MARGIN, ctx.timeout / 10)
    if reply_timeout is None:
        return last, False
    own = (anyio.current_time() if sent is None else sent) + reply_timeout
    return (own, True) if own <= last else (last, False)


async def send_datagram(
    udp: DatagramSocket, data: bytes, ctx: anyprobe.CheckContext, at: str
) -> None:
    """Send ``data`` as phase ``send``; CheckFailed when the kernel refuses it.

    For a reply awaited just after: when the socket takes the datagram at
    once, this is no checkpoint (the wait for the reply is one). The phase is
    timed here rather than with ``ctx.phase()``, whose context manager costs
    more than the send on loopback."""
    outer = ctx.current_phase
    ctx.current_phase = "send"
    started = time.perf_counter()
    try:
        if not udp.send_nowait(data):
            await udp.send(data)
    except OSError as exc:
        raise datagram_error(exc, at) from None
    finally:
        ctx.phases["send"] = time.perf_counter() - started
    ctx.current_phase = outer


def no_reply(
    what: str,
    at: str,
    reply_timeout: float | None,
    own_timeout: bool,
    ctx: anyprobe.CheckContext,
    ignored: list[str] | None = None,
) -> anyprobe.CheckFailed:
    """The failure of a datagram that got no answer in time: ``reply_timeout``
    when the wait was its doing (``own_timeout``), else the check's timeout
    (then its error is a TimeoutError); ``ignored`` names the datagrams that
    came but were not the answer."""
    waited = reply_timeout if own_timeout and reply_timeout else ctx.timeout
    message = (
        f"no {what} from {at} within {waited:g} s (over UDP a lost datagram and a "
        "closed port behind a firewall that drops ICMP look the same)"
    )
    if ignored:
        message += f"; ignored {len(ignored)} datagrams, the last one: {ignored[-1]}"
    return anyprobe.CheckFailed(message, error=None if own_timeout else TimeoutError(message))


def datagram_error(exc: OSError, at: str) -> anyprobe.CheckFailed:
    """The failure for an error the kernel reported on a read or a send."""
    if isinstance(exc, ConnectionRefusedError):
        return anyprobe.CheckFailed(f"refused: ICMP port unreachable from {at}", error=exc)
    return anyprobe.CheckFailed(f"{describe_os_error(exc)} ({at})", error=exc)


class UdpOptions(anyprobe.ProbeOptions):
    ip_family: IpFamily = Field(
        "any", description="Address family to send over: any, ipv4 or ipv6."
    )
    send: str | None = Field(
        None,
        description=r"Payload of the datagram sent, with the TCP probe's escapes \r \n \t "
        r"\0 \e \\ \xHH; none sends an empty datagram. Never shown in results.",
        json_schema_extra={"secret": True},
    )
    expect: str | None = Field(
        None,
        description="Text (same escapes) that the reply datagram must hold; "
        "without expect or expect_regex any reply passes.",
    )
    expect_regex: str | None = Field(
        None,
        description="Regular expression (RE2 syntax, on bytes, multi-line: ^ matches at "
        "each line) that the reply datagram must match; instead of expect.",
    )
    reply_timeout: float | None = Field(
        None,
        gt=0,
        description="Seconds to wait for the reply after sending; default: until the "
        "check's timeout. No reply in time is critical.",
    )

    @field_validator("send", "expect")
    @classmethod
    def _valid_escapes(cls, value: str | None) -> str | None:
        if value is not None:
            unescape(value)
        return value

    @field_validator("expect_regex")
    @classmethod
    def _valid_regex(cls, value: str | None) -> str | None:
        return anyprobe.check_regex(value, binary=True, multiline=True)

    @model_validator(mode="after")
    def _one_expectation(self) -> UdpOptions:
        if self.expect is not None and self.expect_regex is not None:
            raise ValueError("set expect or expect_regex, not both")
        if self.expect == "":
            raise ValueError("expect must not be empty")
        return self


@functools.lru_cache(maxsize=256)
def _payload(send: str | None) -> bytes:
    """The datagram to send for the ``send`` option (kept: it is the same on
    every check of a target)."""
    return unescape(send) if send is not None else b""


@functools.lru_cache(maxsize=256)
def _expectation(expect: str | None, expect_regex: str | None) -> anyprobe.Expectation | None:
    """What the reply must hold: a substring or a regular expression, if
    anything (kept, as :func:`_payload`)."""
    if expect is not None:
        return anyprobe.Expectation.of(unescape(expect))
    if expect_regex is not None:
        return anyprobe.Expectation.of(
            anyprobe.compile_pattern(expect_regex, binary=True, multiline=True)
        )
    return None


class UdpProbe(anyprobe.Probe[UdpOptions]):
    """Send a UDP datagram and wait for the reply, optionally checking it."""

    name = "udp"
    schemes = ("udp",)
    Options = UdpOptions
    description = "UDP send/expect, ICMP port unreachable as refused; like check_udp."

    async def check(
        self, target: anyprobe.Target, options: UdpOptions, ctx: anyprobe.CheckContext
    ) -> anyprobe.Outcome:
        payload = _payload(options.send)
        # A server that echoes the payload must not reveal it in a summary.
        if payload:
            ctx.hide(payload)
        port = target.port
        assert port is not None
        address = (await ctx.resolve(target.host, port, options.ip_family))[0]
        at = where(address, port)
        metrics = ctx.metrics
        metrics["address"] = address
        metrics["port"] = port
        with DatagramSocket.connect(address, port) as udp:
            await send_datagram(udp, payload, ctx, at)
            if ctx.explain:
                ctx.trace(f"sent {len(payload)} bytes to {at}")
            reply = await _wait_for_reply(udp, options.reply_timeout, ctx, at)
        metrics["bytes_received"] = len(reply)
        if ctx.explain:
            ctx.trace(f"received {len(reply)} bytes: {show_bytes(reply)}")
        expected = _expectation(options.expect, options.expect_regex)
        took = ctx.phases["reply"] * 1000
        if expected is None:
            return anyprobe.Outcome.ok(f"reply from {at} in {took:.1f} ms ({len(reply)} bytes)")
        if await expected.find(reply) is None:
            raise anyprobe.CheckFailed(
                f"expected {expected.text} in the reply from {at}; "
                f"got {show_bytes(reply)} ({len(reply)} bytes)"
            )
        ctx.trace(f"{expected.text} found in the reply")
        return anyprobe.Outcome.ok(
            f"reply from {at} in {took:.1f} ms; got {expected.text} in {len(reply)} bytes"
        )


async def _wait_for_reply(
    udp: DatagramSocket, reply_timeout: float | None, ctx: anyprobe.CheckContext, at: str
) -> bytes:
    """The first datagram back, or CheckFailed: refused, an ICMP error, no
    reply. Phase ``reply`` (timed from the call)."""
    outer = ctx.current_phase
    ctx.current_phase = "reply"
    started = time.perf_counter()
    sent = anyio.current_time() if reply_timeout is not None else None
    try:
        reply = await udp.receive_soon()
        if reply is None:
            # Nothing yet: wait, under a deadline of its own only now (a
            # cancel scope is a good part of a check's cost).
            deadline, own_timeout = reply_deadline(reply_timeout, ctx, sent)
            with anyio.CancelScope(deadline=deadline):
                reply = await udp.receive()
            if reply is None:
                raise no_reply("reply", at, reply_timeout, own_timeout, ctx)
    except OSError as exc:
        raise datagram_error(exc, at) from None
    finally:
        ctx.phases["reply"] = time.perf_counter() - started
    ctx.current_phase = outer
    return reply


# -- demo -----------------------------------------------------------------------


@asynccontextmanager
async def demo_services() -> AsyncIterator[list[anyprobe.DemoCheck]]:
    """A UDP echo server (its replies start with ``PONG``), and a port
    nothing listens on."""
    server = await anyio.create_udp_socket(
        family=socket.AF_INET, local_host="127.0.0.1", local_port=0
    )
    port = server.extra(anyio.abc.SocketAttribute.local_port)
    closed = await anyio.create_udp_socket(
        family=socket.AF_INET, local_host="127.0.0.1", local_port=0
    )
    closed_port = closed.extra(anyio.abc.SocketAttribute.local_port)
    await closed.aclose()

    async def echo() -> None:
        while True:
            # A client gone before its echo makes the next read fail (ICMP).
            with suppress(OSError, anyio.BrokenResourceError):
                data, peer = await server.receive()
                await server.sendto(b"PONG " + data, *peer)

    async with server, anyio.create_task_group() as tg:
        tg.start_soon(echo)
        yield [
            anyprobe.DemoCheck(
                "udp: echo server",
                f"udp://127.0.0.1:{port}",
                anyprobe.Status.OK,
                options={"send": "PING", "expect": "PONG"},
            ),
            anyprobe.DemoCheck(
                "udp: closed port", f"udp://127.0.0.1:{closed_port}", anyprobe.Status.CRITICAL
            ),
        ]
        tg.cancel_scope.cancel()


@anyprobe.hookimpl
def anyprobe_register_probes(register: Any) -> None:
    register(UdpProbe)


@anyprobe.hookimpl
def anyprobe_demo_services(register: Any) -> None:
    register(demo_services)
