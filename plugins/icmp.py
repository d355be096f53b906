"""The ICMP probe: ``icmp://HOST``, ping.

A check resolves the host (phase ``resolve``), sends ``count`` echo requests
``interval`` seconds apart and waits for their replies (phase ``rtt``), then
judges the average round trip and the share of requests that got no reply,
like check_ping's ``-w 100,20% -c 500,60%``.

It uses an unprivileged ICMP datagram socket where the kernel allows one
(``net.ipv4.ping_group_range``) and a raw socket otherwise (root or
``CAP_NET_RAW``); see :mod:`anyprobe.plugins._icmp_packets`. The checks
running at the same time share one socket per address family, kind and TTL
(:mod:`anyprobe.plugins._icmp_shared`), opened by the first and closed by the
last. Sockets are non-blocking and waited on with
:func:`anyio.wait_readable`, so the same code runs on asyncio and trio.
"""

from __future__ import annotations

import random
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any
from urllib.parse import SplitResult

import anyio
from pydantic import Field, model_validator

import anyprobe
from anyprobe.net import IpFamily, fail_from_os_error

from ._icmp_packets import NoIcmpSocket, SocketType, open_socket
from ._icmp_shared import EchoSocket, EchoSockets, Exchange, Tally


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
        if needed and needed >= ctx.remaining():
            raise anyprobe.CheckFailed(
                f"{options.count} requests {options.interval:g} s apart need {needed:g} s, "
                f"more than the check's timeout of {ctx.timeout:g} s: lower count or "
                "interval, or raise the timeout",
                status=anyprobe.Status.UNKNOWN,
            )
        address = (await ctx.resolve(target.host, 0, options.ip_family))[0]
        ctx.metrics["address"] = address
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        sockets = ctx.shared("anyprobe.icmp sockets", EchoSockets)
        try:
            # Once refused, a kind of socket is not asked for again in the run.
            refused = ctx.shared(("anyprobe.icmp refused sockets", family), dict[str, str])
            shared = sockets.acquire(family, options.socket_type, options.ttl, refused)
        except NoIcmpSocket as exc:
            raise anyprobe.CheckFailed(str(exc), status=anyprobe.Status.UNKNOWN) from None
        except OSError as exc:
            raise fail_from_os_error(exc) from None
        exchange = Exchange(address, _payload(options), ctx)
        try:
            ctx.metrics["socket_type"] = shared.kind
            if ctx.explain:
                ctx.trace(
                    f"{shared.kind} socket, echo identifier {shared.identifier}, "
                    f"shared by {shared.users} check(s) of the run"
                )
            with ctx.phase("rtt"):
                await _exchange(shared, exchange, options, ctx)
                if not exchange.tally.rtts:
                    raise _all_lost(exchange.tally, address)
        finally:
            shared.forget(exchange)
            sockets.release(shared)
        return _outcome(exchange.tally, address, options, ctx)


def _payload(options: IcmpOptions) -> bytes:
    """A random cookie (this check's alone), then ping's byte pattern, cut to size."""
    cookie = random.getrandbits(64).to_bytes(8, "big")
    return (cookie + _PATTERN[: max(0, options.payload_size - 8)])[: options.payload_size]


#: ping's payload after its 8 first bytes: 8, 9, ... 255, 8, 9 ... (up to 65,487 bytes).
_PATTERN = bytes(range(8, 256)) * (65487 // 248 + 1)


async def _exchange(
    shared: EchoSocket, exchange: Exchange, options: IcmpOptions, ctx: anyprobe.CheckContext
) -> None:
    """Send ``count`` requests ``interval`` apart, reading replies meanwhile,
    then wait ``reply_timeout`` for the rest; stop short of the deadline, so
    that the verdict is on the replies rather than a timeout."""
    tally = exchange.tally
    stop_at = ctx.deadline - min(0.1, ctx.timeout / 10)
    now = next_send = anyio.current_time()
    last_reply_at = stop_at
    while True:
        if tally.sent < options.count and next_send <= now < stop_at:
            try:
                shared.send(exchange)
            except BlockingIOError:
                ctx.trace(f"icmp_seq={tally.sent + 1} not sent: the socket's buffer is full")
            except OSError as exc:
                raise fail_from_os_error(exc) from None
            tally.sent += 1
            # Behind time (the event loop was busy): no burst to catch up.
            next_send = max(next_send + options.interval, now + options.interval / 2)
            if tally.sent == options.count:
                last_reply_at = min(now + options.reply_timeout, stop_at)
            shared.receive_queued(exchange)
        if tally.sent == options.count and len(tally.rtts) + tally.errors >= tally.sent:
            return  # every request answered, by its reply or by an ICMP error
        if now >= last_reply_at or now >= stop_at:
            return
        wake = min(next_send if tally.sent < options.count else last_reply_at, stop_at)
        await shared.wait(exchange, wake)
        now = anyio.current_time()


def _all_lost(tally: Tally, address: str) -> anyprobe.CheckFailed:
    """Critical: not one reply (and the ICMP error a router sent, if any)."""
    why = f": {tally.error}" if tally.error else ""
    return anyprobe.CheckFailed(
        f"no reply from {address} to {tally.sent} echo requests (100% loss){why}",
        metrics=tally.metrics(),
    )


def _outcome(
    tally: Tally, address: str, options: IcmpOptions, ctx: anyprobe.CheckContext
) -> anyprobe.Outcome:
    metrics = tally.metrics()
    ctx.metrics.update(metrics)
    rtt_min, rtt_avg, rtt_max = metrics["rtt_min"], metrics["rtt_avg"], metrics["rtt_max"]
    # The rtt phase is the average round trip (the time spent waiting is the duration).
    ctx.phases["rtt"] = rtt_avg
    average = _ms(rtt_avg)
    if rtt_min == rtt_max:  # one reply, or all alike: formatted once
        spread = f"{average}/{average}/{average}"
    else:
        spread = f"{_ms(rtt_min)}/{average}/{_ms(rtt_max)}"
    loss = tally.loss
    summary = (
        f"{len(tally.rtts)}/{tally.sent} replies from {address} ({loss:.0f}% loss), "
        f"rtt min/avg/max {spread} ms"
    )
    if (
        options.rtt_warning is None
        and options.rtt_critical is None
        and options.loss_warning is None
        and options.loss_critical is None
    ):
        return anyprobe.Outcome(anyprobe.Status.OK, summary)
    status, verdicts = _verdict(rtt_avg, loss, options)
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
    for kind, value, critical, warning in (
        ("rtt", rtt_avg, options.rtt_critical, options.rtt_warning),
        ("loss", loss, options.loss_critical, options.loss_warning),
    ):
        for level, limit in (
            (anyprobe.Status.CRITICAL, critical),
            (anyprobe.Status.WARNING, warning),
        ):
            if limit is None:
                continue
            name = f"{kind}_{level.value}"
            if kind == "rtt" and value > limit:
                verdicts.append(f"rtt avg {_ms(value)} ms over {name} {_ms(limit)} ms")
            elif kind == "loss" and value >= limit:
                verdicts.append(f"{value:.0f}% loss at or over {name} {limit:g}%")
            else:
                continue
            if level is anyprobe.Status.CRITICAL or status is anyprobe.Status.OK:
                status = level
            break  # the worst threshold crossed speaks for this measure
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
