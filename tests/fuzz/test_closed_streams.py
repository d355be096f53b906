"""Standard streams closed (``>&-``, ``<&-``) or full (``/dev/full``): one line
on stderr and exit 3, never a traceback."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

pytestmark = pytest.mark.slow


@pytest.fixture
def port() -> Iterator[int]:
    """A loopback listener: connections complete in the kernel's backlog."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield listener.getsockname()[1]


def anyprobe(redirect: str, *args: str) -> subprocess.CompletedProcess[str]:
    command = " ".join([sys.executable, "-m", "anyprobe", *args])
    return subprocess.run(
        ["bash", "-c", f"exec {command} {redirect}"],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        check=False,
    )


@pytest.mark.parametrize(
    ("redirect", "args"),
    [
        (">&-", ("check", "tcp://127.0.0.1:{port}")),
        (">&-", ("check", "-r", "jsonl=-", "tcp://127.0.0.1:{port}")),
        (">/dev/full", ("check", "tcp://127.0.0.1:{port}")),
        (">&-", ("schema",)),
        (">/dev/full", ("schema",)),
        (">/dev/full", ("--help",)),
        (">&-", ("plugins",)),
        ("<&-", ("check", "-i", "-")),
        ("<&-", ("run", "-")),
    ],
)
def test_closed_or_full_stream_is_one_line(port: int, redirect: str, args: tuple[str, ...]) -> None:
    done = anyprobe(redirect, *(arg.format(port=port) for arg in args))
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 3, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "standard output" in done.stderr or redirect == "<&-", done.stderr
