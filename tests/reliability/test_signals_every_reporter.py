"""SIGINT and SIGTERM at random points of a run, every file reporter on, 20 times.

Each run checks HTTP targets on a loopback farm whose answers are delayed by
different amounts, so results keep finishing throughout the run; the signal
comes at a random moment after the first request reached the farm. Whatever
the moment, every report holds exactly the results that finished (the count
the CLI prints), and every file is valid for its consumer: JSON Lines parse,
the JUnit XML parses, the Prometheus exposition passes ``promtool check
metrics``, the CSV and the Markdown table read back, the Nagios output on
stdout has its count line and one line per finished check.
"""

from __future__ import annotations

import csv
import json
import os
import random
import re
import shutil
import signal
import subprocess
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from .conftest import Farm, anyprobe_command, clean_env

pytestmark = pytest.mark.slow

TARGETS = 30
CONCURRENCY = 6
RUNS = 20
PROMTOOL = shutil.which("promtool")
_plan = random.Random(20261124)
#: (signal, backend, seconds after the first request): 10 SIGINT, 10 SIGTERM.
SCHEDULE = [
    (signum, backend, round(_plan.uniform(0.0, 2.5), 2))
    for signum in (signal.SIGINT, signal.SIGTERM)
    for backend in ("asyncio", "trio")
    for _ in range(RUNS // 4)
]
EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143}


def read_reports(tmp_path: Path, stdout: str) -> dict[str, list[str]]:
    """The check names each report holds, each read the way its consumer reads it."""
    names: dict[str, list[str]] = {}
    jsonl = (tmp_path / "r.jsonl").read_text()
    assert not jsonl or jsonl.endswith("\n")
    names["jsonl"] = [json.loads(line)["name"] for line in jsonl.splitlines()]

    root = ET.parse(tmp_path / "r.xml").getroot()
    names["junit"] = [case.get("name", "") for case in root.iter("testcase")]

    exposition = (tmp_path / "r.prom").read_text()
    names["prometheus"] = [
        sample.labels["name"]
        for family in text_string_to_metric_families(exposition)
        if family.name == "probe_success"
        for sample in family.samples
    ]
    if PROMTOOL:
        checked = subprocess.run(
            [PROMTOOL, "check", "metrics"], input=exposition, capture_output=True,
            text=True, timeout=30, check=False,
        )  # fmt: skip
        assert checked.returncode == 0, checked.stdout + checked.stderr

    with (tmp_path / "r.csv").open(newline="") as f:
        names["csv"] = [row["name"] for row in csv.DictReader(f)]

    markdown = (tmp_path / "r.md").read_text().splitlines()
    header = ["| Status | Check | Target | Duration | Summary |", "|---|---|---|---:|---|"]
    rows = [line for line in markdown if line.startswith("| ")]
    if rows:
        assert markdown[:2] == header
        rows = rows[1:]
    assert re.match(r"(OK|WARNING|CRITICAL|UNKNOWN): \*\*\d+ checks?", markdown[-1]), markdown
    names["markdown"] = [row.split(" | ")[1] for row in rows]

    lines = stdout.splitlines()
    assert lines, "no Nagios output"
    if len(lines) > 1 or "checks:" in lines[0]:
        assert re.match(r"ANYPROBE (OK|WARNING|CRITICAL|UNKNOWN): \d+ checks?: ", lines[0]), lines
        rows = [re.match(r"(.+?) (OK|WARNING|CRITICAL|UNKNOWN): ", line) for line in lines[1:]]
        assert all(rows), lines
        names["nagios"] = [row.group(1) for row in rows if row]
    else:  # one check, all finished: the classic one-line output
        names["nagios"] = ["?"]
    return names


@pytest.mark.parametrize(
    ("signum", "backend", "delay"),
    SCHEDULE,
    ids=[f"{s.name}-{b}-{d}s" for s, b, d in SCHEDULE],
)
def test_signal_at_a_random_moment_leaves_every_report_complete_and_valid(
    tmp_path: Path, farm: Callable[..., Farm], signum: signal.Signals, backend: str, delay: float
) -> None:
    server = farm("127.0.0.1")
    port = server.http["127.0.0.1"]
    # Answers take 0.1 to 1.5 s: results finish all along the ~4 s run.
    waits = random.Random(delay).sample(range(100, 1500, 40), TARGETS)
    urls = [f"http://127.0.0.1:{port}/delay/{ms}" for ms in waits]
    command = anyprobe_command(
        "check", "--backend", backend, "-c", str(CONCURRENCY), "-t", "30", "--no-progress",
        "-r", f"jsonl={tmp_path / 'r.jsonl'}", "-r", f"junit={tmp_path / 'r.xml'}",
        "-r", f"prometheus={tmp_path / 'r.prom'}", "-r", f"csv={tmp_path / 'r.csv'}",
        "-r", f"markdown={tmp_path / 'r.md'}", "-r", "nagios", *urls,
    )  # fmt: skip
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env()
    )
    try:
        server.wait_for_first_request()
        time.sleep(delay)
        if proc.poll() is None:
            os.kill(proc.pid, signum)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    assert "Traceback" not in stderr, stderr
    interrupted = re.search(
        r"interrupted by (\w+): (\d+) results reported, (\d+) not finished", stderr
    )
    if proc.returncode in (0, 1, 2):
        # The run ended before the signal arrived: everything is reported.
        assert interrupted is None, stderr
        finished = TARGETS
    else:
        assert proc.returncode == EXIT[signum], stderr
        assert interrupted is not None, stderr
        assert interrupted.group(1) == signum.name
        finished = int(interrupted.group(2))
        assert finished + int(interrupted.group(3)) == TARGETS

    names = read_reports(tmp_path, stdout)
    expected = sorted(names["jsonl"])
    assert len(expected) == finished
    assert set(expected) <= set(urls)
    for reporter, found in names.items():
        if reporter == "nagios" and found == ["?"]:
            assert finished == 1
            continue
        assert sorted(found) == expected, reporter
    # Atomic writers leave no temporary file behind.
    assert sorted(os.listdir(tmp_path)) == ["r.csv", "r.jsonl", "r.md", "r.prom", "r.xml"]
