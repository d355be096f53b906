"""The NTP probe: ``ntp://HOST`` (port 123 unless the URL gives one).

A check sends one NTPv4 client request (mode 3) and reads the server's reply
(mode 4): the clock offset between this host and the server, the round trip,
the server's stratum, root delay, root dispersion and reference id. The
offset is held against ``offset_warning`` and ``offset_critical`` as
check_ntp_time's ``-w``/``-c``; a server that says it is not synchronised
(stratum 16, or leap indicator 3) or that sends a kiss-o'-death (stratum 0,
``RATE``, ``DENY``...) is critical.

The request's transmit timestamp is random (the NTP data minimization
draft's advice: it tells nothing about the client's clock, and an off-path
attacker cannot guess it);
a reply whose origin timestamp is not that value is ignored, as is anything
that is not a server reply. Offset and delay follow RFC 5905 section 8, with
the send and receive times taken here.
"""

from __future__ import annotations

import os
import socket
import struct
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from typing import Any

import anyio
from pydantic import Field, model_validator

import anyprobe
from anyprobe.net import IpFamily
from anyprobe.plugins.udp import (
    DatagramSocket,
    datagram_error,
    no_reply,
    reply_deadline,
    send_datagram,
    where,
)

#: Seconds from the NTP epoch (1900) to the Unix epoch (1970).
NTP_TO_UNIX = 2208988800
#: An NTP era: the 32-bit seconds field wraps after this many seconds (2036).
ERA = 1 << 32
PACKET = struct.Struct("!BBbbII4sQQQQ")
#: Most datagrams ignored (not the reply to this request) before giving up.
MAX_IGNORED = 32
UNSYNCHRONISED_STRATUM = 16

#: Kiss-o'-death codes of RFC 5905 section 7.4, with what they mean.
KISS_CODES = {
    "ACST": "the association belongs to a unicast server",
    "AUTH": "server authentication failed",
    "AUTO": "autokey sequence failed",
    "BCST": "the association belongs to a broadcast server",
    "CRYP": "cryptographic authentication or identification failed",
    "DENY": "access denied by remote server",
    "DROP": "lost peer in symmetric mode",
    "RSTR": "access denied due to local policy",
    "INIT": "the association has not yet synchronized for the first time",
    "MCST": "the association belongs to a dynamically discovered server",
    "NKEY": "no key found",
    "NTSN": "NTS negative-acknowledgement",
    "RATE": "rate exceeded: the server asks the client to poll less often",
    "RMOT": "alteration of association from a remote host running ntpdc",
    "STEP": "a step change in system time has occurred",
}


class NtpOptions(anyprobe.ProbeOptions):
    ip_family: IpFamily = Field("any", description="Address family to ask over: any, ipv4 or ipv6.")
    offset_warning: float = Field(
        0.5,
        ge=0,
        description="Seconds: a clock offset larger than this (either way) is a warning "
        "(check_ntp_time -w).",
    )
    offset_critical: float = Field(
        1.0,
        ge=0,
        description="Seconds: a clock offset larger than this (either way) is critical "
        "(check_ntp_time -c).",
    )
    reply_timeout: float | None = Field(
        None,
        gt=0,
        description="Seconds to wait for the server's reply; default: until the check's "
        "timeout. No reply in time is critical.",
    )

    @model_validator(mode="after")
    def _offsets_in_order(self) -> NtpOptions:
        if self.offset_warning > self.offset_critical:
            raise ValueError("offset_warning must not be greater than offset_critical")
        return self


@dataclass(slots=True)
class NtpReply:
    """The fields of a server's reply that a check reads: root delay and
    dispersion in seconds, timestamps as sent (64-bit NTP timestamps).

    Read-only by convention, not frozen: a frozen dataclass's ``__init__``
    costs more than the rest of parsing, once per check."""

    leap: int
    version: int
    mode: int
    stratum: int
    root_delay: float
    root_dispersion: float
    reference_id: bytes
    origin: int
    receive: int
    transmit: int

    @classmethod
    def parse(cls, data: bytes) -> NtpReply | None:
        """The reply in ``data``, or None when it is no NTP packet."""
        if len(data) < PACKET.size:
            return None
        first, stratum, _poll, _precision, delay, dispersion, refid, _ref, origin, rx, tx = (
            PACKET.unpack_from(data)
        )
        # By position, in the order of the fields (keywords cost more, once per check).
        return cls(
            first >> 6,  # leap
            (first >> 3) & 7,  # version
            first & 7,  # mode
            stratum,
            delay / 65536,  # root_delay
            dispersion / 65536,  # root_dispersion
            refid,  # reference_id
            origin,
            rx,  # receive
            tx,  # transmit
        )

    def reference(self) -> str:
        """The reference id as people read it: a source code (``GPS``, ``LOCL``)
        at stratum 0 and 1, else the IPv4 address (or IPv6 hash) of the upstream."""
        if self.stratum <= 1:
            return self.reference_id.rstrip(b"\0").decode("ascii", errors="replace")
        return socket.inet_ntoa(self.reference_id)


def to_unix(timestamp: int, near: float) -> float:
    """An NTP timestamp (32.32 fixed point) as Unix time, in the era nearest
    to ``near`` (Unix time), so that it stays right after 2036's wrap."""
    seconds = (timestamp >> 32) + (timestamp & 0xFFFFFFFF) / ERA - NTP_TO_UNIX
    return seconds + round((near - seconds) / ERA) * ERA


def request(transmit: int) -> bytes:
    """An NTPv4 client request (mode 3) whose transmit timestamp is ``transmit``."""
    return PACKET.pack((0 << 6) | (4 << 3) | 3, 0, 0, 0, 0, 0, b"\0" * 4, 0, 0, 0, transmit)


#: A request without its transmit timestamp (the packet's last 8 bytes).
REQUEST_HEAD = request(0)[:-8]


class NtpProbe(anyprobe.Probe[NtpOptions]):
    """Ask an NTP server for the time; verdict on offset and synchronisation."""

    name = "ntp"
    schemes = ("ntp",)
    Options = NtpOptions
    default_ports = {"ntp": 123}
    description = "NTP offset, stratum, root delay and dispersion; like check_ntp_time."

    async def check(
        self, target: anyprobe.Target, options: NtpOptions, ctx: anyprobe.CheckContext
    ) -> anyprobe.Outcome:
        port = target.port
        assert port is not None
        address = (await ctx.resolve(target.host, port, options.ip_family))[0]
        at = where(address, port)
        metrics = ctx.metrics
        metrics["address"] = address
        metrics["port"] = port
        # request(transmit), without packing the fields that never change.
        random = os.urandom(8)
        transmit = int.from_bytes(random, "big")
        with DatagramSocket.connect(address, port) as udp:
            data = REQUEST_HEAD + random
            sent_at = time.time()
            started = time.perf_counter()
            await send_datagram(udp, data, ctx, at)
            if ctx.explain:
                ctx.trace(f"sent an NTPv4 client request to {at}")
            reply = await _wait_for_reply(udp, transmit, options.reply_timeout, ctx, at)
            received_at = sent_at + (time.perf_counter() - started)
        return _verdict(reply, sent_at, received_at, options, ctx, at)


async def _wait_for_reply(
    udp: DatagramSocket,
    transmit: int,
    reply_timeout: float | None,
    ctx: anyprobe.CheckContext,
    at: str,
) -> NtpReply:
    """The server's reply to this request; datagrams that are not are ignored.
    Phase ``reply`` (timed from the call)."""
    outer = ctx.current_phase
    ctx.current_phase = "reply"
    started = time.perf_counter()
    sent = anyio.current_time() if reply_timeout is not None else None
    ignored: list[str] = []
    try:
        # The reply is often there after a checkpoint: no cancel scope then.
        reply = _reply_or_why(await udp.receive_soon(), transmit, ctx, at, ignored)
        if reply is None:
            deadline, own_timeout = reply_deadline(reply_timeout, ctx, sent)
            with anyio.CancelScope(deadline=deadline):
                while reply is None and len(ignored) < MAX_IGNORED:
                    reply = _reply_or_why(await udp.receive(), transmit, ctx, at, ignored)
                if reply is None:
                    raise anyprobe.CheckFailed(
                        f"no reply to the request from {at} in {MAX_IGNORED} datagrams; "
                        f"the last one: {ignored[-1]}"
                    )
            if reply is None:
                raise no_reply("NTP reply", at, reply_timeout, own_timeout, ctx, ignored)
    except OSError as exc:
        raise datagram_error(exc, at) from None
    finally:
        ctx.phases["reply"] = time.perf_counter() - started
    ctx.current_phase = outer
    return reply


def _reply_or_why(
    data: bytes | None, transmit: int, ctx: anyprobe.CheckContext, at: str, ignored: list[str]
) -> NtpReply | None:
    """``data`` as the reply to the request, or None: nothing came yet, or it
    is not the reply (why is traced and added to ``ignored``)."""
    if data is None:
        return None
    reply = NtpReply.parse(data)
    why = _not_the_reply(reply, transmit, len(data))
    if why is None:
        return reply
    ctx.trace(f"ignored a datagram from {at}: {why}")
    ignored.append(why)
    return None


def _not_the_reply(reply: NtpReply | None, transmit: int, size: int) -> str | None:
    """Why a datagram is not the reply to the request sent, or None when it is."""
    if reply is None:
        return f"{size} bytes, shorter than an NTP packet"
    if reply.mode != 4:
        return f"mode {reply.mode}, not a server reply (mode 4)"
    if reply.origin != transmit:
        return "its origin timestamp is not the request's transmit timestamp"
    if reply.transmit == 0 and reply.stratum != 0:
        return "its transmit timestamp is zero"
    return None


def _verdict(
    reply: NtpReply,
    sent_at: float,
    received_at: float,
    options: NtpOptions,
    ctx: anyprobe.CheckContext,
    at: str,
) -> anyprobe.Outcome:
    """Status and summary for a reply to the request: synchronisation, then offset."""
    reference = reply.reference()
    metrics = ctx.metrics
    metrics["stratum"] = reply.stratum
    metrics["root_delay"] = reply.root_delay
    metrics["root_dispersion"] = reply.root_dispersion
    metrics["reference_id"] = reference
    details = {"leap": reply.leap, "version": reply.version}
    if ctx.explain:
        ctx.trace(
            f"reply from {at}: leap indicator {reply.leap}, version {reply.version}, "
            f"stratum {reply.stratum}, reference {reference}, "
            f"root delay {reply.root_delay:g} s, root dispersion {reply.root_dispersion:g} s"
        )
    if reply.stratum == 0:
        code = reference
        meaning = KISS_CODES.get(code, "an unknown kiss code")
        return anyprobe.Outcome.critical(
            f"kiss-o'-death {code} from {at}: {meaning}", details=details
        )
    if reply.stratum >= UNSYNCHRONISED_STRATUM:
        return anyprobe.Outcome.critical(
            f"{at} is not synchronised (stratum {reply.stratum})", details=details
        )
    if reply.leap == 3:
        return anyprobe.Outcome.critical(
            f"{at} is not synchronised (leap indicator 3, stratum {reply.stratum})",
            details=details,
        )
    server_received = to_unix(reply.receive, sent_at)
    server_sent = to_unix(reply.transmit, sent_at)
    offset = ((server_received - sent_at) + (server_sent - received_at)) / 2
    rtt = max(0.0, (received_at - sent_at) - (server_sent - server_received))
    metrics["offset"] = offset
    metrics["rtt"] = rtt
    summary = (
        f"offset {_seconds(offset)} from {at}, stratum {reply.stratum} ({reference}), "
        f"rtt {rtt * 1000:.1f} ms"
    )
    status = anyprobe.Status.OK
    if abs(offset) > options.offset_critical:
        status = anyprobe.Status.CRITICAL
        summary += f"; more than offset_critical ({options.offset_critical:g} s)"
    elif abs(offset) > options.offset_warning:
        status = anyprobe.Status.WARNING
        summary += f"; more than offset_warning ({options.offset_warning:g} s)"
    return anyprobe.Outcome(status, summary, details=details)


def _seconds(value: float) -> str:
    """``+0.123 ms``, ``-2.500 s``: an offset with its sign, in a readable unit."""
    if abs(value) < 1:
        return f"{value * 1000:+.3f} ms"
    return f"{value:+.3f} s"


# -- demo -----------------------------------------------------------------------


async def serve_ntp(server: anyio.abc.UDPSocket, stratum: int, offset: float = 0.0) -> None:
    """Answer every client request on ``server`` as a server of ``stratum``
    whose clock is ``offset`` seconds off; runs until cancelled."""
    while True:
        with suppress(OSError, anyio.BrokenResourceError):
            data, peer = await server.receive()
            received = time.time() + offset
            asked = NtpReply.parse(data)
            if asked is None or asked.mode != 3:
                continue
            refid = b"LOCL" if stratum == 1 else b"\x7f\x7f\x01\x01"
            now = _ntp_time(time.time() + offset)
            reply = PACKET.pack(
                (0 << 6) | (4 << 3) | 4, stratum, 6, -20, 0, 66, refid,
                _ntp_time(received), asked.transmit, _ntp_time(received), now,
            )  # fmt: skip
            await server.sendto(reply, *peer)


def _ntp_time(unix: float) -> int:
    """Unix time as an NTP timestamp (32.32 fixed point, era 0 wrapped)."""
    value = unix + NTP_TO_UNIX
    return (int(value) % ERA) << 32 | int((value % 1) * ERA)


@asynccontextmanager
async def demo_services() -> AsyncIterator[list[anyprobe.DemoCheck]]:
    """An NTP server whose clock is right, and one two seconds off."""
    servers = [
        await anyio.create_udp_socket(family=socket.AF_INET, local_host="127.0.0.1")
        for _ in range(2)
    ]
    ports = [s.extra(anyio.abc.SocketAttribute.local_port) for s in servers]
    async with servers[0], servers[1], anyio.create_task_group() as tg:
        tg.start_soon(serve_ntp, servers[0], 2)
        tg.start_soon(serve_ntp, servers[1], 2, 2.0)
        yield [
            anyprobe.DemoCheck(
                "ntp: clock in sync", f"ntp://127.0.0.1:{ports[0]}", anyprobe.Status.OK
            ),
            anyprobe.DemoCheck(
                "ntp: clock 2 s off", f"ntp://127.0.0.1:{ports[1]}", anyprobe.Status.CRITICAL
            ),
        ]
        tg.cancel_scope.cancel()


@anyprobe.hookimpl
def anyprobe_register_probes(register: Any) -> None:
    register(NtpProbe)


@anyprobe.hookimpl
def anyprobe_demo_services(register: Any) -> None:
    register(demo_services)
