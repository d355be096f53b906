"""Naming a check that blocks the event loop.

A probe that calls something blocking (``time.sleep``, a synchronous socket, a
heavy computation) inside its async ``check`` stalls every other check of the
run. The watchdog notices: a task on the loop beats a heartbeat, and a plain
thread checks it; when the loop has not beaten for ``threshold`` seconds, the
thread reads the loop thread's current stack, finds the check being run and
the line it is stuck on, and logs one warning naming them.

It also keeps the recent stretches of time a check blocked the loop
(:class:`Stall`), so that the scheduler can tell a timeout that expired while
another check held the loop (no verdict on that target) from a real one.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from types import FrameType

import anyio
from anyio.abc import TaskStatus

log = logging.getLogger("anyprobe")

_SCHEDULER_FRAME = "_attempt"
#: Stalls kept for the scheduler to look up (the most recent ones).
KEPT_STALLS = 256


@dataclass(frozen=True, slots=True)
class Stall:
    """A stretch of time (``time.perf_counter()``) a check blocked the event loop.

    ``check`` is the scheduler's record of that check, ``blocker`` names it:
    ``check NAME (probe P)``.
    """

    start: float
    end: float
    check: object
    blocker: str


class LoopWatchdog:
    """Run :meth:`beat` as a task of the run; warnings go to the ``anyprobe`` logger."""

    def __init__(self, threshold: float = 0.5, interval: float = 0.05) -> None:
        self.threshold = threshold
        self.interval = interval
        self.warnings: list[str] = []
        self._heartbeat = time.monotonic()
        self._loop_thread = threading.get_ident()
        self._stop = threading.Event()
        self.stalls: deque[Stall] = deque(maxlen=KEPT_STALLS)
        # Set by the thread when it has seen one check block the loop; the
        # heartbeat closes it into a Stall when the loop runs again.
        self._blocking: tuple[object, str] | None = None
        self._beaten = time.perf_counter()

    async def beat(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Keep the heartbeat fresh until cancelled; owns the watching thread.

        Start it with ``await task_group.start(watchdog.beat)``, so that the
        thread watches before the first check runs.
        """
        self._loop_thread = threading.get_ident()
        self._heartbeat = time.monotonic()
        thread = threading.Thread(target=self._watch, name="anyprobe-watchdog", daemon=True)
        thread.start()
        task_status.started()
        try:
            while True:
                self._heartbeat = time.monotonic()
                self._beaten = time.perf_counter()
                await anyio.sleep(self.interval)
                blocking = self._blocking
                if blocking is not None:
                    self._blocking = None
                    self.stalls.append(Stall(self._beaten, time.perf_counter(), *blocking))
        finally:
            # Setting the event wakes the thread at once, so this join is immediate
            # (and leaves no worker thread behind, as to_thread would).
            self._stop.set()
            thread.join(timeout=1.0)

    def _watch(self) -> None:
        # A loaded loop is not a blocked one: the loop may go long without a
        # heartbeat while running thousands of short steps. Only a check seen
        # running, in the same attempt, at every sample over `threshold`
        # seconds without a heartbeat has blocked the loop.
        suspect: FrameType | None = None
        since = 0.0
        reported: FrameType | None = None
        while not self._stop.wait(self.interval):
            now = time.monotonic()
            if now - self._heartbeat < self.threshold / 2:
                suspect = None
                continue
            frame = sys._current_frames().get(self._loop_thread)
            attempt = _attempt_frame(frame) if frame is not None else None
            if attempt is None or attempt is not suspect:
                suspect, since = attempt, now
                continue
            if self._blocking is None:
                self._blocking = (attempt.f_locals.get("check"), _name(attempt))
            if attempt is reported or now - since < self.threshold / 2:
                continue
            reported = attempt
            assert frame is not None
            message = describe_blocker(frame, now - self._heartbeat)
            self.warnings.append(message)
            log.warning("%s", message)

    def stall_during(self, start: float, end: float, check: object) -> Stall | None:
        """A stall by a check other than ``check`` between ``start`` and ``end``
        (``time.perf_counter()``), or None. Call it on the event loop."""
        blocking = self._blocking
        if blocking is not None:
            # This runs on the loop, so the loop runs again: the stall is over.
            # Closing it now, not at the next heartbeat, keeps an attempt
            # started after it from seeming to overlap it.
            self._blocking = None
            self.stalls.append(Stall(self._beaten, time.perf_counter(), *blocking))
        for stall in reversed(self.stalls):
            if stall.end < start:
                break
            if stall.check is not check and stall.start < end:
                return stall
        return None


def _name(attempt: FrameType) -> str:
    """``check NAME (probe P)`` for the scheduler's frame of an attempt."""
    target = attempt.f_locals.get("target")
    probe = attempt.f_locals.get("probe")
    return f"check {getattr(target, 'name', '?')} (probe {getattr(probe, 'name', '?')})"


def _attempt_frame(frame: FrameType) -> FrameType | None:
    """The scheduler's frame running the check the loop is in, if it is in one."""
    current: FrameType | None = frame
    while current is not None:
        if current.f_code.co_name == _SCHEDULER_FRAME and "target" in current.f_locals:
            return current
        current = current.f_back
    return None


def describe_blocker(frame: FrameType, stalled: float) -> str:
    """``check NAME (probe P) has blocked the event loop for 1.2 s at http.py:12 in f``.

    The place named is the innermost line of the probe's own module, where the
    probe called what blocked; when the loop is deeper (in a library: a regex
    engine, a parser), the innermost line is added, ``(in re2/__init__.py:...)``.
    """
    attempt = _attempt_frame(frame)
    probe = attempt.f_locals.get("probe") if attempt else None
    name = _name(attempt) if attempt else "check ? (probe ?)"
    place = _probe_frame(frame, attempt, probe) or frame
    where = _where(place)
    if place is not frame:
        where += f" (in {_where(frame)})"
    return (
        f"warning: {name} "
        f"has blocked the event loop for {stalled:.1f} s at {where}: "
        "every other check waits meanwhile"
    )


def _where(frame: FrameType) -> str:
    return f"{frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}"


def _probe_frame(frame: FrameType, attempt: FrameType | None, probe: object) -> FrameType | None:
    """The innermost frame, below the scheduler's, running code of ``probe``'s module."""
    module = sys.modules.get(type(probe).__module__) if probe is not None else None
    filename = getattr(module, "__file__", None)
    current: FrameType | None = frame
    while filename and current is not None and current is not attempt:
        if current.f_code.co_filename == filename:
            return current
        current = current.f_back
    return None
