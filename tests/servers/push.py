"""What the push, access and shard tests of ``anyprobe serve`` share: a server
on loopback in the test's own event loop, and a small history store in memory
(the state part of :class:`anyprobe._store.HistoryStore`; shared by two
servers, it stands for one database across a restart or between replicas)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.lowlevel
import httpx
from prometheus_client.parser import text_string_to_metric_families

from anyprobe._serve import ProbeServer, bind, listening_url, serve
from anyprobe._serve_security import WebConfig
from anyprobe._store import Incident, Latency, Record, Rollup

__all__: list[str] = []  # helpers only, no fixtures

#: Longest any request of these tests may take (a bound, not an assertion on time).
REQUEST_LIMIT = 30.0
#: Rounds of a bounded wait, 0.02 s apart.
ROUNDS = 1500


class MemoryStore:
    """A history store in memory: keeps records and state, answers little else."""

    def __init__(self) -> None:
        self.records: list[Record] = []
        self.state: dict[str, Any] = {}

    async def write(self, records: Sequence[Record]) -> None:
        self.records.extend(records)

    async def results(
        self, check: str, since: float, until: float | None = None, limit: int = 1000
    ) -> list[Record]:
        return [r for r in self.records if r.check == check and r.at >= since][:limit]

    async def latest(self) -> dict[str, Record]:
        return {r.check: r for r in self.records}

    async def incidents(self, check: str | None, since: float, limit: int = 100) -> list[Incident]:
        return []

    async def uptime(self, check: str, since: float) -> float | None:
        return None

    async def latency(self, check: str, since: float) -> Latency:
        return Latency(0, None, None, None)

    async def rollups(self, check: str, since: float) -> list[Rollup]:
        return []

    async def get_state(self, key: str) -> Any:
        await anyio.lowlevel.checkpoint()  # a real store answers later
        return self.state.get(key)

    async def put_state(self, key: str, value: Any) -> None:
        await anyio.lowlevel.checkpoint()
        self.state[key] = value

    async def prune(self, now: float) -> None:
        pass

    async def aclose(self) -> None:
        pass


@asynccontextmanager
async def serving(server: ProbeServer, web_config: WebConfig | None = None) -> AsyncIterator[str]:
    """Serve ``server`` on 127.0.0.1 (an ephemeral port) until the block ends;
    yields the base URL."""
    sock = bind("127.0.0.1:0")
    url = listening_url(sock)
    shutdown = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(
            lambda: serve(server, [sock], shutdown=shutdown, grace=2, web_config=web_config)
        )
        try:
            yield url
        finally:
            shutdown.set()


def client() -> httpx.AsyncClient:
    return httpx.AsyncClient(timeout=REQUEST_LIMIT)


def series(text: str, name: str) -> dict[str, float]:
    """The samples of metric ``name`` in an exposition, by their ``name`` or
    ``check`` label."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                key = sample.labels.get("name") or sample.labels.get("check") or ""
                found[key] = sample.value
    return found


async def wait_for(condition: Any, what: str) -> None:
    """Poll ``condition()`` (bounded) until it is true."""
    for _ in range(ROUNDS):
        if condition():
            return
        await anyio.sleep(0.02)
    raise AssertionError(f"never happened: {what}")
