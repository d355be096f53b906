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

import contextlib
import errno
import os
import stat
import sys
from collections.abc import AsyncIterator, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TextIO, TypeVar

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream

from ._model import Result, RunSummary
from ._option_defaults import lazy_model

if TYPE_CHECKING:
    from ._options import ReporterOptions as ReporterOptions


ReporterOptionsT = TypeVar("ReporterOptionsT", bound="ReporterOptions")


def __getattr__(name: str) -> Any:
    # ReporterOptions is a pydantic model: imported when asked for, not with the
    # Reporter base class (a run that sets no reporter option needs no pydantic).
    if name == "ReporterOptions":
        from ._options import ReporterOptions

        return ReporterOptions
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
    Options: ClassVar[type[ReporterOptions]] = lazy_model("anyprobe._options:ReporterOptions")  # type: ignore[assignment]
    #: Optional: the options when none are set, as plain values (see
    #: :attr:`anyprobe.Probe.option_defaults`); must equal the model's defaults.
    option_defaults: ClassVar[Mapping[str, Any] | None] = None
    description: ClassVar[str] = ""
    #: The option that ``-r NAME=DEST`` sets: ``path`` for a file reporter,
    #: ``url`` for a notifier (see :class:`anyprobe.Notifier`).
    destination: ClassVar[str] = "path"

    def __init__(self, options: ReporterOptionsT) -> None:
        self.options = options

    async def report(self, results: ResultStream, ctx: ReportContext) -> None:
        """Consume ``results`` until they end. ``ctx.summary`` is set by then."""
        raise NotImplementedError

    def outputs(self) -> list[str | None]:
        """Where this reporter writes: file paths, and ``None`` for standard
        output. Core checks every path before the first check runs, and shows
        the run's summary line on stderr when no reporter writes to standard
        output. The default reads ``options.path`` (a URL is not a file);
        a reporter that sends its output elsewhere returns ``[]``."""
        path = self.options.path
        if path is None or path == "-":
            return [None]
        if "://" in path:
            return []
        return [path]


class OutputFile:
    """A text destination (a file, or standard output for ``None``/``'-'``).

    Writes run in a worker thread, so a slow disk or a full pipe never blocks
    the event loop. The file rules (see docs/reliability.md):

    - a path that is not a regular file (a device such as ``/dev/null``, a
      FIFO, ``/dev/stdout``) is written through, never replaced;
    - a symlink is followed: its target is written, the link stays;
    - a new file gets the mode the umask gives (0644 under umask 022), an
      existing file keeps its mode;
    - with ``atomic=True`` a regular file is written under a temporary name
      in the same directory and renamed over the path by :meth:`close`, so
      readers never see half of it; ``close(keep=False)`` (or leaving the
      ``async with`` block by an exception or a cancellation) throws the
      temporary file away and leaves the existing file as it was;
    - without ``atomic`` the file is opened (and an existing one emptied) at
      the first write, so a report stopped before it wrote anything leaves
      the existing file as it was.

    Errors name ``path`` as given, never a temporary file.
    """

    def __init__(self, path: str | None, *, atomic: bool = False) -> None:
        self._path = path
        self._atomic = atomic
        self._stream: TextIO | None = sys.stdout if path is None else None
        self._temp_path: str | None = None
        self._target: str | None = None  # where the temporary file is renamed to
        # A FIFO is written without a thread (non-blocking, waiting for the
        # reader in the event loop): a reader that never comes, or never
        # reads, must not leave a thread blocked that the process waits for.
        self._fifo = False
        self._fifo_fd: int | None = None
        self._closed = False

    @property
    def is_terminal(self) -> bool:
        return self._path is None and sys.stdout.isatty()

    @classmethod
    async def open(cls, path: str | None, *, atomic: bool = False) -> OutputFile:
        """An output for ``path`` (``None`` or ``'-'``: standard output)."""
        if path in (None, "-"):
            return cls(None)
        assert path is not None
        out = cls(path, atomic=atomic)
        await out._prepare()
        return out

    def _fail(self, exc: OSError) -> OSError:
        where = "standard output" if self._path is None else self._path
        error = OSError(f"cannot write {where}: {exc.strerror or exc}")
        error.errno = exc.errno  # kept for callers; the message stays one clean line
        return error

    async def _prepare(self) -> None:
        path = self._path
        assert path is not None

        def prepare() -> None:
            try:
                mode = os.stat(path).st_mode
            except FileNotFoundError:
                mode = None
            if mode is not None and stat.S_ISFIFO(mode):
                self._fifo = True
            elif mode is not None and not stat.S_ISREG(mode):
                self._atomic = False  # a device: written through
            elif self._atomic:
                # Follow a symlink: the temporary file goes beside its target.
                self._target = os.path.realpath(path)
                self._temp_path, self._stream = _create_temp(self._target, mode)

        try:
            await anyio.to_thread.run_sync(prepare)
        except OSError as exc:
            raise self._fail(exc) from None

    async def _ensure_open(self) -> None:
        if self._stream is not None or self._fifo_fd is not None:
            return
        path = self._path
        assert path is not None
        try:
            if self._fifo:
                while self._fifo_fd is None:
                    try:
                        self._fifo_fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
                    except OSError as exc:
                        if exc.errno != errno.ENXIO:
                            raise
                        # No reader yet, and a FIFO tells no one when one
                        # comes: look again (until the run stops waiting).
                        await anyio.sleep(0.05)
                return
            self._stream = await anyio.to_thread.run_sync(
                lambda: open(path, "w", encoding="utf-8", newline="")  # noqa: SIM115
            )
        except OSError as exc:
            raise self._fail(exc) from None

    async def write(self, text: str, *, flush: bool = True) -> None:
        """Write ``text``; with ``flush`` it reaches the OS before this returns."""
        await self._ensure_open()
        try:
            if self._fifo_fd is not None:
                await self._write_fifo(self._fifo_fd, text.encode("utf-8"))
                return
            stream = self._stream
            assert stream is not None

            def write() -> None:
                stream.write(text)
                if flush:
                    stream.flush()

            await anyio.to_thread.run_sync(write)
        except OSError as exc:
            raise self._fail(exc) from None

    @staticmethod
    async def _write_fifo(fd: int, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(fd, view) :]
            except BlockingIOError:
                await anyio.wait_writable(fd)

    async def close(self, *, keep: bool = True) -> None:
        """Flush and close; an atomic file is renamed into place (or, with
        ``keep=False``, removed and the existing file left as it was)."""
        if self._closed:
            return
        if keep and self._path is not None:
            # Nothing was written: the complete report is an empty file.
            await self._ensure_open()
        self._closed = True
        if self._fifo_fd is not None:
            os.close(self._fifo_fd)
            return
        stream, temp, target = self._stream, self._temp_path, self._target

        def close() -> None:
            if stream is None:
                return
            try:
                stream.flush()
                if temp:
                    os.fsync(stream.fileno())
            finally:
                if stream is not sys.stdout:
                    stream.close()
            if temp:
                assert target is not None
                if keep:
                    os.replace(temp, target)
                else:
                    os.unlink(temp)

        def discard() -> None:
            if temp:
                with contextlib.suppress(OSError):
                    os.unlink(temp)

        # Shielded: a file must end up closed (and valid, or as it was) even
        # when the run is being cancelled around the reporter.
        with anyio.CancelScope(shield=True):
            try:
                await anyio.to_thread.run_sync(close)
            except OSError as exc:
                await anyio.to_thread.run_sync(discard)
                raise self._fail(exc) from None

    async def __aenter__(self) -> OutputFile:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Only a block that ran to its end is a complete report: after an
        # error or a cancellation the existing file stays as it was.
        await self.close(keep=exc_type is None)


def _create_temp(target: str, existing_mode: int | None) -> tuple[str, TextIO]:
    """A new temporary file beside ``target``: the umask's mode for a new
    report (``mkstemp`` would give 0600), the existing file's mode otherwise."""
    import secrets

    directory, name = os.path.split(target)
    for _ in range(100):
        temp = os.path.join(directory, f".{name}.{secrets.token_hex(4)}.tmp")
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        try:
            if existing_mode is not None:
                os.fchmod(fd, stat.S_IMODE(existing_mode))
            return temp, os.fdopen(fd, "w", encoding="utf-8", newline="")
        except BaseException:
            os.close(fd)
            os.unlink(temp)
            raise
    raise FileExistsError(errno.EEXIST, "no free temporary file name", directory)


def output_problem(path: str, *, atomic: bool = True) -> str | None:
    """Why ``path`` cannot take a report, or None: checked before the first
    check runs, so a long run does not end in "reporter failed". Nothing is
    created or changed."""
    if not path:
        return "the path is empty"
    try:
        mode: int | None = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        mode = None
    except OSError as exc:
        return f"cannot write {path}: {exc.strerror or exc}"
    if mode is not None and stat.S_ISDIR(mode):
        return f"cannot write {path}: it is a directory"
    if mode is not None and not stat.S_ISREG(mode):
        if not os.access(path, os.W_OK):
            return f"cannot write {path}: permission denied"
        return None
    if mode is not None and not os.access(path, os.W_OK):
        return f"cannot write {path}: permission denied"
    if mode is None and os.path.lexists(path) and not os.path.islink(path):
        return f"cannot write {path}"
    directory = os.path.dirname(os.path.realpath(path)) or "."
    if not os.path.isdir(directory):
        if os.path.lexists(directory):
            return f"cannot write {path}: {directory} is not a directory"
        return f"cannot write {path}: directory {directory} does not exist"
    if (mode is None or atomic) and not os.access(directory, os.W_OK | os.X_OK):
        return f"cannot write {path}: directory {directory} is not writable"
    return None
