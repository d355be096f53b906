"""The NTP probe against Debian's chronyd and a scripted NTP server on
loopback, on both backends."""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

import pytest

import anyprobe
from anyprobe import OptionsError, PluginManager, Result, Status
from anyprobe._targets import build_targets
from anyprobe.net import address_policy
from anyprobe.plugins.ntp import to_unix
from tests.servers.ntp import ScriptedNtpServer, ntp_timestamp

pytestmark = pytest.mark.anyio


async def check_one(
    manager: PluginManager, url: str, seconds: float = 5.0, **options: Any
) -> Result:
    [result] = await anyprobe.check([url], options=options, manager=manager, timeout=seconds)
    return result


# -- a real server ------------------------------------------------------------------


async def test_chronyd_in_sync_is_ok(
    anyio_backend: str, manager: PluginManager, chronyd_server: int
) -> None:
    result = await check_one(manager, f"ntp://127.0.0.1:{chronyd_server}")
    assert result.status is Status.OK, result.summary
    assert result.summary.startswith("offset ")
    assert f" from 127.0.0.1:{chronyd_server}, stratum 8 (127.127.1.1), rtt " in result.summary
    assert result.metrics["stratum"] == 8
    assert result.metrics["reference_id"] == "127.127.1.1"
    assert {"offset", "rtt", "root_delay", "root_dispersion"} <= set(result.metrics)
    assert set(result.phases) == {"resolve", "send", "reply"}


async def test_chronyd_offset_beyond_a_zero_threshold_is_a_warning(
    anyio_backend: str, manager: PluginManager, chronyd_server: int
) -> None:
    # Same clock on both sides: the offset is tiny, but never exactly zero.
    result = await check_one(
        manager, f"ntp://127.0.0.1:{chronyd_server}", offset_warning=0, offset_critical=60
    )
    assert result.metrics["offset"] != 0
    assert result.status is Status.WARNING, result.summary
    assert result.summary.endswith("; more than offset_warning (0 s)")


# -- the scripted server ------------------------------------------------------------


async def test_reply_is_read_field_by_field(
    anyio_backend: str, manager: PluginManager, ntp_server: ScriptedNtpServer
) -> None:
    ntp_server.stratum = 3
    ntp_server.reference_id = bytes([192, 0, 2, 7])
    result = await check_one(manager, f"ntp://127.0.0.1:{ntp_server.port}")
    assert result.status is Status.OK, result.summary
    assert ", stratum 3 (192.0.2.7), rtt " in result.summary
    assert result.metrics["root_delay"] == 0.25
    assert result.metrics["root_dispersion"] == 0.5
    assert result.metrics["stratum"] == 3
    assert abs(result.metrics["offset"]) < 0.5
    assert result.details == {"leap": 0, "version": 4}


async def test_request_is_an_ntpv4_client_packet_with_a_random_transmit_time(
    anyio_backend: str, manager: PluginManager, ntp_server: ScriptedNtpServer
) -> None:
    for _ in range(2):
        result = await check_one(manager, f"ntp://127.0.0.1:{ntp_server.port}")
        assert result.status is Status.OK, result.summary
    first, second = ntp_server.requests
    assert len(first) == 48
    assert first[0] == (4 << 3) | 3  # LI 0, version 4, mode 3 (client)
    assert first[1:40] == bytes(39)
    assert first[40:] != second[40:]


@pytest.mark.parametrize(
    ("offset", "status", "ending"),
    [
        (0.75, Status.WARNING, "; more than offset_warning (0.5 s)"),
        (-0.75, Status.WARNING, "; more than offset_warning (0.5 s)"),
        (3.0, Status.CRITICAL, "; more than offset_critical (1 s)"),
        (-3.0, Status.CRITICAL, "; more than offset_critical (1 s)"),
    ],
)
async def test_offset_beyond_the_thresholds(
    anyio_backend: str,
    manager: PluginManager,
    ntp_server: ScriptedNtpServer,
    offset: float,
    status: Status,
    ending: str,
) -> None:
    ntp_server.offset = offset
    result = await check_one(manager, f"ntp://127.0.0.1:{ntp_server.port}")
    assert result.status is status, result.summary
    assert result.summary.endswith(ending)
    assert result.metrics["offset"] == pytest.approx(offset, abs=0.2)
    assert result.summary.startswith(f"offset {'+' if offset > 0 else '-'}")


async def test_thresholds_are_options(
    anyio_backend: str, manager: PluginManager, ntp_server: ScriptedNtpServer
) -> None:
    ntp_server.offset = 3.0
    result = await check_one(
        manager, f"ntp://127.0.0.1:{ntp_server.port}", offset_warning=5, offset_critical=10
    )
    assert result.status is Status.OK, result.summary
    assert result.summary.startswith("offset +")
    assert result.metrics["offset"] == pytest.approx(3.0, abs=0.2)


async def test_stratum_16_is_critical(
    anyio_backend: str, manager: PluginManager, ntp_server: ScriptedNtpServer
) -> None:
    ntp_server.stratum = 16
    port = ntp_server.port
    result = await check_one(manager, f"ntp://127.0.0.1:{port}")
    assert result.status is Status.CRITICAL
    assert result.summary == f"127.0.0.1:{port} is not synchronised (stratum 16)"
    assert result.metrics["stratum"] == 16


async def test_leap_indicator_3_is_critical(
    anyio_backend: str, manager: PluginManager, ntp_server: ScriptedNtpServer
) -> None:
    ntp_server.leap = 3
    port = ntp_server.port
    result = await check_one(manager, f"ntp://127.0.0.1:{port}")
    assert result.status is Status.CRITICAL
    assert result.summary == (f"127.0.0.1:{port} is not synchronised (leap indicator 3, stratum 2)")


@pytest.mark.parametrize(
    ("code", "meaning"),
    [
        ("RATE", "rate exceeded: the server asks the client to poll less often"),
        ("DENY", "access denied by remote server"),
        ("XYZW", "an unknown kiss code"),
    ],
)
async def test_kiss_o_death_is_critical_and_named(
    anyio_backend: str,
    manager: PluginManager,
    ntp_server: ScriptedNtpServer,
    code: str,
    meaning: str,
) -> None:
    ntp_server.kiss = code
    port = ntp_server.port
    result = await check_one(manager, f"ntp://127.0.0.1:{port}")
    assert result.status is Status.CRITICAL
    assert result.summary == f"kiss-o'-death {code} from 127.0.0.1:{port}: {meaning}"
    assert result.metrics["stratum"] == 0


async def test_replies_with_another_origin_are_ignored(
    anyio_backend: str, manager: PluginManager, ntp_server: ScriptedNtpServer
) -> None:
    ntp_server.wrong_origin_replies = 2  # kiss-o'-death DENY, before the true reply
    result = await check_one(manager, f"ntp://127.0.0.1:{ntp_server.port}")
    assert result.status is Status.OK, result.summary
    assert result.metrics["stratum"] == 2


async def test_only_replies_with_another_origin_is_no_reply(
    anyio_backend: str, manager: PluginManager, ntp_server: ScriptedNtpServer
) -> None:
    ntp_server.only_wrong_origin = True
    port = ntp_server.port
    result = await check_one(manager, f"ntp://127.0.0.1:{port}", reply_timeout=0.3)
    assert result.status is Status.CRITICAL
    assert result.summary.startswith(f"no NTP reply from 127.0.0.1:{port} within 0.3 s (")
    assert result.summary.endswith(
        "; ignored 3 datagrams, the last one: "
        "its origin timestamp is not the request's transmit timestamp"
    )


async def test_closed_port_is_refused(
    anyio_backend: str, manager: PluginManager, closed_udp_port: int
) -> None:
    result = await check_one(manager, f"ntp://127.0.0.1:{closed_udp_port}")
    assert result.status is Status.CRITICAL
    assert result.summary == f"refused: ICMP port unreachable from 127.0.0.1:{closed_udp_port}"
    assert result.error is not None and result.error.type == "ConnectionRefusedError"


async def test_silent_server_is_critical(
    anyio_backend: str, manager: PluginManager, silent_udp_port: int
) -> None:
    result = await check_one(manager, f"ntp://127.0.0.1:{silent_udp_port}", reply_timeout=0.2)
    assert result.status is Status.CRITICAL
    assert result.summary.startswith(
        f"no NTP reply from 127.0.0.1:{silent_udp_port} within 0.2 s (over UDP"
    )
    assert result.error is not None and result.error.phase == "reply"


# -- targets, options and timestamps ------------------------------------------------


def test_default_port_is_123(manager: PluginManager) -> None:
    [target] = build_targets(manager, ["ntp://pool.ntp.example"])
    assert (target.probe, target.host, target.port) == ("ntp", "pool.ntp.example", 123)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"offset_warning": 2, "offset_critical": 1}, "offset_warning must not be greater"),
        ({"offset_warning": -1}, "offset_warning"),
        ({"reply_timeout": 0}, "reply_timeout"),
    ],
)
def test_bad_options_are_one_clear_error(
    manager: PluginManager, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(OptionsError) as error:
        build_targets(manager, ["ntp://127.0.0.1"], options=options)
    assert message in str(error.value)


@pytest.mark.parametrize(
    "unix", [0.0, 1_700_000_000.25, 2_085_978_495.5, 2_085_978_496.75, 2_200_000_000.0]
)
def test_timestamps_convert_across_the_2036_era_wrap(unix: float) -> None:
    # 2085978496 is 2036-02-07 06:28:16 UTC, when the 32-bit seconds field wraps.
    stamp = ntp_timestamp(unix)
    assert to_unix(stamp, near=unix + 100) == pytest.approx(unix, abs=1e-6)
    assert struct.pack("!Q", stamp)  # fits in 64 bits


async def test_ignored_datagrams_are_in_the_trace(
    anyio_backend: str, manager: PluginManager, ntp_server: ScriptedNtpServer
) -> None:
    ntp_server.wrong_origin_replies = 1
    port = ntp_server.port
    [result] = await anyprobe.check(
        [f"ntp://127.0.0.1:{port}"], manager=manager, timeout=5, explain=True
    )
    assert result.status is Status.OK, result.summary
    messages = [event.message for event in result.trace]
    assert (
        f"ignored a datagram from 127.0.0.1:{port}: "
        "its origin timestamp is not the request's transmit timestamp"
    ) in messages
    assert (
        f"reply from 127.0.0.1:{port}: leap indicator 0, version 4, stratum 2, "
        "reference 127.0.0.1, root delay 0.25 s, root dispersion 0.5 s"
    ) in messages


async def test_address_policy_refuses_before_anything_is_sent(
    anyio_backend: str, manager: PluginManager, ntp_server: ScriptedNtpServer
) -> None:
    def policy(host: str, addresses: Sequence[str]) -> str | None:
        return f"{host} is not allowed"

    with address_policy(policy):
        result = await check_one(manager, f"ntp://127.0.0.1:{ntp_server.port}")
    assert result.status is Status.CRITICAL
    assert result.summary == "127.0.0.1 is not allowed"
    assert ntp_server.requests == []


async def test_demo_rows_get_their_verdicts(anyio_backend: str, manager: PluginManager) -> None:
    from anyprobe.plugins.ntp import demo_services

    async with demo_services() as checks:
        for demo in checks:
            result = await check_one(manager, demo.url, **demo.options)
            assert result.status is demo.expect, (demo.name, result.summary)


async def test_a_flood_of_other_datagrams_ends_the_wait(
    anyio_backend: str, manager: PluginManager, ntp_server: ScriptedNtpServer
) -> None:
    ntp_server.wrong_origin_replies = 40  # more than the probe reads; the true one last
    port = ntp_server.port
    result = await check_one(manager, f"ntp://127.0.0.1:{port}")
    assert result.status is Status.CRITICAL
    assert result.summary == (
        f"no reply to the request from 127.0.0.1:{port} in 32 datagrams; the last one: "
        "its origin timestamp is not the request's transmit timestamp"
    )
