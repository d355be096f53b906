"""Badly behaved third-party plugins, end to end through the ``anyprobe`` command.

An installed plugin (found through its entry point, as any third-party one)
brings four probes: one raises, one hangs, one leaks memory on every call
(a bounded amount) and one blocks the event loop with ``time.sleep`` inside
its async check. A run mixing them with healthy TCP checks ends (the
subprocess timeout is only a guard against a hang), each bad check gets the
verdict DESIGN.md promises, the healthy checks are unaffected, and the
blocking check is named in a warning on stderr.
"""

from __future__ import annotations

import json
import subprocess
import textwrap
from pathlib import Path

import pytest

from .conftest import anyprobe_command, clean_env

pytestmark = pytest.mark.slow

LEAK_CALLS = 40
LEAK_BYTES = 256 * 1024

BAD_PLUGIN = f"""
    import time
    from urllib.parse import SplitResult

    import anyio
    import anyprobe

    LEAKED = []


    class Base(anyprobe.Probe[anyprobe.ProbeOptions]):
        def validate_url(self, url: SplitResult, text: str):
            return url.hostname or "", None


    class Raises(Base):
        name = "raises"
        schemes = ("raises",)

        async def check(self, target, options, ctx):
            with ctx.phase("parse"):
                raise ZeroDivisionError("the plugin divided by zero")


    class Hangs(Base):
        name = "hangs"
        schemes = ("hangs",)

        async def check(self, target, options, ctx):
            with ctx.phase("wait"):
                await anyio.sleep_forever()


    class Leaks(Base):
        name = "leaks"
        schemes = ("leaks",)

        async def check(self, target, options, ctx):
            LEAKED.append(bytearray({LEAK_BYTES}))
            leaked = len(LEAKED)
            await anyio.lowlevel.checkpoint()
            return anyprobe.Outcome.ok(f"leaked {{leaked}} buffers")


    class Blocks(Base):
        name = "blocks"
        schemes = ("blocks",)

        async def check(self, target, options, ctx):
            with ctx.phase("compute"):
                time.sleep(1.5)
            return anyprobe.Outcome.ok("slept")


    @anyprobe.hookimpl
    def anyprobe_register_probes(register):
        for probe in (Raises, Hangs, Leaks, Blocks):
            register(probe)
"""


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A directory holding an installed distribution with the bad plugin."""
    site = tmp_path / "site"
    info = site / "anyprobe_bad-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: anyprobe-bad\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[anyprobe]\nbad = anyprobe_bad\n")
    (site / "anyprobe_bad.py").write_text(textwrap.dedent(BAD_PLUGIN))
    return site


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_raising_hanging_leaking_and_blocking_plugins_cannot_stop_a_run(
    tmp_path: Path, site: Path, backend: str, listening_port: int
) -> None:
    healthy = [f"tcp://127.0.0.1:{listening_port}/{i}" for i in range(10)]
    bad = ["raises://x", "hangs://x", "blocks://x"]
    leaking = [f"leaks://x/{i}" for i in range(LEAK_CALLS)]
    out = tmp_path / "r.jsonl"
    proc = subprocess.run(
        anyprobe_command(
            "check", "--backend", backend, "-t", "1", "-c", "8", "--no-progress",
            "-r", f"jsonl={out}", *bad, *healthy, *leaking,
        ),
        capture_output=True,
        text=True,
        env=clean_env(PYTHONPATH=str(site), ANYPROBE_LOAD_PLUGINS="bad"),
        timeout=120,
        check=False,
    )  # fmt: skip
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 3, proc.stderr  # the worst is unknown (the raising plugin)
    results = {r["target"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert len(results) == len(bad) + len(healthy) + len(leaking)

    raised = results["raises://x"]
    assert raised["status"] == "unknown"
    assert raised["summary"] == "probe raises raised ZeroDivisionError: the plugin divided by zero"
    assert raised["error"] == {
        "type": "ZeroDivisionError", "message": "the plugin divided by zero", "phase": "parse",
    }  # fmt: skip

    hung = results["hangs://x"]
    assert hung["status"] == "critical"
    assert hung["summary"] == "timed out after 1 s during wait"
    assert hung["error"]["phase"] == "wait"

    blocked = results["blocks://x"]
    assert blocked["status"] == "critical"
    assert "over the 1 s timeout, without yielding to the event loop" in blocked["summary"]
    warnings = [line for line in proc.stderr.splitlines() if "blocked the event loop" in line]
    assert len(warnings) == 1, proc.stderr
    assert "check blocks://x (probe blocks)" in warnings[0]
    assert "anyprobe_bad.py" in warnings[0]

    assert all(results[url]["status"] == "ok" for url in healthy + leaking)
    leaked = sorted(int(results[url]["summary"].split()[1]) for url in leaking)
    assert leaked == list(range(1, LEAK_CALLS + 1))
