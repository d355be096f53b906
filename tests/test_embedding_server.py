"""The embedding guide's FastAPI route, served by a real server: uvicorn on
asyncio and hypercorn on trio, each in a process of its own on a loopback
socket the test opens and hands over."""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

APP = """
import os

import anyprobe
from fastapi import FastAPI

app = FastAPI()
manager = anyprobe.PluginManager()
manager.load_entrypoints()

DEPENDENCIES = os.environ["DEPENDENCIES"].split()


@app.get("/health/dependencies")
async def dependencies() -> dict[str, object]:
    results = await anyprobe.check(DEPENDENCIES, manager=manager, timeout=2, ordered=True)
    return {"status": results.summary.worst.value, "checks": [r.as_dict() for r in results]}


@app.get("/health/installed")
async def installed() -> dict[str, object]:
    # Without manager=: the call finds the installed plugins itself, off the loop.
    results = await anyprobe.check(DEPENDENCIES, timeout=2)
    return {"status": results.summary.worst.value, "total": results.summary.total}
"""

SERVERS = {
    "uvicorn-asyncio": ["-m", "uvicorn", "app:app", "--fd", "{fd}", "--log-level", "warning"],
    "hypercorn-trio": [
        "-m",
        "hypercorn",
        "app:app",
        "--worker-class",
        "trio",
        "--bind",
        "fd://{fd}",
    ],
}


@contextmanager
def serving(server: str, workdir: Path, dependencies: list[str]) -> Iterator[str]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    port = listener.getsockname()[1]
    args = [part.format(fd=listener.fileno()) for part in SERVERS[server]]
    proc = subprocess.Popen(
        [sys.executable, *args],
        cwd=workdir,
        env={**os.environ, "DEPENDENCIES": " ".join(dependencies)},
        pass_fds=[listener.fileno()],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    listener.close()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def get(url: str) -> httpx.Response:
    """GET, waiting (up to 30 s) while the server starts: the socket already
    accepts, so a request waits in its backlog until the app is up."""
    return httpx.get(url, timeout=30)


@pytest.mark.parametrize("server", sorted(SERVERS))
def test_fastapi_route_checks_dependencies_under_a_real_server(
    server: str, tmp_path: Path, listening_port: int, closed_port: int
) -> None:
    module = server.split("-")[0]
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed (pip install -e .[dev])")
    (tmp_path / "app.py").write_text(APP, encoding="utf-8")
    healthy = [f"tcp://127.0.0.1:{listening_port}", f"tcp://127.0.0.1:{listening_port}/2"]
    with serving(server, tmp_path, healthy) as base:
        response = get(f"{base}/health/dependencies")
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["status"] == "ok"
        assert [c["target"] for c in body["checks"]] == healthy
        response = get(f"{base}/health/installed")
        assert response.json() == {"status": "ok", "total": 2}
    failing = [f"tcp://127.0.0.1:{closed_port}"]
    with serving(server, tmp_path, failing) as base:
        body = get(f"{base}/health/dependencies").json()
        assert body["status"] == "critical"
        assert body["checks"][0]["summary"].startswith("connection refused")
