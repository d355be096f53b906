"""Running the real ``anyprobe`` command in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping

ENV_DROP = ("ANYPROBE_LOAD_PLUGINS",)


def anyprobe(
    *args: str,
    input: str | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m anyprobe ARGS`` and return its status, stdout and stderr."""
    full_env = {k: v for k, v in os.environ.items() if k not in ENV_DROP}
    full_env.update(env or {})
    full_env.setdefault("COLUMNS", "200")
    return subprocess.run(
        [sys.executable, "-m", "anyprobe", *args],
        input=input,
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
    )


def assert_one_clear_line(proc: subprocess.CompletedProcess[str], *fragments: str) -> str:
    """Exit 3, nothing on stdout, one line on stderr containing every fragment."""
    assert proc.returncode == 3, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]
