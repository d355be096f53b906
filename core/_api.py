"""The embedding API: run checks from your own asyncio or trio program.

    import anyprobe

    async def main():
        async with anyprobe.stream(["tcp://127.0.0.1:22", "https://example.com"]) as results:
            async for result in results:
                print(result.name, result.status.value, result.summary)
        print(results.summary.describe())

``await anyprobe.check(targets)`` returns every result (``.summary`` on the
list); ``anyprobe.check_sync(targets)`` does the same from a script without an
event loop. ``stream()`` only works inside ``async with``: an async generator
that owns a task group cannot be left early safely (PEP 789).

Nothing here blocks the caller's event loop (plugin discovery runs once per
process, in a worker thread; a long target list is validated in slices that
yield to the loop), prints, or changes the process (its open-file limit, its
threads). Each call owns its plugin manager, limits and streams; the one
thing shared between calls is the list of installed plugins
(:func:`~anyprobe.forget_discovered_plugins` makes the next call look again).
The reference, with what each call raises, is docs/embedding.md.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel
import anyio.to_thread

from ._api_prepare import (
    CallSettings,
    Check,
    Prepared,
    ReporterSpec,
    Targets,
    call_settings,
    check_flag,
    prepare,
    prepare_async,
    resolve_reporters,
)
from ._backend import BACKENDS
from ._backend import run as run_on
from ._defaults import DEFAULT_TIMEOUT
from ._errors import ReporterError
from ._model import Result, RunSummary

if TYPE_CHECKING:
    from anyio.streams.memory import MemoryObjectReceiveStream

    from ._manager import PluginManager
    from ._run import Run

__all__ = [
    "Check",
    "Prepared",
    "ReporterSpec",
    "Results",
    "RunStream",
    "check",
    "check_sync",
    "prepare",
    "resolve_reporters",
    "stream",
]

USE_ASYNC_WITH = (
    "anyprobe.stream() must be entered first: "
    "`async with anyprobe.stream(targets) as results: async for result in results: ...`"
)

#: Most results a stream hands over without a checkpoint (see RunStream.__anext__).
CHECKPOINT_EVERY = 1024


class Results(list[Result]):
    """The results of :func:`check` (a plain list of :class:`~anyprobe.Result`)
    with the run's :class:`~anyprobe.RunSummary` as ``summary``."""

    summary: RunSummary

    def __init__(self, results: Iterable[Result], summary: RunSummary) -> None:
        super().__init__(results)
        self.summary = summary


# -- running ------------------------------------------------------------------------


def _alone(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    """The one exception inside ``group`` (groups nested in groups included), or None."""
    while len(group.exceptions) == 1:
        inner = group.exceptions[0]
        if not isinstance(inner, BaseExceptionGroup):
            return inner
        group = inner
    return None


class RunStream:
    """What :func:`stream` returns: enter it with ``async with``, then iterate it.

    ``summary`` is the run's :class:`~anyprobe.RunSummary` once the ``async
    with`` block has ended (None if the run was cancelled from outside).
    Leaving the block early (``break``, ``return``, an exception) stops the
    checks still running; results already finished still reach the reporters,
    and the block waits for them to finish.
    """

    def __init__(self, targets: Targets, settings: CallSettings) -> None:
        self._targets: Targets | None = targets
        self._settings = settings
        self._state = "new"
        self._run: Run | None = None
        self._receive: MemoryObjectReceiveStream[Result] | None = None
        self._task_group: anyio.abc.TaskGroup | None = None
        # check() takes every result at the end: a list, not a stream read
        # (and the reading task woken) once per result. There is no reader to
        # leave early, so the run is never interrupted on leaving the block.
        self._collected: list[Result] | None = None
        self._ended = False
        self._taken = 0
        self._summary: RunSummary | None = None
        self.summary: RunSummary | None = None

    def __aiter__(self) -> RunStream:
        if self._state != "open":
            raise TypeError(USE_ASYNC_WITH)
        return self

    async def __anext__(self) -> Result:
        receive = self._receive
        if self._state != "open" or receive is None:
            raise TypeError(USE_ASYNC_WITH)
        # The results already waiting are taken without a trip through the
        # event loop each (a run's checks can finish hundreds per trip), with
        # a checkpoint every CHECKPOINT_EVERY results and whenever none waits.
        self._taken += 1
        if self._taken < CHECKPOINT_EVERY:
            try:
                return receive.receive_nowait()
            except anyio.WouldBlock:
                pass
            except anyio.EndOfStream:
                self._ended = True
                raise StopAsyncIteration from None
        self._taken = 0
        try:
            return await receive.receive()
        except anyio.EndOfStream:
            self._ended = True
            raise StopAsyncIteration from None

    async def __aenter__(self) -> RunStream:
        if self._state != "new":
            raise RuntimeError("an anyprobe.stream() can be entered only once")
        self._state = "starting"
        settings = self._settings
        assert self._targets is not None
        manager, targets = await prepare_async(self._targets, settings)
        self._targets = None
        from ._run import Run

        concurrency = settings.concurrency
        if concurrency is None:
            from ._scheduler import DEFAULT_CONCURRENCY, max_safe_concurrency

            # Lowered quietly: the caller asked for no number, so a warning
            # would only be noise on every call (a 256-file limit is common).
            concurrency = min(DEFAULT_CONCURRENCY, max_safe_concurrency())
        run = Run(
            targets,
            manager,
            resolve_reporters(manager, settings.reporters),
            concurrency=concurrency,
            per_host=settings.per_host,
            limiter=settings.limiter,
            explain=settings.explain,
            watchdog=settings.watchdog,
            raise_file_limit=False,
        )
        self._run = run
        # A missing package is one error here, before any task starts.
        await run.load_dependencies()
        if self._collected is not None:
            self._collected = run.collect()
        else:
            self._receive = run.results()
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        self._task_group = task_group
        task_group.start_soon(self._execute, run)
        self._state = "open"
        return self

    async def _execute(self, run: Run) -> None:
        run_timeout = self._settings.run_timeout
        if run_timeout is None:
            self._summary = await run.execute()
            return

        async def interrupt_when_late() -> None:
            await anyio.sleep(run_timeout)
            run.interrupt(f"run_timeout ({run_timeout:g} s)")

        async with anyio.create_task_group() as timer:
            timer.start_soon(interrupt_when_late)
            self._summary = await run.execute()
            timer.cancel_scope.cancel()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        assert self._task_group is not None and self._run is not None
        self._state = "closed"
        cancelled = isinstance(exc, anyio.get_cancelled_exc_class())
        if not self._ended and not cancelled:
            # Left early (break, return, an exception): stop the checks; what
            # finished still reaches the reporters.
            self._run.interrupt("the caller left the stream")
        if self._receive is not None:
            self._receive.close()
        try:
            if cancelled:
                await self._task_group.__aexit__(exc_type, exc, traceback)
            else:
                # The caller's own exception is not the run's: keep it out of
                # the task group, so that it reaches the caller as itself.
                await self._task_group.__aexit__(None, None, None)
        except BaseExceptionGroup as group:
            inner = _alone(group)
            if inner is None:
                raise
            raise inner from None
        finally:
            self._task_group = None
        if self._summary is not None:
            broken = tuple(
                f"plugin {info.name} is broken: {info.error}" for info in self._run.manager.broken
            )
            self.summary = dataclasses.replace(self._summary, broken_plugins=broken)
        if (
            exc is None
            and self.summary is not None
            and self.summary.reporter_failures
            and self._settings.raise_on_reporter_failure
        ):
            raise ReporterError("; ".join(self.summary.reporter_failures), summary=self.summary)
        return False

    def _input_order(self, results: list[Result]) -> list[Result]:
        assert self._run is not None
        positions: dict[tuple[str, str], deque[int]] = {}
        for index, target in enumerate(self._run.targets):
            positions.setdefault((target.name, target.display_url), deque()).append(index)
        return sorted(results, key=lambda r: positions[(r.name, r.target)].popleft())


def _collecting_stream(targets: Targets, kwargs: dict[str, Any]) -> RunStream:
    """:func:`stream` for :func:`check`: the run's results gathered in a list."""
    results = stream(targets, **kwargs)
    results._collected = []
    results._ended = True
    return results


def stream(
    targets: Targets,
    *,
    options: Mapping[str, Any] | None = None,
    labels: Mapping[str, str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    retries: int = 0,
    concurrency: int | None = None,
    per_host: int | None = None,
    limiter: anyio.CapacityLimiter | None = None,
    explain: bool = False,
    plugins: Iterable[object] = (),
    manager: PluginManager | None = None,
    reporters: Iterable[ReporterSpec] = (),
    run_timeout: float | None = None,
    watchdog: bool = False,
    raise_on_reporter_failure: bool = False,
) -> RunStream:
    """Check ``targets``, giving each result as it completes::

        async with anyprobe.stream(targets) as results:
            async for result in results:
                ...
        results.summary

    Arguments are checked here (``TypeError``, ``ValueError``); the targets
    are validated when the block is entered, before the first check starts
    (:class:`~anyprobe.UsageError`). See docs/embedding.md for each argument.
    """
    settings = call_settings(
        targets,
        options=options,
        labels=labels,
        timeout=timeout,
        retries=retries,
        concurrency=concurrency,
        per_host=per_host,
        limiter=limiter,
        explain=explain,
        plugins=plugins,
        manager=manager,
        reporters=reporters,
        run_timeout=run_timeout,
        watchdog=watchdog,
        raise_on_reporter_failure=raise_on_reporter_failure,
    )
    return RunStream(targets, settings)


async def check(
    targets: Targets,
    *,
    ordered: bool = False,
    raise_on_reporter_failure: bool = False,
    **kwargs: Any,
) -> Results:
    """Check ``targets`` and return every result, with the run's summary as
    ``results.summary``.

    Results come in completion order, or in the order of ``targets`` with
    ``ordered=True``. Takes the same keyword arguments as :func:`stream`.
    """
    check_flag("ordered", ordered)
    check_flag("raise_on_reporter_failure", raise_on_reporter_failure)
    results = _collecting_stream(targets, kwargs)
    async with results:
        pass  # leaving the block waits for the run to end
    assert results._collected is not None
    collected = results._collected
    if ordered:
        collected = results._input_order(collected)
    assert results.summary is not None
    done = Results(collected, results.summary)
    if raise_on_reporter_failure and done.summary.reporter_failures:
        raise ReporterError(
            "; ".join(done.summary.reporter_failures), summary=done.summary, results=done
        )
    return done


def _running_loop() -> str | None:
    """The async library running in this thread, if any."""
    import sniffio

    try:
        return sniffio.current_async_library()
    except sniffio.AsyncLibraryNotFoundError:
        pass
    import asyncio

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return None
    return "asyncio"


def check_sync(targets: Targets, *, backend: str = "asyncio", **kwargs: Any) -> Results:
    """:func:`check` for a script without an event loop: starts one on ``backend``
    for the call: ``"asyncio"`` (plain asyncio, the default), ``"trio"``,
    ``"uvloop"`` (asyncio on uvloop; UsageError without it) or ``"auto"`` (uvloop
    when installed). No process-wide event-loop policy is set. Inside a running
    event loop it raises ``RuntimeError``: ``await anyprobe.check(...)`` there instead."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    library = _running_loop()
    if library is not None:
        raise RuntimeError(
            f"check_sync() cannot run inside a running {library} event loop: use "
            "`await anyprobe.check(...)` there (or run check_sync in a worker thread)"
        )
    check_flag("ordered", kwargs.get("ordered", False))
    call_settings(targets, **{k: v for k, v in kwargs.items() if k != "ordered"})

    async def main() -> Results:
        return await check(targets, **kwargs)

    results: Results = run_on(main, backend)
    return results
