"""A timeout that expired while another check blocked the event loop is not a
verdict on the target: the attempt is run again once, and if that one is
stalled too the result is ``unknown``, naming the check that blocked; never
``critical``. (The watchdog tells the scheduler when, and by which check.)"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import SplitResult

import anyio
import pytest

import anyprobe
from anyprobe import PluginManager, Status

pytestmark = pytest.mark.anyio


class WaitsProbe(anyprobe.Probe[anyprobe.ProbeOptions]):
    """``waits://N``: a healthy check that waits N tenths of a second."""

    name = "waits"
    schemes = ("waits",)

    def validate_url(self, url: SplitResult, text: str) -> tuple[str, int | None]:
        return url.hostname or "", None

    async def check(
        self, target: anyprobe.Target, options: anyprobe.ProbeOptions, ctx: anyprobe.CheckContext
    ) -> anyprobe.Outcome:
        with ctx.phase("wait"):
            await anyio.sleep(int(target.host) / 10)
        return anyprobe.Outcome.ok("answered")


class StallsProbe(anyprobe.Probe[anyprobe.ProbeOptions]):
    """``stalls://N``: waits N tenths of a second, then blocks the loop for 1.5 s."""

    name = "stalls"
    schemes = ("stalls",)

    def validate_url(self, url: SplitResult, text: str) -> tuple[str, int | None]:
        return url.hostname or "", None

    async def check(
        self, target: anyprobe.Target, options: anyprobe.ProbeOptions, ctx: anyprobe.CheckContext
    ) -> anyprobe.Outcome:
        await anyio.sleep(int(target.host) / 10)
        time.sleep(1.5)  # noqa: ASYNC251 - blocking on purpose
        return anyprobe.Outcome.ok("blocked the loop")


class Plugin:
    @anyprobe.hookimpl
    def anyprobe_register_probes(self, register: Any) -> None:
        register(WaitsProbe)
        register(StallsProbe)


@pytest.fixture
def stalling(manager: PluginManager) -> PluginManager:
    manager.register(Plugin(), name="stalling")
    return manager


async def run(manager: PluginManager, stallers: list[str]) -> dict[str, anyprobe.Result]:
    # The healthy check waits 0.8 s under a 1 s timeout; the stallers' own
    # timeout is long enough for their 1.5 s block.
    _, healthy = anyprobe.prepare(["waits://8"], manager=manager, timeout=1)
    _, blockers = anyprobe.prepare(stallers, manager=manager, timeout=10)
    results = await anyprobe.check(
        [*healthy, *blockers], manager=manager, concurrency=4, watchdog=True
    )
    return {r.target: r for r in results}


async def test_a_timeout_another_check_caused_is_run_again_and_passes(
    stalling: PluginManager,
) -> None:
    # stalls://2 blocks the loop from 0.2 s to 1.7 s, through the healthy
    # check's deadline (1 s); its rerun, from 1.7 s, is left alone.
    results = await run(stalling, ["stalls://2"])
    healthy = results["waits://8"]
    assert healthy.status is Status.OK, healthy.summary
    assert healthy.attempts == 2
    first, second = healthy.attempt_log
    assert first.status is Status.UNKNOWN
    assert first.error is not None and first.error.type == "EventLoopBlocked"
    assert "while check stalls://2 (probe stalls) blocked the event loop for" in first.summary
    assert first.summary.endswith("(not a verdict on this target)")
    assert second.status is Status.OK
    assert healthy.summary.startswith("answered (on attempt 2; attempt 1: ")
    assert results["stalls://2"].status is Status.OK


async def test_a_rerun_stalled_again_is_unknown_naming_the_blocker_never_critical(
    stalling: PluginManager,
) -> None:
    # stalls://2 blocks from 0.2 s to 1.7 s (the first attempt), stalls://20
    # from 2.0 s to 3.5 s (the rerun, started at 1.7 s, due by 2.7 s).
    results = await run(stalling, ["stalls://2", "stalls://20"])
    healthy = results["waits://8"]
    assert healthy.status is Status.UNKNOWN, healthy.summary
    assert healthy.attempts == 2
    assert [a.status for a in healthy.attempt_log] == [Status.UNKNOWN, Status.UNKNOWN]
    assert "check stalls://2 (probe stalls)" in healthy.attempt_log[0].summary
    assert "check stalls://20 (probe stalls)" in healthy.attempt_log[1].summary
    assert healthy.error is not None and healthy.error.type == "EventLoopBlocked"
