"""The scheduler: runs every target's check, bounded, timed, retried.

A fixed set of worker tasks (as many as the concurrency) pulls targets from
one iterator, so memory grows with the concurrency, not with the number of
targets, and the number of workers is the run's global bound. An embedding
program may add a shared :class:`anyio.CapacityLimiter` to bound several runs
together. With a per-host limit, a target whose host is busy is parked (not
held by a worker) and handed to the worker that frees that host's slot. Each
attempt runs under a deadline. Whatever a probe does, the scheduler produces
one :class:`~anyprobe.Result` per target: an exception becomes ``unknown``, a
timeout ``critical`` (or, when another check blocked the event loop through
it, a rerun). Only cancellation from outside ends a check without a result.
"""

from __future__ import annotations

import logging
import math
import random
import resource
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import anyio

from ._errors import CheckFailed
from ._model import Attempt, ErrorInfo, Outcome, Result, Status, Target
from ._outcomes import apply_thresholds, is_cancellation, outcome_of, raised
from ._probe import CheckContext, Probe
from .masking import Masker, mask_context, mask_outcome, options_masker

if TYPE_CHECKING:
    from ._watchdog import LoopWatchdog

log = logging.getLogger("anyprobe.scheduler")

#: Hands a result on: None when done, else an awaitable that finishes it.
Emit = Callable[[Result], Awaitable[None] | None]

DEFAULT_CONCURRENCY = 100
#: File descriptors kept free for the process itself (reporters, logs, imports).
RESERVED_FILES = 64
#: Sockets one check may hold at once (a resolver's and the probe's own).
FILES_PER_CHECK = 2
BACKOFF_BASE = 0.2
BACKOFF_MAX = 5.0
#: With a per-host limit, targets parked for a busy host, per worker: how far a
#: run looks past targets waiting for their host (a bound on memory).
PARKED_PER_WORKER = 10


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
    """Checks running at once per host: a count per host, dropped when idle.

    :meth:`try_acquire` never waits (the scheduler's workers park a target
    whose host is busy instead of waiting for it); :meth:`hold` waits, first
    come first served, for callers that check one target at a time.
    """

    def __init__(self, per_host: int | None) -> None:
        self.per_host = per_host
        self._running: dict[str, int] = {}
        self._waiting: dict[str, deque[anyio.Event]] = {}

    def try_acquire(self, host: str) -> bool:
        """Take a slot of ``host`` if one is free (always, without a limit)."""
        if not self.per_host:
            return True
        running = self._running.get(host, 0)
        if running >= self.per_host or host in self._waiting:
            return False
        self._running[host] = running + 1
        return True

    def release(self, host: str) -> None:
        """Give back a slot of ``host``: to the first caller waiting in :meth:`hold`."""
        if not self.per_host:
            return
        waiting = self._waiting.get(host)
        if waiting:
            if len(waiting) == 1:
                del self._waiting[host]
            waiting.popleft().set()  # the slot passes on; the count stays
            return
        running = self._running[host] - 1
        if running:
            self._running[host] = running
        else:
            del self._running[host]

    @asynccontextmanager
    async def hold(self, host: str) -> AsyncIterator[None]:
        """Hold a slot of ``host`` for the enclosed block, waiting for one if needed."""
        if not self.try_acquire(host):
            event = anyio.Event()
            self._waiting.setdefault(host, deque()).append(event)
            try:
                await event.wait()
            except BaseException:
                if event.is_set():
                    self.release(host)  # the slot came as we were cancelled: pass it on
                else:
                    waiting = self._waiting[host]
                    waiting.remove(event)
                    if not waiting:
                        del self._waiting[host]
                raise
        try:
            yield
        finally:
            self.release(host)


class _Feed:
    """Targets for a run's workers under a per-host limit.

    A target whose host has no free slot is parked, not waited for: the worker
    goes on to the next target, and the worker whose check of that host ends
    takes the parked target with its slot (:meth:`done`). At most
    ``max_parked`` targets are parked; past that a worker waits until a
    check of a busy host ends.
    """

    def __init__(self, targets: Iterator[Target], hosts: HostLimits, max_parked: int) -> None:
        self.targets = targets
        self.hosts = hosts
        self.max_parked = max_parked
        self.parked: dict[str, deque[Target]] = {}
        self.parked_count = 0
        self._room: anyio.Event | None = None

    async def next(self) -> Target | None:
        """The next target whose host slot the caller now holds; None at the end
        (targets still parked are run by the workers of their hosts)."""
        target = next(self.targets, None)
        while target is not None:
            if self.hosts.try_acquire(target.host):
                return target
            if self.parked_count < self.max_parked:
                self.parked.setdefault(target.host, deque()).append(target)
                self.parked_count += 1
                target = next(self.targets, None)
                continue
            if self._room is None:
                self._room = anyio.Event()
            await self._room.wait()
        return None

    def done(self, host: str) -> Target | None:
        """A check of ``host`` ended: its slot goes to a target parked for that
        host (returned, for the caller to run) or back to the host."""
        parked = self.parked.get(host)
        if self._room is not None:
            # A worker waiting for room may now park its target, or run it.
            self._room.set()
            self._room = None
        if not parked:
            self.hosts.release(host)
            return None
        target = parked.popleft()
        if not parked:
            del self.parked[host]
        self.parked_count -= 1
        return target


def backoff_delay(attempt: int) -> float:
    """Exponential backoff with full jitter before attempt ``attempt + 1``."""
    ceiling = min(BACKOFF_MAX, BACKOFF_BASE * 2 ** (attempt - 1))
    return random.uniform(ceiling / 2, ceiling)


class Scheduler:
    """Runs targets through their probes and hands each result to ``emit``.

    ``watchdog``, when set, tells which stretches of time another check
    blocked the event loop: a timeout that expired in one is not a verdict on
    the target, and the attempt is run again once (see :meth:`_timed_out`).
    """

    def __init__(
        self,
        probes: Mapping[str, Probe[Any]],
        *,
        concurrency: int,
        per_host: int | None = None,
        limiter: anyio.CapacityLimiter | None = None,
        explain: bool = False,
        watchdog: LoopWatchdog | None = None,
    ) -> None:
        self.probes = probes
        self.concurrency = max(1, concurrency)
        self.limiter = limiter
        self.host_limits = HostLimits(per_host)
        self.explain = explain
        self.watchdog = watchdog
        self.resources: dict[Any, Any] = {}
        #: The _Plan of each options object seen, by id (the plan keeps the
        #: object, so that an id reused by another object is not mistaken).
        self._plans: dict[int, _Plan] = {}
        self.started = 0
        self.finished = 0

    async def run(self, targets: Iterable[Target], emit: Emit, total: int) -> None:
        """Check every target; returns when all are done (or raises when cancelled).

        ``emit(result)`` hands each result on; it returns None when it is done,
        or an awaitable to finish it (a reporter's buffer is full).
        """
        iterator = iter(targets)
        feed = None
        if self.host_limits.per_host:
            feed = _Feed(iterator, self.host_limits, PARKED_PER_WORKER * self.concurrency)
        async with anyio.create_task_group() as tg:
            for _ in range(min(self.concurrency, total)):
                tg.start_soon(self._worker, iterator, emit, feed)

    async def _worker(
        self,
        iterator: Iterator[Target],
        emit: Emit,
        feed: _Feed | None = None,
    ) -> None:
        # One cancel scope serves a worker's checks one after the other, its
        # deadline moved for each attempt: entering a scope per attempt costs
        # more than the rest of the scheduler's work for a quick check. When a
        # deadline fires, the attempt's cancellation ends the scope; the check
        # is settled out here and the worker opens a new scope. The deadline
        # of an attempt that ended stays set until the next attempt moves it
        # (one change of the deadline per check, not two): nothing between
        # them yields to the event loop, except the awaits below, which are
        # preceded by ``scope.deadline = math.inf``.
        current: list[_Check | None] = [None]
        while True:
            with anyio.CancelScope() as scope:
                await self._work(iterator, current, scope, emit, feed)
                if current[0] is None:
                    return
            check = current[0]
            assert check is not None
            if scope.cancelled_caught:
                check.outcome = self._timed_out(check)
            if self._settle(check):
                current[0] = await self._deliver(check, emit, feed)

    async def _work(
        self,
        iterator: Iterator[Target],
        current: list[_Check | None],
        scope: anyio.CancelScope,
        emit: Emit,
        feed: _Feed | None,
    ) -> None:
        """Run checks under ``scope`` until the targets run out (``current`` is
        None) or the scope can serve no more (its deadline fired)."""
        while True:
            check = current[0]
            if check is None:
                if feed is None:
                    target = next(iterator, None)
                else:
                    scope.deadline = math.inf
                    target = await feed.next()
                if target is None:
                    return
                self.started += 1
                check = current[0] = _Check(target, self.probes[target.probe], self._plan(target))
            elif check.retrying and check.backoff:
                scope.deadline = math.inf
                await anyio.sleep(backoff_delay(check.attempt - check.reran))
            if self.limiter is None:
                # The workers alone bound the concurrency: no limiter to pay for.
                await self._attempt(check, scope)
            else:
                scope.deadline = math.inf  # waiting for the limiter is no part of an attempt
                async with self.limiter:
                    await self._attempt(check, scope)
            if scope.cancel_called:
                return  # the deadline fired as the attempt ended: settle it outside
            if self._settle(check):
                # _deliver, inlined: one coroutine less per check on the hot path.
                self.finished += 1
                following = feed.done(check.target.host) if feed is not None else None
                pending = emit(self._result(check))
                if pending is not None:
                    scope.deadline = math.inf
                    await pending
                current[0] = None if following is None else self._start(following)

    async def _deliver(self, check: _Check, emit: Emit, feed: _Feed | None) -> _Check | None:
        """Emit ``check``'s result; with a per-host limit, free its host's slot,
        or take a target parked for that host (returned, to run next)."""
        self.finished += 1
        following = feed.done(check.target.host) if feed is not None else None
        pending = emit(self._result(check))
        if pending is not None:
            await pending
        return None if following is None else self._start(following)

    def _start(self, target: Target) -> _Check:
        """A parked target, taken with its host's slot, as the worker's next check."""
        self.started += 1
        return _Check(target, self.probes[target.probe], self._plan(target))

    async def check(self, target: Target) -> Result:
        """Every attempt of one target's check, within the limits; one result.

        With a per-host limit this waits for a slot of the target's host.
        """
        results: list[Result] = []

        def keep(result: Result) -> None:
            results.append(result)

        async with self.host_limits.hold(target.host):
            await self._worker(iter([target]), keep)
        return results[0]

    async def _attempt(self, check: _Check, scope: anyio.CancelScope) -> None:
        """One attempt of ``check``'s probe under ``scope``'s deadline; sets its outcome.

        (The watchdog finds the check that blocks the loop by this method's
        name and its ``check``, ``target`` and ``probe`` locals.)
        """
        target, probe, plan = check.target, check.probe, check.plan
        check.attempt += 1
        check.retrying = False
        check.stalled = None
        deadline = anyio.current_time() + target.timeout
        ctx = check.ctx = CheckContext(
            timeout=target.timeout,
            deadline=deadline,
            attempt=check.attempt,
            explain=self.explain,
            resources=self.resources,
            masker=plan.masker(),
        )
        check.outcome = None
        start = check.attempt_started = time.perf_counter()
        if check.attempt == 1:
            check.first_started = start
            check.started = datetime.now(UTC)
        scope.deadline = deadline
        every_address = plan.every_address
        if every_address:
            from ._addresses import check_every_address

            outcome = await outcome_of(
                probe,
                ctx,
                lambda: check_every_address(probe, target, ctx, target.options.addresses),
            )
        else:
            # outcome_of(), inlined: a coroutine and a lambda less per check.
            # SystemExit (a library calling sys.exit()), KeyboardInterrupt or
            # any other BaseException from a plugin costs only its own check.
            try:
                outcome = await probe.check(target, target.options, ctx)
            except CheckFailed as failed:
                outcome = failed.to_outcome(ctx.current_phase)
            except anyio.get_cancelled_exc_class():
                raise
            except Exception as exc:
                outcome = raised(probe, exc, ctx)
            except BaseException as exc:
                if is_cancellation(exc):
                    raise
                outcome = raised(probe, exc, ctx)
        if ctx.masker and isinstance(outcome, Outcome):
            # One rule for every probe: a secret option, or what the check
            # hid, never shows, also where a server echoed it back.
            outcome = mask_outcome(outcome, ctx.masker)
            mask_context(ctx, ctx.masker)
        elapsed = check.elapsed = time.perf_counter() - start
        if not isinstance(outcome, Outcome):
            error = ErrorInfo("TypeError", f"check() returned {type(outcome).__name__}")
            outcome = Outcome(
                Status.UNKNOWN, f"probe {probe.name} returned no Outcome", error=error
            )
        elif elapsed > target.timeout:
            # Late: its own doing, unless another check held the loop meanwhile.
            # (The deadline cleared first: trio's cancel_called turns true
            # once a deadline has passed, fired or not.)
            scope.deadline = math.inf
            over = f"took {elapsed:.1f} s, over the {target.timeout:g} s timeout"
            outcome = self._stalled(check, over, start) or _overran(
                target, elapsed, ctx, scope.cancel_called
            )
        elif plan.thresholds and not every_address:
            # (With every address, each address is held to the thresholds.)
            outcome = apply_thresholds(outcome, target.options, elapsed)
        check.outcome = outcome

    def _plan(self, target: Target) -> _Plan:
        """What the scheduler needs to know of ``target``'s options, worked out
        once per options object: targets share one when their options are the same."""
        options = target.options
        plan = self._plans.get(id(options))
        if plan is None or plan.options is not options:
            if len(self._plans) >= 1024:
                self._plans.clear()  # a bound: many distinct options, each used rarely
            plan = self._plans[id(options)] = _Plan(options)
        return plan

    def _timed_out(self, check: _Check) -> Outcome:
        """The outcome of an attempt its deadline cancelled (see :meth:`_stalled`)."""
        check.elapsed = time.perf_counter() - check.attempt_started
        phase = check.ctx.current_phase if check.ctx else None
        where = f" during {phase}" if phase else ""
        message = f"timed out after {check.target.timeout:g} s{where}"
        stalled = self._stalled(check, message, check.attempt_started)
        if stalled is not None:
            return stalled
        return Outcome(Status.CRITICAL, message, error=ErrorInfo("TimeoutError", message, phase))

    def _stalled(self, check: _Check, message: str, start: float) -> Outcome | None:
        """When another check blocked the event loop while this attempt ran
        past its deadline: the ``unknown`` outcome saying so, else None.

        The deadline passed while this check could not run, so its timeout is
        no verdict on its target: the attempt is run again (once, see
        :meth:`_settle`); a second such timeout stays ``unknown``, naming the
        check that blocked, never ``critical``.
        """
        if self.watchdog is None:
            return None
        stall = self.watchdog.stall_during(start, time.perf_counter(), check)
        if stall is None:
            return None
        check.stalled = stall.blocker
        message += (
            f" while {stall.blocker} blocked the event loop for {stall.end - stall.start:.1f} s"
            " (not a verdict on this target)"
        )
        phase = check.ctx.current_phase if check.ctx else None
        return Outcome(Status.UNKNOWN, message, error=ErrorInfo("EventLoopBlocked", message, phase))

    @staticmethod
    def _settle(check: _Check) -> bool:
        """True when ``check`` is done; otherwise it is marked for another attempt:
        a retry (after a backoff), or a rerun of an attempt another check stalled."""
        outcome = check.outcome
        assert outcome is not None
        if outcome.status is Status.OK or outcome.status is Status.WARNING:
            return True
        rerun = check.stalled is not None and not check.reran
        if not rerun and check.attempt - check.reran > check.target.retries:
            return True
        check.log.append(_record(check))
        check.retrying = True
        check.backoff = not rerun
        if rerun:
            check.reran = 1
        return False

    @staticmethod
    def _result(check: _Check) -> Result:
        target, outcome, ctx = check.target, check.outcome, check.ctx
        assert outcome is not None and ctx is not None
        summary = outcome.summary
        duration = check.elapsed
        attempt_log: tuple[Attempt, ...] = ()
        if check.log:
            attempt_log = (*check.log, _record(check))
            # From the first attempt's start to the verdict, backoff included.
            duration = check.attempt_started + check.elapsed - check.first_started
            passed = outcome.status is Status.OK or outcome.status is Status.WARNING
            if passed or check.reran:
                # A rerun's first attempt was no verdict: say what it was.
                summary += f" (on attempt {check.attempt}; attempt 1: {check.log[0].summary})"
            else:
                summary += f" (all {check.attempt} attempts failed)"
        metrics = {**ctx.metrics, **outcome.metrics} if ctx.metrics else outcome.metrics
        thresholds = check.plan.thresholds
        # Every field by position, in Result's order: a frozen dataclass's
        # __init__ called with 16 keywords costs about 1 µs more, once per check.
        return Result(
            target.name,  # name
            target.display_url,  # target
            target.probe,  # probe
            outcome.status,  # status
            summary,  # summary
            check.started,  # started
            duration,  # duration
            check.attempt,  # attempts
            ctx.phases,  # phases
            metrics,  # metrics
            outcome.error,  # error
            target.labels,  # labels
            outcome.details,  # details
            tuple(ctx.trace_events) if ctx.trace_events else (),  # trace
            # A result's own copy: one result's dict changed must not change another's.
            dict(thresholds) if thresholds else _NO_THRESHOLDS,  # thresholds
            attempt_log,  # attempt_log
        )


def _overran(target: Target, elapsed: float, ctx: CheckContext, cancel_called: bool) -> Outcome:
    """The outcome of an attempt that came back after its deadline."""
    over = f"took {elapsed:.1f} s, over the {target.timeout:g} s timeout"
    if cancel_called:
        # The deadline fired and the loop went on, but the attempt could not be
        # cancelled: it waited on something that ignores cancellation, such as
        # anyio.to_thread.run_sync without abandon_on_cancel.
        message = (
            f"{over}, waiting on work its deadline could not cancel "
            "(a worker thread? ctx.run_sync() lets the deadline abandon one)"
        )
    else:
        # The deadline passed without the check ever yielding to the event
        # loop (a blocking call): it could not be cancelled, but it is late.
        message = f"{over}, without yielding to the event loop"
    return Outcome(
        Status.CRITICAL, message, error=ErrorInfo("TimeoutError", message, ctx.current_phase)
    )


def _record(check: _Check) -> Attempt:
    """The check's current attempt, as it ended, for the result's attempt log."""
    outcome, ctx = check.outcome, check.ctx
    assert outcome is not None and ctx is not None
    offset = timedelta(seconds=check.attempt_started - check.first_started)
    return Attempt(
        status=outcome.status,
        summary=outcome.summary,
        error=outcome.error,
        started=check.started + offset,
        duration=check.elapsed,
        phases=ctx.phases,
        trace=tuple(ctx.trace_events),
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


class _Plan:
    """What the scheduler reads of one options object, read once: the secrets
    its checks must mask (:func:`options_masker`), whether each address of the
    host is checked, the latency thresholds."""

    __slots__ = ("_secrets", "every_address", "options", "thresholds")

    def __init__(self, options: Any) -> None:
        self.options = options
        self._secrets = options_masker(options)
        self.every_address = getattr(options, "addresses", "first") != "first"
        self.thresholds = _thresholds(options)

    def masker(self) -> Masker:
        """A new masker for one attempt, knowing the options' secrets."""
        masker = Masker()
        if self._secrets:
            masker.update(self._secrets)
        return masker


class _Check:
    """One target's check as the scheduler carries it from attempt to attempt."""

    __slots__ = (
        "attempt",
        "attempt_started",
        "backoff",
        "ctx",
        "elapsed",
        "first_started",
        "log",
        "outcome",
        "plan",
        "probe",
        "reran",
        "retrying",
        "stalled",
        "started",
        "target",
    )

    def __init__(self, target: Target, probe: Probe[Any], plan: _Plan) -> None:
        self.target = target
        self.probe = probe
        self.plan = plan
        self.started = _EPOCH
        self.attempt = 0
        self.attempt_started = 0.0
        self.first_started = 0.0
        self.elapsed = 0.0
        #: Every attempt before the current one (empty until a retry or rerun).
        self.log: list[Attempt] = []
        self.retrying = False
        self.backoff = True
        #: 1 once an attempt another check stalled has been run again.
        self.reran = 0
        #: The check that blocked the event loop through the current attempt.
        self.stalled: str | None = None
        self.ctx: CheckContext | None = None
        self.outcome: Outcome | None = None


_EPOCH = datetime.fromtimestamp(0, UTC)
