"""The memcached probe against a memcached look-alike on loopback."""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable

import anyprobe
import pytest
from anyprobe import Status
from anyprobe.testing import CLOSE, LineServer

pytestmark = pytest.mark.anyio

Check = Callable[..., Awaitable[anyprobe.Result]]
StartServer = Callable[..., LineServer]

STATS = [
    "STAT pid 1",
    "STAT uptime 3600",
    "STAT curr_connections 12",
    "STAT get_hits 90",
    "STAT get_misses 10",
    "STAT evictions 0",
    "END",
]


def memcached(version: str = "1.6.21", stats: list[str] = STATS) -> dict[str, object]:
    """The replies of a healthy memcached."""
    return {"version": f"VERSION {version}", "stats": stats, "quit": CLOSE}


async def test_healthy_server_is_ok_with_its_stats_as_metrics(
    anyprobe_line_server: StartServer, anyprobe_check: Check
) -> None:
    server = anyprobe_line_server(memcached())
    result = await anyprobe_check(server.url("memcached"))
    assert result.status is Status.OK, result.summary
    assert result.summary == "memcached 1.6.21: 12 connections, 90% hits"
    assert result.metrics["hit_ratio"] == 0.9 and result.metrics["uptime"] == 3600
    assert {"resolve", "connect", "version", "stats"} <= set(result.phases)
    await server.idle()
    assert server.received == ["version", "stats", "quit"]


async def test_stats_can_be_skipped(
    anyprobe_line_server: StartServer, anyprobe_check: Check
) -> None:
    server = anyprobe_line_server(memcached())
    result = await anyprobe_check(server.url("memcached"), options={"stats": False})
    assert (result.status, result.summary) == (Status.OK, "memcached 1.6.21")
    await server.idle()
    assert server.received == ["version", "quit"]


async def test_unexpected_version_is_critical(
    anyprobe_line_server: StartServer, anyprobe_check: Check
) -> None:
    server = anyprobe_line_server(memcached("1.4.39"))
    result = await anyprobe_check(server.url("memcached"), options={"expect_version": r"^1\.6\."})
    assert result.status is Status.CRITICAL
    assert result.summary == "version 1.4.39 does not match '^1\\\\.6\\\\.'"
    assert result.error is not None and result.error.phase is None


async def test_too_many_connections_is_a_warning(
    anyprobe_line_server: StartServer, anyprobe_check: Check
) -> None:
    server = anyprobe_line_server(memcached())
    result = await anyprobe_check(server.url("memcached"), options={"max_connections": 10})
    assert result.status is Status.WARNING
    assert result.summary.endswith("(max_connections 10)")


async def test_error_reply_is_critical_and_names_the_command(
    anyprobe_line_server: StartServer, anyprobe_check: Check
) -> None:
    server = anyprobe_line_server({"version": "ERROR"})
    result = await anyprobe_check(server.url("memcached"))
    assert result.status is Status.CRITICAL
    assert result.summary == "the server answered 'ERROR' to version"
    assert result.error is not None and result.error.phase == "version"


async def test_another_protocol_is_critical(
    anyprobe_line_server: StartServer, anyprobe_check: Check
) -> None:
    server = anyprobe_line_server(lambda line: "HTTP/1.1 400 Bad Request")
    result = await anyprobe_check(server.url("memcached"))
    assert result.status is Status.CRITICAL
    assert result.summary == "expected a VERSION reply, got 'HTTP/1.1 400 Bad Request'"


async def test_truncated_stats_are_critical(
    anyprobe_line_server: StartServer, anyprobe_check: Check
) -> None:
    server = anyprobe_line_server({**memcached(), "stats": [*STATS[:2], CLOSE]})
    result = await anyprobe_check(server.url("memcached"))
    assert result.status is Status.CRITICAL
    assert result.summary == "the server closed the connection"
    assert result.error is not None and result.error.phase == "stats"


async def test_silent_server_times_out_in_the_version_phase(
    anyprobe_line_server: StartServer, anyprobe_check: Check
) -> None:
    server = anyprobe_line_server({})
    result = await anyprobe_check(server.url("memcached"), timeout=0.3)
    assert result.status is Status.CRITICAL
    assert "timed out" in result.summary and "version" in result.summary
    assert result.error is not None and result.error.phase == "version"


async def test_refused_connection_is_critical(anyprobe_check: Check) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = await anyprobe_check(f"memcached://127.0.0.1:{port}")
    assert (result.status, result.summary) == (Status.CRITICAL, "connection refused")
    assert result.error is not None and result.error.phase == "connect"


async def test_bad_options_are_refused_before_anything_runs(anyprobe_check: Check) -> None:
    with pytest.raises(anyprobe.OptionsError, match="expect_version"):
        await anyprobe_check("memcached://127.0.0.1", options={"expect_version": "(unclosed"})
    with pytest.raises(anyprobe.OptionsError, match="max_connections"):
        await anyprobe_check("memcached://127.0.0.1", options={"max_connections": 0})


def test_default_port_is_memcacheds(anyprobe_manager: anyprobe.PluginManager) -> None:
    _, targets = anyprobe.prepare(["memcached://cache.example"], manager=anyprobe_manager)
    assert (targets[0].probe, targets[0].port) == ("memcached", 11211)


def test_a_path_or_a_password_in_the_url_is_refused(
    anyprobe_manager: anyprobe.PluginManager,
) -> None:
    with pytest.raises(anyprobe.TargetError, match=r"^memcached://cache/0: a path \(/0\)"):
        anyprobe.prepare(["memcached://cache/0"], manager=anyprobe_manager)
    with pytest.raises(anyprobe.TargetError, match=r"memcached://u:\*\*\*@cache: a password"):
        anyprobe.prepare(["memcached://u:pw@cache"], manager=anyprobe_manager)
