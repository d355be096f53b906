"""Reporter isolation: one reporter failing, slow or unreachable costs the others nothing.

Several reporters run at once on real checks (TCP on loopback): one raises on
the third result, one is slow, the webhook's target is down, one cannot open
its file. Every other reporter still gets every result; each failure is one
clear line; the exit status says a reporter failed. And a run interrupted by
SIGINT leaves every report file valid.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import anyio
import pytest
from junitparser import xunit2
from prometheus_client.parser import text_string_to_metric_families

import anyprobe
from anyprobe import PluginManager, ReportContext, Reporter, ReporterOptions, Result, ResultStream
from anyprobe.plugins.csv import CsvOptions, CsvReporter
from anyprobe.plugins.jsonl import JsonlReporter
from anyprobe.plugins.junit import JunitOptions, JunitReporter
from anyprobe.plugins.prometheus import PrometheusReporter
from anyprobe.plugins.webhook import WebhookOptions, WebhookReporter

from .cli import anyprobe as run_cli

CHECKS = 12
PROMTOOL = shutil.which("promtool")


class Recorder(Reporter[ReporterOptions]):
    """Keeps every result it reads; ``delay`` makes it a slow reporter."""

    def __init__(self, delay: float = 0.0) -> None:
        super().__init__(ReporterOptions())
        self.delay = delay
        self.results: list[Result] = []
        self.saw_summary = False

    async def report(self, results: ResultStream, ctx: ReportContext) -> None:
        async for result in results:
            if self.delay:
                await anyio.sleep(self.delay)
            self.results.append(result)
        self.saw_summary = ctx.summary is not None


class RaisesOnThird(Reporter[ReporterOptions]):
    """Fails while reading the third result."""

    def __init__(self) -> None:
        super().__init__(ReporterOptions())
        self.seen = 0

    async def report(self, results: ResultStream, ctx: ReportContext) -> None:
        async for _ in results:
            self.seen += 1
            if self.seen == 3:
                raise RuntimeError("broke on the third result")


def target_urls(ok_port: int, refused_port: int) -> list[str]:
    """CHECKS distinct loopback targets, half accepting, half refusing."""
    return [f"tcp://127.0.0.1:{ok_port if i % 2 else refused_port}/{i}" for i in range(CHECKS)]


def file_reporters(tmp_path: Path) -> list[tuple[str, Reporter[Any]]]:
    return [
        ("jsonl", JsonlReporter(ReporterOptions(path=str(tmp_path / "r.jsonl")))),
        ("junit", JunitReporter(JunitOptions(path=str(tmp_path / "r.xml")))),
        ("prometheus", PrometheusReporter(ReporterOptions(path=str(tmp_path / "r.prom")))),
        ("csv", CsvReporter(CsvOptions(path=str(tmp_path / "r.csv")))),
    ]


def names_in_files(tmp_path: Path) -> dict[str, list[str]]:
    """The check names each report file holds, read by each format's consumer."""
    names: dict[str, list[str]] = {}
    names["jsonl"] = [json.loads(line)["name"] for line in (tmp_path / "r.jsonl").open()]
    xml = xunit2.JUnitXml.fromfile(str(tmp_path / "r.xml"))
    names["junit"] = [case.name for suite in xml for case in suite]
    prom = (tmp_path / "r.prom").read_text()
    names["prometheus"] = [
        sample.labels["name"]
        for family in text_string_to_metric_families(prom)
        if family.name == "probe_success"
        for sample in family.samples
    ]
    if (tmp_path / "r.csv").exists():
        with (tmp_path / "r.csv").open(newline="") as f:
            names["csv"] = [row["name"] for row in csv.DictReader(f)]
    return names


def assert_promtool_accepts(path: Path) -> None:
    if PROMTOOL is None:
        return  # prometheus_client's parser has read the file already
    checked = subprocess.run(
        [PROMTOOL, "check", "metrics"],
        input=path.read_text(),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.mark.anyio
async def test_failing_slow_and_unreachable_reporters_cost_the_others_nothing(
    manager: PluginManager,
    tmp_path: Path,
    listening_port: int,
    closed_port: int,
) -> None:
    first, last, slow = Recorder(), Recorder(), Recorder(delay=0.01)
    breaking = RaisesOnThird()
    webhook = WebhookReporter(
        WebhookOptions(
            url=f"http://127.0.0.1:{closed_port}/hook/SECRET",
            mode="per_result",
            retries=1,
            backoff=0.01,
        )
    )
    reporters: list[tuple[str, Reporter[Any]]] = [
        ("first", first),
        ("breaking", breaking),
        ("slow", slow),
        ("webhook", webhook),
        *file_reporters(tmp_path),
        ("last", last),
    ]
    _, targets = anyprobe.prepare(target_urls(listening_port, closed_port), manager=manager)
    # A small buffer: the slow reporter holds the checks back, and the others
    # must still get every result while the broken one is gone.
    run = anyprobe.Run(targets, manager, reporters, concurrency=3, reporter_buffer=2)
    summary = await run.execute()

    expected = sorted(t.name for t in targets)
    for recorder in (first, slow, last):
        assert sorted(r.name for r in recorder.results) == expected
        assert recorder.saw_summary
    for reporter, names in names_in_files(tmp_path).items():
        assert sorted(names) == expected, reporter
    assert_promtool_accepts(tmp_path / "r.prom")
    assert breaking.seen == 3

    assert summary.finished == CHECKS
    failures = list(summary.reporter_failures)
    assert failures[0] == "reporter breaking failed: RuntimeError: broke on the third result"
    assert re.fullmatch(
        rf"reporter webhook failed: WebhookError: {CHECKS} of {CHECKS} POSTs to "
        rf"http://127\.0\.0\.1:{closed_port} failed \(down after 3 failures in a row\); "
        r"last error: ConnectError: .+",
        failures[1],
    ), failures[1]
    assert len(failures) == 2
    assert all("\n" not in line and "SECRET" not in line for line in failures)


@pytest.mark.anyio
async def test_the_embedding_api_returns_every_result_whatever_the_reporters_do(
    manager: PluginManager,
    tmp_path: Path,
    listening_port: int,
    closed_port: int,
) -> None:
    recorder = Recorder(delay=0.005)
    webhook = WebhookReporter(
        WebhookOptions(url=f"http://127.0.0.1:{closed_port}/", retries=0, backoff=0)
    )
    results = await anyprobe.check(
        target_urls(listening_port, closed_port),
        manager=manager,
        concurrency=4,
        reporters=[
            ("breaking", RaisesOnThird()),
            ("slow", recorder),
            ("webhook", webhook),
            *file_reporters(tmp_path),
        ],
    )
    assert len(results) == CHECKS
    expected = sorted(r.name for r in results)
    assert sorted(r.name for r in recorder.results) == expected
    for reporter, names in names_in_files(tmp_path).items():
        assert sorted(names) == expected, reporter


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_cli_reports_each_failed_reporter_in_one_line_and_exits_3(
    backend: str, tmp_path: Path, listening_port: int, closed_port: int
) -> None:
    """Through the real command: a webhook that is down and a file that cannot be
    written (a path that cannot be opened is refused before the run, see
    tests/reliability/test_report_files.py; /dev/full takes no byte)."""
    config = tmp_path / "checks.toml"
    checks = "".join(
        f'[[check]]\nname = "check {i}"\nurl = "{url}"\n\n'
        for i, url in enumerate(target_urls(listening_port, listening_port))
    )
    config.write_text(
        f"{checks}"
        f'[[reporter]]\ntype = "jsonl"\npath = "{tmp_path / "r.jsonl"}"\n\n'
        f'[[reporter]]\ntype = "junit"\npath = "{tmp_path / "r.xml"}"\n\n'
        f'[[reporter]]\ntype = "prometheus"\npath = "{tmp_path / "r.prom"}"\n\n'
        f'[[reporter]]\ntype = "csv"\npath = "/dev/full"\n\n'
        f'[[reporter]]\ntype = "webhook"\nurl = "http://127.0.0.1:{closed_port}/x"\n'
        f"retries = 1\nbackoff = 0.01\n"
    )
    proc = run_cli("-q", "run", str(config), "--backend", backend)

    assert proc.returncode == 3, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 2, proc.stderr
    assert lines[0] == (
        "anyprobe: reporter csv failed: OSError: cannot write /dev/full: No space left on device"
    )
    assert lines[1].startswith(
        f"anyprobe: reporter webhook failed: WebhookError: 1 of 1 POST to "
        f"http://127.0.0.1:{closed_port} failed; last error: ConnectError"
    )
    expected = sorted(f"check {i}" for i in range(CHECKS))
    names = names_in_files(tmp_path)
    assert set(names) == {"jsonl", "junit", "prometheus"}
    for reporter, found in names.items():
        assert sorted(found) == expected, reporter
    assert_promtool_accepts(tmp_path / "r.prom")


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_sigint_mid_run_leaves_every_report_file_valid(
    backend: str, tmp_path: Path, closed_port: int, blackhole_port: int
) -> None:
    """Checks that finish fast, then checks that hang; SIGINT once some are reported."""
    fast = [f"tcp://127.0.0.1:{closed_port}/{i}" for i in range(4)]
    hanging = [f"tcp://127.0.0.1:{blackhole_port}/{i}" for i in range(30)]
    jsonl, junit, prom = tmp_path / "r.jsonl", tmp_path / "r.xml", tmp_path / "r.prom"
    command = [
        sys.executable, "-m", "anyprobe", "check", "--backend", backend, "-t", "5", "-c", "2",
        "-r", f"jsonl={jsonl}", "-r", f"junit={junit}", "-r", f"prometheus={prom}",
        *fast, *hanging,
    ]  # fmt: skip
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if jsonl.exists() and len(jsonl.read_text().splitlines()) >= 2:
                break
            time.sleep(0.05)
        else:
            pytest.fail("no result reached the JSON Lines file")
        os.kill(proc.pid, signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert jsonl.read_text().endswith("\n")
    records = [json.loads(line) for line in jsonl.read_text().splitlines()]
    reported = sorted(r["name"] for r in records)
    assert 2 <= len(reported) < len(fast) + len(hanging)

    root = ET.parse(junit).getroot()
    properties = {p.get("name"): p.get("value") for p in root.iterfind("testsuite/properties/")}
    assert properties["interrupted"] == "SIGINT"
    assert int(properties["not_finished"]) == len(fast) + len(hanging) - len(reported)
    names = names_in_files(tmp_path)
    assert sorted(names["junit"]) == reported
    assert sorted(names["prometheus"]) == reported
    assert_promtool_accepts(prom)
    # No temporary file is left next to the reports.
    assert sorted(os.listdir(tmp_path)) == ["r.jsonl", "r.prom", "r.xml"]
