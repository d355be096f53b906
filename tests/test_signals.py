"""SIGINT and SIGTERM mid-run: every finished result is reported, files stay valid."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@pytest.mark.parametrize(("signum", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_mid_run_reports_every_finished_result(
    tmp_path: Path,
    backend: str,
    signum: signal.Signals,
    status: int,
    listening_port: int,
    blackhole_port: int,
) -> None:
    out = tmp_path / "results.jsonl"
    fast = [f"tcp://127.0.0.1:{listening_port}/{i}" for i in range(5)]
    hanging = [f"tcp://127.0.0.1:{blackhole_port}/{i}" for i in range(20)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "anyprobe", "check", "--backend", backend, "-t", "60",
         "-c", "10", "-r", f"jsonl={out}", "-r", "table", *fast, *hanging],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if out.exists() and len(out.read_text().splitlines()) >= len(fast):
                break
            time.sleep(0.05)
        else:
            pytest.fail("the fast checks never reached the JSON Lines file")
        os.kill(proc.pid, signum)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == status, stderr
    assert "Traceback" not in stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert out.read_text().endswith("\n")
    assert len(records) == len(fast)
    assert {r["status"] for r in records} == {"ok"}
    assert f"interrupted by {signum.name}: 5 results reported, 20 not finished" in stderr
    # The table reporter printed what finished, too.
    assert stdout.count("OK") == len(fast)
    assert "not finished" in stdout
