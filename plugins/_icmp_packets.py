"""ICMP echo packets and sockets for the icmp probe: building, checksums, parsing.

Two kinds of socket send echo requests:

- an ICMP *datagram* socket (``SOCK_DGRAM`` with ``IPPROTO_ICMP`` or
  ``IPPROTO_ICMPV6``), which Linux lets a user open when one of the user's
  groups is in ``net.ipv4.ping_group_range`` (the range applies to IPv6 too).
  The kernel picks the echo identifier (the socket's port), hands the socket
  only the replies that carry it, and fills in the checksum; what is read is
  the ICMP message alone.
- a *raw* socket (``SOCK_RAW``), for root or a process with ``CAP_NET_RAW``.
  It would receive a copy of every ICMP message the host gets (with IPv4,
  behind the IP header); a kernel filter, as ping's, passes it only the echo
  replies with its identifier.

The probe's checks share one socket (:mod:`anyprobe.plugins._icmp_shared`),
unconnected; replies are matched on identifier, sequence number, payload and
the address they come from. The kernel has verified a reply's checksum
before a datagram socket or a raw ICMPv6 socket sees it; a raw IPv4 socket
gets the message before the kernel's checks, so its checksum is verified
here. Both kinds ask for ICMP errors about their requests (``IP_RECVERR``):
unreachable, TTL exceeded and the like come through the socket's error
queue, with the router that sent them and the request they are about.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import socket
import struct
from dataclasses import dataclass
from typing import Literal

SocketType = Literal["auto", "datagram", "raw"]

ECHO_REQUEST: dict[int, int] = {socket.AF_INET: 8, socket.AF_INET6: 128}
ECHO_REPLY: dict[int, int] = {socket.AF_INET: 0, socket.AF_INET6: 129}
_PROTOCOL: dict[int, int] = {
    socket.AF_INET: socket.IPPROTO_ICMP,
    socket.AF_INET6: socket.IPPROTO_ICMPV6,
}

# Linux's numbers, for the constants Python's socket module does not name.
IP_RECVTTL = getattr(socket, "IP_RECVTTL", 12)
IPV6_RECVHOPLIMIT = getattr(socket, "IPV6_RECVHOPLIMIT", 51)
IPV6_HOPLIMIT = getattr(socket, "IPV6_HOPLIMIT", 52)
IPV6_UNICAST_HOPS = getattr(socket, "IPV6_UNICAST_HOPS", 16)
IP_RECVERR = getattr(socket, "IP_RECVERR", 11)
IPV6_RECVERR = getattr(socket, "IPV6_RECVERR", 25)
MSG_ERRQUEUE = getattr(socket, "MSG_ERRQUEUE", 0x2000)
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
_TIMESPEC = struct.Struct("@ll")
_EXTENDED_ERROR = struct.Struct("=IBBBBII")  # struct sock_extended_err
_ORIGIN_ICMP, _ORIGIN_ICMP6 = 2, 3

#: ICMP errors by (origin, type, code), then by (origin, type).
_ICMP_ERRORS: dict[tuple[int, ...], str] = {
    (_ORIGIN_ICMP, 3, 0): "network unreachable",
    (_ORIGIN_ICMP, 3, 1): "host unreachable",
    (_ORIGIN_ICMP, 3, 9): "network administratively prohibited",
    (_ORIGIN_ICMP, 3, 10): "host administratively prohibited",
    (_ORIGIN_ICMP, 3, 13): "communication administratively prohibited",
    (_ORIGIN_ICMP, 3): "destination unreachable",
    (_ORIGIN_ICMP, 11): "time to live exceeded in transit",
    (_ORIGIN_ICMP6, 1, 0): "no route to destination",
    (_ORIGIN_ICMP6, 1, 1): "communication administratively prohibited",
    (_ORIGIN_ICMP6, 1, 3): "address unreachable",
    (_ORIGIN_ICMP6, 1): "destination unreachable",
    (_ORIGIN_ICMP6, 3): "hop limit exceeded in transit",
}

_HEADER = struct.Struct("!BBHHH")  # type, code, checksum, identifier, sequence

#: What to enable for each kind of socket when the kernel refuses it.
ENABLE_HINT = {
    "datagram": "allow unprivileged ICMP sockets for one of this user's groups "
    '(sysctl -w net.ipv4.ping_group_range="0 2147483647")',
    "raw": "run as root or with CAP_NET_RAW",
}


class NoIcmpSocket(Exception):
    """Neither an ICMP datagram socket nor a raw socket may be opened here."""


def checksum(data: bytes) -> int:
    """The Internet checksum of ``data`` (RFC 1071): the ones' complement of
    the ones' complement sum of its 16-bit words."""
    # Read as one big number, the words are its digits in base 2**16, and
    # 2**16 is 1 modulo 0xFFFF: the number modulo 0xFFFF is the sum of the
    # words with the carries added back in (an odd length is padded with a
    # zero byte). Only a nonzero sum that is a multiple of 0xFFFF is 0xFFFF,
    # not 0, in ones' complement: the one correction.
    number = int.from_bytes(data, "big") << (8 * (len(data) % 2))
    total = number % 0xFFFF
    if total == 0 and number:
        total = 0xFFFF
    return ~total & 0xFFFF


def _pseudo_header(source: str, destination: str, length: int) -> bytes:
    """The IPv6 pseudo-header an ICMPv6 checksum covers (RFC 8200, 8.1)."""
    # A link-local address comes with its zone (fe80::1%eth0): not in the sum.
    return (
        socket.inet_pton(socket.AF_INET6, source.split("%")[0])
        + socket.inet_pton(socket.AF_INET6, destination.split("%")[0])
        + struct.pack("!I3xB", length, socket.IPPROTO_ICMPV6)
    )


def echo_request(
    family: int,
    identifier: int,
    sequence: int,
    payload: bytes,
    source: str | None = None,
    destination: str | None = None,
) -> bytes:
    """An echo request, checksum included. ICMPv6's covers the addresses too:
    without ``source`` and ``destination`` it is left at zero, for the kernel
    fills it in on every ICMPv6 socket."""
    header = _HEADER.pack(ECHO_REQUEST[family], 0, 0, identifier, sequence)
    covered = header + payload
    if family == socket.AF_INET6:
        if source is None or destination is None:
            return covered
        covered = _pseudo_header(source, destination, len(header) + len(payload)) + covered
    return _HEADER.pack(ECHO_REQUEST[family], 0, checksum(covered), identifier, sequence) + payload


@dataclass(frozen=True, slots=True)
class Echo:
    """An echo reply as read: its identifier, sequence number, payload and TTL."""

    identifier: int
    sequence: int
    payload: bytes
    ttl: int | None


def parse_reply(
    family: int, raw: bool, data: bytes, ancillary: list[tuple[int, int, bytes]], expected: int,
    addresses: tuple[str, str] | None = None,
) -> Echo | None:  # fmt: skip
    """The echo reply with identifier ``expected`` in ``data``, or None for
    anything else (another ICMP message or identifier, a truncated or corrupt
    one).

    With IPv4 on a raw socket ``data`` starts with the IP header, which holds
    the TTL, and the checksum is verified; otherwise the TTL (hop limit) comes
    in ``ancillary`` data, and the kernel has verified the checksum. An ICMPv6
    checksum is verified here too when ``addresses`` (the reply's source and
    destination, which it covers) are given.
    """
    if family == socket.AF_INET and raw:
        if len(data) < 20 or data[0] >> 4 != 4:
            return None
        ttl: int | None = data[8]
        data = data[(data[0] & 0x0F) * 4 :]
    else:
        ttl = _ancillary_ttl(ancillary)
    if len(data) < _HEADER.size:
        return None
    kind, code, _sum, identifier, sequence = _HEADER.unpack_from(data)
    if kind != ECHO_REPLY[family] or code != 0 or identifier != expected:
        return None
    if family == socket.AF_INET6:
        if addresses is not None and checksum(_pseudo_header(*addresses, len(data)) + data):
            return None
    elif raw and checksum(data) != 0:
        return None
    return Echo(identifier, sequence, data[_HEADER.size :], ttl)


def arrival_ns(ancillary: list[tuple[int, int, bytes]]) -> int | None:
    """When the kernel received the message (``SO_TIMESTAMPNS``, nanoseconds
    of the real-time clock), if it said."""
    for level, kind, value in ancillary:
        if (level, kind) == (socket.SOL_SOCKET, SO_TIMESTAMPNS) and len(value) >= _TIMESPEC.size:
            seconds, nanoseconds = _TIMESPEC.unpack_from(value)
            return int(seconds) * 1_000_000_000 + int(nanoseconds)
    return None


def _ancillary_ttl(ancillary: list[tuple[int, int, bytes]]) -> int | None:
    for level, kind, value in ancillary:
        if (level, kind) in (
            (socket.IPPROTO_IP, socket.IP_TTL),
            (socket.IPPROTO_IPV6, IPV6_HOPLIMIT),
        ):
            if len(value) >= 4:
                ttl: int = struct.unpack("=i", value[:4])[0]
                return ttl
            if value:
                return value[0]
    return None


def describe_error(ancillary: list[tuple[int, int, bytes]]) -> str | None:
    """An ICMP error read from the socket's error queue, in words, with the
    address that sent it: ``host unreachable (from 10.0.0.1)``; None for a
    message that does not say the request failed (a redirect)."""
    for level, kind, value in ancillary:
        if (level, kind) not in (
            (socket.IPPROTO_IP, IP_RECVERR),
            (socket.IPPROTO_IPV6, IPV6_RECVERR),
        ):
            continue
        if len(value) < _EXTENDED_ERROR.size:
            continue
        _errno, origin, icmp_type, icmp_code, _pad, _info, _data = _EXTENDED_ERROR.unpack_from(
            value
        )
        text = _ICMP_ERRORS.get((origin, icmp_type, icmp_code)) or _ICMP_ERRORS.get(
            (origin, icmp_type)
        )
        if text is None:  # a redirect, a local error: no verdict on the request
            continue
        return text + _offender(value[_EXTENDED_ERROR.size :])
    return None


def _offender(sockaddr: bytes) -> str:
    """`` (from ADDRESS)`` for the sockaddr after a sock_extended_err, if any."""
    if len(sockaddr) >= 8 and struct.unpack_from("=H", sockaddr)[0] == socket.AF_INET:
        return f" (from {socket.inet_ntop(socket.AF_INET, sockaddr[4:8])})"
    if len(sockaddr) >= 24 and struct.unpack_from("=H", sockaddr)[0] == socket.AF_INET6:
        return f" (from {socket.inet_ntop(socket.AF_INET6, sockaddr[8:24])})"
    return ""


def open_socket(
    family: int, kind: SocketType, known_refused: dict[str, str] | None = None
) -> tuple[socket.socket, str]:
    """A non-blocking ICMP socket of ``kind`` and the kind it is.

    ``auto`` tries a datagram socket first (nothing privileged is used when
    it is allowed), then a raw one; a kind in ``known_refused`` (kind ->
    the kernel's reason, filled in here) is not tried again by ``auto``.
    Raises :class:`NoIcmpSocket`, whose message says what to enable, when
    the kernel refuses what was asked.
    """
    known = known_refused if known_refused is not None else {}
    refused: dict[str, str] = {}
    for candidate in ("datagram", "raw") if kind == "auto" else (kind,):
        if kind == "auto" and candidate in known:
            refused[candidate] = known[candidate]
            continue
        sock_type = socket.SOCK_DGRAM if candidate == "datagram" else socket.SOCK_RAW
        try:
            sock = socket.socket(family, sock_type, _PROTOCOL[family])
        except OSError as exc:
            if exc.errno not in (errno.EACCES, errno.EPERM, errno.EPROTONOSUPPORT):
                raise
            refused[candidate] = known[candidate] = (exc.strerror or str(exc)).lower()
            continue
        sock.setblocking(False)
        return sock, candidate
    hint = " or ".join(ENABLE_HINT[k] for k in ("datagram", "raw") if k in refused)
    reasons = "; ".join(f"{k}: {why}" for k, why in refused.items())
    raise NoIcmpSocket(f"cannot open an ICMP socket ({reasons}): {hint}")


SO_ATTACH_FILTER = getattr(socket, "SO_ATTACH_FILTER", 26)
# Classic BPF opcodes (linux/filter.h).
_LDX_MSH_B, _LD_H_IND, _LD_H_ABS, _LD_B_IND, _LD_B_ABS = 0xB1, 0x48, 0x28, 0x50, 0x30
_JEQ_K, _RET_K = 0x15, 0x06


def only_replies_to(sock: socket.socket, family: int, identifier: int) -> None:
    """Have the kernel pass a raw socket only echo replies that carry
    ``identifier`` (ICMP errors come through the error queue, which no filter
    touches). Without it, the socket would read every ICMP message the host
    gets: every other program's pings, and our own requests to a local
    address. A kernel that refuses the filter only costs time: replies are
    matched in full anyway."""
    # With IPv4 the message starts after the IP header: X is its length.
    ld_h, ld_b = (_LD_H_IND, _LD_B_IND) if family == socket.AF_INET else (_LD_H_ABS, _LD_B_ABS)
    program = [
        *([(_LDX_MSH_B, 0, 0, 0)] if family == socket.AF_INET else []),
        (ld_b, 0, 0, 0),  # the ICMP type
        (_JEQ_K, 0, 3, ECHO_REPLY[family]),  # not an echo reply: drop
        (ld_h, 0, 0, 4),  # the echo identifier
        (_JEQ_K, 0, 1, identifier),  # another identifier: drop
        (_RET_K, 0, 0, 0xFFFFFFFF),
        (_RET_K, 0, 0, 0),
    ]
    instructions = ctypes.create_string_buffer(b"".join(struct.pack("HBBI", *op) for op in program))
    fprog = struct.pack("HL", len(program), ctypes.addressof(instructions))
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


def set_up(sock: socket.socket, family: int, raw: bool, ttl: int | None) -> int:
    """Set the TTL, ask for the replies' TTL, ICMP errors and receive times;
    the local port (a datagram socket's port is its echo identifier)."""
    # With RECVERR the kernel queues every ICMP error about our requests
    # (unreachable, TTL exceeded), not only the "hard" ones.
    if family == socket.AF_INET:
        sock.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)
        if not raw:  # a raw socket reads the IP header, TTL included
            sock.setsockopt(socket.IPPROTO_IP, IP_RECVTTL, 1)
        if ttl is not None:
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)
    else:
        sock.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVERR, 1)
        sock.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVHOPLIMIT, 1)
        if ttl is not None:
            sock.setsockopt(socket.IPPROTO_IPV6, IPV6_UNICAST_HOPS, ttl)
    # The kernel's receive time, as ping uses: not the event loop's wake-up.
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    if raw:
        return 0
    sock.bind(("0.0.0.0", 0) if family == socket.AF_INET else ("::", 0))
    return int(sock.getsockname()[1])
