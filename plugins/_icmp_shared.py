"""One ICMP socket shared by the concurrent icmp checks of a run.

Opening an ICMP socket, setting its options and attaching a kernel filter
cost more than the echo exchange itself, so the checks of a run share one
socket per address family, kind of socket (datagram or raw) and TTL. It is
not connected: requests go out with ``sendto`` and replies from every target
come in on it. Each request carries a sequence number that no other request
in flight on the socket has, and each check's payload starts with a random
cookie; a reply goes to the check whose sequence number, cookie and address
it carries. ICMP errors (unreachable, TTL exceeded) quote the request they
are about, so they go to the check that sent it.

Nothing runs in the background. While checks wait, one of them (the reader)
waits for the socket to be readable and hands every message it reads to its
check; the others wait on an event. When the reader's own wait ends (a
reply for it, its next request due, its deadline, a cancellation), it hands
the role to a waiting check. No task is started, so none can outlive a
check, and nothing blocks the event loop.

The sockets belong to the run (``ctx.shared``): the first check that needs
one opens it and the run closes it when it ends (core calls ``aclose`` on
its shared resources), whether the run is ``anyprobe check``, a server's
lifetime or one ``anyprobe.check()`` call of a host program (each call its
own run, with its own sockets). A probe called outside a run, with a context
of its own, has its sockets closed when that context is dropped.
"""

from __future__ import annotations

import contextlib
import math
import random
import socket
import time
import weakref
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

import anyio

import anyprobe

from ._icmp_packets import (
    ECHO_REQUEST,
    MSG_ERRQUEUE,
    SocketType,
    arrival_ns,
    describe_error,
    echo_request,
    only_replies_to,
    open_socket,
    parse_reply,
    set_up,
)

#: Bytes of ancillary data asked of recvmsg: the TTL (hop limit) and the
#: kernel's receive time.
_ANCILLARY = socket.CMSG_SPACE(4) * 2 + socket.CMSG_SPACE(16)
#: Room for an error queue's sock_extended_err and the sender's address.
_ERROR_ANCILLARY = socket.CMSG_SPACE(16 + 28) * 2
#: Bytes of an ICMP error's quote read back: the request's ICMP header.
_QUOTED = 64
#: Most messages read at one wake-up.
_READS_PER_WAKE = 64
#: Sequence numbers of one socket (16 bits on the wire).
_SEQUENCES = 1 << 16
#: Receive buffer asked for a shared socket: room for the replies of many
#: checks at once, so that a busy event loop does not turn into packet loss.
_RECEIVE_BUFFER = 1 << 20
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)


@dataclass
class Tally:
    """What came back to one check: round trips by request number (1 to
    ``count``), duplicates, TTLs, ICMP errors."""

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
        rtts = self.rtts
        received = len(rtts)
        found: dict[str, Any] = {
            "packets_sent": self.sent,
            "packets_received": received,
            "loss_percent": round(self.loss, 3),
        }
        if self.duplicates:
            found["duplicates"] = self.duplicates
        if received == 1:
            [rtt] = rtts.values()
            found["rtt_min"] = found["rtt_avg"] = found["rtt_max"] = rtt
            found["rtt_stddev"] = 0.0
        elif received:
            values = list(rtts.values())
            average = sum(values) / received
            # The population standard deviation, as ping's mdev (statistics.pstdev
            # computes it exactly, with fractions: far slower for the same figure).
            spread = math.sqrt(sum((rtt - average) ** 2 for rtt in values) / received)
            found.update(
                rtt_min=min(values), rtt_avg=average, rtt_max=max(values), rtt_stddev=spread
            )
        if self.ttls:
            found["reply_ttl"] = min(self.ttls)
        return found


def round_trip(sent: tuple[float, int], arrived: float, kernel_ns: int | None) -> float:
    """The round trip to the kernel's receive time when it is known and
    plausible (the real-time clock may have been stepped), else to the read."""
    read = arrived - sent[0]
    if kernel_ns is not None:
        kernel = (kernel_ns - sent[1]) / 1e9
        if 0 < kernel <= read:
            return kernel
    return read


class Exchange:
    """One check's requests on a shared socket, and what came back to it."""

    __slots__ = ("address", "ctx", "event", "news", "payload", "requests", "tally")

    def __init__(self, address: str, payload: bytes, ctx: anyprobe.CheckContext) -> None:
        self.address = address
        self.payload = payload
        self.ctx = ctx
        self.tally = Tally()
        #: wire sequence number -> (request number, sent on the performance
        #: counter, sent in real-time ns)
        self.requests: dict[int, tuple[int, float, int]] = {}
        #: Replies and errors counted so far: a wait ends when it changes.
        self.news = 0
        #: Set while the check waits as a follower (see EchoSocket.wait).
        self.event: anyio.Event | None = None

    def from_target(self, peer: Any) -> bool:
        """Whether ``peer`` (recvmsg's address) is this check's target."""
        if not peer:
            return False
        text = str(peer[0])
        return text == self.address or _same_address(text, self.address)

    def reply(self, sequence: int, payload: bytes, ttl: int | None, rtt: float) -> None:
        if payload != self.payload:
            return  # an earlier check's request that used the same sequence number
        index = self.requests[sequence][0]
        tally = self.tally
        if index in tally.rtts:
            tally.duplicates += 1
            return
        tally.rtts[index] = rtt
        if ttl is not None:
            tally.ttls.append(ttl)
        self._news()
        if self.ctx.explain:
            self.ctx.trace(f"reply icmp_seq={index} ttl={ttl} time={rtt * 1000:.3f} ms")

    def failed(self, text: str) -> None:
        self.tally.error = text
        self.tally.errors += 1
        self._news()
        self.ctx.trace(f"ICMP error: {text}")

    def _news(self) -> None:
        self.news += 1
        if self.event is not None:
            self.event.set()


def _same_address(first: str, second: str) -> bool:
    """The same IP address written two ways (a zone, zeros left out)."""
    family = socket.AF_INET6 if ":" in first else socket.AF_INET
    try:
        return socket.inet_pton(family, first.split("%")[0]) == socket.inet_pton(
            family, second.split("%")[0]
        )
    except OSError:
        return False


class EchoSocket:
    """A shared ICMP socket: requests out, replies and errors to their checks."""

    def __init__(self, sock: socket.socket, family: int, kind: str, identifier: int) -> None:
        self.sock = sock
        self.family = family
        self.kind = kind
        self.raw = kind == "raw"
        self.identifier = identifier
        self.users = 0
        #: wire sequence number -> the check whose request it is
        self._pending: dict[int, Exchange] = {}
        self._next_sequence = 1
        self._reading = False
        #: The follower handed the reader's role and not yet running, if any.
        self._heir: Exchange | None = None
        #: Followers, in the order they began to wait.
        self._waiting: dict[Exchange, None] = {}

    @classmethod
    def open(
        cls,
        family: int,
        socket_type: SocketType,
        ttl: int | None,
        refused: dict[str, str],
        taken: Collection[int] = (),
    ) -> EchoSocket:
        """Open and set up a socket (raises NoIcmpSocket, OSError); a raw
        one gets an identifier not in ``taken`` (the run's other sockets')."""
        sock, kind = open_socket(family, socket_type, refused)
        try:
            port = set_up(sock, family, kind == "raw", ttl)
            for option in (SO_RCVBUFFORCE, socket.SO_RCVBUF):  # FORCE: root may pass rmem_max
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, option, _RECEIVE_BUFFER)
                    break
            # A datagram socket's identifier is its port, chosen by the kernel.
            if kind == "datagram":
                identifier = port
            else:
                start = random.getrandbits(16)
                identifier = next(
                    (start + n) % _SEQUENCES
                    for n in range(_SEQUENCES)
                    if (start + n) % _SEQUENCES not in taken
                )
                only_replies_to(sock, family, identifier)
        except BaseException:
            sock.close()
            raise
        return cls(sock, family, kind, identifier)

    def close(self) -> None:
        self.sock.close()

    # -- sending -----------------------------------------------------------------

    def send(self, exchange: Exchange) -> int:
        """Send ``exchange``'s next request; its request number. Raises
        BlockingIOError when the socket's buffer is full, OSError when the
        kernel refuses (no route)."""
        sequence = self._free_sequence()
        index = exchange.tally.sent + 1
        packet = echo_request(self.family, self.identifier, sequence, exchange.payload)
        exchange.requests[sequence] = (index, time.perf_counter(), time.time_ns())
        self._pending[sequence] = exchange
        destination = (exchange.address, 0)
        try:
            self.sock.sendto(packet, destination)
        except BlockingIOError:
            raise
        except OSError:
            # The kernel also reports an ICMP error about an earlier request
            # (another check's) on the next call, once: a refusal of this
            # request comes again.
            self.sock.sendto(packet, destination)
        return index

    def _free_sequence(self) -> int:
        for _ in range(_SEQUENCES):
            sequence = self._next_sequence
            self._next_sequence = (sequence + 1) % _SEQUENCES
            if sequence not in self._pending:
                return sequence
        raise anyprobe.CheckFailed(
            f"{_SEQUENCES} echo requests in flight on one socket: lower the concurrency",
            status=anyprobe.Status.UNKNOWN,
        )

    def forget(self, exchange: Exchange) -> None:
        """The check is over: replies to its requests are no longer counted."""
        pending = self._pending
        for sequence in exchange.requests:
            if pending.get(sequence) is exchange:
                del pending[sequence]

    # -- waiting -----------------------------------------------------------------

    async def wait(self, exchange: Exchange, until: float) -> None:
        """Until a reply or an error comes for ``exchange``, or ``until`` (on
        anyio's clock): as the reader when no other check reads, else as a
        follower that the reader wakes."""
        seen = exchange.news
        try:
            with anyio.CancelScope(deadline=until):
                while exchange.news == seen:
                    if self._reading:
                        await self._follow(exchange)
                    else:
                        await self._read(exchange, seen)
        finally:
            if self._heir is exchange:  # handed the role, leaving without it
                self._heir = None
                self._hand_off()

    async def _follow(self, exchange: Exchange) -> None:
        exchange.event = event = anyio.Event()
        self._waiting[exchange] = None
        try:
            await event.wait()
        finally:
            del self._waiting[exchange]
            exchange.event = None

    async def _read(self, exchange: Exchange, seen: int) -> None:
        self._reading = True
        self._heir = None
        try:
            while exchange.news == seen:
                await anyio.wait_readable(self.sock)
                self._receive()
        finally:
            self._reading = False
            self._hand_off()

    def _hand_off(self) -> None:
        """Wake one follower to take the reader's role (one still asleep: a
        follower woken by a reply may not wait again)."""
        if self._reading or self._heir is not None:
            return
        for follower in self._waiting:
            event = follower.event
            if event is not None and not event.is_set():
                self._heir = follower
                event.set()
                return

    # -- receiving ---------------------------------------------------------------

    def receive_queued(self, exchange: Exchange) -> None:
        """Read the replies already queued, without waiting, up to the first
        one for ``exchange``: a near target's reply is often there as soon as
        the request is sent (on loopback the kernel answers within the send),
        and then the check does not wait for it. Costs one read that finds
        nothing otherwise. What is left queued wakes the reader, if a check
        waits."""
        self._receive(woken=False, until_news_for=exchange)

    def _receive(self, woken: bool = True, until_news_for: Exchange | None = None) -> None:
        """Read what is waiting; hand each reply to the check it answers."""
        sock, family, raw, identifier = self.sock, self.family, self.raw, self.identifier
        pending = self._pending
        news = until_news_for.news if until_news_for is not None else -1
        for index in range(_READS_PER_WAKE):
            if until_news_for is not None and until_news_for.news != news:
                return
            try:
                data, ancillary, _flags, peer = sock.recvmsg(65535, _ANCILLARY)
            except (BlockingIOError, InterruptedError):
                if index == 0 and woken:  # woken with nothing to read: an error is queued
                    self._receive_errors()
                return
            except OSError:  # an ICMP error came: the kernel queued it
                self._receive_errors()
                continue
            arrived = time.perf_counter()
            echo = parse_reply(family, raw, data, ancillary, identifier)
            if echo is None:
                continue  # not an echo reply of ours
            exchange = pending.get(echo.sequence)
            if exchange is None or not exchange.from_target(peer):
                continue  # a late reply, to a check that is over
            sent = exchange.requests[echo.sequence]
            rtt = round_trip((sent[1], sent[2]), arrived, arrival_ns(ancillary))
            exchange.reply(echo.sequence, echo.payload, echo.ttl, rtt)

    def _receive_errors(self) -> None:
        """Drain the error queue: each ICMP error about a request of ours to
        the check that sent it. Left there, errors would wake the reader at once."""
        for _ in range(_READS_PER_WAKE):
            try:
                data, ancillary, _flags, peer = self.sock.recvmsg(
                    _QUOTED, _ERROR_ANCILLARY, MSG_ERRQUEUE
                )
            except OSError:  # empty (BlockingIOError), or nothing more to read
                return
            exchange = self._quoted_request(data, peer)
            text = describe_error(ancillary)
            if exchange is not None and text is not None:
                exchange.failed(text)

    def _quoted_request(self, data: bytes, peer: Any) -> Exchange | None:
        """The check whose request an ICMP error quotes (the request's ICMP
        header is what the kernel hands back; ``peer`` is its destination)."""
        if len(data) < 8 or data[0] != ECHO_REQUEST[self.family]:
            return None
        identifier = int.from_bytes(data[4:6], "big")
        exchange = self._pending.get(int.from_bytes(data[6:8], "big"))
        if identifier != self.identifier or exchange is None:
            return None
        return exchange if exchange.from_target(peer) else None


class EchoSockets:
    """The run's shared ICMP sockets (``ctx.shared``), by address family,
    socket type asked for and TTL: opened by the first check that needs one,
    closed when the run ends (:meth:`aclose`, which core calls), or when the
    run's resources are dropped without it (a probe called outside a run)."""

    def __init__(self) -> None:
        self._open: dict[tuple[int, str, int | None], EchoSocket] = {}
        weakref.finalize(self, _close_all, self._open)

    def acquire(
        self, family: int, socket_type: SocketType, ttl: int | None, refused: dict[str, str]
    ) -> EchoSocket:
        """The socket for these settings, opened if none is; every acquire
        is paired with a :meth:`release`."""
        key = (family, socket_type, ttl)
        shared = self._open.get(key)
        if shared is None:
            taken = {other.identifier for other in self._open.values()}
            shared = EchoSocket.open(family, socket_type, ttl, refused, taken)
            self._open[key] = shared
        shared.users += 1
        return shared

    def release(self, shared: EchoSocket) -> None:
        """One check less on ``shared`` (it stays open for the run's next checks)."""
        shared.users -= 1

    async def aclose(self) -> None:
        """Close the sockets: the run is over, no check uses them any more."""
        _close_all(self._open)


def _close_all(sockets: dict[Any, EchoSocket]) -> None:
    for shared in sockets.values():
        shared.close()
    sockets.clear()
