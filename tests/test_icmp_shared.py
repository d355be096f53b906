"""The ICMP socket the checks of a run share (anyprobe.plugins._icmp_shared),
against loopback, on both backends: one socket for the run's checks, closed
when the run ends, nothing left behind by a cancelled check or by many
``anyprobe.check()`` calls at once, and a waiting check never stranded when
the one reading for it leaves.

ICMP errors (unreachable, TTL exceeded) sent to the right one of several
checks sharing a socket are tested in network namespaces by
tests/test_icmp_netns.py.
"""

from __future__ import annotations

import gc
import os
import re
import socket
import struct
from pathlib import Path

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st

import anyprobe
from anyprobe import PluginManager, Status
from anyprobe.plugins._icmp_packets import NoIcmpSocket, checksum, open_socket
from anyprobe.plugins._icmp_shared import EchoSockets, Exchange


def _icmp_refused() -> str | None:
    try:
        sock, _kind = open_socket(socket.AF_INET, "auto")
    except NoIcmpSocket as exc:
        return str(exc)
    sock.close()
    return None


_REFUSED = _icmp_refused()
needs_icmp = pytest.mark.skipif(_REFUSED is not None, reason=f"no ICMP socket: {_REFUSED}")


def icmp_sockets_open() -> int:
    """ICMP sockets (raw or datagram, IPv4 or IPv6) this process holds open."""
    inodes: set[str] = set()
    for table in ("raw", "raw6", "icmp", "icmp6"):
        try:
            lines = Path(f"/proc/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        inodes.update(line.split()[9] for line in lines if len(line.split()) > 9)
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            link = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:[") and link[8:-1] in inodes:
            count += 1
    return count


def identifiers(result: anyprobe.Result) -> set[str]:
    """The echo identifiers a check's trace names (one per socket it used)."""
    found = (re.search(r"echo identifier (\d+)", event.message) for event in result.trace)
    return {match.group(1) for match in found if match}


@needs_icmp
@pytest.mark.anyio
async def test_the_checks_of_a_run_share_one_socket_closed_when_it_ends(
    anyio_backend: str, manager: PluginManager
) -> None:
    before = icmp_sockets_open()
    results = await anyprobe.check(
        ["icmp://127.0.0.1"] * 8,
        options={"count": 3, "interval": 0.01},
        manager=manager,
        timeout=5,
        explain=True,
    )
    for result in results:
        assert result.status is Status.OK, result.summary
        assert result.metrics["packets_received"] == 3
        assert "duplicates" not in result.metrics
    assert len(set().union(*map(identifiers, results))) == 1
    assert icmp_sockets_open() == before


@needs_icmp
@pytest.mark.anyio
async def test_each_family_and_ttl_has_its_socket(
    anyio_backend: str, manager: PluginManager
) -> None:
    config = {"count": 2, "interval": 0.01}
    before = icmp_sockets_open()
    results = await anyprobe.check(
        [
            anyprobe.Check("icmp://127.0.0.1", name="v4", options=config),
            anyprobe.Check("icmp://127.0.0.2", name="other v4", options=config),
            anyprobe.Check("icmp://[::1]", name="v6", options=config),
            anyprobe.Check("icmp://127.0.0.1", name="ttl 9", options={**config, "ttl": 9}),
        ],
        manager=manager,
        timeout=5,
        explain=True,
    )
    assert [r.status for r in results] == [Status.OK] * 4, [r.summary for r in results]
    by_name = {result.name: identifiers(result) for result in results}
    assert by_name["v4"] == by_name["other v4"]  # one socket for every IPv4 address
    assert len(by_name["v4"] | by_name["v6"] | by_name["ttl 9"]) == 3
    assert icmp_sockets_open() == before


@needs_icmp
@pytest.mark.anyio
async def test_many_check_calls_at_once_from_a_host_program_leave_nothing_open(
    anyio_backend: str, manager: PluginManager
) -> None:
    # Each anyprobe.check() call is a run of its own, with its own sockets.
    before = icmp_sockets_open()
    outcomes: list[list[anyprobe.Result]] = []

    async def call() -> None:
        outcomes.append(
            await anyprobe.check(
                ["icmp://127.0.0.1", "icmp://[::1]"],
                options={"count": 3, "interval": 0.01},
                manager=manager,
                timeout=5,
            )
        )

    async with anyio.create_task_group() as tg:
        for _ in range(6):
            tg.start_soon(call)
    assert [r.status for results in outcomes for r in results] == [Status.OK] * 12
    assert icmp_sockets_open() == before


@needs_icmp
@pytest.mark.anyio
async def test_a_cancelled_check_leaves_the_others_their_replies(
    anyio_backend: str, manager: PluginManager
) -> None:
    # The probe called directly, as a run calls it: one resources dict.
    before = icmp_sockets_open()
    manager_, targets = anyprobe.prepare(
        ["icmp://127.0.0.1", "icmp://127.0.0.1"],
        options={"count": 4, "interval": 0.02, "reply_timeout": 2},
        manager=manager,
    )
    probe = manager_.probes["icmp"]
    resources: dict[object, object] = {}
    outcomes: list[anyprobe.Outcome] = []

    async def one(target: anyprobe.Target, scope: anyio.CancelScope | None = None) -> None:
        ctx = anyprobe.CheckContext(
            timeout=5, deadline=anyio.current_time() + 5, resources=resources
        )
        with scope or anyio.CancelScope():
            outcomes.append(await probe.check(target, target.options, ctx))

    async with anyio.create_task_group() as tg:
        doomed = anyio.CancelScope()
        tg.start_soon(one, targets[0], doomed)
        tg.start_soon(one, targets[1])
        await anyio.wait_all_tasks_blocked()
        doomed.cancel()
    [survivor] = outcomes
    assert survivor.status is Status.OK, survivor.summary
    assert icmp_sockets_open() == before + 1  # the run's socket, until the run ends
    await EchoSockets.aclose(resources["anyprobe.icmp sockets"])  # type: ignore[arg-type]
    assert icmp_sockets_open() == before


@needs_icmp
@pytest.mark.anyio
async def test_a_follower_takes_over_when_the_reader_is_cancelled(
    anyio_backend: str,
) -> None:
    # The first check to wait reads the socket; the second waits for it.
    # The reader is cancelled: the second must read its own reply, not sleep
    # until its deadline with the reply unread.
    sockets = EchoSockets()
    shared = sockets.acquire(socket.AF_INET, "auto", None, {})
    far = anyio.current_time() + 60

    def exchange() -> Exchange:
        ctx = anyprobe.CheckContext(timeout=60, deadline=far)
        return Exchange("127.0.0.1", os.urandom(8) + bytes(24), ctx)

    reader, follower = exchange(), exchange()
    try:
        with anyio.fail_after(10):  # a stranded follower would hang the test
            async with anyio.create_task_group() as tg:
                reader_scope = anyio.CancelScope()

                async def read() -> None:
                    with reader_scope:
                        await shared.wait(reader, far)

                tg.start_soon(read)
                await anyio.wait_all_tasks_blocked()
                tg.start_soon(shared.wait, follower, far)
                await anyio.wait_all_tasks_blocked()
                reader_scope.cancel()
                await anyio.wait_all_tasks_blocked()
                shared.send(follower)
                follower.tally.sent += 1
        assert list(follower.tally.rtts) == [1]
        assert not reader.tally.rtts
    finally:
        shared.forget(reader)
        shared.forget(follower)
        sockets.release(shared)
        await sockets.aclose()


@needs_icmp
@pytest.mark.anyio
async def test_a_probe_called_outside_a_run_closes_its_socket_with_its_context(
    anyio_backend: str, manager: PluginManager
) -> None:
    before = icmp_sockets_open()
    manager_, [target] = anyprobe.prepare(
        ["icmp://127.0.0.1"], options={"count": 1}, manager=manager
    )
    ctx = anyprobe.CheckContext(timeout=5, deadline=anyio.current_time() + 5)
    outcome = await manager_.probes["icmp"].check(target, target.options, ctx)
    assert outcome.status is Status.OK, outcome.summary
    assert icmp_sockets_open() == before + 1
    del ctx
    gc.collect()
    assert icmp_sockets_open() == before


def _rfc1071(data: bytes) -> int:
    """The Internet checksum the long way: 16-bit words, carries folded back."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


@given(st.binary(max_size=200))
def test_checksum_is_rfc_1071s(data: bytes) -> None:
    assert checksum(data) == _rfc1071(data)


@pytest.mark.parametrize("data", [b"", b"\0\0", b"\xff\xff", b"\xff\xfe\x00\x01", b"\x01"])
def test_checksum_edges(data: bytes) -> None:
    # A sum that is a nonzero multiple of 0xFFFF is 0xFFFF, not 0.
    assert checksum(data) == _rfc1071(data)
