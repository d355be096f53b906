"""The result stream: every result, in completion order, to every reporter.

Each reporter reads its own bounded memory object stream. Sending waits while
a reporter's buffer is full (back-pressure, so memory stays bounded); a
reporter that raises is recorded as failed and its stream closed, so later
sends skip it and the other reporters lose nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from .model import Result, RunSummary
from .reporter import ReportContext, Reporter, ResultStream

log = logging.getLogger("anyprobe.fanout")

#: Results a reporter may fall behind before the checks wait for it.
REPORTER_BUFFER = 1024


@dataclass
class _Channel:
    name: str
    reporter: Reporter[Any] | None  # None: a tap, read by whoever holds the receive end
    send: MemoryObjectSendStream[Result]
    receive: MemoryObjectReceiveStream[Result]
    failure: str | None = None


class Fanout:
    """Delivers results to reporters; start it in a task group, then send, then close."""

    def __init__(
        self,
        reporters: list[tuple[str, Reporter[Any]]],
        ctx: ReportContext,
        *,
        buffer: int = REPORTER_BUFFER,
    ) -> None:
        self.ctx = ctx
        self.buffer = buffer
        self._channels: list[_Channel] = []
        for name, reporter in reporters:
            send, receive = anyio.create_memory_object_stream[Result](buffer)
            self._channels.append(_Channel(name, reporter, send, receive))
        self._live = list(self._channels)
        self._closed = False

    def tap(self, name: str = "tap") -> MemoryObjectReceiveStream[Result]:
        """A stream of every result for a consumer that is not a reporter task
        (the embedding API's iterator). Closing it early just stops its delivery."""
        send, receive = anyio.create_memory_object_stream[Result](self.buffer)
        channel = _Channel(name, None, send, receive)
        self._channels.append(channel)
        self._live.append(channel)
        return receive

    @property
    def failures(self) -> list[str]:
        """One line per reporter that failed: ``reporter jsonl failed: OSError: ...``."""
        return [c.failure for c in self._channels if c.failure]

    def start(self, task_group: TaskGroup) -> None:
        for channel in self._channels:
            if channel.reporter is not None:
                task_group.start_soon(self._run_reporter, channel, name=f"reporter {channel.name}")

    async def _run_reporter(self, channel: _Channel) -> None:
        assert channel.reporter is not None
        try:
            async with channel.receive:
                await channel.reporter.report(ResultStream(channel.receive), self.ctx)
                unread = channel.receive.statistics().current_buffer_used
                if not self._closed or unread:
                    self._drop(channel)
        except anyio.get_cancelled_exc_class():
            raise
        except Exception as exc:
            # A reporter's own task group wraps its error: name the error itself.
            while isinstance(exc, ExceptionGroup) and len(exc.exceptions) == 1:
                exc = exc.exceptions[0]
            channel.failure = f"reporter {channel.name} failed: {type(exc).__name__}: {exc}"
            log.debug("reporter %s failed", channel.name, exc_info=True)

    async def send(self, result: Result) -> None:
        """Give ``result`` to every live reporter, waiting while one's buffer is full."""
        for channel in self._live:
            try:
                try:
                    # The common case, without a trip through the event loop.
                    channel.send.send_nowait(result)
                except anyio.WouldBlock:
                    await channel.send.send(result)
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
