"""The history store on SQL: one schema and one set of queries for SQLite and PostgreSQL.

Both databases are driven through their synchronous drivers (the standard
library's ``sqlite3``, psycopg 3) in a worker thread (``anyio.to_thread``), so
the store runs on asyncio and trio alike and never blocks the event loop. One
connection serves a store, guarded by a lock; it is opened on first use and
opened again after it broke (a PostgreSQL restart), each time bringing the
schema up to date: the versioned migrations of :data:`MIGRATIONS`, applied in
order in one transaction, recorded in the ``schema_version`` table.

The SQL is written once, with ``?`` placeholders and types both databases
know; a :class:`Connector` (``anyprobe._store_backends``) supplies what
differs: the connection, the placeholder style, an auto-numbered key and the
lock that keeps two replicas from migrating at once.
"""

from __future__ import annotations

import contextlib
import json
import math
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol, TypeVar

import anyio

from ._errors import AnyprobeError
from ._model import Status
from ._store import Incident, Latency, Record, Rollup

__all__ = ["MIGRATIONS", "Connector", "SqlStore", "StoreError", "percentile"]

T = TypeVar("T")

HOUR = 3600.0
DAY = 86400.0
#: Checks pruned in one transaction.
PRUNE_CHUNK = 500
#: Statuses by severity: how the tables keep a status (a small integer).
_STATUSES = (Status.OK, Status.WARNING, Status.CRITICAL, Status.UNKNOWN)

#: The schema, as versioned migrations applied in order; ``{serial}`` is an
#: auto-numbered primary key in the connector's own words. A migration is never
#: changed once released: a change to the schema is a new one at the end.
MIGRATIONS: tuple[tuple[int, tuple[str, ...]], ...] = (
    (
        1,
        (
            # Each check once, with its newest record (what a restart reloads).
            "CREATE TABLE checks (id {serial}, name TEXT NOT NULL UNIQUE,"
            " at DOUBLE PRECISION, status SMALLINT, summary TEXT, duration DOUBLE PRECISION,"
            " phases TEXT, error TEXT, trace TEXT)",
            "CREATE TABLE results (check_id BIGINT NOT NULL, at DOUBLE PRECISION NOT NULL,"
            " status SMALLINT NOT NULL, summary TEXT NOT NULL,"
            " duration DOUBLE PRECISION NOT NULL, phases TEXT, error TEXT, trace TEXT)",
            "CREATE INDEX results_by_check ON results (check_id, at)",
            "CREATE TABLE rollups (check_id BIGINT NOT NULL, hour DOUBLE PRECISION NOT NULL,"
            " ok INTEGER NOT NULL, warning INTEGER NOT NULL, critical INTEGER NOT NULL,"
            " unknown INTEGER NOT NULL, p50 DOUBLE PRECISION, p95 DOUBLE PRECISION,"
            " p99 DOUBLE PRECISION, PRIMARY KEY (check_id, hour))",
            "CREATE TABLE incidents (check_id BIGINT NOT NULL, started DOUBLE PRECISION NOT NULL,"
            " ended DOUBLE PRECISION, status SMALLINT NOT NULL, summary TEXT NOT NULL,"
            " PRIMARY KEY (check_id, started))",
            "CREATE INDEX incidents_open ON incidents (check_id) WHERE ended IS NULL",
        ),
    ),
    (
        2,
        (
            # Small JSON values kept across restarts (alert states, push arrivals).
            "CREATE TABLE state (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
            "CREATE INDEX incidents_by_end ON incidents (ended)",
        ),
    ),
)
SCHEMA_VERSION = MIGRATIONS[-1][0]


class StoreError(AnyprobeError, OSError):
    """The store cannot be reached or refused an operation (down, full,
    locked, a newer schema); the message names the store, password masked."""


class Connector(Protocol):
    """What differs between two SQL databases, for :class:`SqlStore`."""

    #: The store as it may be shown (``sqlite:///var/lib/x.db``, a URL without password).
    description: str
    #: An auto-numbered primary key column's type.
    serial: str
    #: The driver's exceptions that mean the operation failed.
    errors: tuple[type[BaseException], ...]

    def connect(self) -> Any:
        """A new connection (blocking); raises one of :attr:`errors`."""
        ...

    def sql(self, text: str) -> str:
        """``text`` (``?`` placeholders) in the driver's placeholder style."""
        ...

    def transaction(self, conn: Any) -> AbstractContextManager[None]:
        """A transaction on ``conn``: committed at the end, rolled back on error."""
        ...

    def lock(self, conn: Any, name: str) -> None:
        """Inside a transaction: keep other processes from doing ``name``
        (``schema``: migrating, ``prune``: pruning) at the same time."""
        ...

    def broken(self, conn: Any) -> bool:
        """Whether ``conn`` must be replaced after an error."""
        ...

    def stale(self, conn: Any) -> bool:
        """Whether ``conn`` must be replaced before it is used (a SQLite file
        removed or replaced under it)."""
        ...

    def close(self, conn: Any) -> None: ...

    def mask(self, text: str) -> str:
        """``text`` (a driver's message) with the store's password masked."""
        ...


def percentile(ordered: Sequence[float], q: float) -> float | None:
    """The nearest-rank ``q`` percentile (0 < q <= 1) of ``ordered`` (sorted); None if empty."""
    if not ordered:
        return None
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def _weighted_percentile(ordered: Sequence[tuple[float, float]], q: float) -> float | None:
    """The ``q`` percentile of (value, weight) pairs sorted by value."""
    total = sum(weight for _, weight in ordered)
    if total <= 0:
        return None
    goal = q * total
    seen = 0.0
    for value, weight in ordered:
        seen += weight
        if seen >= goal - 1e-9:
            return value
    return ordered[-1][0]


#: How an hour's p50, p95 and p99 stand for its results when a period's
#: percentiles mix raw records with rollups: half the results at p50, 45 % at
#: p95, 5 % at p99 (an estimate; raw records are exact).
_ROLLUP_WEIGHTS = ((0, 0.50), (1, 0.45), (2, 0.05))


def _json(value: Any) -> str | None:
    return json.dumps(value, separators=(",", ":")) if value else None


def _phases(phases: Mapping[str, float]) -> str | None:
    """Phase timings as JSON, to the microsecond (half the bytes of a full float)."""
    return _json({name: round(seconds, 6) for name, seconds in phases.items()})


def _record(name: str, row: Sequence[Any]) -> Record:
    """A record from (at, status, summary, duration, phases, error, trace) columns."""
    at, status, summary, duration, phases, error, trace = row
    return Record(
        check=name,
        at=float(at),
        status=_STATUSES[int(status)],
        summary=summary,
        duration=float(duration),
        phases=json.loads(phases) if phases else {},
        error=error,
        trace=tuple(json.loads(trace)) if trace else (),
    )


def _hour(at: float) -> float:
    return math.floor(at / HOUR) * HOUR


class SqlStore:
    """A :class:`~anyprobe._store.HistoryStore` on a SQL database.

    ``retention_days`` of raw records, then hourly rollups for ``rollup_days``
    (see :meth:`prune`); incidents are kept as long as the rollups.
    """

    def __init__(self, connector: Connector, *, retention_days: float, rollup_days: float) -> None:
        self.connector = connector
        self.description = connector.description
        self.retention_days = retention_days
        self.rollup_days = rollup_days
        self._lock = threading.Lock()
        self._conn: Any = None
        self._closed = False
        #: Check name -> id, of the rows known to be committed.
        self._ids: dict[str, int] = {}

    # -- the connection --------------------------------------------------------

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        # Abandoned when cancelled (a shutdown's deadline): the call ends in its
        # thread, holding the lock, while the caller goes on.
        return await anyio.to_thread.run_sync(self._locked, fn, *args, abandon_on_cancel=True)

    def _locked(self, fn: Callable[..., T], *args: Any) -> T:
        connector = self.connector
        with self._lock:
            if self._closed:
                raise StoreError(f"store {self.description} is closed")
            try:
                if self._conn is not None and connector.stale(self._conn):
                    self._drop()
                if self._conn is None:
                    conn = connector.connect()
                    try:
                        self._migrate(conn)
                    except BaseException:
                        connector.close(conn)
                        raise
                    self._conn = conn
                return fn(self._conn, *args)
            except connector.errors as exc:
                if self._conn is not None and connector.broken(self._conn):
                    self._drop()
                message = connector.mask(str(exc).strip().splitlines()[0] if str(exc) else "")
                raise StoreError(
                    f"store {self.description}: {message or type(exc).__name__}"
                ) from None

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        self._ids.clear()
        # Already broken: closing it is a courtesy.
        with contextlib.suppress(Exception):
            self.connector.close(conn)

    def _execute(self, conn: Any, text: str, params: Sequence[Any] = ()) -> list[Any]:
        cursor = conn.execute(self.connector.sql(text), tuple(params))
        if cursor.description is None:
            return []
        return list(cursor.fetchall())

    def _executemany(self, conn: Any, text: str, rows: Iterable[Sequence[Any]]) -> None:
        rows = [tuple(row) for row in rows]
        if rows:
            conn.cursor().executemany(self.connector.sql(text), rows)

    def _migrate(self, conn: Any) -> None:
        """Bring the schema up to :data:`SCHEMA_VERSION`, one migration at a time."""
        with self.connector.transaction(conn):
            self.connector.lock(conn, "schema")
            self._execute(
                conn,
                "CREATE TABLE IF NOT EXISTS schema_version"
                " (version INTEGER PRIMARY KEY, applied DOUBLE PRECISION NOT NULL)",
            )
            rows = self._execute(conn, "SELECT MAX(version) FROM schema_version")
            current = int(rows[0][0] or 0)
            if current > SCHEMA_VERSION:
                raise StoreError(
                    f"store {self.description}: schema version {current} is newer than this "
                    f"anyprobe's ({SCHEMA_VERSION}); upgrade anyprobe"
                )
            for version, statements in MIGRATIONS:
                if version <= current:
                    continue
                for statement in statements:
                    self._execute(conn, statement.format(serial=self.connector.serial))
                self._execute(
                    conn,
                    "INSERT INTO schema_version (version, applied) VALUES (?, ?)",
                    (version, time.time()),
                )

    async def connect(self) -> None:
        """Open the connection now (and migrate); raises :class:`StoreError`."""
        await self._call(lambda conn: None)

    def connect_now(self) -> None:
        """:meth:`connect` in the calling thread: for a server's start, before
        its loop serves anything (a local file opens in milliseconds)."""
        self._locked(lambda conn: None)

    async def schema_version(self) -> int:
        rows = await self._call(self._execute, "SELECT MAX(version) FROM schema_version")
        return int(rows[0][0])

    async def aclose(self) -> None:
        def close() -> None:
            with self._lock:
                self._closed = True
                if self._conn is not None:
                    self._drop()

        await anyio.to_thread.run_sync(close)

    # -- writing -------------------------------------------------------------------

    def _check_ids(self, conn: Any, names: Iterable[str]) -> dict[str, int]:
        """The ids of ``names``' rows, created where missing (inside a transaction)."""
        ids = {name: self._ids[name] for name in names if name in self._ids}
        missing = sorted(set(names) - set(ids))
        if missing:
            self._executemany(
                conn,
                "INSERT INTO checks (name) VALUES (?) ON CONFLICT (name) DO NOTHING",
                ((name,) for name in missing),
            )
            for start in range(0, len(missing), 500):
                chunk = missing[start : start + 500]
                marks = ", ".join("?" * len(chunk))
                rows = self._execute(
                    conn, f"SELECT name, id FROM checks WHERE name IN ({marks})", chunk
                )
                ids.update((name, int(id_)) for name, id_ in rows)
        return ids

    def _check_id(self, conn: Any, name: str) -> int | None:
        if name in self._ids:
            return self._ids[name]
        rows = self._execute(conn, "SELECT id FROM checks WHERE name = ?", (name,))
        return int(rows[0][0]) if rows else None

    async def write(self, records: Sequence[Record]) -> None:
        """Keep ``records`` in one transaction, with each check's newest record
        and the incidents their status changes open and close."""
        if records:
            await self._call(self._write, list(records))

    def _write(self, conn: Any, records: list[Record]) -> None:
        ordered = sorted(records, key=lambda r: r.at)
        with self.connector.transaction(conn):
            ids = self._check_ids(conn, {r.check for r in ordered})
            self._executemany(
                conn,
                "INSERT INTO results (check_id, at, status, summary, duration, phases, error,"
                " trace) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    (
                        ids[r.check],
                        r.at,
                        r.status.severity,
                        r.summary,
                        r.duration,
                        _phases(r.phases),
                        r.error,
                        _json(list(r.trace)),
                    )
                    for r in ordered
                ),
            )
            newest: dict[str, Record] = {}
            for record in ordered:
                newest[record.check] = record
            self._executemany(
                conn,
                "UPDATE checks SET at = ?, status = ?, summary = ?, duration = ?, phases = ?,"
                " error = ?, trace = ? WHERE id = ? AND (at IS NULL OR at <= ?)",
                (
                    (
                        r.at,
                        r.status.severity,
                        r.summary,
                        r.duration,
                        _phases(r.phases),
                        r.error,
                        _json(list(r.trace)),
                        ids[r.check],
                        r.at,
                    )
                    for r in newest.values()
                ),
            )
            self._write_incidents(conn, ordered, ids)
        self._ids.update(ids)

    def _write_incidents(self, conn: Any, ordered: list[Record], ids: dict[str, int]) -> None:
        """Open an incident at a check's first result that is not ok, raise its
        status to the worst seen, close it at the next ok result."""
        open_now: dict[int, tuple[float, int]] = {
            int(check_id): (float(started), int(status))
            for check_id, started, status in self._execute(
                conn, "SELECT check_id, started, status FROM incidents WHERE ended IS NULL"
            )
        }
        opened: list[tuple[int, float, int, str]] = []
        worse: dict[tuple[int, float], int] = {}
        closed: list[tuple[float, int, float]] = []
        for record in ordered:
            check_id = ids[record.check]
            current = open_now.get(check_id)
            severity = record.status.severity
            if record.status is Status.OK:
                if current is not None:
                    closed.append((record.at, check_id, current[0]))
                    del open_now[check_id]
            elif current is None:
                open_now[check_id] = (record.at, severity)
                opened.append((check_id, record.at, severity, record.summary))
            elif severity > current[1]:
                open_now[check_id] = (current[0], severity)
                worse[(check_id, current[0])] = severity
        self._executemany(
            conn,
            "INSERT INTO incidents (check_id, started, ended, status, summary)"
            " VALUES (?, ?, NULL, ?, ?) ON CONFLICT (check_id, started) DO NOTHING",
            opened,
        )
        self._executemany(
            conn,
            "UPDATE incidents SET status = ? WHERE check_id = ? AND started = ?",
            ((severity, check_id, started) for (check_id, started), severity in worse.items()),
        )
        self._executemany(
            conn, "UPDATE incidents SET ended = ? WHERE check_id = ? AND started = ?", closed
        )

    # -- reading -------------------------------------------------------------------

    async def results(
        self, check: str, since: float, until: float | None = None, limit: int = 1000
    ) -> list[Record]:
        """``check``'s first ``limit`` records from ``since`` (to ``until``),
        oldest first: ask again from the last one's ``at`` for the next page."""

        def read(conn: Any) -> list[Record]:
            check_id = self._check_id(conn, check)
            if check_id is None:
                return []
            query = (
                "SELECT at, status, summary, duration, phases, error, trace FROM results"
                " WHERE check_id = ? AND at >= ?"
            )
            params: list[Any] = [check_id, since]
            if until is not None:
                query += " AND at <= ?"
                params.append(until)
            rows = self._execute(conn, query + " ORDER BY at LIMIT ?", [*params, limit])
            return [_record(check, row) for row in rows]

        return await self._call(read)

    async def latest(self) -> dict[str, Record]:
        rows = await self._call(
            self._execute,
            "SELECT name, at, status, summary, duration, phases, error, trace FROM checks"
            " WHERE at IS NOT NULL",
        )
        return {row[0]: _record(row[0], row[1:]) for row in rows}

    async def incidents(self, check: str | None, since: float, limit: int = 100) -> list[Incident]:
        query = (
            "SELECT c.name, i.started, i.ended, i.status, i.summary FROM incidents i"
            " JOIN checks c ON c.id = i.check_id WHERE (i.ended IS NULL OR i.ended >= ?)"
        )
        params: list[Any] = [since]
        if check is not None:
            query += " AND c.name = ?"
            params.append(check)
        query += " ORDER BY i.started DESC LIMIT ?"
        params.append(limit)
        rows = await self._call(self._execute, query, params)
        return [
            Incident(
                check=name,
                started=float(started),
                ended=None if ended is None else float(ended),
                status=_STATUSES[int(status)],
                summary=summary,
            )
            for name, started, ended, status, summary in rows
        ]

    async def uptime(self, check: str, since: float) -> float | None:
        def read(conn: Any) -> float | None:
            check_id = self._check_id(conn, check)
            if check_id is None:
                return None
            raw = self._execute(
                conn,
                "SELECT COUNT(*), SUM(CASE WHEN status <= 1 THEN 1 ELSE 0 END) FROM results"
                " WHERE check_id = ? AND at >= ?",
                (check_id, since),
            )
            rolled = self._execute(
                conn,
                "SELECT SUM(ok + warning + critical + unknown), SUM(ok + warning) FROM rollups"
                " WHERE check_id = ? AND hour > ?",
                (check_id, since - HOUR),
            )
            total = int(raw[0][0] or 0) + int(rolled[0][0] or 0)
            up = int(raw[0][1] or 0) + int(rolled[0][1] or 0)
            return up / total if total else None

        return await self._call(read)

    async def latency(self, check: str, since: float) -> Latency:
        def read(conn: Any) -> Latency:
            check_id = self._check_id(conn, check)
            if check_id is None:
                return Latency(0, None, None, None)
            durations = [
                float(row[0])
                for row in self._execute(
                    conn,
                    "SELECT duration FROM results WHERE check_id = ? AND at >= ? ORDER BY duration",
                    (check_id, since),
                )
            ]
            hours = self._execute(
                conn,
                "SELECT ok + warning + critical + unknown, p50, p95, p99 FROM rollups"
                " WHERE check_id = ? AND hour > ?",
                (check_id, since - HOUR),
            )
            count = len(durations) + sum(int(row[0]) for row in hours)
            if not hours:
                return Latency(
                    count,
                    percentile(durations, 0.50),
                    percentile(durations, 0.95),
                    percentile(durations, 0.99),
                )
            weighted = [(value, 1.0) for value in durations]
            for n, *marks in hours:
                for index, share in _ROLLUP_WEIGHTS:
                    if marks[index] is not None:
                        weighted.append((float(marks[index]), share * int(n)))
            weighted.sort()
            return Latency(
                count,
                _weighted_percentile(weighted, 0.50),
                _weighted_percentile(weighted, 0.95),
                _weighted_percentile(weighted, 0.99),
            )

        return await self._call(read)

    async def rollups(self, check: str, since: float) -> list[Rollup]:
        def read(conn: Any) -> list[Rollup]:
            check_id = self._check_id(conn, check)
            if check_id is None:
                return []
            rows = self._execute(
                conn,
                "SELECT hour, ok, warning, critical, unknown, p50, p95, p99 FROM rollups"
                " WHERE check_id = ? AND hour > ? ORDER BY hour",
                (check_id, since - HOUR),
            )
            return [_rollup(check, row) for row in rows]

        return await self._call(read)

    # -- state ---------------------------------------------------------------------

    async def get_state(self, key: str) -> Any:
        rows = await self._call(self._execute, "SELECT value FROM state WHERE key = ?", (key,))
        return json.loads(rows[0][0]) if rows else None

    async def put_state(self, key: str, value: Any) -> None:
        text = json.dumps(value, separators=(",", ":"))

        def put(conn: Any) -> None:
            with self.connector.transaction(conn):
                self._execute(
                    conn,
                    "INSERT INTO state (key, value) VALUES (?, ?)"
                    " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (key, text),
                )

        await self._call(put)

    # -- retention -------------------------------------------------------------------

    async def prune(self, now: float) -> None:
        """Roll the raw records of whole hours older than ``retention_days``
        up into hourly rows, and drop rollups and ended incidents older than
        ``rollup_days``. :data:`PRUNE_CHUNK` checks per transaction: writes go
        on in between."""
        raw_before = _hour(now - self.retention_days * DAY)
        rollups_before = now - self.rollup_days * DAY
        rows = await self._call(self._execute, "SELECT id FROM checks ORDER BY id")
        ids = [int(row[0]) for row in rows]
        for start in range(0, len(ids), PRUNE_CHUNK):
            chunk = ids[start : start + PRUNE_CHUNK]
            await self._call(self._prune_checks, chunk, raw_before, rollups_before)

        def drop_incidents(conn: Any) -> None:
            with self.connector.transaction(conn):
                self._execute(
                    conn,
                    "DELETE FROM incidents WHERE ended IS NOT NULL AND ended < ?",
                    (rollups_before,),
                )

        await self._call(drop_incidents)

    def _prune_checks(
        self, conn: Any, check_ids: Sequence[int], raw_before: float, rollups_before: float
    ) -> None:
        with self.connector.transaction(conn):
            # Two replicas rolling the same results up would count them twice.
            self.connector.lock(conn, "prune")
            for check_id in check_ids:
                # Each query walks the (check, time) index: no table scan.
                old = self._execute(
                    conn,
                    "SELECT at, status, duration FROM results WHERE check_id = ? AND at < ?",
                    (check_id, raw_before),
                )
                if old:
                    self._roll_up(conn, check_id, old)
                    self._execute(
                        conn,
                        "DELETE FROM results WHERE check_id = ? AND at < ?",
                        (check_id, raw_before),
                    )
                self._execute(
                    conn,
                    "DELETE FROM rollups WHERE check_id = ? AND hour < ?",
                    (check_id, _hour(rollups_before)),
                )

    def _roll_up(self, conn: Any, check_id: int, rows: list[Any]) -> None:
        by_hour: dict[float, list[tuple[int, float]]] = defaultdict(list)
        for at, status, duration in rows:
            by_hour[_hour(float(at))].append((int(status), float(duration)))
        # Late records (kept after their hour was rolled up) merge into its row.
        existing = {
            float(row[0]): row
            for row in self._execute(
                conn,
                "SELECT hour, ok, warning, critical, unknown, p50, p95, p99 FROM rollups"
                " WHERE check_id = ? AND hour >= ? AND hour <= ?",
                (check_id, min(by_hour), max(by_hour)),
            )
        }
        upserts = []
        for hour, results in sorted(by_hour.items()):
            counts = [0, 0, 0, 0]
            for status, _ in results:
                counts[status] += 1
            durations = sorted(duration for _, duration in results)
            marks = [percentile(durations, q) for q in (0.50, 0.95, 0.99)]
            if hour in existing:
                before = existing[hour]
                earlier = sum(int(n) for n in before[1:5])
                now_n = len(durations)
                counts = [a + int(b) for a, b in zip(counts, before[1:5], strict=True)]
                marks = [
                    _mean_of(old, earlier, new, now_n)
                    for old, new in zip(before[5:8], marks, strict=True)
                ]
            upserts.append((check_id, hour, *counts, *marks))
        self._executemany(
            conn,
            "INSERT INTO rollups (check_id, hour, ok, warning, critical, unknown, p50, p95, p99)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (check_id, hour) DO UPDATE SET"
            " ok = excluded.ok, warning = excluded.warning, critical = excluded.critical,"
            " unknown = excluded.unknown, p50 = excluded.p50, p95 = excluded.p95,"
            " p99 = excluded.p99",
            upserts,
        )


def _mean_of(old: Any, old_n: int, new: float | None, new_n: int) -> float | None:
    """Two percentiles of one hour merged, weighted by their results (an estimate)."""
    if old is None:
        return new
    if new is None:
        return float(old)
    return (float(old) * old_n + new * new_n) / (old_n + new_n)


def _rollup(check: str, row: Sequence[Any]) -> Rollup:
    hour, ok, warning, critical, unknown, p50, p95, p99 = row
    counts = {
        status: int(n)
        for status, n in zip(_STATUSES, (ok, warning, critical, unknown), strict=True)
        if n
    }
    return Rollup(
        check=check,
        hour=float(hour),
        counts=counts,
        p50=None if p50 is None else float(p50),
        p95=None if p95 is None else float(p95),
        p99=None if p99 is None else float(p99),
    )
