"""Leaving ``async with anyprobe.stream(...)`` early is safe, however it is left.

An async generator that owns a task group cannot be left early safely (PEP
789), so ``stream()`` works only inside ``async with``. These tests leave the
block by ``break``, ``return`` and an exception, many times with random
timing, while checks hold sockets (connects that never complete) and tasks
(checks that never end), and require that the caller sees only its own
exception and that no task or socket outlives the block.
"""

from __future__ import annotations

import os
import random

import anyio
import pytest

import anyprobe
from anyprobe import PluginManager, Status
from tests import probes

pytestmark = pytest.mark.anyio

ROUNDS = 200


class Boom(Exception):
    """The loop body's own exception."""


def client_sockets(port: int) -> set[str]:
    """The inodes of this process's open TCP sockets whose remote end is
    ``port`` on loopback (the fixture's own fillers among them: those may
    leave the table when their unanswered connect times out)."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            link = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[len("socket:[") : -1])
    found = set()
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        with open(table, encoding="ascii") as lines:
            next(lines)
            for line in lines:
                fields = line.split()
                remote_port = int(fields[2].rsplit(":", 1)[1], 16)
                if remote_port == port and fields[9] in inodes:
                    found.add(fields[9])
    return found


@pytest.fixture
def scripted(manager: PluginManager) -> PluginManager:
    manager.register(probes)
    return manager


def targets_for(listening_port: int, blackhole_port: int, rng: random.Random) -> list[str]:
    """Checks that end at once, soon, or never (a hang, a connect never answered)."""
    targets = [f"test://ok-{i}" for i in range(rng.randint(3, 5))]
    targets += [f"test://slow-{i}" for i in range(rng.randint(0, 3))]
    targets += [f"tcp://127.0.0.1:{listening_port}/{i}" for i in range(rng.randint(0, 3))]
    targets += [f"tcp://127.0.0.1:{blackhole_port}/{i}" for i in range(rng.randint(1, 3))]
    targets += ["test://hang-1", "test://hang-2"]
    rng.shuffle(targets)
    return targets


@pytest.mark.parametrize("how", ["break", "return", "exception"])
async def test_leaving_the_stream_early_leaves_nothing_behind(
    how: str, scripted: PluginManager, listening_port: int, blackhole_port: int
) -> None:
    rng = random.Random(f"{how}-{anyio.get_current_task().name}")
    tasks_before = len(anyio.get_running_tasks())
    sockets_before = client_sockets(blackhole_port)

    async def consume(targets: list[str], leave_after: int, pause: float) -> int:
        seen = 0
        async with anyprobe.stream(
            targets, manager=scripted, timeout=60, options={"sleep": pause}
        ) as results:
            if leave_after == 0:
                await anyio.sleep(pause)
            else:
                async for _ in results:
                    seen += 1
                    await anyio.sleep(rng.choice([0, 0, pause]))
                    if seen >= leave_after:
                        if how == "return":
                            return seen
                        if how == "exception":
                            raise Boom(seen)
                        break
            if how == "exception":
                raise Boom(seen)
        assert results.summary is not None
        assert results.summary.interrupted == "the caller left the stream"
        return seen

    for _ in range(ROUNDS):
        targets = targets_for(listening_port, blackhole_port, rng)
        leave_after = rng.randint(0, 3)
        pause = rng.choice([0.0, 0.0005, 0.002])
        if how == "exception":
            with pytest.raises(Boom):
                await consume(targets, leave_after, pause)
        else:
            await consume(targets, leave_after, pause)
        assert len(anyio.get_running_tasks()) == tasks_before
        assert client_sockets(blackhole_port) <= sockets_before


async def test_iterating_without_async_with_raises_at_once(scripted: PluginManager) -> None:
    results = anyprobe.stream(["test://ok"], manager=scripted)
    with pytest.raises(TypeError, match=r"async with anyprobe\.stream\(targets\) as results"):
        async for _ in results:
            pass
    with pytest.raises(TypeError, match="async with"):
        await results.__anext__()


async def test_a_stream_is_entered_only_once(scripted: PluginManager) -> None:
    results = anyprobe.stream(["test://ok"], manager=scripted)
    async with results:
        assert [r.status async for r in results] == [Status.OK]
    with pytest.raises(RuntimeError, match="only once"):
        async with results:
            pass
    with pytest.raises(TypeError):
        async for _ in results:
            pass


async def test_the_summary_is_on_the_stream_after_the_block(scripted: PluginManager) -> None:
    async with anyprobe.stream(["test://ok-1", "test://fail"], manager=scripted) as results:
        assert results.summary is None
        statuses = sorted([r.status.value async for r in results])
    assert statuses == ["critical", "ok"]
    assert results.summary is not None
    assert results.summary.counts == {Status.OK: 1, Status.CRITICAL: 1}
    assert results.summary.interrupted is None


async def test_an_outer_cancel_scope_cancels_the_stream_cleanly(
    scripted: PluginManager, blackhole_port: int
) -> None:
    tasks_before = len(anyio.get_running_tasks())
    sockets_before = client_sockets(blackhole_port)
    with anyio.CancelScope() as scope:
        async with anyprobe.stream(
            ["test://ok", f"tcp://127.0.0.1:{blackhole_port}", "test://hang"],
            manager=scripted,
            timeout=60,
        ) as results:
            async for _ in results:
                scope.cancel()
    assert scope.cancelled_caught
    assert results.summary is None
    assert len(anyio.get_running_tasks()) == tasks_before
    assert client_sockets(blackhole_port) <= sockets_before
