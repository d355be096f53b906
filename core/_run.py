"""One run: validated targets through the scheduler, results to the reporters.

:class:`Run` is what the CLI and the embedding API both execute, so a result
takes the same path whoever asked for it.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream

from ._fanout import REPORTER_BUFFER, REPORTER_TIMEOUT, Fanout
from ._manager import PluginManager
from ._model import Result, RunSummary, Status, Target
from ._probe import load_dependencies
from ._reporter import ReportContext, Reporter
from ._scheduler import Scheduler, resolve_concurrency
from ._watchdog import LoopWatchdog


@dataclass(frozen=True, slots=True)
class RunInfo:
    """What lifecycle hooks are told about a run."""

    total: int
    concurrency: int
    per_host: int | None
    reporters: tuple[str, ...]
    explain: bool


class Run:
    """Check ``targets`` and deliver every result to ``reporters``.

    ``reporter_buffer`` is how many results a reporter may fall behind
    before the checks wait for it; ``reporter_timeout`` is how long, in
    seconds, the reporters may take to finish after the last result (and
    may leave a result unread) before they are stopped and reported as
    failed (``None``: no limit). Call :meth:`interrupt` (from a signal
    handler task, say) to stop starting and running checks; what finished by
    then still reaches every reporter, which then get a few seconds to
    finish; a second call stops them at once. ``watchdog`` names, in a logged
    warning, a check that blocks the event loop (see :mod:`anyprobe._watchdog`).
    ``raise_file_limit`` lets it raise the process's open-file limit to fit
    the concurrency (the CLI does; a library call lowers the concurrency instead).
    """

    def __init__(
        self,
        targets: Sequence[Target],
        manager: PluginManager,
        reporters: Sequence[tuple[str, Reporter[Any]]] = (),
        *,
        concurrency: int | None = None,
        per_host: int | None = None,
        limiter: anyio.CapacityLimiter | None = None,
        explain: bool = False,
        verbosity: int = 0,
        color: bool | None = None,
        reporter_buffer: int = REPORTER_BUFFER,
        reporter_timeout: float | None = REPORTER_TIMEOUT,
        watchdog: bool = True,
        raise_file_limit: bool = True,
    ) -> None:
        self.targets = targets
        self.manager = manager
        self.reporters = list(reporters)
        self.reporter_buffer = reporter_buffer
        self.concurrency = resolve_concurrency(concurrency, raise_limit=raise_file_limit)
        self.per_host = per_host
        self.explain = explain
        self.scheduler = Scheduler(
            manager.probes,
            concurrency=self.concurrency,
            per_host=per_host,
            limiter=limiter,
            explain=explain,
        )
        self.report_context = ReportContext(
            total=len(targets), explain=explain, verbosity=verbosity, color=color
        )
        self.counts: Counter[Status] = Counter()
        self.interrupted: str | None = None
        self.watchdog = LoopWatchdog() if watchdog else None
        self.scheduler.watchdog = self.watchdog
        self._fanout = Fanout(
            self.reporters, self.report_context, buffer=reporter_buffer, timeout=reporter_timeout
        )
        self._checks_scope: anyio.CancelScope | None = None
        self._dependencies_loaded = False

    @property
    def info(self) -> RunInfo:
        return RunInfo(
            total=len(self.targets),
            concurrency=self.concurrency,
            per_host=self.per_host,
            reporters=tuple(name for name, _ in self.reporters),
            explain=self.explain,
        )

    def interrupt(self, reason: str) -> None:
        """Cancel the checks still running; results already finished are kept
        and the reporters get a few seconds to write them. A second call stops
        the reporters still running: their files are left as they were."""
        if self.interrupted is None:
            self.interrupted = reason
            self._fanout.hurry(reason)
        else:
            self._fanout.stop(self.interrupted)
        if self._checks_scope is not None:
            self._checks_scope.cancel()

    def results(self) -> MemoryObjectReceiveStream[Result]:
        """A stream of every result of this run, for a consumer that is not a
        reporter (call before :meth:`execute`; it ends when the run does)."""
        # Room for two results per worker: on trio the reading task may run
        # first in one turn of the event loop and last in the next, while every
        # worker finishes a check in each; a full stream would make the workers
        # wait for it (a cancel scope and a wake-up per result).
        return self._fanout.tap(buffer=max(self.reporter_buffer, 2 * self.concurrency))

    def collect(self) -> list[Result]:
        """A list that every result of this run is appended to as it completes,
        for a consumer that wants them all at the end (call before :meth:`execute`)."""
        collected: list[Result] = []
        self._fanout.collect(collected)
        return collected

    async def load_dependencies(self) -> None:
        """Import what the run's probes need (:meth:`Probe.load_dependencies`)
        before any check starts; raises :class:`~anyprobe.MissingDependency`.
        :meth:`execute` calls it; call it first to get that error before
        starting the task group that runs :meth:`execute`."""
        if not self._dependencies_loaded:
            await load_dependencies(self.targets, self.manager.probes)
            self._dependencies_loaded = True

    async def execute(self) -> RunSummary:
        """Run every check; returns once every reporter has finished."""
        await self.load_dependencies()
        fanout = self._fanout
        info = self.info
        self.manager.call_lifecycle("anyprobe_run_started", run=info)
        start = time.perf_counter()

        counts = self.counts
        offer = fanout.offer

        def emit(result: Result) -> Awaitable[None] | None:
            # None once every reporter has it: the scheduler awaits only a
            # reporter whose buffer is full.
            counts[result.status] += 1
            return offer(result)

        async with (
            _closing(self.scheduler.resources),
            _aborting(fanout),
            anyio.create_task_group() as tg,
        ):
            fanout.start(tg)
            with anyio.CancelScope() as scope:
                self._checks_scope = scope
                if self.interrupted is None:
                    async with anyio.create_task_group() as checks:
                        if self.watchdog is not None:
                            await checks.start(self.watchdog.beat)
                        await self.scheduler.run(self.targets, emit, len(self.targets))
                        checks.cancel_scope.cancel()
            self._checks_scope = None
            summary = RunSummary(
                total=len(self.targets),
                counts=dict(self.counts),
                not_finished=len(self.targets) - sum(self.counts.values()),
                duration=time.perf_counter() - start,
                interrupted=self.interrupted,
            )
            fanout.close(summary)
            await fanout.finish()
        summary = dataclasses.replace(
            summary,
            interrupted=self.interrupted,
            reporter_failures=tuple(fanout.failures),
            reporters_stopped=tuple(fanout.stopped),
        )
        self.manager.call_lifecycle("anyprobe_run_finished", run=info, summary=summary)
        return summary


@asynccontextmanager
async def _aborting(fanout: Fanout) -> AsyncIterator[None]:
    """However the run ends (cancelled from outside included), close its streams."""
    try:
        yield
    finally:
        fanout.abort()


@asynccontextmanager
async def _closing(resources: dict[Any, Any]) -> AsyncIterator[None]:
    """When the run ends, close its shared resources (see :func:`close_resources`)."""
    try:
        yield
    finally:
        await close_resources(resources)


async def close_resources(resources: dict[Any, Any]) -> None:
    """Close every shared resource (``ctx.shared``) that has an async
    ``aclose()``: the asyncio bridge, a client a probe keeps open. Shielded:
    they are closed even when the run is being cancelled."""
    with anyio.CancelScope(shield=True):
        for resource in list(resources.values()):
            aclose = getattr(resource, "aclose", None)
            if aclose is None:
                continue
            try:
                await aclose()
            except Exception:
                logging.getLogger("anyprobe.run").exception(
                    "closing shared resource %r failed", resource
                )
