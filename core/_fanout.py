"""The result stream: every result, in completion order, to every reporter.

Each reporter reads its own bounded memory object stream. Sending waits while
a reporter's buffer is full (back-pressure, so memory stays bounded); a
reporter that raises is recorded as failed and its stream closed, so later
sends skip it and the other reporters lose nothing.

A reporter's time is bounded: once the last result is sent it has
``reporter_timeout`` seconds to finish (and a send waits at most that long
for a reporter that stopped reading); one that takes longer is stopped and
recorded as failed. After a signal the reporters get :data:`SIGNAL_GRACE`
seconds at most, and a second signal stops them at once: a reporter stopped
this way leaves its file as it was (see :class:`~anyprobe.OutputFile`).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ._model import Result, RunSummary
from ._reporter import ReportContext, Reporter, ResultStream

log = logging.getLogger("anyprobe.fanout")

#: Results a reporter may fall behind before the checks wait for it.
REPORTER_BUFFER = 1024
#: Seconds a reporter may take to finish after the last result (webhook
#: retries included), and may leave a result unread, before it is stopped.
REPORTER_TIMEOUT = 120.0
#: Seconds the reporters get to finish once a signal asked the run to stop.
SIGNAL_GRACE = 5.0


@dataclass
class _Channel:
    name: str
    reporter: Reporter[Any] | None  # None: a tap, read by whoever holds the receive end
    send: MemoryObjectSendStream[Result]
    receive: MemoryObjectReceiveStream[Result]
    failure: str | None = None
    stopped_by: str | None = None  # the signal that stopped it before it finished
    # Why it is being stopped; recorded only if it does not finish all the same.
    stop_failure: str | None = None
    stop_signal: str | None = None
    scope: anyio.CancelScope | None = None  # made by Fanout.start, in the event loop
    done: bool = False


class Fanout:
    """Delivers results to reporters; start it in a task group, then send, then close."""

    def __init__(
        self,
        reporters: list[tuple[str, Reporter[Any]]],
        ctx: ReportContext,
        *,
        buffer: int = REPORTER_BUFFER,
        timeout: float | None = REPORTER_TIMEOUT,
    ) -> None:
        self.ctx = ctx
        self.buffer = buffer
        self._channels: list[_Channel] = []
        for name, reporter in reporters:
            send, receive = anyio.create_memory_object_stream[Result](buffer)
            self._channels.append(_Channel(name, reporter, send, receive))
        self._live = list(self._channels)
        #: Lists every result is appended to (see :meth:`collect`).
        self._collectors: list[list[Result]] = []
        self._closed = False
        self.timeout = timeout
        self._running = 0
        self._all_done: anyio.Event | None = None
        self._finish_scope: anyio.CancelScope | None = None
        self._hurry: tuple[float, str] | None = None  # (grace, signal name)

    def tap(
        self, name: str = "tap", buffer: int | None = None
    ) -> MemoryObjectReceiveStream[Result]:
        """A stream of every result for a consumer that is not a reporter task
        (the embedding API's iterator), holding ``buffer`` results at most (by
        default the reporters'). Closing it early just stops its delivery."""
        send, receive = anyio.create_memory_object_stream[Result](buffer or self.buffer)
        channel = _Channel(name, None, send, receive)
        self._channels.append(channel)
        self._live.append(channel)
        return receive

    def collect(self, into: list[Result]) -> None:
        """Append every result to ``into`` as it is sent: for a consumer that
        only wants them all at the end (``anyprobe.check()``), without a stream
        and a wake-up of the consumer's task per result."""
        self._collectors.append(into)

    @property
    def failures(self) -> list[str]:
        """One line per reporter that failed: ``reporter jsonl failed: OSError: ...``."""
        return [c.failure for c in self._channels if c.failure]

    @property
    def stopped(self) -> list[str]:
        """The reporters a signal stopped before they finished (their files
        were left as they were)."""
        return [c.name for c in self._channels if c.stopped_by]

    def start(self, task_group: TaskGroup) -> None:
        self._all_done = anyio.Event()
        for channel in self._channels:
            if channel.reporter is not None:
                channel.scope = anyio.CancelScope()
                if channel.stop_failure or channel.stop_signal:  # stopped before it started
                    channel.scope.cancel()
                self._running += 1
                task_group.start_soon(self._run_reporter, channel, name=f"reporter {channel.name}")
        if not self._running:
            self._all_done.set()

    async def _run_reporter(self, channel: _Channel) -> None:
        assert channel.reporter is not None and channel.scope is not None
        completed = False
        try:
            with channel.scope:
                async with channel.receive:
                    await channel.reporter.report(ResultStream(channel.receive), self.ctx)
                    completed = True
                    unread = channel.receive.statistics().current_buffer_used
                    if not self._closed or unread:
                        self._drop(channel)
        except anyio.get_cancelled_exc_class():
            raise
        except Exception as exc:
            # A reporter's own task group wraps its error: name the error itself.
            while isinstance(exc, ExceptionGroup) and len(exc.exceptions) == 1:
                exc = exc.exceptions[0]
            if channel.stop_failure is None and channel.stop_signal is None:
                channel.failure = f"reporter {channel.name} failed: {type(exc).__name__}: {exc}"
            log.debug("reporter %s failed", channel.name, exc_info=True)
        finally:
            if not completed and (channel.stop_failure or channel.stop_signal):
                # Stopped before it finished (one that finished in the
                # meantime wrote its report: it is not stopped).
                channel.failure = channel.stop_failure
                channel.stopped_by = channel.stop_signal
            channel.done = True
            self._running -= 1
            if self._running <= 0 and self._all_done is not None:
                self._all_done.set()

    def _stop(
        self, channel: _Channel, *, failure: str | None = None, signal: str | None = None
    ) -> None:
        """Stop a reporter still running: cancel its task, close its stream."""
        if channel.reporter is None or channel.done:
            return
        if channel.stop_failure is None and channel.stop_signal is None:
            channel.stop_failure = failure
            channel.stop_signal = signal
        if channel.scope is not None:
            channel.scope.cancel()
        # Its stream is not closed: a reporter must not take a cut-short
        # stream for the end of the run and write a report of it.
        if channel in self._live:
            self._live = [c for c in self._live if c is not channel]

    def stop(self, signal: str) -> None:
        """Stop every reporter still running now (a second signal)."""
        for channel in self._channels:
            self._stop(channel, signal=signal)

    def hurry(self, signal: str, grace: float = SIGNAL_GRACE) -> None:
        """A signal asked the run to stop: the reporters get ``grace`` seconds
        (counted from now, or from :meth:`finish` if it has not started)."""
        if self._hurry is None:
            self._hurry = (grace, signal)
        if self._finish_scope is not None:
            self._finish_scope.deadline = min(
                self._finish_scope.deadline, anyio.current_time() + grace
            )

    async def finish(self) -> None:
        """Wait until every reporter has finished, at most ``timeout`` seconds
        (the grace after a signal); stop those still running then."""
        assert self._all_done is not None
        with anyio.CancelScope() as scope:
            self._finish_scope = scope
            if self.timeout is not None:
                scope.deadline = anyio.current_time() + self.timeout
            if self._hurry is not None:
                scope.deadline = min(scope.deadline, anyio.current_time() + self._hurry[0])
            await self._all_done.wait()
        self._finish_scope = None
        for channel in self._channels:
            if self._hurry is not None:
                self._stop(channel, signal=self._hurry[1])
            else:
                self._stop(
                    channel,
                    failure=f"reporter {channel.name} did not finish within "
                    f"{self.timeout:g} s after the last result (reporter_timeout)",
                )

    async def send(self, result: Result) -> None:
        """Give ``result`` to every live reporter, waiting while one's buffer is full."""
        pending = self.offer(result)
        if pending is not None:
            await pending

    def offer(self, result: Result) -> Awaitable[None] | None:
        """Give ``result`` to every live reporter that has room, at once: None
        when all took it, else what to await to give it to the others (waiting
        while a buffer is full). The common case costs no coroutine and no
        trip through the event loop."""
        for collected in self._collectors:
            collected.append(result)
        live = self._live
        for index, channel in enumerate(live):
            try:
                channel.send.send_nowait(result)
            except anyio.WouldBlock:
                return self._send_waiting(result, live[index:])
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                self._drop(channel)
        return None

    async def _send_waiting(self, result: Result, channels: list[_Channel]) -> None:
        """Give ``result`` to ``channels``, the first of which has no room."""
        for channel in channels:
            if channel not in self._live:
                continue
            try:
                try:
                    channel.send.send_nowait(result)
                except anyio.WouldBlock:
                    with anyio.move_on_after(self.timeout) as waited:
                        await channel.send.send(result)
                    if waited.cancelled_caught:
                        self._stop(
                            channel,
                            failure=f"reporter {channel.name} read no result for "
                            f"{self.timeout:g} s (reporter_timeout)",
                        )
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                self._drop(channel)

    def _drop(self, channel: _Channel) -> None:
        if channel in self._live:
            self._live = [c for c in self._live if c is not channel]
            if channel.failure is None and channel.reporter is not None:
                channel.failure = f"reporter {channel.name} stopped reading before the run ended"

    def abort(self) -> None:
        """Close every stream still open (a run cancelled from outside): no leaks."""
        for channel in self._channels:
            channel.send.close()

    def close(self, summary: RunSummary) -> None:
        """End every reporter's stream; ``ctx.summary`` is set first so they can read it."""
        self.ctx.summary = summary
        self._closed = True
        for channel in self._channels:
            channel.send.close()
