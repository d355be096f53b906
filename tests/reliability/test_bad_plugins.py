"""Badly behaved third-party plugins, end to end through the ``anyprobe`` command.

An installed plugin (found through its entry point, as any third-party one)
brings probes that raise (an Exception, SystemExit, KeyboardInterrupt, a
BaseException of their own), hang, leak memory on every call (a bounded
amount), block the event loop with ``time.sleep`` inside their async check
(at once, or while other checks are waiting for their servers), and sleep in
worker threads (abandonable through ``ctx.run_sync``, or not). A run mixing
them with healthy TCP checks ends (the subprocess timeout is only a guard
against a hang), each bad check gets the verdict DESIGN.md promises, the
healthy checks are unaffected, and the blocking check is named in a warning
on stderr. Plugins whose options validator or ``validate_url`` has a bug are
one line naming the plugin.
"""

from __future__ import annotations

import json
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path

import anyio
import anyio.abc
import pytest

from tests.servers.banner import serve_tcp

from .conftest import anyprobe_command, clean_env

pytestmark = pytest.mark.slow

LEAK_CALLS = 40
LEAK_BYTES = 256 * 1024

BAD_PLUGIN = f"""
    import time
    from urllib.parse import SplitResult

    import anyio
    import anyio.to_thread
    import anyprobe
    import pydantic

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


    class BlocksLate(Base):
        # Blocks the loop once other checks are waiting for their servers.

        name = "blocks-late"
        schemes = ("blocks-late",)

        async def check(self, target, options, ctx):
            await anyio.sleep(0.3)
            with ctx.phase("compute"):
                time.sleep(1.5)
            return anyprobe.Outcome.ok("slept")


    class Halt(BaseException):
        pass


    class Exits(Base):
        name = "exits"
        schemes = ("exits",)

        async def check(self, target, options, ctx):
            with ctx.phase("cleanup"):
                raise SystemExit(4)


    class Interrupts(Base):
        name = "interrupts"
        schemes = ("interrupts",)

        async def check(self, target, options, ctx):
            raise KeyboardInterrupt


    class Halts(Base):
        name = "halts"
        schemes = ("halts",)

        async def check(self, target, options, ctx):
            raise Halt("stop everything")


    class Threads(Base):
        # A blocking call in a thread the deadline may abandon.

        name = "threads"
        schemes = ("threads",)

        async def check(self, target, options, ctx):
            with ctx.phase("thread"):
                await ctx.run_sync(time.sleep, 300)
            return anyprobe.Outcome.ok("slept in a thread")


    class RawThread(Base):
        # A blocking call in a thread its deadline cannot abandon.

        name = "rawthread"
        schemes = ("rawthread",)

        async def check(self, target, options, ctx):
            with ctx.phase("thread"):
                await anyio.to_thread.run_sync(time.sleep, 2)
            return anyprobe.Outcome.ok("slept in a thread")


    class BadOptions(anyprobe.ProbeOptions):
        @pydantic.model_validator(mode="after")
        def _check(self):
            raise TypeError("the validator has a bug")


    class BadValidator(Base):
        name = "badoptions"
        schemes = ("badoptions",)
        Options = BadOptions


    class BadUrl(Base):
        name = "badurl"
        schemes = ("badurl",)

        def validate_url(self, url, text):
            raise RuntimeError("validate_url has a bug")


    @anyprobe.hookimpl
    def anyprobe_register_probes(register):
        for probe in (
            Raises, Hangs, Leaks, Blocks, BlocksLate, Exits, Interrupts, Halts, Threads,
            RawThread, BadValidator, BadUrl,
        ):
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
    bad = [
        "raises://x",
        "hangs://x",
        "blocks://x",
        "exits://x",
        "interrupts://x",
        "halts://x",
        "threads://x",
        "rawthread://x",
    ]
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
    assert hung["error"]["phase"] == "wait"
    if hung["attempts"] == 1:
        assert hung["summary"] == "timed out after 1 s during wait"
    else:  # its first deadline passed while blocks://x held the loop: run again
        assert hung["summary"].startswith(
            "timed out after 1 s during wait (on attempt 2; attempt 1: timed out after 1 s "
            "during wait while check blocks://x (probe blocks) blocked the event loop for "
        ), hung["summary"]
        assert [a["status"] for a in hung["attempt_log"]] == ["unknown", "critical"]

    blocked = results["blocks://x"]
    assert blocked["status"] == "critical"
    assert "over the 1 s timeout, without yielding to the event loop" in blocked["summary"]
    warnings = [line for line in proc.stderr.splitlines() if "blocked the event loop" in line]
    assert len(warnings) == 1, proc.stderr
    assert "check blocks://x (probe blocks)" in warnings[0]
    assert "anyprobe_bad.py" in warnings[0]

    # A BaseException from a plugin costs only its own check.
    for url, raised_type, message in [
        ("exits://x", "SystemExit", "4"),
        ("interrupts://x", "KeyboardInterrupt", "KeyboardInterrupt"),
        ("halts://x", "Halt", "stop everything"),
    ]:
        probe = url.split(":")[0]
        assert results[url]["status"] == "unknown", results[url]
        assert results[url]["summary"] == f"probe {probe} raised {raised_type}: {message}"
        assert results[url]["error"]["type"] == raised_type
    assert results["exits://x"]["error"]["phase"] == "cleanup"

    # A thread started with ctx.run_sync is abandoned at the deadline (a
    # 300 s sleep would outlast the subprocess guard otherwise).
    threaded = results["threads://x"]
    assert threaded["status"] == "critical"
    # (rerun once when its first deadline passed while blocks://x held the loop)
    assert threaded["summary"].startswith("timed out after 1 s during thread"), threaded
    # A thread the deadline cannot abandon: late, and the summary says why.
    raw = results["rawthread://x"]
    assert raw["status"] == "critical"
    assert raw["summary"].startswith("took 2.")
    assert "over the 1 s timeout, waiting on work its deadline could not cancel" in raw["summary"]
    assert "without yielding" not in raw["summary"]

    assert all(results[url]["status"] == "ok" for url in healthy + leaking)
    leaked = sorted(int(results[url]["summary"].split()[1]) for url in leaking)
    assert leaked == list(range(1, LEAK_CALLS + 1))


@pytest.fixture
def slow_banner_port() -> Iterator[int]:
    """Sends its banner 0.6 s after a connection: checks wait on it meanwhile."""

    async def late_banner(stream: anyio.abc.SocketStream) -> None:
        await anyio.sleep(0.6)
        await stream.send(b"220 ready\r\n")

    with serve_tcp(late_banner) as port:
        yield port


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_a_check_blocking_the_loop_never_makes_waiting_checks_critical(
    tmp_path: Path, site: Path, backend: str, slow_banner_port: int
) -> None:
    # The healthy checks are waiting for their banner (0.6 s) when the
    # blocking check stalls the loop (from 0.3 s to 1.8 s), past their 1 s
    # deadline: that timeout is no verdict on them. They run again, and pass.
    healthy = [f"tcp://127.0.0.1:{slow_banner_port}/{i}" for i in range(6)]
    out = tmp_path / "r.jsonl"
    proc = subprocess.run(
        anyprobe_command(
            "check", "--backend", backend, "-t", "1", "-c", "8", "--no-progress",
            "--set", "expect=220", "-r", f"jsonl={out}", "blocks-late://x", *healthy,
        ),
        capture_output=True,
        text=True,
        env=clean_env(PYTHONPATH=str(site), ANYPROBE_LOAD_PLUGINS="bad"),
        timeout=120,
        check=False,
    )  # fmt: skip
    assert "Traceback" not in proc.stderr, proc.stderr
    results = {r["target"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert len(results) == 1 + len(healthy), proc.stderr
    blocker = results["blocks-late://x"]
    assert blocker["status"] == "critical"
    assert "without yielding to the event loop" in blocker["summary"]
    for url in healthy:
        result = results[url]
        assert result["status"] == "ok", result
        # A check whose first attempt the blocker stalled says so.
        for attempt in result.get("attempt_log", [])[:-1]:
            assert attempt["status"] == "unknown", attempt
            assert (
                "while check blocks-late://x (probe blocks-late) blocked the event loop"
                in (attempt["summary"])
            )
    assert proc.returncode == 2, proc.stderr  # the blocker's own critical


@pytest.mark.parametrize(
    ("target", "message"),
    [
        (
            "badoptions://x",
            "probe badoptions: options validation raised TypeError: the validator has a bug",
        ),
        ("badurl://x", "probe badurl validate_url raised RuntimeError: validate_url has a bug"),
    ],
)
def test_a_plugin_bug_at_validation_is_one_line_naming_the_plugin(
    site: Path, target: str, message: str
) -> None:
    proc = subprocess.run(
        anyprobe_command("check", "--no-progress", target),
        capture_output=True,
        text=True,
        env=clean_env(PYTHONPATH=str(site), ANYPROBE_LOAD_PLUGINS="bad"),
        timeout=60,
        check=False,
    )
    assert proc.returncode == 3, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert message in lines[0]
