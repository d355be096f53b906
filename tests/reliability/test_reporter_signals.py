"""Signals and reporters that do not finish, through the real ``anyprobe`` command.

- A second signal 20-50 ms after the first stops the reporters still
  writing: the exit status is the first signal's, one line says what was
  reported, and a report that was not finished never replaces the file that
  was there (a reporter from an installed plugin writes half a report and
  then waits forever, so the second signal always finds it writing).
- A signal while 100,000 targets are being read and validated ends the CLI
  with the signal's status and one line, no traceback, no half-written file.
- A reporter that never returns, or never reads, is stopped after
  ``--reporter-timeout`` and reported as failed (exit 3); one signal ends
  the wait.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import textwrap
import time
from pathlib import Path

import pytest

from .conftest import anyprobe_command, clean_env

pytestmark = pytest.mark.slow

EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143}

SLOW_PLUGIN = """
    import anyio
    import anyprobe


    class HangsAfterReading(anyprobe.Reporter[anyprobe.ReporterOptions]):
        name = "hangs_after_reading"

        async def report(self, results, ctx):
            async for _ in results:
                pass
            await anyio.sleep_forever()


    class NeverReads(anyprobe.Reporter[anyprobe.ReporterOptions]):
        name = "never_reads"

        async def report(self, results, ctx):
            await anyio.sleep_forever()


    class HalfWrites(anyprobe.Reporter[anyprobe.ReporterOptions]):
        name = "half_writes"

        async def report(self, results, ctx):
            rows = [result async for result in results]
            async with await anyprobe.OutputFile.open(self.options.path, atomic=True) as out:
                await out.write(f"{len(rows)} results, and then")
                await anyio.sleep_forever()


    @anyprobe.hookimpl
    def anyprobe_register_reporters(register):
        for reporter in (HangsAfterReading, NeverReads, HalfWrites):
            register(reporter)
"""


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A directory holding an installed distribution with the slow reporters."""
    site = tmp_path / "site"
    info = site / "anyprobe_slow-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: anyprobe-slow\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[anyprobe]\nslow = anyprobe_slow\n")
    (site / "anyprobe_slow.py").write_text(textwrap.dedent(SLOW_PLUGIN))
    return site


def start(args: list[str], site: Path | None = None) -> subprocess.Popen[str]:
    env = clean_env(PYTHONPATH=str(site), ANYPROBE_LOAD_PLUGINS="slow") if site else clean_env()
    return subprocess.Popen(
        anyprobe_command(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )


def wait_for_handler(proc: subprocess.Popen[str], signum: signal.Signals) -> None:
    """Wait until ``proc`` catches ``signum`` (its bit in /proc/PID/status
    SigCgt): before that, during the interpreter's own start, the signal's
    default action would kill it, which is not what a test of anyprobe asks."""
    bit = 1 << (signum - 1)
    status = Path(f"/proc/{proc.pid}/status")
    for _ in range(3000):  # 30 s at most
        if proc.poll() is not None:
            return
        for line in status.read_text().splitlines():
            if line.startswith("SigCgt:") and int(line.split()[1], 16) & bit:
                return
        time.sleep(0.01)
    pytest.fail(f"anyprobe never installed its {signum.name} handler")


def finish(proc: subprocess.Popen[str], timeout: float = 60) -> tuple[str, str]:
    try:
        return proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def wait_for_lines(path: Path, count: int, proc: subprocess.Popen[str]) -> None:
    """Until ``path`` holds ``count`` lines (a bounded wait: 30 s)."""
    for _ in range(600):
        if path.exists() and len(path.read_text().splitlines()) >= count:
            return
        if proc.poll() is not None:
            pytest.fail(f"anyprobe ended early: {proc.communicate()}")
        time.sleep(0.05)
    pytest.fail(f"{path.name} never got {count} lines")


GOOD = "an earlier, good report\n"


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@pytest.mark.parametrize(
    ("first", "second"),
    [
        (signal.SIGINT, signal.SIGINT),
        (signal.SIGTERM, signal.SIGINT),
        (signal.SIGINT, signal.SIGTERM),
    ],
    ids=["INT-INT", "TERM-INT", "INT-TERM"],
)
def test_a_second_signal_never_lets_an_unfinished_report_replace_a_file(
    tmp_path: Path,
    site: Path,
    backend: str,
    first: signal.Signals,
    second: signal.Signals,
    listening_port: int,
    blackhole_port: int,
) -> None:
    reports = tmp_path / "reports"
    reports.mkdir()
    files = {
        name: reports / f"r.{name}" for name in ("half_writes", "junit", "prometheus", "markdown")
    }
    for path in files.values():
        path.write_text(GOOD)
    progress = reports / "r.jsonl"
    fast = [f"tcp://127.0.0.1:{listening_port}/{i}" for i in range(5)]
    hanging = [f"tcp://127.0.0.1:{blackhole_port}/{i}" for i in range(20)]
    args = ["check", "--backend", backend, "-t", "60", "-c", "10", "--no-progress",
            "-r", f"jsonl={progress}", "-r", "nagios",
            *[arg for name, path in files.items() for arg in ("-r", f"{name}={path}")],
            *fast, *hanging]  # fmt: skip
    proc = start(args, site)
    try:
        wait_for_lines(progress, len(fast), proc)
        os.kill(proc.pid, first)
        time.sleep(random.uniform(0.02, 0.05))
        os.kill(proc.pid, second)
    finally:
        _stdout, stderr = finish(proc)

    assert "Traceback" not in stderr, stderr
    assert proc.returncode == EXIT[first], stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith(
        f"anyprobe: interrupted by {first.name}: 5 results reported, 20 not finished; "
        "not written (stopped before they finished, files left as they were): "
    ), lines[0]
    assert "half_writes" in lines[0]
    # The half-written report never replaced the good one.
    assert files["half_writes"].read_text() == GOOD
    # The others are the good file, or (when they finished in time) complete.
    for name in ("junit", "prometheus", "markdown"):
        text = files[name].read_text()
        if name in lines[0].rpartition(": ")[2].split(", "):
            assert text == GOOD, name
        else:
            assert text != GOOD and text.endswith("\n"), name
            assert all(url in text for url in fast) or name == "prometheus", name
    assert len([json.loads(line) for line in progress.read_text().splitlines()]) == 5
    assert sorted(os.listdir(reports)) == sorted([*(p.name for p in files.values()), "r.jsonl"])


#: (signal, backend, seconds after the start): a few of each.
_plan = random.Random(20261203)
EARLY = [
    (signum, backend, round(_plan.uniform(0.2, 1.5), 2))
    for signum in (signal.SIGINT, signal.SIGTERM)
    for backend in ("asyncio", "trio")
    for _ in range(2)
]


@pytest.mark.parametrize(
    ("signum", "backend", "delay"), EARLY, ids=[f"{s.name}-{b}-{d}s" for s, b, d in EARLY]
)
def test_a_signal_while_100000_targets_are_validated_ends_cleanly(
    tmp_path: Path, signum: signal.Signals, backend: str, delay: float, blackhole_port: int
) -> None:
    targets = tmp_path / "targets.txt"
    targets.write_text("".join(f"tcp://127.0.0.1:{blackhole_port}/{i}\n" for i in range(100_000)))
    reports = tmp_path / "reports"
    reports.mkdir()
    proc = start([
        "check", "--backend", backend, "-t", "60", "--no-progress", "-i", str(targets),
        "-r", f"jsonl={reports / 'r.jsonl'}", "-r", f"junit={reports / 'r.xml'}",
    ])  # fmt: skip
    try:
        wait_for_handler(proc, signum)
        time.sleep(delay)
        os.kill(proc.pid, signum)
    finally:
        _stdout, stderr = finish(proc)
    assert "Traceback" not in stderr, stderr
    assert proc.returncode == EXIT[signum], stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith(f"anyprobe: interrupted by {signum.name}"), lines[0]
    written = sorted(os.listdir(reports))
    if "before any check ran" in lines[0]:
        assert written == []
    else:  # the run had started: its reports are complete (no check finished)
        assert lines[0].endswith(": 0 results reported, 100000 not finished"), lines[0]
        assert written == ["r.jsonl", "r.xml"]
        assert (reports / "r.jsonl").read_text() == ""
        assert 'tests="0"' in (reports / "r.xml").read_text()


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@pytest.mark.parametrize(
    ("reporter", "targets", "failure"),
    [
        ("hangs_after_reading", 3, "did not finish within 1 s after the last result"),
        ("never_reads", 3, "did not finish within 1 s after the last result"),
        ("never_reads", 1100, "read no result for 1 s"),  # more than its buffer holds
    ],
)
def test_a_reporter_that_never_finishes_is_stopped_and_failed(
    tmp_path: Path,
    site: Path,
    backend: str,
    reporter: str,
    targets: int,
    failure: str,
    listening_port: int,
) -> None:
    out, xml = tmp_path / "r.jsonl", tmp_path / "r.xml"
    urls = [f"tcp://127.0.0.1:{listening_port}/{i}" for i in range(targets)]
    proc = start([
        "check", "--backend", backend, "--no-progress", "--reporter-timeout", "1",
        "-r", reporter, "-r", f"jsonl={out}", "-r", f"junit={xml}", *urls,
    ], site)  # fmt: skip
    _stdout, stderr = finish(proc, timeout=120)
    assert "Traceback" not in stderr, stderr
    assert proc.returncode == 3, stderr
    assert stderr.strip().splitlines() == [
        f"anyprobe: reporter {reporter} {failure} (reporter_timeout)"
    ]
    # The other reporters lost nothing.
    assert len(out.read_text().splitlines()) == targets
    assert f'tests="{targets}"' in xml.read_text()


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_one_signal_ends_the_wait_for_a_reporter_that_never_finishes(
    tmp_path: Path, site: Path, backend: str, signum: signal.Signals, listening_port: int
) -> None:
    out = tmp_path / "r.jsonl"
    urls = [f"tcp://127.0.0.1:{listening_port}/{i}" for i in range(3)]
    # The default reporter timeout is minutes: only the signal can end this run.
    proc = start(["check", "--backend", backend, "--no-progress", "-r", "hangs_after_reading",
                  "-r", f"jsonl={out}", *urls], site)  # fmt: skip
    try:
        wait_for_lines(out, len(urls), proc)
        os.kill(proc.pid, signum)
    finally:
        _stdout, stderr = finish(proc, timeout=60)
    assert "Traceback" not in stderr, stderr
    assert proc.returncode == EXIT[signum], stderr
    assert stderr.strip().splitlines() == [
        f"anyprobe: interrupted by {signum.name}: 3 results reported, 0 not finished; "
        "not written (stopped before they finished, files left as they were): hangs_after_reading"
    ]
    assert len(out.read_text().splitlines()) == 3
