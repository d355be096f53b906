"""Run an asyncio-only library from any anyio backend.

Some libraries (asyncssh is the one anyprobe ships with) only run on asyncio.
:class:`AsyncioBridge` runs their coroutines on a private asyncio event loop,
in one plain thread it starts on first use, and hands each result back to the
caller's event loop, whichever backend that is::

    from anyprobe.bridge import asyncio_bridge

    async def check(self, target, options, ctx):
        bridge = asyncio_bridge(ctx)  # one per run, closed when the run ends
        banner = await bridge.run(read_banner, target.host, target.port)

``read_banner`` is an ``async def`` that runs entirely on the bridge loop: it
may use any asyncio API and must keep the library's objects to itself (open,
use and close them inside the call; return plain data).

- The caller's event loop never blocks: it waits on an :class:`anyio.Event`
  that the bridge thread sets through the caller loop's own thread-safe entry
  point (``call_soon_threadsafe`` on asyncio, the trio token on trio).
- Cancellation crosses the bridge: when the caller is cancelled (a deadline,
  ``fail_after``, Ctrl-C), the asyncio task is cancelled and the caller waits,
  shielded but for at most ``cleanup_timeout`` seconds, for its cleanup
  (closing sockets) before the cancellation goes on.
- On an asyncio host the bridge runs the coroutine directly on the host loop
  (no thread at all) unless it was created with ``direct_on_asyncio=False``.
- :meth:`AsyncioBridge.aclose` cancels what is left, shuts the loop down and
  joins the thread: nothing outlives it.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import sys
import threading
from collections.abc import Awaitable, Callable, Coroutine
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, TypeVar, TypeVarTuple, Unpack, cast

import anyio
import anyio.lowlevel

from ._errors import AnyprobeError

if TYPE_CHECKING:
    import asyncio

    from ._probe import CheckContext

__all__ = ["AsyncioBridge", "BridgeClosedError", "asyncio_bridge"]

log = logging.getLogger("anyprobe.bridge")

T = TypeVar("T")
ArgsT = TypeVarTuple("ArgsT")

#: How long a cancelled caller waits, at most, for the asyncio side to clean up.
DEFAULT_CLEANUP_TIMEOUT = 2.0

Wake = Callable[[Callable[[], object]], object]


class BridgeClosedError(AnyprobeError, RuntimeError):
    """The bridge was closed before (or while) the call could run."""


def _caller_wake() -> tuple[Wake, bool]:
    """A thread-safe way to run a callback on the caller's event loop.

    Returns it and whether the caller's loop is asyncio.
    """
    native = anyio.lowlevel.current_token().native_token
    # asyncio is imported where it is first needed: a trio run may never need it.
    asyncio = sys.modules.get("asyncio")  # an asyncio loop means asyncio is imported
    if asyncio is not None and isinstance(native, asyncio.AbstractEventLoop):
        return native.call_soon_threadsafe, True
    # trio: the TrioToken's run_sync_soon is its thread-safe, non-blocking entry point.
    return cast(Any, native).run_sync_soon, False


def _safe_wake(wake: Wake, callback: Callable[[], object]) -> None:
    try:
        wake(callback)
    except Exception:  # the caller's loop has already ended: nobody is waiting
        log.debug("bridge: caller loop gone, result dropped")


async def _await(awaitable: Awaitable[T]) -> T:
    return await awaitable


class _Call(Generic[T]):
    """One call crossing the bridge; its fields are written on the bridge thread
    and read by the caller only once ``done`` is set."""

    __slots__ = ("done", "error", "task")

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.task: asyncio.Task[T] | None = None
        self.error: BaseException | None = None

    def cancel(self) -> None:  # runs on the bridge loop
        if self.task is not None:
            self.task.cancel()

    def result(self) -> T:
        if self.error is not None:
            raise self.error
        assert self.task is not None
        if self.task.cancelled():
            # Only the bridge's shutdown cancels a task the caller still waits for.
            raise BridgeClosedError("the asyncio bridge was closed while the call ran")
        return self.task.result()


class AsyncioBridge:
    """A private asyncio event loop in one thread, callable from any anyio backend.

    Use it as an async context manager, or call :meth:`aclose` when done;
    within a check, :func:`asyncio_bridge` gives the run's bridge, which core
    closes when the run ends. The thread starts on the first call that needs
    it, so a bridge that is never used (or only used from asyncio, directly)
    costs nothing.

    ``direct_on_asyncio``: when the caller runs on asyncio, run the coroutine
    on the caller's loop instead of crossing to the thread (the default).
    ``cleanup_timeout``: how long a cancelled call, and :meth:`aclose`, wait
    for the asyncio side to finish cleaning up.
    """

    def __init__(
        self,
        *,
        direct_on_asyncio: bool = True,
        cleanup_timeout: float = DEFAULT_CLEANUP_TIMEOUT,
        name: str = "anyprobe-asyncio-bridge",
    ) -> None:
        self.direct_on_asyncio = direct_on_asyncio
        self.cleanup_timeout = cleanup_timeout
        self.name = name
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._closed = False
        self._on_exit: Callable[[], None] | None = None

    @property
    def thread(self) -> threading.Thread | None:
        """The bridge's thread while it runs, else ``None``."""
        return self._thread

    @property
    def closed(self) -> bool:
        return self._closed

    async def __aenter__(self) -> AsyncioBridge:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def run(self, func: Callable[[Unpack[ArgsT]], Awaitable[T]], *args: *ArgsT) -> T:
        """Call ``func(*args)`` on the asyncio loop and return what its awaitable returns.

        ``func`` is called on the bridge loop (so a library function that
        returns an awaitable without being a coroutine function is fine). Its
        exception is raised here. Cancelling the caller cancels it.
        """
        if self._closed:
            raise BridgeClosedError("the asyncio bridge is closed")
        wake, on_asyncio = _caller_wake()
        if on_asyncio and self.direct_on_asyncio:
            return await func(*args)
        import asyncio

        loop = self._start()
        call: _Call[T] = _Call()

        def finished(_task: object = None) -> None:
            _safe_wake(wake, call.done.set)

        def submit() -> None:  # runs on the bridge loop
            try:
                awaitable = func(*args)
                coroutine = awaitable if asyncio.iscoroutine(awaitable) else _await(awaitable)
                call.task = loop.create_task(cast(Coroutine[Any, Any, T], coroutine))
            except BaseException as exc:
                call.error = exc
                finished()
                return
            call.task.add_done_callback(finished)

        try:
            # A fresh context: the caller's context variables (trio's marker
            # that sniffio and anyio read, among others) must not follow the
            # call onto the asyncio loop.
            loop.call_soon_threadsafe(submit, context=contextvars.Context())
        except RuntimeError:  # the loop was closed in between
            raise BridgeClosedError("the asyncio bridge is closed") from None
        try:
            await call.done.wait()
        except BaseException:
            # Cancelled (or interrupted): cancel the asyncio side and give it a
            # bounded, shielded moment to close what it opened.
            try:
                loop.call_soon_threadsafe(call.cancel)
            except RuntimeError:  # the loop is gone, and the task with it
                pass
            else:
                with anyio.CancelScope(shield=True), anyio.move_on_after(self.cleanup_timeout):
                    await call.done.wait()
            raise
        return call.result()

    def _start(self) -> asyncio.AbstractEventLoop:
        import asyncio

        with self._lock:
            if self._closed:
                raise BridgeClosedError("the asyncio bridge is closed")
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=self._serve, args=(loop,), name=self.name, daemon=True
                )
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop

    def _serve(self, loop: asyncio.AbstractEventLoop) -> None:
        """The bridge thread: run the loop until :meth:`aclose` stops it, then clean up."""
        import asyncio

        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
            loop.run_until_complete(self._drain(loop))
        except BaseException:  # pragma: no cover - a broken loop must still close
            log.exception("bridge: event loop failed")
        finally:
            asyncio.set_event_loop(None)
            loop.close()
            on_exit = self._on_exit
            if on_exit is not None:
                on_exit()

    async def _drain(self, loop: asyncio.AbstractEventLoop) -> None:
        """Cancel every task still on the loop, wait for them, release the executor."""
        import asyncio

        tasks = [task for task in asyncio.all_tasks(loop) if task is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=self.cleanup_timeout)
            if pending:
                log.warning("bridge: %d task(s) did not finish cleaning up", len(pending))
        await loop.shutdown_asyncgens()
        # asyncio libraries run blocking work in the loop's default executor
        # (asyncssh builds its options there): its threads end here.
        await loop.shutdown_default_executor()

    async def aclose(self) -> None:
        """Stop the loop (cancelling what still runs on it) and end the thread.

        Safe to call twice and from any backend; waits at most about
        ``cleanup_timeout`` seconds, shielded from cancellation.
        """
        with self._lock:
            self._closed = True
            loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        stopped = anyio.Event()
        wake, _ = _caller_wake()
        self._on_exit = lambda: _safe_wake(wake, stopped.set)
        if thread.is_alive():
            with contextlib.suppress(RuntimeError):  # already closed
                loop.call_soon_threadsafe(loop.stop)
            with anyio.CancelScope(shield=True), anyio.move_on_after(self.cleanup_timeout + 1):
                await stopped.wait()
        # The thread has signalled its very last step: joining takes no time.
        thread.join(timeout=1.0 if stopped.is_set() else 0)
        if thread.is_alive():
            log.warning("bridge: thread %s did not stop", thread.name)
        else:
            self._thread = None


def asyncio_bridge(ctx: CheckContext) -> AsyncioBridge:
    """The run's shared :class:`AsyncioBridge`, created on first use.

    Core closes it when the run ends (every shared resource with an
    ``aclose()`` is closed then), so a probe never closes it itself.
    """
    return ctx.shared(AsyncioBridge, AsyncioBridge)
