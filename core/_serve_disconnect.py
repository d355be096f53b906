"""Ending a ``/probe`` probe when its client goes away, on a server that only
says so with an ``http.disconnect`` message (hypercorn).

Waiting for that message takes a task beside the probe, and a task per request
costs about a tenth of a fast probe's CPU. Most probes end in milliseconds,
long before a scraper gives up on them: so one task, :meth:`DisconnectWatcher.run`,
started with the server, starts a watch only for the probes still running
:data:`WATCH_AFTER` seconds after they began. (uvicorn and the built-in server
tell when a connection is lost: there, :class:`ConnectionLost` cancels the probe
with no task at all.)
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import anyio

#: Seconds a probe runs before its client is watched for a disconnect.
WATCH_AFTER = 0.2

#: The key, in a request's ``scope["extensions"]``, of the :class:`ConnectionLost`
#: of its connection, when the server gives one (uvicorn and the built-in server, not hypercorn).
CONNECTION_LOST = "anyprobe.connection_lost"


class ConnectionLost:
    """Set by the server when a client's connection is lost: cancels the work
    under :meth:`cancelling`, so that a probe ends with its client without a
    task per request waiting for ``http.disconnect``."""

    __slots__ = ("_scopes", "is_set")

    def __init__(self) -> None:
        self.is_set = False
        self._scopes: set[anyio.CancelScope] = set()

    def set(self) -> None:
        self.is_set = True
        for scope in tuple(self._scopes):
            scope.cancel()

    @contextmanager
    def cancelling(self) -> Iterator[anyio.CancelScope]:
        """A cancel scope, cancelled when (or if already) the connection is lost."""
        with anyio.CancelScope() as scope:
            if self.is_set:
                scope.cancel()
            self._scopes.add(scope)
            try:
                yield scope
            finally:
                self._scopes.discard(scope)


class Watched:
    """One request's probe, cancelled (:attr:`disconnected` then) if its client
    goes away while it is watched."""

    __slots__ = ("disconnected", "probe_scope", "receive", "started", "watch_scope", "watching")

    def __init__(self, receive: Callable[[], Awaitable[Any]], probe_scope: anyio.CancelScope):
        self.receive = receive
        self.probe_scope = probe_scope
        self.started = anyio.current_time()
        self.watch_scope = anyio.CancelScope()
        self.watching = False
        self.disconnected = False

    async def watch(self) -> None:
        with self.watch_scope:
            while True:
                message = await self.receive()
                if message["type"] == "http.disconnect":
                    self.disconnected = True
                    self.probe_scope.cancel()
                    return


class DisconnectWatcher:
    """Watches the probes that run longer than :data:`WATCH_AFTER` for their
    client's disconnect, while :meth:`run` runs (:attr:`running`)."""

    def __init__(self) -> None:
        self.running = False
        self._probes: dict[int, Watched] = {}

    async def run(self) -> None:
        """Start each slow probe's watch, until cancelled."""
        self.running = True
        try:
            async with anyio.create_task_group() as tg:
                while True:
                    await anyio.sleep(WATCH_AFTER / 2)
                    since = anyio.current_time() - WATCH_AFTER
                    for probe in list(self._probes.values()):
                        if not probe.watching and probe.started <= since:
                            probe.watching = True
                            tg.start_soon(probe.watch)
        finally:
            self.running = False  # new requests watch for themselves again

    @contextmanager
    def watching(self, receive: Callable[[], Awaitable[Any]]) -> Iterator[Watched]:
        """A scope for one probe, cancelled if its client disconnects once watched."""
        with anyio.CancelScope() as probe_scope:
            probe = Watched(receive, probe_scope)
            self._probes[id(probe)] = probe
            try:
                yield probe
            finally:
                del self._probes[id(probe)]
                probe.watch_scope.cancel()
