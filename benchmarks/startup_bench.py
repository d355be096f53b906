"""Start-up: ``anyprobe --help`` and a one-target ``anyprobe check`` against
``python -c "import anyio"``, best of N wall-clock runs each, interleaved.

    python benchmarks/startup_bench.py [--repeat 20] [--json]

The one-target check connects to a loopback listener this script opens. The
ratios are what count: the absolute times depend on the machine. ``python -c
pass`` is shown as the floor every command pays.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def commands(port: int) -> dict[str, list[str]]:
    # The console script next to this interpreter (a version manager's shim on PATH,
    # pyenv's say, would add its own start-up to every run).
    script = Path(sys.executable).parent / "anyprobe"
    anyprobe = str(script) if script.exists() else shutil.which("anyprobe")
    entry = [anyprobe] if anyprobe else [sys.executable, "-m", "anyprobe"]
    return {
        "python -c pass": [sys.executable, "-c", "pass"],
        'python -c "import anyio"': [sys.executable, "-c", "import anyio"],
        "anyprobe --help": [*entry, "--help"],
        "anyprobe check (one tcp target)": [
            *entry, "check", "--no-progress", f"tcp://127.0.0.1:{port}",
        ],
    }  # fmt: skip


def run(repeat: int) -> dict[str, Any]:
    with socket.create_server(("127.0.0.1", 0), backlog=128) as listener:
        port = listener.getsockname()[1]
        plan = commands(port)
        best = {name: float("inf") for name in plan}
        for _ in range(repeat):
            for name, command in plan.items():
                start = time.perf_counter()
                subprocess.run(
                    command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True
                )
                best[name] = min(best[name], time.perf_counter() - start)
    base = best['python -c "import anyio"']
    return {
        "repeat": repeat,
        "seconds": best,
        "ratio_to_import_anyio": {name: seconds / base for name, seconds in best.items()},
    }


def markdown(report: dict[str, Any]) -> str:
    lines = [
        f"Best of {report['repeat']} runs each, interleaved.",
        "",
        '| command | best wall time | x `python -c "import anyio"` |',
        "|---|---:|---:|",
    ]
    for name, seconds in report["seconds"].items():
        ratio = report["ratio_to_import_anyio"][name]
        lines.append(f"| `{name}` | {seconds * 1000:.0f} ms | {ratio:.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    report = run(args.repeat)
    print(json.dumps(report, indent=2) if args.json else markdown(report))


if __name__ == "__main__":
    main()
