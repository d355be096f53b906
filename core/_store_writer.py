"""The history writer of ``anyprobe serve``: results to the store, never in a check's way.

:meth:`ProbeServer.record <anyprobe._serve_server.ProbeServer.record>` hands
each result to :meth:`HistoryWriter.add`, which only appends it to a bounded
buffer. The writer task takes the buffer to the store every ``flush_interval``
(or as soon as a ``batch`` is waiting), one transaction per batch. While the
store is down a batch stays in the buffer and is tried again with a growing
pause; results that arrive when the buffer is full are dropped and counted.
The writer's state is on the server's ``/metrics``; at shutdown it writes what
it holds, for :data:`FLUSH_GRACE` seconds at most. Every hour it prunes the
store (raw results to rollups, old rollups away).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from itertools import islice
from typing import TYPE_CHECKING, Protocol

import anyio

from ._errors import ConfigError
from ._model import ErrorInfo, Result, Target
from ._store import Record
from ._store_config import StoreSettings, StoreTable, configured_store

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from ._config import Config
    from ._store_sql import SqlStore

__all__ = ["HistoryWriter", "open_history", "result_of"]

log = logging.getLogger("anyprobe.store")

#: Seconds the writer gets at shutdown to write the results it holds.
FLUSH_GRACE = 10.0
#: Seconds between two attempts while the store is down: doubled each time, up to the last.
RETRY_PAUSE = (0.5, 30.0)
#: Seconds the checks wait at start for the store (to load the latest results).
STARTUP_WAIT = 3.0
#: Seconds between two prunes of the store, and before the first one.
PRUNE_EVERY = 3600.0
PRUNE_FIRST = 60.0


class _StoreMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        from prometheus_client import Counter, Gauge

        self.up = Gauge(
            "anyprobe_store_up",
            "1 when the last write to the history store succeeded, 0 while it fails.",
            registry=registry,
        )
        self.buffered = Gauge(
            "anyprobe_store_buffered_results",
            "Results waiting to be written to the history store.",
            registry=registry,
        )
        self.written = Counter(
            "anyprobe_store_written_results",
            "Results written to the history store.",
            registry=registry,
        )
        self.errors = Counter(
            "anyprobe_store_write_errors",
            "Failed writes (batches) to the history store; each is tried again.",
            registry=registry,
        )
        self.dropped = Counter(
            "anyprobe_store_dropped_results",
            "Results lost because the buffer was full ([store] buffer).",
            registry=registry,
        )
        self.last_success = Gauge(
            "anyprobe_store_last_write_success_timestamp_seconds",
            "When a write to the history store last succeeded, as a Unix timestamp.",
            registry=registry,
        )


class HistoryWriter:
    """Batches the results of one server into its ``store``.

    ``on_latest`` receives each check's newest stored record once the store
    is first reached (a restarted server fills its latest results from it).
    """

    def __init__(
        self,
        store: SqlStore,
        settings: StoreSettings,
        registry: CollectorRegistry,
        *,
        on_latest: Callable[[dict[str, Record]], None] | None = None,
    ) -> None:
        self.store = store
        self.capacity = settings.buffer
        self.batch = settings.batch
        self.flush_interval = settings.flush_interval
        self.metrics = _StoreMetrics(registry)
        self.buffer: deque[Record] = deque()
        self._on_latest = on_latest
        self._wake: anyio.Event | None = None
        self._stopping = False
        self._down_since: float | None = None
        self._dropping = False
        self._loaded = False

    def add(self, record: Record) -> None:
        """Queue ``record`` for the store (never waits); drop it when the buffer is full."""
        if len(self.buffer) >= self.capacity:
            self.metrics.dropped.inc()
            if not self._dropping:
                self._dropping = True
                log.error(
                    "history buffer full (%d results): dropping results until %s takes writes",
                    self.capacity,
                    self.store.description,
                )
            return
        self.buffer.append(record)
        self.metrics.buffered.set(len(self.buffer))
        if len(self.buffer) >= self.batch and self._wake is not None:
            self._wake.set()

    def stop(self) -> None:
        """Write what is buffered (for :data:`FLUSH_GRACE` seconds at most),
        then return from :meth:`run`."""
        self._stopping = True
        if self._wake is not None:
            self._wake.set()

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Write until :meth:`stop`; started once the store was tried (and the
        latest records loaded when it answered), :data:`STARTUP_WAIT` seconds at most."""
        self._wake = anyio.Event()
        log.info("keeping the history in %s", self.store.description)
        with anyio.move_on_after(STARTUP_WAIT) as waiting:
            try:
                await self.store.connect()
                self.metrics.up.set(1)
                await self._load_latest()
            except OSError as exc:
                self._went_down(exc)
        if waiting.cancelled_caught:
            log.warning(
                "history store %s did not answer within %g s: checks start without it",
                self.store.description,
                STARTUP_WAIT,
            )
        task_status.started()
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._prune_every_hour)
            await self._write_until_stopped()
            tg.cancel_scope.cancel()

    async def _load_latest(self) -> None:
        if self._loaded or self._on_latest is None:
            return
        latest = await self.store.latest()
        self._loaded = True
        self._on_latest(latest)

    async def _write_until_stopped(self) -> None:
        failures = 0
        while not self._stopping:
            pause = self.flush_interval
            if failures:
                pause = min(RETRY_PAUSE[0] * 2 ** (failures - 1), RETRY_PAUSE[1])
            with anyio.move_on_after(pause):
                assert self._wake is not None
                await self._wake.wait()
            self._wake = anyio.Event()
            if self._stopping:
                break
            failures = 0 if await self.flush() else failures + 1
        with anyio.move_on_after(FLUSH_GRACE):
            for _ in range(int(FLUSH_GRACE / RETRY_PAUSE[0]) + 1):  # bounded: the grace ends it
                if not self.buffer or await self.flush():
                    break
                await anyio.sleep(RETRY_PAUSE[0])
        if self.buffer:
            log.error(
                "%d results not written to %s before shutdown",
                len(self.buffer),
                self.store.description,
            )

    async def flush(self) -> bool:
        """Write the buffer, batch by batch; False when the store failed (the
        failing batch stays at the head of the buffer)."""
        while self.buffer:
            batch = list(islice(self.buffer, self.batch))
            written = True
            try:
                await self.store.write(batch)
            except OSError as exc:
                self.metrics.errors.inc()
                self._went_down(exc)
                return False
            except Exception:
                # Not the store being down but a batch it can never take (a
                # bug): dropped and counted, so that it does not block the rest.
                log.exception("history store %s refused a batch", self.store.description)
                self.metrics.errors.inc()
                self.metrics.dropped.inc(len(batch))
                written = False
            for _ in batch:
                self.buffer.popleft()
            if written:
                self.metrics.written.inc(len(batch))
            self.metrics.buffered.set(len(self.buffer))
            self.metrics.last_success.set(time.time())
            if self._down_since is not None:
                log.warning(
                    "history store %s is back after %.0f s",
                    self.store.description,
                    time.monotonic() - self._down_since,
                )
                self._down_since = None
            self.metrics.up.set(1)
            self._dropping = False
            if not self._loaded:
                with contextlib.suppress(OSError):  # tried again after the next write
                    await self._load_latest()
        return True

    def _went_down(self, exc: OSError) -> None:
        self.metrics.up.set(0)
        if self._down_since is None:
            self._down_since = time.monotonic()
            log.error(
                "history store unavailable, holding results (up to %d): %s", self.capacity, exc
            )
        else:
            log.debug("history store still unavailable: %s", exc)

    async def _prune_every_hour(self) -> None:
        await anyio.sleep(PRUNE_FIRST)
        while True:
            try:
                await self.store.prune(time.time())
            except OSError as exc:
                log.warning("pruning the history store failed: %s", exc)
            await anyio.sleep(PRUNE_EVERY)


def result_of(record: Record, target: Target) -> Result:
    """A stored record as the latest result of ``target`` (a restarted server's)."""
    return Result(
        name=target.name,
        target=target.display_url,
        probe=target.probe,
        status=record.status,
        summary=record.summary,
        started=datetime.fromtimestamp(record.at - record.duration, UTC),
        duration=record.duration,
        attempts=1,
        phases=dict(record.phases),
        metrics={},
        error=ErrorInfo(record.error, record.summary) if record.error else None,
        labels=dict(target.labels),
    )


def _refuse_broken_file(store: SqlStore, source: str) -> None:
    """A SQLite store that cannot be opened at the start (not a database, a
    directory that cannot be made, a newer schema) is a mistake in the config,
    not an outage to wait out: refused with one line. A file locked by another
    process is waited for, as a database server that is down is."""
    from ._store_backends import SQLiteConnector
    from ._store_sql import StoreError

    if not isinstance(store.connector, SQLiteConnector):
        return
    try:
        store.connect_now()
    except StoreError as exc:
        message = str(exc)
        if "locked" in message or "busy" in message:
            return
        raise ConfigError(f"[store] {message}", source=source, field="url") from None


class _Server(Protocol):
    """What the history needs of a ProbeServer."""

    config: Config
    latest: dict[str, Result]


def open_history(server: _Server, registry: CollectorRegistry) -> HistoryWriter | None:
    """The writer of ``server``'s store (``writer.store``), None without
    history. Once the store answers, the server's latest results are filled
    from it for the checks that have none yet (a restarted server's)."""
    config = server.config
    table: StoreTable | None = config.serve.store if config.serve is not None else None
    store = configured_store(config, table)
    if store is None:
        return None
    _refuse_broken_file(store, config.path)
    settings = table.settings if table is not None else StoreSettings.model_validate({})

    def fill(records: dict[str, Record]) -> None:
        targets = {target.name: target for target in server.config.all_targets}
        for name, record in records.items():
            target = targets.get(name)
            if target is not None and name not in server.latest:
                server.latest[name] = result_of(record, target)

    return HistoryWriter(store, settings, registry, on_latest=fill)
