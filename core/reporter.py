"""What a reporter is, what it reads, and a helper to write its output.

A reporter is a class with a ``name``, an ``Options`` model (a subclass of
:class:`ReporterOptions`) and one async method that reads the run's results
as they complete::

    class CountReporter(anyprobe.Reporter[anyprobe.ReporterOptions]):
        name = "count"

        async def report(self, results, ctx):
            n = sum([1 async for _ in results])
            async with await anyprobe.OutputFile.open(self.options.path) as out:
                await out.write(f"{n} results; {ctx.summary.describe()}\\n")

Each reporter reads its own bounded stream: a slow one slows the checks down
(back-pressure) instead of piling results up in memory, and one that raises is
reported and dropped without costing the others a result.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any, ClassVar, Generic, TextIO, TypeVar

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ._options import one_value_as_list
from .model import Result, RunSummary


class ReporterOptions(BaseModel):
    """Base of every reporter's options; ``path`` is where the output goes."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    path: str | None = Field(
        default=None,
        description="File to write; '-' or unset for standard output (-r NAME=PATH).",
    )

    @model_validator(mode="before")
    @classmethod
    def _one_value_is_a_list_of_one(cls, data: Any) -> Any:
        # The same rule as for probe options: a single value is a list of one.
        return one_value_as_list(cls, data)


ReporterOptionsT = TypeVar("ReporterOptionsT", bound=ReporterOptions)


class ReportContext:
    """What core tells a reporter about the run.

    ``summary`` is None while results are still coming and is set before the
    result stream ends, so it can be read after the ``async for`` loop.
    """

    __slots__ = ("color", "explain", "summary", "total", "verbosity")

    def __init__(
        self, *, total: int, explain: bool = False, verbosity: int = 0, color: bool | None = None
    ) -> None:
        self.total = total
        self.explain = explain
        self.verbosity = verbosity
        self.color = color
        self.summary: RunSummary | None = None


class ResultStream:
    """The results of a run, in completion order, for one reporter.

    Iterate it with ``async for``; :meth:`batches` yields every result already
    waiting at once, which lets a file reporter write many lines per system call.
    """

    __slots__ = ("_receive",)

    def __init__(self, receive: MemoryObjectReceiveStream[Result]) -> None:
        self._receive = receive

    def __aiter__(self) -> ResultStream:
        return self

    async def __anext__(self) -> Result:
        try:
            # Take what is waiting without a trip through the event loop.
            return self._receive.receive_nowait()
        except anyio.WouldBlock:
            try:
                return await self._receive.receive()
            except anyio.EndOfStream:
                raise StopAsyncIteration from None
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    async def batches(self) -> AsyncIterator[list[Result]]:
        """Lists of results: the next one, plus any others already waiting."""
        receive = self._receive
        while True:
            try:
                batch = [await receive.receive()]
            except anyio.EndOfStream:
                return
            while True:
                try:
                    batch.append(receive.receive_nowait())
                except (anyio.WouldBlock, anyio.EndOfStream):
                    break
            yield batch


class Reporter(Generic[ReporterOptionsT]):
    """Base class of reporters. Subclasses set ``name`` and ``Options``."""

    name: ClassVar[str]
    Options: ClassVar[type[ReporterOptions]] = ReporterOptions
    description: ClassVar[str] = ""

    def __init__(self, options: ReporterOptionsT) -> None:
        self.options = options

    async def report(self, results: ResultStream, ctx: ReportContext) -> None:
        """Consume ``results`` until they end. ``ctx.summary`` is set by then."""
        raise NotImplementedError


class OutputFile:
    """A text destination (a file, or standard output for ``None``/``'-'``).

    Writes run in a worker thread, so a slow disk or a full pipe never blocks
    the event loop. With ``atomic=True`` the file is written under a temporary
    name and renamed into place by :meth:`close`, so readers never see half of
    it; ``close(keep=False)`` throws the temporary file away.
    """

    def __init__(self, stream: TextIO, path: str | None, temp_path: str | None) -> None:
        self._stream = stream
        self._path = path
        self._temp_path = temp_path
        self._closed = False

    @property
    def is_terminal(self) -> bool:
        return self._path is None and self._stream.isatty()

    @classmethod
    async def open(cls, path: str | None, *, atomic: bool = False) -> OutputFile:
        if path in (None, "-"):
            return cls(sys.stdout, None, None)
        assert path is not None
        if atomic:

            def make_temp() -> tuple[TextIO, str]:
                directory = os.path.dirname(os.path.abspath(path))
                fd, temp = tempfile.mkstemp(
                    dir=directory, prefix=f".{os.path.basename(path)}.", suffix=".tmp"
                )
                return os.fdopen(fd, "w", encoding="utf-8", newline=""), temp

            stream, temp = await anyio.to_thread.run_sync(make_temp)
            return cls(stream, path, temp)
        stream = await anyio.to_thread.run_sync(
            lambda: open(path, "w", encoding="utf-8", newline="")  # noqa: SIM115
        )
        return cls(stream, path, None)

    async def write(self, text: str, *, flush: bool = True) -> None:
        """Write ``text``; with ``flush`` it reaches the OS before this returns."""
        stream = self._stream

        def write() -> None:
            stream.write(text)
            if flush:
                stream.flush()

        await anyio.to_thread.run_sync(write)

    async def close(self, *, keep: bool = True) -> None:
        """Flush and close; an atomic file is renamed into place (or removed)."""
        if self._closed:
            return
        self._closed = True
        stream, path, temp = self._stream, self._path, self._temp_path

        def close() -> None:
            if path is None:
                stream.flush()
                return
            stream.flush()
            if temp:
                os.fsync(stream.fileno())
            stream.close()
            if temp:
                if keep:
                    os.replace(temp, path)
                else:
                    os.unlink(temp)

        # Shielded: a file must end up closed (and valid) even when the run is
        # being cancelled around the reporter.
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(close)

    async def __aenter__(self) -> OutputFile:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close(keep=exc_type is None or not issubclass(exc_type, Exception))
