"""The scheduler: runs every target's check, bounded, timed, retried.

A fixed set of worker tasks (as many as the concurrency) pulls targets from
one iterator, so memory grows with the concurrency, not with the number of
targets, and the number of workers is the run's global bound. An embedding
program may add a shared :class:`anyio.CapacityLimiter` to bound several runs
together. Each check also holds a per-host limit when one is set, and runs
under a deadline per attempt. Whatever a probe
does, the scheduler produces one :class:`~anyprobe.Result` per target: an
exception becomes ``unknown``, a timeout ``critical``. Only cancellation from
outside ends a check without a result.
"""

from __future__ import annotations

import logging
import math
import random
import resource
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import anyio

from .errors import CheckFailed
from .model import ErrorInfo, Outcome, Result, Status, Target
from .probe import CheckContext, Probe

log = logging.getLogger("anyprobe.scheduler")

DEFAULT_CONCURRENCY = 100
#: File descriptors kept free for the process itself (reporters, logs, imports).
RESERVED_FILES = 64
#: Sockets one check may hold at once (a resolver's and the probe's own).
FILES_PER_CHECK = 2
BACKOFF_BASE = 0.2
BACKOFF_MAX = 5.0


def open_file_limit() -> int:
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


def raise_open_file_limit(wanted: int) -> int:
    """Raise the soft open-file limit towards ``wanted`` (up to the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        new = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        except (ValueError, OSError):
            log.debug("could not raise RLIMIT_NOFILE to %d", new)
    return open_file_limit()


def max_safe_concurrency() -> int:
    """The most concurrent checks the open-file limit allows."""
    return max(1, (open_file_limit() - RESERVED_FILES) // FILES_PER_CHECK)


def resolve_concurrency(requested: int | None, *, raise_limit: bool = True) -> int:
    """The concurrency to use: ``requested`` or the default, within the file limit.

    The soft limit is raised when the hard limit allows it; otherwise the
    concurrency is lowered, because a check that fails for lack of a socket
    would report a healthy target as down. ``raise_limit=False`` (a library
    call) leaves the process's limit alone and only lowers the concurrency.
    """
    wanted = requested or DEFAULT_CONCURRENCY
    needed = wanted * FILES_PER_CHECK + RESERVED_FILES
    if raise_limit and open_file_limit() < needed:
        raise_open_file_limit(needed)
    safe = max_safe_concurrency()
    if wanted > safe:
        log.warning(
            "concurrency %d lowered to %d to stay within the open-file limit (ulimit -n %d)",
            wanted,
            safe,
            open_file_limit(),
        )
        return safe
    return wanted


class HostLimits:
    """A CapacityLimiter per host, created on first use and dropped when idle."""

    def __init__(self, per_host: int | None) -> None:
        self.per_host = per_host
        self._limiters: dict[str, tuple[anyio.CapacityLimiter, list[int]]] = {}

    @asynccontextmanager
    async def hold(self, host: str) -> Any:
        if not self.per_host:
            yield
            return
        entry = self._limiters.get(host)
        if entry is None:
            entry = self._limiters[host] = (anyio.CapacityLimiter(self.per_host), [0])
        limiter, users = entry
        users[0] += 1
        try:
            async with limiter:
                yield
        finally:
            users[0] -= 1
            if not users[0]:
                del self._limiters[host]


def backoff_delay(attempt: int) -> float:
    """Exponential backoff with full jitter before attempt ``attempt + 1``."""
    ceiling = min(BACKOFF_MAX, BACKOFF_BASE * 2 ** (attempt - 1))
    return random.uniform(ceiling / 2, ceiling)


class Scheduler:
    """Runs targets through their probes and hands each result to ``emit``."""

    def __init__(
        self,
        probes: Mapping[str, Probe[Any]],
        *,
        concurrency: int,
        per_host: int | None = None,
        limiter: anyio.CapacityLimiter | None = None,
        explain: bool = False,
    ) -> None:
        self.probes = probes
        self.concurrency = max(1, concurrency)
        self.limiter = limiter
        self.host_limits = HostLimits(per_host)
        self.explain = explain
        self.resources: dict[Any, Any] = {}
        self.started = 0
        self.finished = 0

    async def run(
        self, targets: Iterable[Target], emit: Callable[[Result], Awaitable[None]], total: int
    ) -> None:
        """Check every target; returns when all are done (or raises when cancelled)."""
        iterator = iter(targets)
        async with anyio.create_task_group() as tg:
            for _ in range(min(self.concurrency, total)):
                tg.start_soon(self._worker, iterator, emit)

    async def _worker(
        self, iterator: Iterator[Target], emit: Callable[[Result], Awaitable[None]]
    ) -> None:
        # One cancel scope serves a worker's checks one after the other, its
        # deadline moved for each attempt: entering a scope per attempt costs
        # more than the rest of the scheduler's work for a quick check. When a
        # deadline fires, the attempt's cancellation ends the scope; the check
        # is settled out here and the worker opens a new scope.
        current: list[_Check | None] = [None]
        while True:
            with anyio.CancelScope() as scope:
                await self._work(iterator, current, scope, emit)
                if current[0] is None:
                    return
            check = current[0]
            assert check is not None
            if scope.cancelled_caught:
                check.outcome = self._timed_out(check)
            if self._settle(check):
                current[0] = None
                self.finished += 1
                await emit(self._result(check))

    async def _work(
        self,
        iterator: Iterator[Target],
        current: list[_Check | None],
        scope: anyio.CancelScope,
        emit: Callable[[Result], Awaitable[None]],
    ) -> None:
        """Run checks under ``scope`` until the targets run out (``current`` is
        None) or the scope can serve no more (its deadline fired)."""
        while True:
            check = current[0]
            if check is None:
                target = next(iterator, None)
                if target is None:
                    return
                self.started += 1
                check = current[0] = _Check(target, self.probes[target.probe])
            elif check.retrying:
                await anyio.sleep(backoff_delay(check.attempt))
            if self.limiter is None and not self.host_limits.per_host:
                # The workers alone bound the concurrency: no limiter to pay for.
                await self._attempt(check, scope)
            else:
                async with self.host_limits.hold(check.target.host), self._shared_limit():
                    await self._attempt(check, scope)
            if scope.cancel_called:
                return  # the deadline fired as the attempt ended: settle it outside
            if self._settle(check):
                current[0] = None
                self.finished += 1
                await emit(self._result(check))

    @asynccontextmanager
    async def _shared_limit(self) -> AsyncIterator[None]:
        if self.limiter is None:
            yield
        else:
            async with self.limiter:
                yield

    async def check(self, target: Target) -> Result:
        """Every attempt of one target's check, within the limits; one result."""
        results: list[Result] = []

        async def keep(result: Result) -> None:
            results.append(result)

        await self._worker(iter([target]), keep)
        return results[0]

    async def _attempt(self, check: _Check, scope: anyio.CancelScope) -> None:
        """One attempt of ``check``'s probe under ``scope``'s deadline; sets its outcome."""
        target, probe = check.target, check.probe
        check.attempt += 1
        check.retrying = False
        deadline = anyio.current_time() + target.timeout
        ctx = check.ctx = CheckContext(
            timeout=target.timeout,
            deadline=deadline,
            attempt=check.attempt,
            explain=self.explain,
            resources=self.resources,
        )
        check.outcome = None
        start = check.attempt_started = time.perf_counter()
        scope.deadline = deadline
        try:
            outcome = await probe.check(target, target.options, ctx)
        except CheckFailed as failed:
            outcome = failed.to_outcome(ctx.current_phase)
        except anyio.get_cancelled_exc_class():
            raise
        except Exception as exc:
            error = ErrorInfo.from_exception(exc, ctx.current_phase)
            outcome = Outcome(
                Status.UNKNOWN,
                f"probe {probe.name} raised {error.type}: {error.message}",
                error=error,
            )
        scope.deadline = math.inf
        elapsed = check.elapsed = time.perf_counter() - start
        if not isinstance(outcome, Outcome):
            error = ErrorInfo("TypeError", f"check() returned {type(outcome).__name__}")
            outcome = Outcome(
                Status.UNKNOWN, f"probe {probe.name} returned no Outcome", error=error
            )
        elif elapsed > target.timeout:
            # The deadline passed without the check ever yielding to the event
            # loop (a blocking call): it could not be cancelled, but it is late.
            message = (
                f"took {elapsed:.1f} s, over the {target.timeout:g} s timeout, "
                "without yielding to the event loop"
            )
            outcome = Outcome(
                Status.CRITICAL,
                message,
                error=ErrorInfo("TimeoutError", message, ctx.current_phase),
            )
        else:
            outcome = apply_thresholds(outcome, target.options, elapsed)
        check.outcome = outcome

    @staticmethod
    def _timed_out(check: _Check) -> Outcome:
        """The outcome of an attempt its deadline cancelled."""
        check.elapsed = time.perf_counter() - check.attempt_started
        phase = check.ctx.current_phase if check.ctx else None
        where = f" during {phase}" if phase else ""
        message = f"timed out after {check.target.timeout:g} s{where}"
        return Outcome(Status.CRITICAL, message, error=ErrorInfo("TimeoutError", message, phase))

    @staticmethod
    def _settle(check: _Check) -> bool:
        """True when ``check`` is done; otherwise it is marked for a retry."""
        outcome = check.outcome
        assert outcome is not None
        if outcome.status in (Status.OK, Status.WARNING) or check.attempt > check.target.retries:
            return True
        check.failures.append(outcome.summary)
        check.retrying = True
        return False

    @staticmethod
    def _result(check: _Check) -> Result:
        target, outcome, ctx = check.target, check.outcome, check.ctx
        assert outcome is not None and ctx is not None
        summary = outcome.summary
        failures = check.failures
        if failures and outcome.status in (Status.OK, Status.WARNING):
            summary += f" (on attempt {check.attempt}; attempt 1: {failures[0]})"
        elif failures:
            summary += f" (all {check.attempt} attempts failed)"
        metrics = {**ctx.metrics, **outcome.metrics} if ctx.metrics else outcome.metrics
        return Result(
            name=target.name,
            target=target.display_url,
            probe=target.probe,
            status=outcome.status,
            summary=summary,
            started=check.started,
            duration=check.elapsed,
            attempts=check.attempt,
            phases=ctx.phases,
            metrics=metrics,
            error=outcome.error,
            labels=target.labels,
            details=outcome.details,
            trace=tuple(ctx.trace_events),
            thresholds=_thresholds(target.options),
        )


_NO_THRESHOLDS: dict[str, float] = {}


def _thresholds(options: Any) -> dict[str, float]:
    """The latency thresholds a check's options set, for its result."""
    warning = getattr(options, "warning_after", None)
    critical = getattr(options, "critical_after", None)
    if warning is None and critical is None:
        return _NO_THRESHOLDS
    found = {"warning_after": warning, "critical_after": critical}
    return {k: v for k, v in found.items() if v is not None}


class _Check:
    """One target's check as the scheduler carries it from attempt to attempt."""

    __slots__ = (
        "attempt",
        "attempt_started",
        "ctx",
        "elapsed",
        "failures",
        "outcome",
        "probe",
        "retrying",
        "started",
        "target",
    )

    def __init__(self, target: Target, probe: Probe[Any]) -> None:
        self.target = target
        self.probe = probe
        self.started = datetime.now(UTC)
        self.attempt = 0
        self.attempt_started = 0.0
        self.elapsed = 0.0
        self.failures: list[str] = []
        self.retrying = False
        self.ctx: CheckContext | None = None
        self.outcome: Outcome | None = None


def apply_thresholds(outcome: Outcome, options: Any, elapsed: float) -> Outcome:
    """Make a passing outcome a warning or critical when it took too long."""
    if outcome.status is not Status.OK and outcome.status is not Status.WARNING:
        return outcome
    critical_after = getattr(options, "critical_after", None)
    warning_after = getattr(options, "warning_after", None)
    if critical_after is not None and elapsed > critical_after:
        status, limit, name = Status.CRITICAL, critical_after, "critical_after"
    elif warning_after is not None and elapsed > warning_after and outcome.status is Status.OK:
        status, limit, name = Status.WARNING, warning_after, "warning_after"
    else:
        return outcome
    outcome.status = status
    outcome.summary += f" (took {elapsed:.3f} s, over {name} {limit:g} s)"
    return outcome
