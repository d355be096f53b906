"""The history store on both databases: a real SQLite file and a real
PostgreSQL server on loopback (tests/servers/postgres.py), each test on
asyncio and trio.

Times are given explicitly (``at``, ``prune(now)``): no test waits for a clock.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from anyprobe._model import Status
from anyprobe._store import Record
from anyprobe._store_backends import open_store
from anyprobe._store_sql import MIGRATIONS, SCHEMA_VERSION, SqlStore, StoreError

pytestmark = pytest.mark.anyio

DAY = 86400.0
#: A fixed "now", on an hour boundary, for the tests that prune.
NOW = 1_790_000_000.0 - 1_790_000_000.0 % 3600


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite://{tmp_path}/history.db"
    return str(request.getfixturevalue("postgres_url"))


def record(check: str, at: float, status: Status = Status.OK, duration: float = 0.01) -> Record:
    return Record(check, at, status, f"{status.value} at {at:.0f}", duration)


async def test_records_come_back_as_they_were_written(store_url: str, tmp_path: Path) -> None:
    store = open_store(store_url, tmp_path)
    failed = Record(
        "api",
        NOW + 2,
        Status.CRITICAL,
        "connection refused",
        0.0123,
        phases={"resolve": 0.001, "connect": 0.0113},
        error="ConnectError",
        trace=("    0.100 ms  connecting to 127.0.0.1:1", "    0.200 ms  refused"),
    )
    written = [record("api", NOW), record("api", NOW + 1, Status.WARNING), failed]
    await store.write([*written, record("db", NOW + 1)])
    assert await store.results("api", NOW) == written
    assert await store.results("api", NOW + 1, until=NOW + 1) == [written[1]]
    assert await store.results("api", NOW, limit=2) == written[:2]
    assert await store.results("api", NOW + 3) == []
    assert await store.results("nothing", 0) == []
    latest = await store.latest()
    assert latest == {"api": failed, "db": record("db", NOW + 1)}
    await store.aclose()
    # Closed and opened again (a restart): the same history.
    again = open_store(store_url, tmp_path)
    assert await again.results("api", 0) == written
    assert (await again.latest())["api"] == failed
    await again.aclose()


async def test_an_older_record_written_late_does_not_replace_the_latest(
    store_url: str, tmp_path: Path
) -> None:
    store = open_store(store_url, tmp_path)
    await store.write([record("api", NOW + 10, Status.CRITICAL)])
    await store.write([record("api", NOW)])
    assert (await store.latest())["api"].status is Status.CRITICAL
    await store.aclose()


async def test_incidents_follow_status_changes_across_batches(
    store_url: str, tmp_path: Path
) -> None:
    store = open_store(store_url, tmp_path)
    statuses = [Status.OK, Status.WARNING, Status.CRITICAL, Status.UNKNOWN, Status.OK, Status.OK]
    # One record per batch for the first half: incidents span transactions.
    for i, status in enumerate(statuses[:3]):
        await store.write([record("api", NOW + i, status)])
    await store.write([record("api", NOW + i, s) for i, s in enumerate(statuses) if i >= 3])
    await store.write([record("api", NOW + 10, Status.CRITICAL), record("db", NOW, Status.OK)])
    incidents = await store.incidents(None, 0)
    assert [(i.check, i.started, i.ended, i.status) for i in incidents] == [
        ("api", NOW + 10, None, Status.CRITICAL),
        ("api", NOW + 1, NOW + 4, Status.UNKNOWN),  # the worst status it reached
    ]
    assert incidents[1].summary == f"warning at {NOW + 1:.0f}"  # its first failing result's
    assert incidents[1].duration == 3
    assert incidents[0].duration is None
    # Ended before `since`: left out; still open: always in.
    assert [i.started for i in await store.incidents("api", NOW + 5)] == [NOW + 10]
    assert await store.incidents("db", 0) == []
    assert len(await store.incidents("api", 0, limit=1)) == 1
    await store.aclose()


async def test_uptime_counts_ok_and_warning_and_latency_has_percentiles(
    store_url: str, tmp_path: Path
) -> None:
    store = open_store(store_url, tmp_path)
    # 100 results, durations 0.01 .. 1.00 s; 10 critical, 5 warning.
    records = []
    for i in range(100):
        status = Status.CRITICAL if i % 10 == 3 else Status.WARNING if i % 20 == 7 else Status.OK
        records.append(record("api", NOW + i, status, duration=(i + 1) / 100))
    await store.write(records)
    assert await store.uptime("api", 0) == pytest.approx(0.90)
    assert await store.uptime("api", NOW + 50) == pytest.approx(45 / 50)
    assert await store.uptime("nothing", 0) is None
    latency = await store.latency("api", 0)
    assert (latency.count, latency.p50, latency.p95, latency.p99) == (100, 0.50, 0.95, 0.99)
    assert await store.latency("api", NOW + 1000) == (
        type(latency)(count=0, p50=None, p95=None, p99=None)
    )
    await store.aclose()


async def test_prune_rolls_old_results_up_and_the_history_survives(
    store_url: str, tmp_path: Path
) -> None:
    store = open_store(store_url, tmp_path, retention_days=30, rollup_days=60)
    old_hour = NOW - 40 * DAY
    records = [
        # 40 days ago, in one hour: 3 ok (10, 20, 30 ms) and 1 critical (1 s).
        record("api", old_hour + 60, duration=0.01),
        record("api", old_hour + 120, Status.CRITICAL, duration=1.0),
        record("api", old_hour + 180, duration=0.02),
        record("api", old_hour + 240, duration=0.03),
        # 70 days ago: beyond the rollups' 60 days.
        record("api", NOW - 70 * DAY, Status.CRITICAL),
        record("api", NOW - 70 * DAY + 60),
        # Today.
        record("api", NOW - 60, duration=0.04),
    ]
    await store.write(records)
    uptime_before = await store.uptime("api", NOW - 50 * DAY)
    await store.prune(NOW)
    # Only today's raw record is left; the old hour is one rollup row.
    assert await store.results("api", 0) == [records[-1]]
    rollups = await store.rollups("api", 0)
    assert [(r.hour, dict(r.counts)) for r in rollups] == [
        (old_hour, {Status.OK: 3, Status.CRITICAL: 1})
    ]
    assert (rollups[0].p50, rollups[0].p95, rollups[0].p99) == (0.02, 1.0, 1.0)
    # Uptime over the period counts the rollup and the raw record alike.
    assert await store.uptime("api", NOW - 50 * DAY) == uptime_before == pytest.approx(4 / 5)
    latency = await store.latency("api", NOW - 50 * DAY)
    assert latency.count == 5
    # The incident of 40 days ago is kept with the rollups; the one of 70 days ago is gone.
    incidents = await store.incidents("api", 0)
    assert [i.started for i in incidents] == [old_hour + 120]
    # A second prune at the same time changes nothing.
    await store.prune(NOW)
    assert [(r.hour, dict(r.counts)) for r in await store.rollups("api", 0)] == [
        (old_hour, {Status.OK: 3, Status.CRITICAL: 1})
    ]
    await store.aclose()


async def test_a_late_record_for_a_rolled_up_hour_joins_its_rollup(
    store_url: str, tmp_path: Path
) -> None:
    store = open_store(store_url, tmp_path, retention_days=1, rollup_days=10)
    hour = NOW - 3 * DAY
    await store.write([record("api", hour + 10)])
    await store.prune(NOW)
    await store.write([record("api", hour + 20, Status.CRITICAL)])  # held while the store was down
    await store.prune(NOW)
    assert [dict(r.counts) for r in await store.rollups("api", 0)] == [
        {Status.OK: 1, Status.CRITICAL: 1}
    ]
    assert await store.uptime("api", 0) == 0.5
    await store.aclose()


async def test_state_keeps_json_values(store_url: str, tmp_path: Path) -> None:
    store = open_store(store_url, tmp_path)
    assert await store.get_state("alerts") is None
    value: dict[str, Any] = {"api": {"failures": 3, "notified": "critical"}, "list": [1, 2.5]}
    await store.put_state("alerts", value)
    await store.put_state("alerts", {**value, "db": None})
    await store.aclose()
    again = open_store(store_url, tmp_path)
    assert await again.get_state("alerts") == {**value, "db": None}
    await again.aclose()


def _version_1(store: SqlStore) -> Any:
    """``store``'s database laid out as version 1 of the schema, with a result."""
    connector = store.connector
    conn = connector.connect()
    with connector.transaction(conn):
        conn.execute(
            "CREATE TABLE schema_version"
            " (version INTEGER PRIMARY KEY, applied DOUBLE PRECISION NOT NULL)"
        )
        for statement in MIGRATIONS[0][1]:
            conn.execute(statement.format(serial=connector.serial))
        conn.execute(connector.sql("INSERT INTO schema_version VALUES (1, ?)"), (time.time(),))
        conn.execute(
            connector.sql("INSERT INTO checks (name, at, status) VALUES ('api', ?, 2)"), (NOW,)
        )
        conn.execute(
            connector.sql(
                "INSERT INTO results (check_id, at, status, summary, duration)"
                " SELECT id, ?, 2, 'refused', 0.5 FROM checks"
            ),
            (NOW,),
        )
    return conn


async def test_an_older_schema_is_migrated_in_order_keeping_the_history(
    store_url: str, tmp_path: Path
) -> None:
    store = open_store(store_url, tmp_path)
    _version_1(store).close()
    assert SCHEMA_VERSION > 1
    assert await store.schema_version() == SCHEMA_VERSION
    assert await store.results("api", 0) == [Record("api", NOW, Status.CRITICAL, "refused", 0.5)]
    await store.put_state("k", 1)  # the table version 2 added
    assert await store.get_state("k") == 1
    await store.write([record("api", NOW + 1)])
    assert len(await store.results("api", 0)) == 2
    await store.aclose()


async def test_a_store_of_a_newer_anyprobe_is_refused(store_url: str, tmp_path: Path) -> None:
    store = open_store(store_url, tmp_path)
    await store.connect()
    await store._call(
        store._execute, "INSERT INTO schema_version VALUES (?, ?)", (SCHEMA_VERSION + 1, 0.0)
    )
    await store.aclose()
    newer = open_store(store_url, tmp_path)
    with pytest.raises(StoreError, match=f"schema version {SCHEMA_VERSION + 1} is newer"):
        await newer.latest()
    await newer.aclose()


async def test_sqlite_store_is_in_wal_mode_beside_the_config(tmp_path: Path) -> None:
    store = open_store("sqlite:history.db", tmp_path)
    await store.write([record("api", NOW)])
    await store.aclose()
    with sqlite3.connect(tmp_path / "history.db") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


@pytest.mark.parametrize(
    "url",
    [
        "mysql://db/x",
        "sqlite://host/x.db",
        "sqlite:",
        "sqlite:///",
        "postgresql:db",
        "nothing",
    ],
)
def test_a_url_that_names_no_store_is_refused(url: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        open_store(url, tmp_path)


async def test_postgresql_errors_never_show_the_password(
    postgres_server: Any, tmp_path: Path
) -> None:
    wrong = postgres_server.url().replace(postgres_server.password, "not-the-password-42")
    store = open_store(wrong, tmp_path)
    with pytest.raises(StoreError) as caught:
        await store.connect()
    assert "not-the-password-42" not in str(caught.value)
    assert "password authentication failed" in str(caught.value)
    assert "***" in str(caught.value)
    # The password may come from elsewhere ([store] password_env) than the URL.
    good = open_store(
        postgres_server.url(password=False), tmp_path, password=postgres_server.password
    )
    await good.write([record("api", NOW)])
    assert postgres_server.password not in good.description
    await good.aclose()


async def test_a_sqlite_file_removed_under_the_store_is_created_again(tmp_path: Path) -> None:
    import shutil

    store = open_store("sqlite:history/monitor.db", tmp_path)
    await store.write([record("api", NOW)])
    shutil.rmtree(tmp_path / "history")  # the directory removed while the server runs
    await store.write([record("api", NOW + 1)])
    await store.aclose()
    # The writes after the removal are in a new file, where readers find them.
    again = open_store("sqlite:history/monitor.db", tmp_path)
    assert await again.results("api", 0) == [record("api", NOW + 1)]
    await again.aclose()
