"""The ICMP probe: ``icmp://HOST``, ping.

A check resolves the host (phase ``resolve``), sends ``count`` echo requests
``interval`` seconds apart and waits for their replies (phase ``rtt``), then
judges the average round trip and the share of requests that got no reply,
like check_ping's ``-w 100,20% -c 500,60%``.

It uses an unprivileged ICMP datagram socket where the kernel allows one
(``net.ipv4.ping_group_range``) and a raw socket otherwise (root or
``CAP_NET_RAW``); see :mod:`anyprobe.plugins._icmp_packets`. Sockets are
non-blocking and waited on with :func:`anyio.wait_readable`, so the same
code runs on asyncio and trio.
"""

from __future__ import annotations

import math
import os
import random
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import SplitResult

import anyio
from pydantic import Field, model_validator

import anyprobe
from anyprobe.net import IpFamily, fail_from_os_error

from ._icmp_packets import (
    MSG_ERRQUEUE,
    NoIcmpSocket,
    SocketType,
    arrival_ns,
    describe_error,
    echo_request,
    only_replies_to,
    open_socket,
    parse_reply,
    prepare,
)

#: Bytes of ancillary data asked of recvmsg: room for the TTL (hop limit).
_ANCILLARY = socket.CMSG_SPACE(4) * 2 + socket.CMSG_SPACE(16)
#: Room for an error queue's sock_extended_err and the sender's address.
_ERROR_ANCILLARY = socket.CMSG_SPACE(16 + 28) * 2
#: Most messages read at one wake-up (a raw socket sees every ICMP message
#: from the target, not only ours).
_READS_PER_WAKE = 64


class IcmpOptions(anyprobe.AddressOptions):
    ip_family: IpFamily = Field(
        "any", description="Address family to ping over: any, ipv4 or ipv6."
    )
    count: int = Field(3, ge=1, le=1000, description="Echo requests to send.")
    interval: float = Field(
        0.2,
        ge=0.002,
        le=60,
        description="Seconds between two echo requests (at least 0.002, as ping allows a user).",
    )
    reply_timeout: float = Field(
        1.0,
        gt=0,
        description="Seconds to wait for replies after the last request is sent; "
        "a reply that has not come by then is lost.",
    )
    payload_size: int = Field(
        56, ge=0, le=65487, description="Bytes of payload in each echo request (ping's -s)."
    )
    ttl: int | None = Field(
        None,
        ge=1,
        le=255,
        description="TTL (IPv6 hop limit) of the requests; default: the system's.",
    )
    rtt_warning: float | None = Field(
        None, gt=0, description="Seconds: an average round trip longer than this is a warning."
    )
    rtt_critical: float | None = Field(
        None, gt=0, description="Seconds: an average round trip longer than this is critical."
    )
    loss_warning: float | None = Field(
        None, ge=0, le=100, description="Percent: this much packet loss or more is a warning."
    )
    loss_critical: float | None = Field(
        None,
        ge=0,
        le=100,
        description="Percent: this much packet loss or more is critical (100% always is).",
    )
    socket_type: SocketType = Field(
        "auto",
        description="auto (an unprivileged datagram socket where the kernel allows it, "
        "else a raw socket), datagram or raw.",
    )

    @model_validator(mode="after")
    def _thresholds_in_order_icmp(self) -> IcmpOptions:
        for name in ("rtt", "loss"):
            warning = getattr(self, f"{name}_warning")
            critical = getattr(self, f"{name}_critical")
            if warning is not None and critical is not None and warning > critical:
                raise ValueError(f"{name}_warning must not be greater than {name}_critical")
        return self


@dataclass
class _Tally:
    """What came back: round trips by sequence number, duplicates, TTLs, errors."""

    sent: int = 0
    rtts: dict[int, float] = field(default_factory=dict)
    duplicates: int = 0
    ttls: list[int] = field(default_factory=list)
    error: str | None = None  # the last ICMP error about our requests, in words
    errors: int = 0

    @property
    def loss(self) -> float:
        return 100.0 * (self.sent - len(self.rtts)) / self.sent if self.sent else 100.0

    def metrics(self) -> dict[str, Any]:
        found: dict[str, Any] = {
            "packets_sent": self.sent,
            "packets_received": len(self.rtts),
            "loss_percent": round(self.loss, 3),
        }
        if self.duplicates:
            found["duplicates"] = self.duplicates
        if self.rtts:
            rtts = list(self.rtts.values())
            average = sum(rtts) / len(rtts)
            # The population standard deviation, as ping's mdev (statistics.pstdev
            # computes it exactly, with fractions: far slower for the same figure).
            spread = math.sqrt(sum((rtt - average) ** 2 for rtt in rtts) / len(rtts))
            found.update(rtt_min=min(rtts), rtt_avg=average, rtt_max=max(rtts), rtt_stddev=spread)
        if self.ttls:
            found["reply_ttl"] = min(self.ttls)
        return found


@dataclass
class _Session:
    """One check's socket and what identifies its replies."""

    sock: socket.socket
    family: int
    raw: bool
    address: str
    local: str
    identifier: int
    payload: bytes
    # sequence -> when it was sent, on the performance counter and in real-time ns
    sequences: dict[int, tuple[float, int]] = field(default_factory=dict)

    def send(self, sequence: int) -> None:
        packet = echo_request(
            self.family, self.identifier, sequence, self.payload, self.local, self.address
        )
        self.sequences[sequence] = (time.perf_counter(), time.time_ns())
        self.sock.send(packet)

    def receive(self, tally: _Tally, ctx: anyprobe.CheckContext) -> None:
        """Read what is waiting; count each reply that answers one of our requests."""
        for index in range(_READS_PER_WAKE):
            try:
                data, ancillary, _flags, _peer = self.sock.recvmsg(65535, _ANCILLARY)
            except (BlockingIOError, InterruptedError):
                if index == 0:  # woken with nothing to read: an error is queued
                    self._receive_errors(tally, ctx)
                return
            except OSError:  # an ICMP error came: the kernel queued it
                self._receive_errors(tally, ctx)
                continue
            arrived = time.perf_counter()
            echo = parse_reply(
                self.family, self.raw, data, ancillary, self.address, self.local, self.identifier
            )
            if echo is None or echo.sequence not in self.sequences or echo.payload != self.payload:
                continue  # another program's ping, or not an echo reply
            if echo.sequence in tally.rtts:
                tally.duplicates += 1
                continue
            rtt = _round_trip(self.sequences[echo.sequence], arrived, arrival_ns(ancillary))
            tally.rtts[echo.sequence] = rtt
            if echo.ttl is not None:
                tally.ttls.append(echo.ttl)
            ctx.trace(f"reply icmp_seq={echo.sequence} ttl={echo.ttl} time={rtt * 1000:.3f} ms")

    def _receive_errors(self, tally: _Tally, ctx: anyprobe.CheckContext) -> None:
        """Drain the error queue: ICMP errors about our requests (unreachable,
        TTL exceeded). Left there, they would wake every wait at once."""
        for _ in range(_READS_PER_WAKE):
            try:
                _data, ancillary, _flags, _peer = self.sock.recvmsg(
                    0, _ERROR_ANCILLARY, MSG_ERRQUEUE
                )
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            text = describe_error(ancillary)
            if text is not None:
                tally.error = text
                tally.errors += 1
                ctx.trace(f"ICMP error: {text}")


def _round_trip(sent: tuple[float, int], arrived: float, kernel_ns: int | None) -> float:
    """The round trip to the kernel's receive time when it is known and
    plausible (the real-time clock may have been stepped), else to the read."""
    read = arrived - sent[0]
    if kernel_ns is not None:
        kernel = (kernel_ns - sent[1]) / 1e9
        if 0 < kernel <= read:
            return kernel
    return read


class IcmpProbe(anyprobe.Probe[IcmpOptions]):
    """Send ICMP echo requests and judge round-trip time and packet loss."""

    name = "icmp"
    schemes = ("icmp",)
    Options = IcmpOptions
    description = "ICMP echo (ping): round trip and packet loss; like check_ping."

    def validate_url(self, url: SplitResult, text: str) -> tuple[str, int | None]:
        """A host, and nothing else: ICMP has no ports."""
        host = url.hostname or ""
        if not host:
            raise anyprobe.TargetError(f"{text}: no host in the URL")
        try:
            port = url.port
        except ValueError:
            port = -1
        if port is not None or url.netloc.endswith(":"):
            raise anyprobe.TargetError(f"{text}: ICMP has no ports (write icmp://HOST)")
        if url.path not in ("", "/") or url.query or url.fragment or "@" in url.netloc:
            raise anyprobe.TargetError(f"{text}: nothing may follow the host (write icmp://HOST)")
        return host, None

    async def check(
        self, target: anyprobe.Target, options: IcmpOptions, ctx: anyprobe.CheckContext
    ) -> anyprobe.Outcome:
        needed = (options.count - 1) * options.interval
        if needed >= ctx.remaining():
            raise anyprobe.CheckFailed(
                f"{options.count} requests {options.interval:g} s apart need {needed:g} s, "
                f"more than the check's timeout of {ctx.timeout:g} s: lower count or "
                "interval, or raise the timeout",
                status=anyprobe.Status.UNKNOWN,
            )
        address = (await ctx.resolve(target.host, 0, options.ip_family))[0]
        ctx.metrics["address"] = address
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        try:
            # Once refused, a kind of socket is not asked for again in the run.
            refused = ctx.shared(("anyprobe.icmp refused sockets", family), dict[str, str])
            sock, kind = open_socket(family, options.socket_type, refused)
        except NoIcmpSocket as exc:
            raise anyprobe.CheckFailed(str(exc), status=anyprobe.Status.UNKNOWN) from None
        ctx.metrics["socket_type"] = kind
        tally = _Tally()
        with sock, ctx.phase("rtt"):
            try:
                local, port = prepare(sock, family, kind == "raw", address, options.ttl)
            except OSError as exc:  # no route: connecting looks the route up
                raise fail_from_os_error(exc) from None
            # A datagram socket's identifier is its port, chosen by the kernel.
            if kind == "datagram":
                identifier = port
            else:
                identifier = random.getrandbits(16)
                only_replies_to(sock, family, identifier)
            ctx.trace(f"{kind} socket from {local}, echo identifier {identifier}")
            session = _Session(
                sock, family, kind == "raw", address, local, identifier, _payload(options)
            )
            await _exchange(session, tally, options, ctx)
            if not tally.rtts:
                raise _all_lost(tally, address)
        return _outcome(tally, address, options, ctx)


def _payload(options: IcmpOptions) -> bytes:
    """A random cookie (this check's alone), then ping's byte pattern, cut to size."""
    pattern = os.urandom(8) + bytes(range(8, 256)) * (options.payload_size // 248 + 1)
    return pattern[: options.payload_size]


async def _exchange(
    session: _Session, tally: _Tally, options: IcmpOptions, ctx: anyprobe.CheckContext
) -> None:
    """Send ``count`` requests ``interval`` apart, reading replies meanwhile,
    then wait ``reply_timeout`` for the rest; stop short of the deadline, so
    that the verdict is on the replies rather than a timeout."""
    stop_at = ctx.deadline - min(0.1, ctx.timeout / 10)
    next_send = anyio.current_time()
    last_reply_at = stop_at
    while True:
        now = anyio.current_time()
        if tally.sent < options.count and next_send <= now < stop_at:
            sequence = tally.sent + 1
            try:
                session.send(sequence)
            except BlockingIOError:
                ctx.trace(f"icmp_seq={sequence} not sent: the socket's buffer is full")
            except OSError as exc:
                raise fail_from_os_error(exc) from None
            tally.sent += 1
            # Behind time (the event loop was busy): no burst to catch up.
            next_send = max(next_send + options.interval, now + options.interval / 2)
            if tally.sent == options.count:
                last_reply_at = min(now + options.reply_timeout, stop_at)
            continue
        if tally.sent == options.count and len(tally.rtts) + tally.errors >= tally.sent:
            return  # every request answered, by its reply or by an ICMP error
        if now >= last_reply_at or now >= stop_at:
            return
        wake = min(next_send if tally.sent < options.count else last_reply_at, stop_at)
        with anyio.move_on_after(max(0.0, wake - now)):
            await anyio.wait_readable(session.sock)
            session.receive(tally, ctx)


def _all_lost(tally: _Tally, address: str) -> anyprobe.CheckFailed:
    """Critical: not one reply (and the ICMP error a router sent, if any)."""
    why = f": {tally.error}" if tally.error else ""
    return anyprobe.CheckFailed(
        f"no reply from {address} to {tally.sent} echo requests (100% loss){why}",
        metrics=tally.metrics(),
    )


def _outcome(
    tally: _Tally, address: str, options: IcmpOptions, ctx: anyprobe.CheckContext
) -> anyprobe.Outcome:
    metrics = tally.metrics()
    ctx.metrics.update(metrics)
    received = len(tally.rtts)
    # The rtt phase is the average round trip (the time spent waiting is the duration).
    ctx.phases["rtt"] = metrics["rtt_avg"]
    summary = (
        f"{received}/{tally.sent} replies from {address} ({tally.loss:.0f}% loss), "
        f"rtt min/avg/max {_ms(metrics['rtt_min'])}/{_ms(metrics['rtt_avg'])}/"
        f"{_ms(metrics['rtt_max'])} ms"
    )
    status, verdicts = _verdict(metrics["rtt_avg"], tally.loss, options)
    return anyprobe.Outcome(status, "; ".join([summary, *verdicts]))


def _verdict(
    rtt_avg: float, loss: float, options: IcmpOptions
) -> tuple[anyprobe.Status, list[str]]:
    """The worst status the thresholds give, and a phrase for each one crossed.

    Round trips must be longer than a threshold to cross it, as ``warning_after``;
    loss crosses at its threshold (``loss_warning = 20`` is reached at 20%), as
    check_ping's ``-w 100,20%``.
    """
    status = anyprobe.Status.OK
    verdicts: list[str] = []
    checks = (
        (options.rtt_critical, rtt_avg, anyprobe.Status.CRITICAL, "rtt_critical"),
        (options.rtt_warning, rtt_avg, anyprobe.Status.WARNING, "rtt_warning"),
        (options.loss_critical, loss, anyprobe.Status.CRITICAL, "loss_critical"),
        (options.loss_warning, loss, anyprobe.Status.WARNING, "loss_warning"),
    )
    crossed: set[str] = set()
    for limit, value, level, name in checks:
        kind = name.split("_")[0]
        if limit is None or kind in crossed:
            continue
        if kind == "rtt" and value > limit:
            verdicts.append(f"rtt avg {_ms(value)} ms over {name} {_ms(limit)} ms")
        elif kind == "loss" and value >= limit:
            verdicts.append(f"{value:.0f}% loss at or over {name} {limit:g}%")
        else:
            continue
        crossed.add(kind)
        if level is anyprobe.Status.CRITICAL or status is anyprobe.Status.OK:
            status = level
    return status, verdicts


def _ms(seconds: float) -> str:
    """Milliseconds, with three significant decimals below 1 ms."""
    millis = seconds * 1000
    return f"{millis:.3f}" if millis < 10 else f"{millis:.1f}"


# -- demo -----------------------------------------------------------------------


@asynccontextmanager
async def demo_services() -> AsyncIterator[list[anyprobe.DemoCheck]]:
    """Ping 127.0.0.1, when this process may open an ICMP socket (no row otherwise)."""
    checks: list[anyprobe.DemoCheck] = []
    with suppress(NoIcmpSocket, OSError):
        sock, _kind = open_socket(socket.AF_INET, "auto")
        sock.close()
        checks.append(
            anyprobe.DemoCheck(
                "icmp: ping loopback",
                "icmp://127.0.0.1",
                anyprobe.Status.OK,
                options={"count": 3, "interval": 0.05},
            )
        )
    yield checks


@anyprobe.hookimpl
def anyprobe_register_probes(register: Any) -> None:
    register(IcmpProbe)


@anyprobe.hookimpl
def anyprobe_demo_services(register: Any) -> None:
    register(demo_services)
