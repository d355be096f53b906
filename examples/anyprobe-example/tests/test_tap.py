"""The TAP reporter: fed directly, and at the end of a real run."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import anyprobe
import pytest
from anyprobe.testing import CLOSE, LineServer, RunRecord, feed_reporter, make_result

from anyprobe_example.tap import TapOptions, TapReporter

pytestmark = pytest.mark.anyio


async def test_each_result_is_a_test_line_and_the_plan_comes_last(tmp_path: Path) -> None:
    out = tmp_path / "out.tap"
    reporter = TapReporter(TapOptions(path=str(out)))
    results = [
        make_result("api", "ok", "HTTP 200 in 41 ms"),
        make_result("disk", "warning", "slow"),
        make_result("db", "critical", "connection refused", target="tcp://db:5432"),
    ]
    await feed_reporter(reporter, results)
    lines = out.read_text().splitlines()
    assert lines[:3] == ["TAP version 14", "ok 1 - api: HTTP 200 in 41 ms", "not ok 2 - disk: slow"]
    assert lines[-2:] == ["1..3", "# 3 checks: 1 ok, 1 warning, 1 critical in 0.03 s"]
    db = lines.index("not ok 3 - db: connection refused")
    assert lines[db + 1 : db + 4] == [
        "  ---",
        '  status: "critical"',
        '  target: "tcp://db:5432"',
    ]
    assert '  error: {"type": "CheckFailed", "message": "connection refused", "phase": null}' in (
        lines
    )


async def test_fail_on_critical_lets_warnings_pass_and_hashes_are_escaped(tmp_path: Path) -> None:
    out = tmp_path / "out.tap"
    reporter = TapReporter(TapOptions(path=str(out), fail_on="critical", diagnostics=False))
    await feed_reporter(reporter, [make_result("queue #2", "warning", "depth 90\nrising")])
    lines = out.read_text().splitlines()
    assert lines[1] == "ok 1 - queue \\#2: depth 90 rising"
    assert lines[2] == "1..1"


async def test_an_interrupted_run_says_so(tmp_path: Path) -> None:
    out = tmp_path / "out.tap"
    await feed_reporter(
        TapReporter(TapOptions(path=str(out))), [make_result()], total=3, interrupted="SIGINT"
    )
    assert out.read_text().splitlines()[-1].endswith("2 not finished (interrupted by SIGINT)")


async def test_a_real_run_reports_every_check_it_received(
    anyprobe_line_server: Callable[..., LineServer],
    anyprobe_run: Callable[..., Awaitable[RunRecord]],
    tmp_path: Path,
) -> None:
    good = anyprobe_line_server({"version": "VERSION 1.6.21", "quit": CLOSE})
    bad = anyprobe_line_server({"version": "SERVER_ERROR out of memory"})
    out = tmp_path / "run.tap"
    record = await anyprobe_run(
        [good.url("memcached"), bad.url("memcached")],
        options={"stats": False},
        reporters=[("tap", {"path": str(out)})],
    )
    lines = out.read_text().splitlines()
    tests = [line for line in lines if line.startswith(("ok", "not ok"))]
    # In the order the reporter received them, which is the order of the record.
    expected = [
        f"{'ok' if r.status is anyprobe.Status.OK else 'not ok'} {n} - {r.name}: {r.summary}"
        for n, r in enumerate(record.results, start=1)
    ]
    assert tests == expected
    assert "1..2" in lines
