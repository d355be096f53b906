"""Every attempt of a check is on the record: in the Result, in JSON Lines and
in ``--explain``; ``duration`` runs from the first attempt's start to the verdict."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import anyprobe
from anyprobe import PluginManager, Status
from anyprobe.plugins.jsonl import JsonlReporter
from anyprobe.plugins.table import render_plain
from tests import probes

pytestmark = pytest.mark.anyio


@pytest.fixture
def scripted(manager: PluginManager) -> PluginManager:
    manager.register(probes)
    probes.ScriptedProbe.attempts.clear()
    return manager


async def check_one(manager: PluginManager, url: str, **kwargs: object) -> anyprobe.Result:
    results = await anyprobe.check([url], manager=manager, **kwargs)  # type: ignore[arg-type]
    assert len(results) == 1
    return results[0]


async def test_every_failed_attempt_is_kept_and_duration_spans_them_all(
    scripted: PluginManager,
) -> None:
    result = await check_one(scripted, "test://fail", retries=2)
    log = result.attempt_log
    assert result.attempts == len(log) == 3
    assert [a.status for a in log] == [Status.CRITICAL] * 3
    assert [a.summary for a in log] == ["connection refused"] * 3
    assert all(a.error is not None and a.error.type == "ConnectionRefusedError" for a in log)
    assert log[0].started == result.started
    assert log[0].started < log[1].started < log[2].started
    # The whole check: from the first attempt's start to the end of the last,
    # the backoff between attempts included.
    span = (log[2].started - log[0].started).total_seconds() + log[2].duration
    assert result.duration == pytest.approx(span, abs=1e-3)
    gaps = [(log[i + 1].started - log[i].started).total_seconds() - log[i].duration for i in (0, 1)]
    assert all(gap > 0 for gap in gaps)  # the backoff
    assert result.duration > sum(a.duration for a in log)


async def test_an_attempt_that_passed_after_a_failure_keeps_both(scripted: PluginManager) -> None:
    result = await check_one(scripted, "test://flaky", retries=2, explain=True)
    first, second = result.attempt_log
    assert (first.status, first.summary) == (Status.CRITICAL, "first attempt fails")
    assert (second.status, second.summary) == (Status.OK, "flaky fine")
    assert second.phases == result.phases
    assert [e.message for e in second.trace] == ["did the thing"]
    assert result.summary == "flaky fine (on attempt 2; attempt 1: first attempt fails)"
    record = result.as_dict()
    assert record["attempts"] == 2
    assert [a["status"] for a in record["attempt_log"]] == ["critical", "ok"]
    assert set(record["attempt_log"][0]) == {
        "status", "summary", "error", "started", "duration", "phases",
    }  # fmt: skip
    assert record["attempt_log"][1]["trace"][0]["message"] == "did the thing"


async def test_a_check_decided_by_its_first_attempt_writes_no_attempt_log(
    scripted: PluginManager,
) -> None:
    result = await check_one(scripted, "test://ok", retries=2)
    assert result.attempts == 1 and result.attempt_log == ()
    assert "attempt_log" not in result.as_dict()
    (only,) = result.every_attempt()
    assert (only.status, only.summary, only.duration) == (Status.OK, "ok fine", result.duration)


async def test_jsonl_reporter_writes_the_attempt_log(
    scripted: PluginManager, tmp_path: Path
) -> None:
    out = tmp_path / "r.jsonl"
    reporter = JsonlReporter(JsonlReporter.Options(path=str(out)))
    await anyprobe.check(
        ["test://fail", "test://ok"], manager=scripted, retries=1, reporters=[("jsonl", reporter)]
    )
    records = {r["target"]: r for r in map(json.loads, out.read_text().splitlines())}
    failed = records["test://fail"]
    assert failed["attempts"] == 2
    assert [a["summary"] for a in failed["attempt_log"]] == ["connection refused"] * 2
    assert failed["duration"] >= sum(a["duration"] for a in failed["attempt_log"])
    assert "attempt_log" not in records["test://ok"]


async def test_explain_shows_each_attempt(scripted: PluginManager) -> None:
    result = await check_one(scripted, "test://flaky", retries=1, explain=True)
    text = render_plain([result], None, explain=True)
    lines = [line.strip() for line in text.splitlines()]
    attempt_lines = [line for line in lines if line.startswith("attempt ")]
    assert len(attempt_lines) == 2
    assert attempt_lines[0].startswith("attempt 1: CRITICAL in ")
    assert attempt_lines[0].endswith("ms: first attempt fails")
    assert attempt_lines[1].startswith("attempt 2: OK in ")
    assert lines[lines.index(attempt_lines[1]) + 1].endswith("did the thing")
