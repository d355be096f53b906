"""The history of ``anyprobe serve``'s scheduled checks: what is kept and how it is asked for.

Every scheduled (or pushed) result becomes a :class:`Record`; a store keeps
the raw records for ``retention_days``, then hourly :class:`Rollup` rows for
``rollup_days``, and the :class:`Incident` periods (a check not ok, from its
first failing result to the next ok one). The alert engine and the push
checks keep their small state in the store too (:meth:`HistoryStore.get_state`),
so that a restart carries on where the last run stopped.

This module holds the contract every store implements (SQLite, PostgreSQL,
:mod:`anyprobe._store_sql`); :func:`anyprobe._store_backends.open_store`
opens one from a ``[store] url``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ._model import Result, Status

__all__ = ["HistoryStore", "Incident", "Latency", "Record", "Rollup"]

#: Days raw results are kept, then days their hourly rollups are kept.
DEFAULT_RETENTION_DAYS = 30.0
DEFAULT_ROLLUP_DAYS = 400.0


@dataclass(frozen=True, slots=True)
class Record:
    """One result of one scheduled check, as the history keeps it.

    ``at`` is when the check finished, as a Unix timestamp; ``trace`` holds the
    ``--explain`` lines of a failed check (empty for an ok one), already masked.
    """

    check: str
    at: float
    status: Status
    summary: str
    duration: float
    phases: Mapping[str, float] = field(default_factory=dict)
    error: str | None = None
    trace: tuple[str, ...] = ()

    @classmethod
    def from_result(cls, check: str, result: Result, at: float) -> Record:
        """The record of ``result`` (of the check named ``check``) finished at ``at``."""
        trace: tuple[str, ...] = ()
        if result.status is not Status.OK:
            trace = tuple(f"{event.at * 1000:9.3f} ms  {event.message}" for event in result.trace)
        return cls(
            check=check,
            at=at,
            status=result.status,
            summary=result.summary,
            duration=result.duration,
            phases=dict(result.phases),
            error=result.error.type if result.error is not None else None,
            trace=trace,
        )


@dataclass(frozen=True, slots=True)
class Incident:
    """A period when a check was not ok: from its first failing result to the
    first ok one after it (``ended`` None while it lasts). ``status`` is the
    worst status seen in it, ``summary`` the first failing result's."""

    check: str
    started: float
    ended: float | None
    status: Status
    summary: str

    @property
    def duration(self) -> float | None:
        return None if self.ended is None else self.ended - self.started


@dataclass(frozen=True, slots=True)
class Rollup:
    """One check's results in one hour (``hour``: its start, a Unix timestamp)."""

    check: str
    hour: float
    counts: Mapping[Status, int]
    p50: float | None
    p95: float | None
    p99: float | None


@dataclass(frozen=True, slots=True)
class Latency:
    """Duration percentiles (seconds) over a period; None without results."""

    count: int
    p50: float | None
    p95: float | None
    p99: float | None


class HistoryStore(Protocol):
    """What every store does. Each method may be slow (a database): callers
    never await one on a check's path; results go through a batching writer.

    Uptime is the share of results that were ok or warning (a warning is up,
    degraded), counted from raw records and, beyond ``retention_days``, from
    the rollups.
    """

    async def write(self, records: Sequence[Record]) -> None:
        """Keep ``records`` (one batch, in one transaction); raises OSError-like
        errors when the store is down or full, and the batch is then retried."""
        ...

    async def results(
        self, check: str, since: float, until: float | None = None, limit: int = 1000
    ) -> list[Record]:
        """``check``'s records from ``since`` (to ``until``), oldest first, at
        most ``limit``: the first ones (ask again from the last one's ``at`` for
        the next page; for the newest, ask from a later ``since``)."""
        ...

    async def latest(self) -> dict[str, Record]:
        """Each check's newest record."""
        ...

    async def incidents(self, check: str | None, since: float, limit: int = 100) -> list[Incident]:
        """Incidents that ended after ``since`` or still last, newest first
        (every check's for None)."""
        ...

    async def uptime(self, check: str, since: float) -> float | None:
        """The share of ``check``'s results since ``since`` that were ok or
        warning, from 0 to 1; None without results."""
        ...

    async def latency(self, check: str, since: float) -> Latency:
        """``check``'s duration percentiles since ``since``."""
        ...

    async def rollups(self, check: str, since: float) -> list[Rollup]:
        """``check``'s hourly rollups since ``since``, oldest first."""
        ...

    async def get_state(self, key: str) -> Any:
        """A JSON value kept under ``key`` by :meth:`put_state` (None when absent)."""
        ...

    async def put_state(self, key: str, value: Any) -> None:
        """Keep a JSON value under ``key`` (alert states, push tokens' last arrival...)."""
        ...

    async def prune(self, now: float) -> None:
        """Roll up raw records older than ``retention_days`` and drop rollups
        older than ``rollup_days``."""
        ...

    async def aclose(self) -> None: ...


def status_counts(records: Sequence[Record]) -> dict[Status, int]:
    """How many of ``records`` have each status."""
    counts: dict[Status, int] = {}
    for record in records:
        counts[record.status] = counts.get(record.status, 0) + 1
    return counts


def is_up(status: Status) -> bool:
    """Whether a result of ``status`` counts as up for uptime (ok or warning)."""
    return status in (Status.OK, Status.WARNING)
