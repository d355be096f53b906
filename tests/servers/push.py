"""What the push, access and shard tests of ``anyprobe serve`` share: a server
on loopback in the test's own event loop, and a small history store in memory
(tests/memory_store.py's MemoryStore; shared by two
servers, it stands for one database across a restart or between replicas)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.lowlevel
import httpx
from prometheus_client.parser import text_string_to_metric_families

from anyprobe._serve import ProbeServer, bind, listening_url, serve
from anyprobe._serve_security import WebConfig

__all__: list[str] = []  # helpers only, no fixtures

#: Longest any request of these tests may take (a bound, not an assertion on time).
REQUEST_LIMIT = 30.0
#: Rounds of a bounded wait, 0.02 s apart.
ROUNDS = 1500


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
