"""``anyprobe serve`` keeps its checks' history: the default SQLite file, the
``[store]`` table, a restart, and a store outage that loses no result.

Each test runs a real server (both backends) with scheduled checks against a
loopback target, reads its ``/metrics`` over HTTP and the store it wrote.
"""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from anyprobe import ConfigError, PluginManager, Status
from anyprobe._serve import ProbeServer, load_serve_config
from anyprobe._store_backends import open_store
from tests.cli import anyprobe, assert_one_clear_line
from tests.servers.postgres import PostgresServer
from tests.servers.push import serving as serving_server
from tests.servers.serve import WebTarget

#: Longest a test waits for the server to reach a state (a bound, not an assertion).
WAIT_LIMIT = 60.0


def metrics_of(text: str) -> dict[str, float]:
    """The unlabelled samples of an exposition, summed over labels."""
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[sample.name] = found.get(sample.name, 0.0) + sample.value
    return found


def own_metrics(server: ProbeServer) -> dict[str, float]:
    return metrics_of(generate_latest(server.metrics.registry).decode())


@asynccontextmanager
async def serving(manager: PluginManager, config: Path) -> AsyncIterator[tuple[ProbeServer, str]]:
    """A server for ``config`` on 127.0.0.1 until the block ends (then it has
    stopped: its history flushed and its store closed)."""
    path = str(config)
    server = ProbeServer(manager, load_serve_config(path, manager), config_path=path)
    async with serving_server(server) as url:
        yield server, url


async def wait_for(
    client: httpx.AsyncClient, url: str, ready: Callable[[dict[str, float]], bool]
) -> dict[str, float]:
    """/metrics once ``ready`` holds for it (bounded)."""
    with anyio.fail_after(WAIT_LIMIT):
        while True:
            found = metrics_of((await client.get(f"{url}/metrics")).text)
            if ready(found):
                return found
            await anyio.sleep(0.05)


def check_config(path: Path, target: str, store: str = "", interval: float = 0.05) -> Path:
    path.write_text(f'[[check]]\nname = "web"\nurl = "{target}"\ninterval = {interval}\n{store}')
    return path


async def stored_count(url: str, base: Path) -> int:
    store = open_store(url, base)
    try:
        return len(await store.results("web", 0, limit=1_000_000))
    finally:
        await store.aclose()


# -- where the history goes ---------------------------------------------------------


@pytest.mark.anyio
async def test_default_store_is_a_sqlite_file_beside_the_config_with_every_result(
    manager: PluginManager, web_target: WebTarget, tmp_path: Path
) -> None:
    config = check_config(tmp_path / "monitor.toml", web_target.url)
    async with serving(manager, config) as (server, url), httpx.AsyncClient() as client:
        assert server.store is not None
        found = await wait_for(
            client, url, lambda m: m.get("anyprobe_store_written_results_total", 0) >= 3
        )
        assert found["anyprobe_store_up"] == 1
    assert (tmp_path / "monitor.db").exists()
    # Every result the server recorded is in the store, those flushed at shutdown too.
    recorded = own_metrics(server)["anyprobe_scheduled_checks_total"]
    assert await stored_count("sqlite:monitor.db", tmp_path) == recorded >= 3
    assert own_metrics(server)["anyprobe_store_buffered_results"] == 0


@pytest.mark.anyio
async def test_store_url_none_keeps_no_history(
    manager: PluginManager, web_target: WebTarget, tmp_path: Path
) -> None:
    config = check_config(tmp_path / "monitor.toml", web_target.url, '[store]\nurl = "none"\n')
    async with serving(manager, config) as (server, url), httpx.AsyncClient() as client:
        assert server.store is None
        text = ""
        with anyio.fail_after(WAIT_LIMIT):
            while "anyprobe_scheduled_checks_total" not in text:
                text = (await client.get(f"{url}/metrics")).text
                await anyio.sleep(0.05)
    assert "anyprobe_store_up" not in text
    assert not [p async for p in anyio.Path(tmp_path).iterdir() if p.suffix == ".db"]


@pytest.mark.anyio
async def test_a_restarted_server_keeps_the_history_and_its_latest_results(
    manager: PluginManager, free_tcp_port: int, tmp_path: Path
) -> None:
    config = check_config(
        tmp_path / "monitor.toml",
        f"tcp://127.0.0.1:{free_tcp_port}",
        '[store]\nurl = "sqlite:history/monitor.db"\n',
        interval=3600,
    )
    async with serving(manager, config) as (_, url), httpx.AsyncClient() as client:
        await wait_for(client, url, lambda m: m.get("anyprobe_store_written_results_total", 0))
    # Started again: the latest results are back before any check has run.
    path = str(config)
    server = ProbeServer(manager, load_serve_config(path, manager), config_path=path)
    assert server.history is not None
    assert server.latest == {}
    async with anyio.create_task_group() as tg:
        await tg.start(server.history.run)
        server.history.stop()
    await server.aclose()
    assert server.latest["web"].status is Status.CRITICAL
    assert "refused" in server.latest["web"].summary
    assert server.latest["web"].target == f"tcp://127.0.0.1:{free_tcp_port}"
    # And the next run adds to the same history.
    async with serving(manager, config) as (_, url), httpx.AsyncClient() as client:
        await wait_for(client, url, lambda m: m.get("anyprobe_store_written_results_total", 0))
    assert await stored_count("sqlite:history/monitor.db", tmp_path) == 2


# -- outages ---------------------------------------------------------------------------


class SQLiteOutage:
    """Another process's exclusive lock on the SQLite file: writes fail once
    they have waited the busy timeout."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.conn: sqlite3.Connection | None = None

    def begin(self) -> None:
        self.conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self.conn.execute("BEGIN EXCLUSIVE")

    def end(self) -> None:
        assert self.conn is not None
        self.conn.execute("ROLLBACK")
        self.conn.close()


class PostgresOutage:
    """The PostgreSQL server stopped, then started again on the same port."""

    def __init__(self, server: PostgresServer) -> None:
        self.server = server

    def begin(self) -> None:
        self.server.stop()

    def end(self) -> None:
        self.server.start()


@pytest.fixture(params=["sqlite", "postgresql"])
def outage(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, Any]:
    """A store URL and how to take its store down and up again."""
    if request.param == "sqlite":
        return f"sqlite://{tmp_path}/monitor.db", SQLiteOutage(tmp_path / "monitor.db")
    server = request.getfixturevalue("postgres_factory")()
    return server.create_database("monitor"), PostgresOutage(server)


@pytest.mark.anyio
async def test_a_store_outage_loses_no_result_and_shows_on_metrics(
    manager: PluginManager, web_target: WebTarget, tmp_path: Path, outage: tuple[str, Any]
) -> None:
    store_url, store = outage
    table = f'[store]\nurl = "{store_url}"\nflush_interval = 0.1\n'
    config = check_config(tmp_path / "monitor.toml", web_target.url, table)
    async with serving(manager, config) as (server, url), httpx.AsyncClient() as client:
        await wait_for(client, url, lambda m: m.get("anyprobe_store_written_results_total", 0))
        await anyio.to_thread.run_sync(store.begin)
        down = await wait_for(
            client,
            url,
            lambda m: m["anyprobe_store_up"] == 0 and m["anyprobe_store_buffered_results"] >= 5,
        )
        assert down["anyprobe_store_write_errors_total"] >= 1
        await anyio.to_thread.run_sync(store.end)
        before = down["anyprobe_scheduled_checks_total"]
        up = await wait_for(
            client,
            url,
            lambda m: (
                m["anyprobe_store_up"] == 1 and m["anyprobe_store_written_results_total"] > before
            ),
        )
        assert up["anyprobe_store_last_write_success_timestamp_seconds"] > 0
    final = own_metrics(server)
    assert final["anyprobe_store_dropped_results_total"] == 0
    assert final["anyprobe_store_buffered_results"] == 0
    assert await stored_count(store_url, tmp_path) == final["anyprobe_scheduled_checks_total"]


@pytest.mark.anyio
async def test_a_full_buffer_drops_results_and_counts_them(
    manager: PluginManager, web_target: WebTarget, tmp_path: Path
) -> None:
    table = '[store]\nurl = "sqlite:monitor.db"\nflush_interval = 0.1\nbuffer = 3\n'
    config = check_config(tmp_path / "monitor.toml", web_target.url, table)
    store = SQLiteOutage(tmp_path / "monitor.db")
    async with serving(manager, config) as (server, url), httpx.AsyncClient() as client:
        await wait_for(client, url, lambda m: m.get("anyprobe_store_written_results_total", 0))
        await anyio.to_thread.run_sync(store.begin)
        await wait_for(client, url, lambda m: m["anyprobe_store_dropped_results_total"] >= 3)
        await anyio.to_thread.run_sync(store.end)
        await wait_for(client, url, lambda m: m["anyprobe_store_up"] == 1)
    final = own_metrics(server)
    dropped = final["anyprobe_store_dropped_results_total"]
    recorded = final["anyprobe_scheduled_checks_total"]
    assert dropped >= 3
    assert await stored_count("sqlite:monitor.db", tmp_path) == recorded - dropped


# -- the [store] table ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("table", "key", "fragment"),
    [
        ("retention_days = -1", "retention_days", "greater than 0"),
        ('retention_days = "long"', "retention_days", "valid number"),
        ("buffer = 0", "buffer", "greater than 0"),
        ('url = "mysql://db/x"', "url", "unknown store scheme 'mysql'"),
        ('url = "postgresql://u:hunter2secret@db"', "url", None),
        ('url = "sqlite://host/x.db"', "url", "has no host"),
        ("retention_days = 90\nrollup_days = 30", "rollup_days", "at least retention_days"),
        ("retention = 3", "retention", "did you mean 'retention_days'"),
        ('password_env = "ANYPROBE_TEST_UNSET_PASSWORD"', "password_env", "is not set"),
    ],
)
def test_bad_store_values_name_file_line_table_and_key(
    manager: PluginManager, tmp_path: Path, table: str, key: str, fragment: str | None
) -> None:
    config = tmp_path / "monitor.toml"
    config.write_text(f'[[check]]\nurl = "tcp://127.0.0.1:1"\n\n[store]\n{table}\n')
    if "postgresql" in table:
        # A valid URL: its error is elsewhere (an unknown key after it), and the
        # password is never in the message.
        config.write_text(config.read_text() + "unknown_key = 1\n")
        key = "unknown_key"
    with pytest.raises(ConfigError) as caught:
        load_serve_config(str(config), manager)
    message = str(caught.value)
    lines = config.read_text().splitlines()
    start = lines.index("[store]")
    line = next(n for n in range(start, len(lines)) if lines[n].startswith(key))
    assert message.startswith(f"{config}:{line + 1}: "), message
    assert f"field '{key}'" in message
    assert "[store]" in message
    assert "hunter2secret" not in message
    if fragment:
        assert fragment in message


def test_bad_store_value_is_one_line_and_exit_3(tmp_path: Path) -> None:
    config = tmp_path / "monitor.toml"
    config.write_text('[[check]]\nurl = "tcp://127.0.0.1:1"\n\n[store]\nrollup_days = 0\n')
    proc = anyprobe("serve", str(config), "--listen", "127.0.0.1:0")
    assert_one_clear_line(proc, f"{config}:5", "[store]", "rollup_days")


@pytest.mark.anyio
async def test_a_batch_the_store_can_never_take_is_dropped_not_retried_forever(
    tmp_path: Path,
) -> None:
    from prometheus_client import CollectorRegistry

    from anyprobe._store import Record
    from anyprobe._store_config import StoreSettings
    from anyprobe._store_writer import HistoryWriter

    store = open_store("sqlite:monitor.db", tmp_path)
    registry = CollectorRegistry()
    writer = HistoryWriter(store, StoreSettings.model_validate({"batch": 1}), registry)
    # A phase that is not a number cannot be kept: a bug, not an outage.
    writer.add(Record("web", 1.0, Status.OK, "ok", 0.1, phases={"connect": object()}))  # type: ignore[dict-item]
    writer.add(Record("web", 2.0, Status.OK, "ok", 0.1))
    assert await writer.flush()
    found = metrics_of(generate_latest(registry).decode())
    assert found["anyprobe_store_dropped_results_total"] == 1
    assert found["anyprobe_store_written_results_total"] == 1
    assert [r.at for r in await store.results("web", 0)] == [2.0]
    await store.aclose()


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_serve_says_where_it_keeps_the_history_and_writes_it_at_sigterm(
    backend: str, web_target: WebTarget, tmp_path: Path
) -> None:
    # One result, and no write for a minute: only the shutdown can write it.
    table = "[store]\nflush_interval = 60\n"
    config = check_config(tmp_path / "monitor.toml", web_target.url, table, interval=3600)
    process = subprocess.Popen(
        [sys.executable, "-m", "anyprobe", "serve", str(config), "--listen", "127.0.0.1:0",
         "--backend", backend],
        env={**os.environ, "ANYPROBE_LOAD_PLUGINS": ""},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert process.stderr is not None
        url = re.search(r"serving on (http://\S+)", process.stderr.readline())
        assert url, "no serving line"
        assert process.stderr.readline().strip() == (
            f"anyprobe: keeping the checks' history in sqlite://{tmp_path}/monitor.db"
        )
        with httpx.Client() as client:
            for _ in range(1200):  # bounded: until the result waits in the buffer
                found = metrics_of(client.get(f"{url.group(1)}/metrics").text)
                if found.get("anyprobe_store_buffered_results", 0) == 1:
                    break
                time.sleep(0.05)
        assert found["anyprobe_store_written_results_total"] == 0
        process.send_signal(signal.SIGTERM)
        assert process.wait(WAIT_LIMIT) == 0
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(WAIT_LIMIT)
    assert anyio.run(stored_count, "sqlite:monitor.db", tmp_path) == 1
