"""The result stream: every result reaches every reporter; one reporter's
failure or slowness costs the others nothing."""

from __future__ import annotations

import anyio
import pytest

import anyprobe
from anyprobe import PluginManager, Reporter, ReporterOptions, Result, Run, Status
from anyprobe._targets import build_targets
from tests import probes

pytestmark = pytest.mark.anyio


class Collect(Reporter[ReporterOptions]):
    name = "collect"

    def __init__(self, delay: float = 0.0, fail_at: int | None = None) -> None:
        super().__init__(ReporterOptions())
        self.results: list[Result] = []
        self.delay = delay
        self.fail_at = fail_at
        self.summary: anyprobe.RunSummary | None = None

    async def report(self, results: anyprobe.ResultStream, ctx: anyprobe.ReportContext) -> None:
        async for result in results:
            if self.delay:
                await anyio.sleep(self.delay)
            self.results.append(result)
            if self.fail_at is not None and len(self.results) == self.fail_at:
                raise RuntimeError("disk full")
        self.summary = ctx.summary


@pytest.fixture
def scripted(manager: PluginManager) -> PluginManager:
    manager.register(probes)
    return manager


async def test_every_reporter_gets_every_result_despite_a_failing_and_a_slow_one(
    scripted: PluginManager,
) -> None:
    targets = build_targets(scripted, [f"test://ok-{i}" for i in range(30)])
    good, slow, failing = Collect(), Collect(delay=0.002), Collect(fail_at=3)
    run = Run(
        targets,
        scripted,
        [("good", good), ("slow", slow), ("failing", failing)],
        concurrency=4,
    )
    summary = await run.execute()
    assert len(good.results) == len(slow.results) == 30
    assert len(failing.results) == 3
    assert summary.reporter_failures == ("reporter failing failed: RuntimeError: disk full",)
    assert good.summary is not None and good.summary.finished == 30
    assert summary.not_finished == 0


async def test_slow_reporter_applies_back_pressure_not_memory(scripted: PluginManager) -> None:
    targets = build_targets(scripted, [f"test://ok-{i}" for i in range(200)])
    slow = Collect(delay=0.001)
    seen_lag = []

    class Watch(Reporter[ReporterOptions]):
        name = "watch"

        async def report(self, results: anyprobe.ResultStream, ctx: anyprobe.ReportContext) -> None:
            async for _ in results:
                seen_lag.append(run.scheduler.finished - len(slow.results))

    run = Run(
        targets,
        scripted,
        [("slow", slow), ("watch", Watch(ReporterOptions()))],
        concurrency=8,
        reporter_buffer=10,
    )
    await run.execute()
    assert len(slow.results) == 200
    # Finished checks never get more than the buffer (+ those in flight) ahead of it.
    assert max(seen_lag) <= 10 + 8 + 2


async def test_waiting_for_a_full_reporter_is_no_part_of_a_checks_timeout(
    scripted: PluginManager,
) -> None:
    # Each result waits for a reporter slower than the checks' timeout: the
    # wait for room in its buffer must not count against the check's deadline.
    targets = build_targets(scripted, [f"test://ok-{i}" for i in range(4)], timeout=0.2)
    slow = Collect(delay=0.6)
    run = Run(targets, scripted, [("slow", slow)], concurrency=1, reporter_buffer=1)
    summary = await run.execute()
    assert [r.status for r in slow.results] == [Status.OK] * 4, [r.summary for r in slow.results]
    assert summary.counts == {Status.OK: 4}


async def test_reporter_that_stops_reading_is_reported(scripted: PluginManager) -> None:
    class Quitter(Reporter[ReporterOptions]):
        name = "quitter"

        async def report(self, results: anyprobe.ResultStream, ctx: anyprobe.ReportContext) -> None:
            async for _ in results:
                return

    good = Collect()
    targets = build_targets(scripted, [f"test://ok-{i}" for i in range(20)])
    summary = await Run(
        targets, scripted, [("quitter", Quitter(ReporterOptions())), ("good", good)]
    ).execute()
    assert len(good.results) == 20
    assert summary.reporter_failures == ("reporter quitter stopped reading before the run ended",)


async def test_interrupt_keeps_finished_results_for_every_reporter(scripted: PluginManager) -> None:
    targets = build_targets(
        scripted, ["test://ok-1", "test://ok-2", "test://hang-1", "test://hang-2"], timeout=60
    )
    first, second = Collect(), Collect()
    run = Run(targets, scripted, [("first", first), ("second", second)], concurrency=4)

    async def interrupt_when_oks_are_in() -> None:
        while len(first.results) < 2:  # noqa: ASYNC110 - polling a plain list
            await anyio.sleep(0.01)
        run.interrupt("SIGINT")

    async with anyio.create_task_group() as tg:
        tg.start_soon(interrupt_when_oks_are_in)
        summary = await run.execute()
    assert summary.interrupted == "SIGINT"
    assert (summary.finished, summary.not_finished) == (2, 2)
    assert [r.status for r in first.results] == [anyprobe.Status.OK] * 2
    assert len(second.results) == 2
    assert first.summary is not None and first.summary.interrupted == "SIGINT"
