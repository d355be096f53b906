"""``--per-host``: a target waiting for its busy host never holds a worker, so
other hosts' checks go on. Two real loopback hosts, 127.0.0.1 and 127.0.0.2."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import anyio
import anyio.abc
import anyio.to_thread
import pytest

import anyprobe
from anyprobe import PluginManager, Status
from anyprobe._serve import ProbeServer, load_serve_config
from tests import probes
from tests.servers.banner import serve_tcp

pytestmark = pytest.mark.anyio


@pytest.fixture
def gate() -> Iterator[threading.Event]:
    """Opened by the test; the gated server answers only once it is open."""
    event = threading.Event()
    yield event
    event.set()  # lets a server still waiting end at teardown


@pytest.fixture
def gated_port(gate: threading.Event) -> Iterator[int]:
    """127.0.0.1: sends its banner only once the test opens the gate."""

    async def banner_when_open(stream: anyio.abc.SocketStream) -> None:
        await anyio.to_thread.run_sync(gate.wait, abandon_on_cancel=True)
        await stream.send(b"220 gated ready\r\n")

    with serve_tcp(banner_when_open, host="127.0.0.1") as port:
        yield port


@pytest.fixture
def second_host_port() -> Iterator[int]:
    """127.0.0.2: sends its banner at once."""

    async def banner(stream: anyio.abc.SocketStream) -> None:
        await stream.send(b"220 quick ready\r\n")

    with serve_tcp(banner, host="127.0.0.2") as port:
        yield port


async def test_targets_waiting_for_a_busy_host_leave_other_hosts_running(
    manager: PluginManager, gate: threading.Event, gated_port: int, second_host_port: int
) -> None:
    # Four checks of the gated host come first: with -c 4 --per-host 1 one of
    # them runs and three wait for the host. The second host's checks must
    # all finish while the first host's are held; only then is the gate opened.
    gated = [f"tcp://127.0.0.1:{gated_port}/{i}" for i in range(4)]
    quick = [f"tcp://127.0.0.2:{second_host_port}/{i}" for i in range(4)]
    _, targets = anyprobe.prepare(
        gated + quick, manager=manager, options={"expect": "220"}, timeout=10
    )
    order: list[str] = []
    with anyio.fail_after(60):  # a guard against a hang, not a measure
        async with anyprobe.stream(targets, manager=manager, concurrency=4, per_host=1) as results:
            async for result in results:
                assert result.status is Status.OK, result.summary
                order.append(result.target)
                if len(order) == len(quick):
                    gate.set()
    assert sorted(order[:4]) == quick
    assert sorted(order[4:]) == gated


async def test_many_targets_of_one_host_all_finish_when_parking_is_full(
    manager: PluginManager,
) -> None:
    # concurrency 2 parks at most 20 targets: the 30 of one host overflow it,
    # and every one of them still runs, one at a time.
    manager.register(probes)
    probes.ScriptedProbe.attempts.clear()
    probes.ScriptedProbe.running = probes.ScriptedProbe.most_running = 0
    targets = [f"test://slow/{i}" for i in range(30)]
    results = await anyprobe.check(
        targets, manager=manager, options={"sleep": 0.001}, concurrency=2, per_host=1
    )
    assert sorted(r.target for r in results) == sorted(targets)
    assert all(r.status is Status.OK for r in results)
    assert probes.ScriptedProbe.most_running == 1


async def test_serve_applies_per_host_to_its_scheduled_checks(
    manager: PluginManager,
    gate: threading.Event,
    gated_port: int,
    second_host_port: int,
    tmp_path: Path,
) -> None:
    # Two probe slots and [defaults] per_host = 1: one gated check runs, the
    # other waits for its host without taking the second slot, which the
    # second host's check gets while the gate is still closed.
    config = tmp_path / "serve.toml"
    config.write_text(
        "[defaults]\nper_host = 1\ntimeout = 10\n\n"
        + "".join(
            f'[[check]]\nname = "gated-{i}"\nurl = "tcp://127.0.0.1:{gated_port}/{i}"\n'
            f'expect = "220"\ninterval = 60\n\n'
            for i in range(2)
        )
        + f'[[check]]\nname = "quick"\nurl = "tcp://127.0.0.2:{second_host_port}"\n'
        'expect = "220"\ninterval = 60\n'
    )
    server = ProbeServer(
        manager, load_serve_config(str(config), manager), config_path=str(config), concurrency=2
    )
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.run_checks)
        for _ in range(600):  # bounded: until the second host's check has a result
            if "quick" in server.latest:
                break
            await anyio.sleep(0.05)
        seen = dict(server.latest)
        gate.set()
        server.stop_checks()
    assert seen["quick"].status is Status.OK, seen["quick"].summary
    assert "gated-0" not in seen and "gated-1" not in seen
