"""The status page's JSON API (``/api/v1/...``) against a real ``anyprobe serve``.

Keys are a contract (added over time, never renamed): the tests pin them.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from anyprobe import PluginManager
from anyprobe._serve_view import DAY
from tests.memory_store import MemoryStore, running
from tests.test_serve_page import Switch, get, history, until_ran, write_config
from tests.test_serve_page import switch as switch  # the fixture

pytestmark = pytest.mark.anyio

CHECK_KEYS = {
    "name", "group", "labels", "probe", "target", "status", "summary", "last_run", "duration",
    "phases", "error", "uptime", "latency", "incident",
}  # fmt: skip
RESULT_KEYS = {"at", "status", "summary", "duration", "phases", "error", "trace"}
INCIDENT_KEYS = {"check", "status", "summary", "started", "ended", "duration"}


def config_of(tmp_path: Path, switch: Switch, interval: float = 0.1) -> Path:
    return write_config(
        tmp_path,
        '[serve]\ngroup_by = "team"\n'
        f'[[check]]\nname = "api"\nurl = "{switch.url}"\ninterval = {interval}\n'
        'labels = { team = "payments", tier = "1" }\n',
    )


async def test_checks_without_a_store(
    manager: PluginManager, switch: Switch, tmp_path: Path
) -> None:
    async with running(manager, config_of(tmp_path, switch)) as (url, server):
        await until_ran(server, "api")
        response = await get(f"{url}/api/v1/checks")
        results = await get(f"{url}/api/v1/checks/api/results")
        incidents = await get(f"{url}/api/v1/incidents")
    assert response.headers["content-type"] == "application/json"
    document = response.json()
    assert set(document) == {
        "status", "generated", "history", "history_error", "maintenance", "checks",
    }  # fmt: skip
    assert document["status"] == "ok" and document["history"] is False
    (check,) = document["checks"]
    assert set(check) == CHECK_KEYS
    assert check["name"] == "api" and check["group"] == "payments"
    assert check["labels"] == {"team": "payments", "tier": "1"}
    assert check["probe"] == "http" and check["target"] == switch.url
    assert check["status"] == "ok" and check["summary"].startswith("HTTP 200")
    assert datetime.fromisoformat(check["last_run"]).tzinfo is not None
    assert check["uptime"] == {"24h": None, "7d": None, "30d": None}
    assert check["latency"]["count"] == 0 and check["incident"] is None
    # Without a store the results are the latest one only.
    assert results.json()["history"] is False
    (latest,) = results.json()["results"]
    assert set(latest) == RESULT_KEYS and latest["status"] == "ok"
    assert incidents.json() == {
        "since": incidents.json()["since"], "history": False, "incidents": [],
    }  # fmt: skip


async def test_results_and_incidents_from_the_store(
    manager: PluginManager, switch: Switch, tmp_path: Path
) -> None:
    now = time.time()
    store = MemoryStore()
    down_from = now - 3 * DAY
    history(store, "api", now, down_from=down_from, down_to=down_from + 12 * 3600)
    async with running(manager, config_of(tmp_path, switch, 3600), store) as (url, server):
        await until_ran(server, "api")
        base = f"{url}/api/v1/checks/api/results"
        day = (await get(base, params={"since": "24h"})).json()
        since = now - 5 * DAY
        iso = datetime.fromtimestamp(since, UTC).isoformat()
        by_unix = (await get(base, params={"since": str(since)})).json()
        by_iso = (await get(base, params={"since": iso})).json()
        limited = (await get(base, params={"since": "30d", "limit": "10"})).json()
        incidents = (await get(f"{url}/api/v1/incidents", params={"since": "30d"})).json()
        filtered = (await get(f"{url}/api/v1/incidents", params={"check": "api"})).json()
        checks = (await get(f"{url}/api/v1/checks")).json()
    assert day["history"] is True and day["check"] == "api"
    assert 23 <= len(day["results"]) <= 26  # hourly, plus this run's
    assert [r["at"] for r in by_unix["results"]] == [r["at"] for r in by_iso["results"]]
    assert len(by_unix["results"]) >= 5 * 24 - 1
    failing = [r for r in by_unix["results"] if r["status"] == "critical"]
    assert len(failing) == 12 and failing[0]["trace"] and failing[0]["error"] == "HTTPStatusError"
    assert len(limited["results"]) == 10
    assert limited["results"][0]["at"] < limited["results"][-1]["at"]  # oldest first
    (incident,) = incidents["incidents"]
    assert set(incident) == INCIDENT_KEYS
    assert incident["check"] == "api" and incident["status"] == "critical"
    assert incident["duration"] == pytest.approx(12 * 3600)
    assert filtered["incidents"] == incidents["incidents"]
    (check,) = checks["checks"]
    assert check["uptime"]["24h"] == 1.0
    assert 0.9 < check["uptime"]["7d"] < 1
    assert check["latency"]["count"] >= 24 and check["latency"]["p50"] == pytest.approx(
        0.05, abs=0.01
    )


async def test_bad_parameters_are_400_and_unknown_checks_404(
    manager: PluginManager, switch: Switch, tmp_path: Path
) -> None:
    async with running(manager, config_of(tmp_path, switch)) as (url, server):
        await until_ran(server, "api")
        bad_since = await get(f"{url}/api/v1/checks/api/results", params={"since": "yesterday"})
        bad_limit = await get(f"{url}/api/v1/checks/api/results", params={"limit": "0"})
        bad_incidents = await get(f"{url}/api/v1/incidents", params={"since": "soon"})
        unknown = await get(f"{url}/api/v1/checks/nope/results")
        unknown_incidents = await get(f"{url}/api/v1/incidents", params={"check": "nope"})
    assert bad_since.status_code == 400
    assert bad_since.json() == {
        "error": "since='yesterday' is not a Unix time, an ISO 8601 date-time "
        "(2026-12-03T10:00:00Z) or a duration back from now (30m, 24h, 7d)"
    }
    assert bad_limit.status_code == 400 and "limit='0'" in bad_limit.json()["error"]
    assert bad_incidents.status_code == 400 and "since='soon'" in bad_incidents.json()["error"]
    assert unknown.status_code == 404 and unknown.json() == {"error": "no check named 'nope'"}
    assert unknown_incidents.status_code == 404
