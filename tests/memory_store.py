"""A history store in memory, for the tests of the status page, the alerts and the
push checks, and the status page's benchmark.

It implements :class:`anyprobe._store.HistoryStore` the simple way (sorted
lists, bisect), so that the page, the API and the badges can be tested with
a history before, and besides, the SQLite and PostgreSQL stores.
"""

from __future__ import annotations

import bisect
import json
import math
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel

from anyprobe import PluginManager
from anyprobe._model import Result, Status, Target
from anyprobe._serve import ProbeServer, load_serve_config
from anyprobe._store import Incident, Latency, Record, Rollup, is_up


def percentile(values: Sequence[float], share: float) -> float | None:
    """The nearest-rank percentile of sorted ``values``."""
    if not values:
        return None
    rank = max(1, math.ceil(share * len(values)))
    return values[rank - 1]


class MemoryStore:
    """Every record kept in memory; incidents derived as records arrive."""

    def __init__(self) -> None:
        self.records: dict[str, list[Record]] = {}
        self._times: dict[str, list[float]] = {}
        self._incidents: list[Incident] = []
        self._open: dict[str, int] = {}
        self.state: dict[str, Any] = {}
        self.writes = 0
        self.fail: BaseException | None = None
        self.calls = 0

    def _check(self) -> None:
        self.calls += 1
        if self.fail is not None:
            raise self.fail

    async def write(self, records: Sequence[Record]) -> None:
        self._check()
        for record in sorted(records, key=lambda r: r.at):
            self.add(record)

    def add(self, record: Record) -> None:
        """Keep one record (in order of ``at`` per check), without awaiting."""
        times = self._times.setdefault(record.check, [])
        kept = self.records.setdefault(record.check, [])
        index = bisect.bisect_right(times, record.at)
        times.insert(index, record.at)
        kept.insert(index, record)
        opened = self._open.get(record.check)
        if record.status is Status.OK:
            if opened is not None:
                incident = self._incidents[opened]
                self._incidents[opened] = Incident(
                    incident.check, incident.started, record.at, incident.status, incident.summary
                )
                del self._open[record.check]
        elif opened is None:
            self._open[record.check] = len(self._incidents)
            self._incidents.append(
                Incident(record.check, record.at, None, record.status, record.summary)
            )
        else:
            incident = self._incidents[opened]
            if record.status.severity > incident.status.severity:
                self._incidents[opened] = Incident(
                    incident.check, incident.started, None, record.status, incident.summary
                )

    def _since(self, check: str, since: float, until: float | None = None) -> list[Record]:
        times = self._times.get(check, [])
        start = bisect.bisect_left(times, since)
        end = len(times) if until is None else bisect.bisect_right(times, until)
        return self.records.get(check, [])[start:end]

    async def results(
        self, check: str, since: float, until: float | None = None, limit: int = 1000
    ) -> list[Record]:
        self._check()
        return self._since(check, since, until)[:limit]

    async def latest(self) -> dict[str, Record]:
        self._check()
        return {check: kept[-1] for check, kept in self.records.items() if kept}

    async def incidents(self, check: str | None, since: float, limit: int = 100) -> list[Incident]:
        self._check()
        found = [
            i
            for i in self._incidents
            if (check is None or i.check == check) and (i.ended is None or i.ended >= since)
        ]
        found.sort(key=lambda i: i.started, reverse=True)
        return found[:limit]

    async def uptime(self, check: str, since: float) -> float | None:
        self._check()
        kept = self._since(check, since)
        if not kept:
            return None
        return sum(1 for r in kept if is_up(r.status)) / len(kept)

    async def latency(self, check: str, since: float) -> Latency:
        self._check()
        durations = sorted(r.duration for r in self._since(check, since))
        return Latency(
            len(durations),
            percentile(durations, 0.5),
            percentile(durations, 0.95),
            percentile(durations, 0.99),
        )

    async def rollups(self, check: str, since: float) -> list[Rollup]:
        self._check()
        return []

    async def get_state(self, key: str) -> Any:
        self._check()
        await anyio.lowlevel.checkpoint()  # a real store answers later
        value = self.state.get(key)
        return None if value is None else json.loads(json.dumps(value))

    async def put_state(self, key: str, value: Any) -> None:
        """Keep a copy, as JSON keeps it (a value JSON cannot hold fails here too)."""
        self._check()
        await anyio.lowlevel.checkpoint()
        self.state[key] = json.loads(json.dumps(value))
        self.writes += 1

    async def prune(self, now: float) -> None:
        self._check()

    async def aclose(self) -> None:
        pass


# -- a real server over a store -------------------------------------------------------


class StoringServer(ProbeServer):
    """A server whose scheduled results also go to ``self.store`` (a
    :class:`MemoryStore`), as the history writer does with a real store."""

    store: MemoryStore | None = None

    async def record(self, target: Target, result: Result) -> None:
        # Kept first: once a result is in ``latest``, the store holds it too.
        if self.store is not None and self.store.fail is None:
            self.store.add(Record.from_result(target.name, result, time.time()))
        await super().record(target, result)


@asynccontextmanager
async def running(
    manager: PluginManager, config: Path | None, store: MemoryStore | None = None
) -> AsyncIterator[tuple[str, StoringServer]]:
    """``anyprobe serve`` on 127.0.0.1 (an ephemeral port) over ``store`` (None:
    no history) until the block ends; yields the base URL and the server."""
    from tests.servers.push import serving

    path = str(config) if config else None
    server = StoringServer(manager, load_serve_config(path, manager), config_path=path)
    server.store = store
    async with serving(server) as url:
        yield url, server
