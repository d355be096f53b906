"""The UDP probe against loopback servers, on both backends: an echo server,
a bound port that never answers, and a closed port (ICMP port unreachable)."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

import anyprobe
from anyprobe import OptionsError, PluginManager, Result, Status
from anyprobe._targets import build_targets
from anyprobe.net import address_policy
from tests.servers.udp import UdpEchoServer, run_udp_echo_server

pytestmark = pytest.mark.anyio


async def check_one(
    manager: PluginManager, url: str, seconds: float = 5.0, explain: bool = False, **options: Any
) -> Result:
    [result] = await anyprobe.check(
        [url], options=options, manager=manager, timeout=seconds, explain=explain
    )
    return result


async def test_reply_holding_expect_is_ok(
    anyio_backend: str, manager: PluginManager, udp_echo_server: UdpEchoServer
) -> None:
    port = udp_echo_server.port
    udp_echo_server.prefix = b"PONG "
    result = await check_one(manager, f"udp://127.0.0.1:{port}", send=r"PING\r\n", expect="PONG")
    assert result.status is Status.OK, result.summary
    assert result.summary.startswith(f"reply from 127.0.0.1:{port} in ")
    assert result.summary.endswith("; got 'PONG' in 11 bytes")
    assert set(result.phases) == {"resolve", "send", "reply"}
    assert result.metrics == {"address": "127.0.0.1", "port": port, "bytes_received": 11}
    assert udp_echo_server.received == [b"PING\r\n"]


async def test_reply_matching_expect_regex_is_ok(
    anyio_backend: str, manager: PluginManager, udp_echo_server: UdpEchoServer
) -> None:
    udp_echo_server.prefix = b"+OK 42\n"
    result = await check_one(
        manager, f"udp://127.0.0.1:{udp_echo_server.port}", expect_regex=r"^\+OK \d+$"
    )
    assert result.status is Status.OK, result.summary
    assert result.summary.endswith(r"; got /^\+OK \d+$/ in 7 bytes")


async def test_without_send_an_empty_datagram_goes_and_any_reply_passes(
    anyio_backend: str, manager: PluginManager, udp_echo_server: UdpEchoServer
) -> None:
    udp_echo_server.prefix = b"hello"
    result = await check_one(manager, f"udp://127.0.0.1:{udp_echo_server.port}")
    assert result.status is Status.OK, result.summary
    assert result.summary.endswith(" ms (5 bytes)")
    assert udp_echo_server.received == [b""]


async def test_escapes_are_the_tcp_probes(
    anyio_backend: str, manager: PluginManager, udp_echo_server: UdpEchoServer
) -> None:
    result = await check_one(
        manager,
        f"udp://127.0.0.1:{udp_echo_server.port}",
        send=r"\x00\x01\e\t\\",
        expect=r"\x01\x1b",
    )
    assert result.status is Status.OK, result.summary
    assert udp_echo_server.received == [b"\x00\x01\x1b\t\\"]


async def test_other_reply_is_critical_and_quoted(
    anyio_backend: str, manager: PluginManager, udp_echo_server: UdpEchoServer
) -> None:
    udp_echo_server.prefix = b"-ERR\r\n"
    port = udp_echo_server.port
    result = await check_one(manager, f"udp://127.0.0.1:{port}", expect="+OK")
    assert result.status is Status.CRITICAL
    assert result.summary == (
        f"expected '+OK' in the reply from 127.0.0.1:{port}; got '-ERR\\r\\n' (6 bytes)"
    )
    assert result.error is not None and result.error.phase is None


async def test_what_is_sent_never_shows_in_the_result(
    anyio_backend: str, manager: PluginManager, udp_echo_server: UdpEchoServer
) -> None:
    result = await check_one(
        manager,
        f"udp://127.0.0.1:{udp_echo_server.port}",
        send="TOKEN s3cret-value",
        expect="no such reply",
        explain=True,
    )
    assert result.status is Status.CRITICAL
    assert "got '***' (18 bytes)" in result.summary
    assert "s3cret" not in repr(result.as_dict())


async def test_closed_port_is_refused(
    anyio_backend: str, manager: PluginManager, closed_udp_port: int
) -> None:
    result = await check_one(manager, f"udp://127.0.0.1:{closed_udp_port}", send="PING")
    assert result.status is Status.CRITICAL
    assert result.summary == f"refused: ICMP port unreachable from 127.0.0.1:{closed_udp_port}"
    assert result.error is not None
    assert (result.error.type, result.error.phase) == ("ConnectionRefusedError", "reply")


async def test_silent_port_fails_after_reply_timeout(
    anyio_backend: str, manager: PluginManager, silent_udp_port: int
) -> None:
    result = await check_one(manager, f"udp://127.0.0.1:{silent_udp_port}", reply_timeout=0.2)
    assert result.status is Status.CRITICAL
    assert result.summary == (
        f"no reply from 127.0.0.1:{silent_udp_port} within 0.2 s (over UDP a lost datagram "
        "and a closed port behind a firewall that drops ICMP look the same)"
    )
    assert result.error is not None and result.error.phase == "reply"


async def test_silent_port_without_reply_timeout_fails_at_the_checks_timeout(
    anyio_backend: str, manager: PluginManager, silent_udp_port: int
) -> None:
    result = await check_one(manager, f"udp://127.0.0.1:{silent_udp_port}", seconds=0.5)
    assert result.status is Status.CRITICAL
    assert result.summary.startswith(f"no reply from 127.0.0.1:{silent_udp_port} within 0.5 s")
    assert result.error is not None
    assert (result.error.type, result.error.phase) == ("TimeoutError", "reply")


async def test_ipv6_loopback(anyio_backend: str, manager: PluginManager) -> None:
    with contextlib.ExitStack() as stack:
        try:
            server = stack.enter_context(run_udp_echo_server(socket.AF_INET6))
        except OSError:
            pytest.skip("no IPv6 loopback here")
        result = await check_one(manager, f"udp://[::1]:{server.port}", send="x", expect="x")
    assert result.status is Status.OK, result.summary
    assert result.summary.startswith(f"reply from [::1]:{server.port} in ")


async def test_address_policy_refuses_before_anything_is_sent(
    anyio_backend: str, manager: PluginManager, udp_echo_server: UdpEchoServer
) -> None:
    def policy(host: str, addresses: Sequence[str]) -> str | None:
        return f"{host} is not allowed"

    with address_policy(policy):
        result = await check_one(manager, f"udp://127.0.0.1:{udp_echo_server.port}")
    assert result.status is Status.CRITICAL
    assert result.summary == "127.0.0.1 is not allowed"
    assert udp_echo_server.received == []


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"send": "\\q"}, "unknown escape \\q"),
        ({"expect": "a", "expect_regex": "a"}, "set expect or expect_regex, not both"),
        ({"expect": ""}, "expect must not be empty"),
        ({"expect_regex": "(a"}, "expect_regex"),
        ({"reply_timeout": 0}, "reply_timeout"),
    ],
)
def test_bad_options_are_one_clear_error(
    manager: PluginManager, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(OptionsError) as error:
        build_targets(manager, ["udp://127.0.0.1:9"], options=options)
    assert message in str(error.value)


def test_udp_needs_a_port(manager: PluginManager) -> None:
    with pytest.raises(anyprobe.TargetError) as error:
        build_targets(manager, ["udp://127.0.0.1"])
    assert "no port in the URL (udp://HOST:PORT)" in str(error.value)


async def test_demo_rows_get_their_verdicts(anyio_backend: str, manager: PluginManager) -> None:
    from anyprobe.plugins.udp import demo_services

    async with demo_services() as checks:
        for demo in checks:
            result = await check_one(manager, demo.url, **demo.options)
            assert result.status is demo.expect, (demo.name, result.summary)


@contextlib.contextmanager
def run_slow_udp_server(delay: float) -> Iterator[int]:
    """A UDP server on 127.0.0.1 that answers ``LATE`` ``delay`` seconds after
    each datagram; yields its port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.05)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                _data, peer = sock.recvfrom(65535)
            except OSError:  # the read timeout, or an ICMP error for a reply
                continue
            if not stop.wait(delay):
                with contextlib.suppress(OSError):
                    sock.sendto(b"LATE", peer)

    thread = threading.Thread(target=serve, name="udp-slow", daemon=True)
    thread.start()
    try:
        yield sock.getsockname()[1]
    finally:
        stop.set()
        thread.join(timeout=5)
        sock.close()


async def test_reply_that_is_not_there_at_once_is_waited_for(
    anyio_backend: str, manager: PluginManager
) -> None:
    # The probe reads once without waiting; a reply that comes later must
    # still be read before reply_timeout.
    with run_slow_udp_server(0.2) as port:
        result = await check_one(manager, f"udp://127.0.0.1:{port}", expect="LATE", reply_timeout=4)
    assert result.status is Status.OK, result.summary
    assert result.summary.endswith("; got 'LATE' in 4 bytes")
