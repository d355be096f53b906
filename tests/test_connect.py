"""The TCP connect path every socket probe shares: resolve, connect, timeouts, families."""

from __future__ import annotations

import resource
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

import anyprobe
from anyprobe import PluginManager, Status

pytestmark = pytest.mark.anyio


def ipv6_available() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.fixture
def ipv6_listening_port() -> Iterator[int]:
    if not ipv6_available():
        pytest.skip("no IPv6 loopback on this machine")
    with socket.create_server(("::1", 0), family=socket.AF_INET6) as server:
        yield server.getsockname()[1]


async def check_one(manager: PluginManager, url: str, **kwargs: object) -> anyprobe.Result:
    [result] = await anyprobe.check([url], manager=manager, **kwargs)  # type: ignore[arg-type]
    return result


async def test_port_that_never_answers_times_out_during_connect(
    manager: PluginManager, blackhole_port: int
) -> None:
    result = await check_one(manager, f"tcp://127.0.0.1:{blackhole_port}", timeout=0.3)
    assert result.status is Status.CRITICAL
    assert result.summary == "timed out after 0.3 s during connect"
    assert result.error is not None and result.error.phase == "connect"
    assert "resolve" in result.phases


async def test_ipv6_literal_connects(manager: PluginManager, ipv6_listening_port: int) -> None:
    result = await check_one(manager, f"tcp://[::1]:{ipv6_listening_port}")
    assert result.status is Status.OK
    assert result.metrics["address"] == "::1"


async def test_ip_family_ipv4_refuses_an_ipv6_literal(
    manager: PluginManager, ipv6_listening_port: int
) -> None:
    result = await check_one(
        manager, f"tcp://[::1]:{ipv6_listening_port}", options={"ip_family": "ipv4"}
    )
    assert result.status is Status.CRITICAL
    assert result.summary == "::1 is not an ipv4 address"


async def test_localhost_over_ipv4_only(manager: PluginManager, listening_port: int) -> None:
    result = await check_one(
        manager, f"tcp://localhost:{listening_port}", options={"ip_family": "ipv4"}
    )
    assert result.status is Status.OK
    assert result.metrics["address"] == "127.0.0.1"


async def test_unresolvable_name_is_critical_in_resolve(manager: PluginManager) -> None:
    result = await check_one(manager, "tcp://no-such-host.invalid:80", timeout=5)
    assert result.status is Status.CRITICAL
    assert result.summary.startswith("cannot resolve no-such-host.invalid")
    assert result.error is not None and result.error.phase == "resolve"


def test_concurrency_is_lowered_to_fit_the_open_file_limit(listening_port: int) -> None:
    def small_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (200, 200))

    targets = [f"tcp://127.0.0.1:{listening_port}/{i}" for i in range(300)]
    proc = subprocess.run(
        [sys.executable, "-m", "anyprobe", "check", "-c", "1000", "-r", "jsonl", *targets],
        capture_output=True,
        text=True,
        preexec_fn=small_limit,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "concurrency 1000 lowered to 68 to stay within the open-file limit" in proc.stderr
    assert proc.stdout.count('"status": "ok"') == 300


def test_progress_bar_can_be_forced_on(listening_port: int) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "anyprobe", "check", "--progress",
         f"tcp://127.0.0.1:{listening_port}"],
        capture_output=True,
        text=True,
        timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
