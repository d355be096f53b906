"""Fixtures of the reliability suite; the loopback servers of ``tests.servers`` are
available too (through ``tests/conftest.py``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Farm:
    """A running ``tests.reliability.farm`` process: its ports by address."""

    process: subprocess.Popen[str]
    http: dict[str, int]
    tcp: dict[str, int]
    _first_request_seen: bool = field(default=False)

    def wait_for_first_request(self) -> None:
        """Block until the farm has received its first HTTP request."""
        assert self.process.stderr is not None
        if not self._first_request_seen:
            line = self.process.stderr.readline()
            assert line.strip() == "request", line
            self._first_request_seen = True


@pytest.fixture
def farm() -> Iterator[Callable[..., Farm]]:
    """Start farms on the given loopback addresses: ``farm("127.0.0.1", "127.0.0.2")``."""
    started: list[Farm] = []

    def start(*addresses: str) -> Farm:
        assert all(a.startswith("127.") for a in addresses)
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.reliability.farm", *addresses],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert process.stdout is not None
        ports = json.loads(process.stdout.readline())
        running = Farm(process, ports["http"], ports["tcp"])
        started.append(running)
        return running

    yield start
    for running in started:
        assert running.process.stdin is not None
        running.process.stdin.close()
        try:
            running.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            running.process.kill()
            running.process.wait()


def anyprobe_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "anyprobe", *args]


def clean_env(**extra: str) -> dict[str, str]:
    """The environment of a CLI subprocess: no third-party plugin autoload, wide output."""
    env = {k: v for k, v in os.environ.items() if k != "ANYPROBE_LOAD_PLUGINS"}
    env.update({"COLUMNS": "200", "PYTHONUNBUFFERED": "1", **extra})
    return env
