"""``anyprobe serve`` as a process: SIGTERM while probes are in flight exits 0."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.servers.serve import BACKEND_SERVERS, SilentTarget

#: Longest the server process may take to start or to stop.
PROCESS_LIMIT = 60.0

pytestmark = pytest.mark.slow


@contextmanager
def serve_process(
    backend: str, server: str, *args: str
) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """``anyprobe serve`` on an ephemeral loopback port; yields the process and its URL."""
    command = [sys.executable, "-m", "anyprobe", "serve", "--listen", "127.0.0.1:0"]
    process = subprocess.Popen(
        [*command, "--backend", backend, "--server", server, *args],
        env={**os.environ, "ANYPROBE_LOAD_PLUGINS": ""},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        line = process.stderr.readline()  # the first line says where it listens
        match = re.search(r"serving on (http://\S+)", line)
        assert match, line
        yield process, match.group(1)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(PROCESS_LIMIT)


def _probe_in_thread(url: str, params: dict[str, str], headers: dict[str, str]) -> list[object]:
    """Start a /probe request in a thread; the list gets its response or exception."""
    outcome: list[object] = []

    def request() -> None:
        try:
            outcome.append(httpx.get(f"{url}/probe", params=params, headers=headers, timeout=60))
        except httpx.HTTPError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=request)
    thread.start()
    outcome.append(thread)
    return outcome


@pytest.mark.parametrize(("backend", "server"), BACKEND_SERVERS)
def test_sigterm_lets_in_flight_probes_finish_then_exits_0(
    backend: str, server: str, silent_target: SilentTarget
) -> None:
    with serve_process(backend, server, "--grace", "20") as (process, url):
        # This probe times out after 1 s (1.5 s scrape timeout less 0.5 s): within the grace.
        pending = _probe_in_thread(
            url, {"target": silent_target.url}, {"X-Prometheus-Scrape-Timeout-Seconds": "1.5"}
        )
        assert silent_target.wait_connected()
        process.send_signal(signal.SIGTERM)
        assert process.wait(PROCESS_LIMIT) == 0
        thread = pending[0]
        assert isinstance(thread, threading.Thread)
        thread.join(PROCESS_LIMIT)
        response = pending[1]
        assert isinstance(response, httpx.Response), response
        assert response.status_code == 200
        assert "probe_success 0.0" in response.text
        assert process.stderr is not None
        assert "Traceback" not in process.stderr.read()


@pytest.mark.parametrize(("backend", "server"), BACKEND_SERVERS)
def test_sigterm_cancels_probes_past_the_grace_and_exits_0(
    backend: str, server: str, silent_target: SilentTarget, tmp_path: Path
) -> None:
    with serve_process(backend, server, "--grace", "0.5") as (process, url):
        # No scrape timeout, no module timeout: this probe would wait 120 s.
        pending = _probe_in_thread(url, {"target": silent_target.url}, {})
        assert silent_target.wait_connected()
        process.send_signal(signal.SIGTERM)
        assert process.wait(PROCESS_LIMIT) == 0
        thread = pending[0]
        assert isinstance(thread, threading.Thread)
        thread.join(PROCESS_LIMIT)
        assert not thread.is_alive()
        assert process.stderr is not None
        assert "Traceback" not in process.stderr.read()


@pytest.mark.parametrize(("backend", "server"), BACKEND_SERVERS)
def test_sighup_reloads_and_keeps_serving(backend: str, server: str, tmp_path: Path) -> None:
    config = tmp_path / "serve.toml"
    config.write_text('[module.first]\nprobe = "tcp"\n')
    with serve_process(backend, server, str(config)) as (process, url):
        assert "first" in httpx.get(f"{url}/-/help", timeout=30).text
        config.write_text('[module.second]\nprobe = "tcp"\n')
        process.send_signal(signal.SIGHUP)
        for _ in range(200):  # bounded: until the reload is visible
            index = httpx.get(f"{url}/-/help", timeout=30).text
            if "second" in index:
                break
            threading.Event().wait(0.05)
        assert "second" in index and "first" not in index
        process.send_signal(signal.SIGTERM)
        assert process.wait(PROCESS_LIMIT) == 0
