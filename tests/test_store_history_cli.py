"""``anyprobe history``: the table and the JSON from a real store, and bad input.

The store is written here through the store API (times relative to now), then
read by the real command in a subprocess.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import anyio
import pytest

from anyprobe._cli_history import parse_since
from anyprobe._errors import UsageError
from anyprobe._model import Status
from anyprobe._store import Record
from anyprobe._store_backends import open_store
from tests.cli import anyprobe, assert_one_clear_line

CONFIG = """\
[[check]]
name = "api"
url = "tcp://127.0.0.1:1"
interval = 30

[[check]]
name = "db"
url = "tcp://127.0.0.1:2"
interval = 30
"""


def write_history(url: str, base: Path) -> None:
    """api: 20 results in the last hour, 2 critical in a row (one incident),
    durations 10..200 ms; db: 4 ok results two days ago."""
    now = time.time()

    async def main() -> None:
        store = open_store(url, base)
        records = [
            Record(
                "api",
                now - 3600 + 30 + i * 60,  # 30 s from any minute boundary
                Status.CRITICAL if i in (5, 6) else Status.OK,
                "x",
                (i + 1) / 100,
            )
            for i in range(20)
        ]
        records += [Record("db", now - 2 * 86400 + i, Status.OK, "ok", 0.5) for i in range(4)]
        await store.write(records)
        await store.aclose()

    anyio.run(main)


@pytest.fixture
def monitor(tmp_path: Path) -> Path:
    config = tmp_path / "monitor.toml"
    config.write_text(CONFIG)
    write_history("sqlite:monitor.db", tmp_path)
    return config


def test_history_json_gives_uptime_incidents_and_percentiles(monitor: Path) -> None:
    proc = anyprobe("history", "--config", str(monitor), "--since", "7d", "--json")
    assert proc.returncode == 0, proc.stderr
    checks = {c["name"]: c for c in json.loads(proc.stdout)["checks"]}
    assert checks["api"]["uptime"] == pytest.approx(18 / 20)
    assert checks["api"]["incidents"] == 1
    assert checks["api"]["results"] == 20
    assert checks["api"]["latency"] == {"p50": 0.10, "p95": 0.19, "p99": 0.20}
    assert checks["api"]["status"] == "ok"
    assert checks["db"]["uptime"] == 1.0
    # Over the last day, db has no result.
    proc = anyprobe("history", "db", "--config", str(monitor), "--since", "24h", "--json")
    (db,) = json.loads(proc.stdout)["checks"]
    assert (db["results"], db["uptime"], db["latency"]["p50"]) == (0, None, None)


def test_history_table_has_a_row_per_check(monitor: Path) -> None:
    proc = anyprobe("history", "--config", str(monitor), "--since", "2w")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split() == [
        "CHECK",
        "UPTIME",
        "INCIDENTS",
        "P50",
        "P95",
        "P99",
        "RESULTS",
        "LAST",
    ]
    assert lines[1].split() == [
        "api",
        "90.00%",
        "1",
        "100",
        "ms",
        "190",
        "ms",
        "200",
        "ms",
        "20",
        "ok",
    ]
    assert lines[2].split()[:3] == ["db", "100.00%", "0"]


def test_history_reads_a_store_url_without_config(monitor: Path) -> None:
    proc = anyprobe("history", "api", "--store", f"sqlite://{monitor.parent}/monitor.db", "--json")
    assert proc.returncode == 0, proc.stderr
    assert [c["name"] for c in json.loads(proc.stdout)["checks"]] == ["api"]


def test_history_from_postgresql(postgres_url: str, tmp_path: Path) -> None:
    write_history(postgres_url, tmp_path)
    proc = anyprobe("history", "--store", postgres_url, "--since", "45m", "--json")
    assert proc.returncode == 0, proc.stderr
    checks = {c["name"]: c for c in json.loads(proc.stdout)["checks"]}
    assert set(checks) == {"api", "db"}
    assert checks["api"]["results"] == 5  # those of the last 45 minutes
    assert "***" in json.loads(proc.stdout)["store"]


@pytest.mark.parametrize("since", ["3x", "0d", "-1h", "7", "d", "99999w"])
def test_bad_since_is_one_line_and_exit_3(monitor: Path, since: str) -> None:
    proc = anyprobe("history", "--config", str(monitor), "--since", since)
    assert_one_clear_line(proc, "--since", "30m, 24h, 7d or 2w")


def test_unknown_check_is_one_line_and_exit_3(monitor: Path) -> None:
    proc = anyprobe("history", "ap", "--config", str(monitor))
    assert_one_clear_line(proc, "unknown check 'ap'", "did you mean 'api'", "known: api, db")


def test_history_needs_a_config_or_a_store(monitor: Path, tmp_path: Path) -> None:
    assert_one_clear_line(anyprobe("history"), "--config FILE or --store URL")
    assert_one_clear_line(
        anyprobe("history", "--store", f"sqlite://{tmp_path}/missing.db"), "no history yet"
    )
    assert_one_clear_line(anyprobe("history", "--store", "mysql://db/x"), "--store", "mysql")
    bad = tmp_path / "bad.toml"
    bad.write_text(CONFIG + '\n[store]\nurl = "none"\n')
    assert_one_clear_line(anyprobe("history", "--config", str(bad)), "no history store")


def test_periods_parse_to_seconds() -> None:
    assert [parse_since(t) for t in ("90s", "30m", "24h", "7d", "2w", "1.5h")] == [
        90,
        1800,
        86400,
        7 * 86400,
        14 * 86400,
        5400,
    ]
    with pytest.raises(UsageError):
        parse_since("soon")
