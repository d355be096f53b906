"""The ICMP probe against loopback (127.0.0.1 and ::1), on both backends, and
its packets, options and URLs.

The checks send real echo requests to loopback through whichever socket this
process may open (a raw one as root, else an unprivileged datagram socket);
without either the loopback tests are skipped with the reason. The datagram
path, the "neither works" message, loss and unreachable hosts are tested in
network namespaces by tests/test_icmp_netns.py.
"""

from __future__ import annotations

import socket
import struct
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import anyprobe
from anyprobe import AnyprobeError, OptionsError, PluginManager, Result, Status, TargetError
from anyprobe.plugins._icmp_packets import (
    NoIcmpSocket,
    checksum,
    echo_request,
    open_socket,
    parse_reply,
)
from anyprobe.plugins._icmp_shared import round_trip
from anyprobe.plugins.icmp import IcmpOptions, _verdict


def _icmp_refused(family: int) -> str | None:
    try:
        sock, _kind = open_socket(family, "auto")
    except NoIcmpSocket as exc:
        return str(exc)
    sock.close()
    return None


_REFUSED_V4 = _icmp_refused(socket.AF_INET)
needs_icmp = pytest.mark.skipif(_REFUSED_V4 is not None, reason=f"no ICMP socket: {_REFUSED_V4}")
LOOPBACKS = pytest.mark.parametrize("host", ["127.0.0.1", "[::1]"])


async def check_one(
    manager: PluginManager, url: str, seconds: float = 5.0, explain: bool = False, **options: Any
) -> Result:
    [result] = await anyprobe.check(
        [url], options=options, manager=manager, timeout=seconds, explain=explain
    )
    return result


# -- loopback -------------------------------------------------------------------


@needs_icmp
@LOOPBACKS
@pytest.mark.anyio
async def test_loopback_answers_every_request(
    anyio_backend: str, manager: PluginManager, host: str
) -> None:
    result = await check_one(manager, f"icmp://{host}", count=3, interval=0.01, explain=True)
    address = host.strip("[]")
    assert result.status is Status.OK, result.summary
    assert result.summary.startswith(f"3/3 replies from {address} (0% loss), rtt min/avg/max ")
    metrics = result.metrics
    assert metrics["packets_sent"] == metrics["packets_received"] == 3
    assert metrics["loss_percent"] == 0
    assert 0 < metrics["rtt_min"] <= metrics["rtt_avg"] <= metrics["rtt_max"]
    assert metrics["rtt_stddev"] >= 0
    assert 1 <= metrics["reply_ttl"] <= 255
    assert metrics["address"] == address
    assert metrics["socket_type"] in ("raw", "datagram")
    assert "duplicates" not in metrics
    assert set(result.phases) == {"resolve", "rtt"}
    assert result.phases["rtt"] == pytest.approx(metrics["rtt_avg"])
    replies = [e.message for e in result.trace if e.message.startswith("reply icmp_seq=")]
    assert [m.split()[1] for m in replies] == ["icmp_seq=1", "icmp_seq=2", "icmp_seq=3"]


@needs_icmp
@pytest.mark.anyio
@pytest.mark.parametrize("payload_size", [0, 7, 1472, 9000])
async def test_payload_sizes_come_back_whole(
    anyio_backend: str, manager: PluginManager, payload_size: int
) -> None:
    result = await check_one(
        manager, "icmp://127.0.0.1", count=2, interval=0.01, payload_size=payload_size
    )
    assert result.status is Status.OK, result.summary
    assert result.metrics["packets_received"] == 2


@needs_icmp
@pytest.mark.anyio
async def test_concurrent_pings_to_one_host_each_count_only_their_replies(
    anyio_backend: str, manager: PluginManager
) -> None:
    # A raw socket sees every echo reply from 127.0.0.1, the other checks'
    # included (same sequence numbers): only identifier and payload tell
    # them apart. A reply counted twice would show as a duplicate.
    urls = ["icmp://127.0.0.1"] * 5
    results = await anyprobe.check(
        urls,
        options={"count": 5, "interval": 0.01},
        manager=manager,
        timeout=5,
    )
    assert len(results) == 5
    for result in results:
        assert result.status is Status.OK, result.summary
        assert result.metrics["packets_received"] == 5
        assert "duplicates" not in result.metrics


@needs_icmp
@pytest.mark.anyio
async def test_rtt_thresholds_give_each_verdict(anyio_backend: str, manager: PluginManager) -> None:
    # A loopback round trip is far over a nanosecond and far under 10 s.
    url = "icmp://127.0.0.1"
    fast = await check_one(manager, url, count=2, interval=0.01, rtt_warning=10, rtt_critical=20)
    assert fast.status is Status.OK, fast.summary
    warn = await check_one(manager, url, count=2, interval=0.01, rtt_warning=1e-9)
    assert warn.status is Status.WARNING
    assert "over rtt_warning 0.000 ms" in warn.summary
    crit = await check_one(
        manager, url, count=2, interval=0.01, rtt_warning=1e-9, rtt_critical=1e-9
    )
    assert crit.status is Status.CRITICAL
    assert "over rtt_critical" in crit.summary
    assert crit.error is None  # a verdict on the measurements, not a failure


@needs_icmp
@pytest.mark.anyio
async def test_ipv6_only_refuses_an_ipv4_address(
    anyio_backend: str, manager: PluginManager
) -> None:
    result = await check_one(manager, "icmp://127.0.0.1", ip_family="ipv6")
    assert result.status is Status.CRITICAL
    assert result.summary == "127.0.0.1 is not an ipv6 address"
    assert result.error is not None and result.error.phase == "resolve"


@needs_icmp
@pytest.mark.anyio
async def test_localhost_name_resolves_for_the_family(
    anyio_backend: str, manager: PluginManager
) -> None:
    result = await check_one(manager, "icmp://localhost", count=1, ip_family="ipv4")
    assert result.status is Status.OK, result.summary
    assert result.metrics["address"].startswith("127.")


@pytest.mark.anyio
async def test_count_and_interval_longer_than_the_timeout_is_unknown(
    anyio_backend: str, manager: PluginManager
) -> None:
    result = await check_one(manager, "icmp://127.0.0.1", seconds=1, count=5, interval=0.5)
    assert result.status is Status.UNKNOWN
    assert result.summary == (
        "5 requests 0.5 s apart need 2 s, more than the check's timeout of 1 s: "
        "lower count or interval, or raise the timeout"
    )


# -- options and URLs -----------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"count": 0}, "count"),
        ({"interval": 0.001}, "interval"),
        ({"payload_size": -1}, "payload_size"),
        ({"ttl": 256}, "ttl"),
        ({"loss_warning": 101}, "loss_warning"),
        ({"rtt_warning": 0.5, "rtt_critical": 0.1}, "rtt_warning must not be greater"),
        ({"loss_warning": 60, "loss_critical": 20}, "loss_warning must not be greater"),
        ({"socket_type": "stream"}, "socket_type"),
    ],
)
def test_bad_options_are_refused_before_the_run(
    manager: PluginManager, options: dict[str, Any], field: str
) -> None:
    with pytest.raises(OptionsError, match=field):
        anyprobe.prepare(["icmp://127.0.0.1"], options=options, manager=manager)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("icmp://127.0.0.1:80", "ICMP has no ports"),
        ("icmp://host:", "ICMP has no ports"),
        ("icmp:///", "no host in the URL"),
        ("icmp://host/path", "nothing may follow the host"),
        ("icmp://host?x=1", "nothing may follow the host"),
        ("icmp://user@host", "nothing may follow the host"),
    ],
)
def test_bad_urls_are_refused(manager: PluginManager, url: str, message: str) -> None:
    with pytest.raises(TargetError, match=message):
        anyprobe.prepare([url], manager=manager)


def test_the_scheme_is_registered_as_a_builtin(manager: PluginManager) -> None:
    assert manager.probe_for_scheme("icmp").name == "icmp"


# -- verdicts -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rtt", "loss", "status", "phrases"),
    [
        (0.050, 0.0, Status.OK, []),
        (0.150, 0.0, Status.WARNING, ["rtt avg 150.0 ms over rtt_warning 100.0 ms"]),
        (0.600, 0.0, Status.CRITICAL, ["rtt avg 600.0 ms over rtt_critical 500.0 ms"]),
        (0.050, 20.0, Status.WARNING, ["20% loss at or over loss_warning 20%"]),
        (0.050, 60.0, Status.CRITICAL, ["60% loss at or over loss_critical 60%"]),
        (
            0.150,
            60.0,
            Status.CRITICAL,
            ["rtt avg 150.0 ms over rtt_warning 100.0 ms", "60% loss at or over loss_critical 60%"],
        ),
        (0.100, 19.9, Status.OK, []),  # at the rtt threshold is not over it
    ],
)
def test_thresholds_like_check_ping(
    rtt: float, loss: float, status: Status, phrases: list[str]
) -> None:
    # check_ping -w 100,20% -c 500,60%
    options = IcmpOptions(rtt_warning=0.1, rtt_critical=0.5, loss_warning=20, loss_critical=60)
    assert _verdict(rtt, loss, options) == (status, phrases)


# -- packets --------------------------------------------------------------------


def test_checksum_of_a_known_echo_request() -> None:
    # An echo request, identifier 0x1234, sequence 1, payload "abcd": the sum
    # worked by hand (RFC 1071): 0x0800 + 0x1234 + 0x0001 + 0x6162 + 0x6364.
    packet = echo_request(socket.AF_INET, 0x1234, 1, b"abcd", "127.0.0.1", "127.0.0.1")
    total = 0x0800 + 0x1234 + 0x0001 + 0x6162 + 0x6364
    total = (total & 0xFFFF) + (total >> 16)
    assert struct.unpack("!H", packet[2:4])[0] == ~total & 0xFFFF
    assert checksum(packet) == 0
    assert checksum(b"\x01") == ~0x0100 & 0xFFFF  # an odd length is padded


def test_icmpv6_checksum_covers_the_addresses() -> None:
    packet = echo_request(socket.AF_INET6, 7, 9, b"xyz", "::1", "::1")
    reply = bytes([129]) + packet[1:]  # type 129, the checksum now off by 1 << 8
    fixed = struct.pack("!H", (struct.unpack("!H", packet[2:4])[0] - 0x0100) % 0xFFFF)
    reply = reply[:2] + fixed + reply[4:]
    echo = parse_reply(socket.AF_INET6, False, reply, [], 7, ("::1", "::1"))
    assert echo is not None and (echo.identifier, echo.sequence, echo.payload) == (7, 9, b"xyz")
    # The same bytes from another address do not add up: refused.
    assert parse_reply(socket.AF_INET6, False, reply, [], 7, ("::2", "::1")) is None
    # Without the addresses the kernel's verification is trusted (a shared
    # socket does not know which of its addresses a reply came to).
    assert parse_reply(socket.AF_INET6, False, reply, [], 7) is not None
    # The kernel fills in the checksum when the addresses are not given.
    assert echo_request(socket.AF_INET6, 7, 9, b"xyz")[2:4] == b"\0\0"


def test_corrupt_or_other_messages_are_not_replies() -> None:
    request = echo_request(socket.AF_INET, 1, 1, b"data", "127.0.0.1", "127.0.0.1")
    assert parse_reply(socket.AF_INET, True, request, [], 1) is None  # a request
    reply = (
        b"\0"
        + request[1:2]
        + struct.pack("!H", checksum(b"\0" + request[1:2] + b"\0\0" + request[4:]))
        + request[4:]
    )
    header = bytes([0x45, 0, 0, 0, 0, 0, 0, 0, 57, 1, 0, 0]) + bytes(8)
    assert parse_reply(socket.AF_INET, True, header + reply, [], 1) is not None
    assert parse_reply(socket.AF_INET, True, header + reply, [], 2) is None  # not ours
    # A raw IPv4 socket gets the message before the kernel checks it: the
    # checksum is verified here (a datagram socket only gets verified ones).
    corrupt = reply[:-1] + b"X"
    assert parse_reply(socket.AF_INET, True, header + corrupt, [], 1) is None
    assert parse_reply(socket.AF_INET, False, corrupt, [], 1) is not None
    assert parse_reply(socket.AF_INET, False, reply[:5], [], 1) is None
    # A raw IPv4 socket reads the IP header first: its TTL is the reply's.
    echo = parse_reply(socket.AF_INET, True, header + reply, [], 1)
    assert echo is not None and echo.ttl == 57


@pytest.mark.parametrize(
    ("kernel_ns", "expected"),
    [
        (1_000_000_000 + 40_000, 0.000040),  # the kernel's receive time: used
        (None, 0.000300),  # no timestamp: the time the reply was read
        (1_000_000_000 - 5_000, 0.000300),  # before the send (clock stepped back)
        (1_000_000_000 + 900_000, 0.000300),  # after the read (clock stepped ahead)
    ],
)
def test_round_trip_prefers_the_kernels_receive_time(
    kernel_ns: int | None, expected: float
) -> None:
    sent = (10.0, 1_000_000_000)  # on the performance counter, and in real-time ns
    assert round_trip(sent, 10.0003, kernel_ns) == pytest.approx(expected)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rest=st.text(alphabet=st.sampled_from("ab1:[]@/?#%.-_ \x00é"), max_size=20))
def test_any_icmp_url_is_a_target_or_one_clear_error(manager: PluginManager, rest: str) -> None:
    try:
        [target] = anyprobe.prepare([f"icmp://{rest}"], manager=manager)[1]
    except AnyprobeError as exc:
        assert "\n" not in str(exc)
    else:
        assert target.host and target.port is None
