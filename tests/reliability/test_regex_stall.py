"""No user pattern can stall a run: the verdict comes, -t holds, signals are handled.

Patterns run on RE2 (linear time), and a search or parse whose worst case is
large runs in a worker thread, abandoned when its check times out. The CLI
runs in a subprocess; ``timeout=`` of ``subprocess.run`` is a bound that turns
a hang into a failure, never an assertion on time.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from anyprobe import PluginManager
from anyprobe._serve import ProbeServer, bind, listening_url, load_serve_config, serve
from tests.reliability.conftest import anyprobe_command, clean_env
from tests.servers.bodies import SLOW_PATTERN, BodyServer

pytestmark = pytest.mark.slow

#: A bound on one CLI run: far more than any check of these tests may take.
HANG = 120


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        anyprobe_command(*args), capture_output=True, text=True, env=clean_env(), timeout=HANG
    )


def records(stdout: str) -> dict[str, dict[str, Any]]:
    found = {}
    for line in stdout.splitlines():
        record = json.loads(line)
        found[record["target"]] = record
    return found


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_dot_star_on_a_10_mib_body_gives_its_verdict(body_server: BodyServer, backend: str) -> None:
    proc = run_cli(
        "check", "--backend", backend, "-t", "3", "-r", "jsonl",
        "--set", "body_matches=.*ERROR", body_server.url("/big"),
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    [record] = records(proc.stdout).values()
    assert record["status"] == "critical"
    assert record["summary"] == "HTTP 200: body does not match '.*ERROR'"
    assert record["metrics"]["body_bytes"] == 10 * 1024 * 1024


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_catastrophic_pattern_on_a_big_body_is_ended_by_the_timeout(
    body_server: BodyServer, backend: str
) -> None:
    # The search of /noise takes many minutes: only -t ends the check, and the
    # abandoned search must not keep the process alive.
    proc = run_cli(
        "check", "--backend", backend, "-t", "2", "-r", "jsonl",
        "--set", f"body_matches={SLOW_PATTERN}",
        body_server.url("/noise"), body_server.url("/small"),
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    found = records(proc.stdout)
    slow = found[body_server.url("/noise")]
    assert slow["status"] == "critical"
    assert slow["summary"] == "timed out after 2 s"
    # The other check ran to its own verdict meanwhile.
    small = found[body_server.url("/small")]
    assert small["summary"].startswith("HTTP 200: body does not match")
    assert "blocked the event loop" not in proc.stderr


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_sigint_during_a_regex_heavy_run_reports_what_finished(
    body_server: BodyServer, backend: str, tmp_path: Path
) -> None:
    out = tmp_path / "results.jsonl"
    proc = subprocess.Popen(
        anyprobe_command(
            "check", "--backend", backend, "-t", "600", "-r", f"jsonl={out}",
            "--set", f"body_not_matches={SLOW_PATTERN}",
            body_server.url("/noise"), body_server.url("/small"),
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(),
    )  # fmt: skip
    try:
        deadline = time.monotonic() + HANG
        while not (out.exists() and out.read_text().endswith("\n")):
            if time.monotonic() > deadline or proc.poll() is not None:
                pytest.fail("the short check never reached the JSON Lines file")
            time.sleep(0.05)
        # The search of /noise is under way (its body was sent whole).
        assert body_server.wait_sent("/noise", HANG)
        os.kill(proc.pid, signal.SIGINT)
        _, stderr = proc.communicate(timeout=HANG)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    [record] = [json.loads(line) for line in out.read_text().splitlines()]
    assert record["target"] == body_server.url("/small")
    assert record["status"] == "ok"
    assert "interrupted by SIGINT: 1 results reported, 1 not finished" in stderr


@pytest.mark.anyio
async def test_serve_answers_healthy_while_a_catastrophic_probe_runs(
    body_server: BodyServer, tmp_path: Path
) -> None:
    manager = PluginManager()
    manager.load_entrypoints(autoload=False)
    config = tmp_path / "serve.toml"
    config.write_text(
        f'[module.slow]\nprobe = "http"\ntimeout = 30\nbody_matches = {json.dumps(SLOW_PATTERN)}\n'
    )
    server = ProbeServer(manager, load_serve_config(str(config), manager), config_path=str(config))
    sock = bind("127.0.0.1:0")
    url = listening_url(sock)
    shutdown = anyio.Event()
    probe_answer: list[httpx.Response] = []

    async def slow_probe(client: httpx.AsyncClient) -> None:
        response = await client.get(
            f"{url}/probe",
            params={"target": body_server.url("/noise-small"), "module": "slow"},
            headers={"X-Prometheus-Scrape-Timeout-Seconds": "3"},
        )
        probe_answer.append(response)

    async with (
        anyio.create_task_group() as tg,
        httpx.AsyncClient(timeout=HANG) as client,
    ):
        tg.start_soon(lambda: serve(server, [sock], shutdown=shutdown, grace=2))
        async with anyio.create_task_group() as probes:
            probes.start_soon(slow_probe, client)
            # Once the body is sent whole, the probe is searching it (for seconds
            # past the probe's timeout: the search of this test process ends soon).
            sent = await anyio.to_thread.run_sync(body_server.wait_sent, "/noise-small", HANG)
            assert sent
            healthy = await client.get(f"{url}/-/healthy")
            assert not probe_answer, "the probe ended before /-/healthy was answered"
            searching = [t for t in threading.enumerate() if t.name == "anyprobe-off-loop"]
            assert searching, "the search did not run in a worker thread"
        shutdown.set()
    assert healthy.status_code == 200
    assert healthy.text == "Healthy\n"
    [answer] = probe_answer
    assert answer.status_code == 200
    assert "probe_success 0" in answer.text


def test_threads_left_by_an_abandoned_search_do_not_hold_the_process() -> None:
    # off_loop's thread is a daemon: a computation abandoned at a timeout ends
    # with the process (anyio's worker threads would keep asyncio's alive).
    code = (
        "import anyio, threading, time\n"
        "import anyprobe\n"
        "release = threading.Event()\n"
        "async def main():\n"
        "    with anyio.move_on_after(0.1):\n"
        "        await anyprobe.off_loop(release.wait, work=anyprobe.OFF_LOOP_BYTES + 1)\n"
        "    print('abandoned', flush=True)\n"
        "anyio.run(main, backend='asyncio')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=HANG
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "abandoned\n"
