"""``--backend auto|asyncio|uvloop|trio``: which event loop a run gets."""

from __future__ import annotations

import importlib.util

import pytest

from anyprobe import _backend
from anyprobe._errors import UsageError
from tests.cli import anyprobe, assert_one_clear_line

needs_uvloop = pytest.mark.skipif(
    importlib.util.find_spec("uvloop") is None,
    reason="uvloop is not installed (anyprobe[speedups])",
)


async def _loop_name() -> str | None:
    return _backend.running_loop_name()


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_plain_backends_run_on_their_own_loop(backend: str) -> None:
    assert _backend.run(_loop_name, backend) == backend


@needs_uvloop
@pytest.mark.parametrize("backend", ["auto", "uvloop"])
def test_auto_and_uvloop_run_on_uvloop_when_installed(backend: str) -> None:
    assert _backend.run(_loop_name, backend) == "uvloop"


def test_asyncio_stays_plain_and_sets_no_policy_when_uvloop_is_installed() -> None:
    import asyncio

    policy = asyncio.get_event_loop_policy()
    assert _backend.run(_loop_name, "asyncio") == "asyncio"
    assert _backend.run(_loop_name, "auto") in ("asyncio", "uvloop")
    assert asyncio.get_event_loop_policy() is policy


def test_auto_falls_back_to_asyncio_and_uvloop_asked_for_is_one_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_backend, "uvloop_available", lambda: False)
    assert _backend.run(_loop_name, "auto") == "asyncio"
    with pytest.raises(UsageError, match=r"anyprobe\[speedups\]"):
        _backend.run(_loop_name, "uvloop")


@pytest.mark.parametrize("backend", ["auto", "asyncio", "uvloop", "trio"])
def test_cli_checks_on_every_backend(backend: str, listening_port: int, closed_port: int) -> None:
    if backend == "uvloop" and importlib.util.find_spec("uvloop") is None:
        pytest.skip("uvloop is not installed")
    proc = anyprobe(
        "check", "--backend", backend, f"tcp://127.0.0.1:{listening_port}",
        f"tcp://127.0.0.1:{closed_port}", "-r", "jsonl",
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout.count('"status": "ok"') == 1
    assert proc.stdout.count('"status": "critical"') == 1


def test_unknown_backend_is_one_clear_line() -> None:
    proc = anyprobe("check", "--backend", "uv", "tcp://127.0.0.1:1")
    assert_one_clear_line(proc, "--backend", "'uv' is not one of")


def test_version_says_which_loop_auto_runs_on() -> None:
    proc = anyprobe("--version", "-v")
    assert proc.returncode == 0
    expected = "uvloop" if _backend.uvloop_available() else "asyncio"
    assert f"--backend auto runs on: {expected}" in proc.stdout
    from anyprobe._serve_asgi import uvicorn_available

    server = "uvicorn " if uvicorn_available() else "builtin ("
    assert f"anyprobe serve --server auto runs on: {server}" in proc.stdout
    assert "builtin (" in proc.stdout.split("--server auto runs on:")[1].split("(asyncio),")[1]


def test_check_sync_refuses_an_unknown_backend() -> None:
    import anyprobe as api

    with pytest.raises(ValueError, match="backend must be one of"):
        api.check_sync(["tcp://127.0.0.1:1"], backend="uv")
