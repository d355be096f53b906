"""10,000 healthy loopback targets under ``ulimit -n 1024``: not one false critical.

The targets are HTTP and TCP URLs spread over four loopback addresses of one
server farm (distinct paths make them distinct targets). The run uses the
default settings, so the default concurrency and timeout must keep every
check within the open-file limit; asking for more concurrency than the limit
allows must lower it (with a warning) rather than fail healthy targets.
"""

from __future__ import annotations

import json
import resource
import subprocess
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import Farm, anyprobe_command, clean_env

pytestmark = pytest.mark.slow

TARGETS = 10_000
FILE_LIMIT = 1024
ADDRESSES = ("127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4")


def limit_open_files() -> None:
    """preexec_fn: the child starts with ``ulimit -n 1024`` (soft and hard)."""
    resource.setrlimit(resource.RLIMIT_NOFILE, (FILE_LIMIT, FILE_LIMIT))


def write_targets(path: Path, farm: Farm) -> None:
    lines = []
    for i in range(TARGETS):
        address = ADDRESSES[i % len(ADDRESSES)]
        if i % 2:
            lines.append(f"http://{address}:{farm.http[address]}/health/{i}")
        else:
            lines.append(f"tcp://{address}:{farm.tcp[address]}/{i}")
    path.write_text("\n".join(lines) + "\n")


def run_limited(tmp_path: Path, backend: str, *extra: str) -> tuple[Counter[str], list[str], str]:
    out = tmp_path / "results.jsonl"
    proc = subprocess.run(
        anyprobe_command(
            "check", "-i", str(tmp_path / "targets.txt"), "--backend", backend,
            "--no-progress", "-r", f"jsonl={out}", *extra,
        ),
        preexec_fn=limit_open_files,
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=240,
        check=False,
    )  # fmt: skip
    assert "Traceback" not in proc.stderr, proc.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == TARGETS
    assert len({r["target"] for r in records}) == TARGETS
    statuses = Counter(r["status"] for r in records)
    problems = [f"{r['target']}: {r['summary']}" for r in records if r["status"] != "ok"]
    assert proc.returncode == 0 or problems, proc.stderr
    return statuses, problems[:5], proc.stderr


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_ten_thousand_healthy_targets_with_default_settings_are_all_ok(
    tmp_path: Path, backend: str, farm: Callable[..., Farm]
) -> None:
    write_targets(tmp_path / "targets.txt", farm(*ADDRESSES))
    statuses, problems, _ = run_limited(tmp_path, backend)
    assert statuses == {"ok": TARGETS}, problems


def test_concurrency_over_the_file_limit_is_lowered_not_failed(
    tmp_path: Path, farm: Callable[..., Farm]
) -> None:
    """-c 5000 would need 10,000 sockets; under ulimit -n 1024 it is lowered."""
    write_targets(tmp_path / "targets.txt", farm(*ADDRESSES))
    statuses, problems, stderr = run_limited(tmp_path, "asyncio", "-c", "5000")
    assert statuses == {"ok": TARGETS}, problems
    assert "concurrency 5000 lowered to 480" in stderr
    assert "ulimit -n 1024" in stderr
