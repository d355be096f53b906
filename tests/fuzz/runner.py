"""Running one corpus case through the real CLI, with a hard time limit.

Each case gets its own directory, its own loopback *sentinel* listener (the
``{port}`` of the corpus: connections complete in the kernel's backlog and are
counted afterwards, so it needs no thread), and one ``python -m anyprobe``
process in its own session, killed with its children at :data:`HARD_LIMIT`.
The process's address space is capped so that a case that reads without end
(``-i /dev/zero``) fails fast instead of taking the machine's memory.
"""

from __future__ import annotations

import contextlib
import os
import re
import resource
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.fuzz.corpus import Case

#: Seconds one case may take, start-up included; past it the case "hung".
HARD_LIMIT = 20.0
#: Address-space cap of each anyprobe process.
MEMORY_LIMIT = 2 << 30
SERVING = re.compile(r"serving on (http://\S+)")


@dataclass
class Outcome:
    case: Case
    tmp: Path
    port: int
    returncode: int | None = None  # None: killed at HARD_LIMIT
    stdout: str = ""
    stderr: str = ""
    connections: int = 0
    http_status: int | None = None
    http_body: str = ""
    served: bool = False  # a serve case that started serving
    written: dict[str, bytes] = field(default_factory=dict)  # what reached each FIFO
    seconds: float = 0.0

    @property
    def hung(self) -> bool:
        return self.returncode is None

    def where(self) -> str:
        """The command and what it printed, for assertion messages."""
        status = f"killed after {HARD_LIMIT:.0f} s (hung)" if self.hung else self.returncode
        return (
            f"case {self.case.id}: anyprobe {' '.join(map(repr, self.args()))}\n"
            f"exit: {status}\nstdout: {self.stdout[-2000:]!r}\nstderr: {self.stderr[-3000:]!r}"
        )

    def fill(self, text: str) -> str:
        return text.replace("{tmp}", str(self.tmp)).replace("{port}", str(self.port))

    def args(self) -> list[str]:
        return [self.fill(arg) for arg in self.case.args]


def _fill_bytes(data: bytes, outcome: Outcome) -> bytes:
    return data.replace(b"{tmp}", bytes(outcome.tmp)).replace(b"{port}", b"%d" % outcome.port)


def _make_files(outcome: Outcome) -> dict[str, int]:
    """Create the case's files; return the FIFOs' read ends, opened before anyprobe runs."""
    fifos: dict[str, int] = {}
    for name, spec in outcome.case.files.items():
        path = outcome.tmp / name
        if isinstance(spec, str):
            path.write_bytes(outcome.fill(spec).encode())
        elif isinstance(spec, bytes):
            path.write_bytes(_fill_bytes(spec, outcome))
        elif "symlink" in spec:
            path.symlink_to(spec["symlink"])
        elif "fifo" in spec:
            os.mkfifo(path)
            # Non-blocking: the open does not wait for a writer, and a writer
            # finds a reader at once.
            fifos[name] = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        elif "device" in spec:
            null = os.stat("/dev/null").st_rdev
            os.mknod(path, 0o666 | stat.S_IFCHR, null)
        else:
            path.write_bytes(outcome.fill(spec["content"]).encode())
            path.chmod(spec["mode"])
    return fifos


def _drain(fd: int) -> bytes:
    chunks = []
    with contextlib.suppress(BlockingIOError):
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    return b"".join(chunks)


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANYPROBE_")}
    env["COLUMNS"] = "200"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def _start(outcome: Outcome) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [sys.executable, "-m", "anyprobe", *outcome.args()],
        stdin=subprocess.PIPE if outcome.case.stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=outcome.tmp,
        env=_env(),
        start_new_session=True,
        umask=0o022,
    )
    with contextlib.suppress(ProcessLookupError, OSError):
        resource.prlimit(process.pid, resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    return process


def _kill(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


def _stdin(case: Case, outcome: Outcome) -> bytes | None:
    if case.stdin is None:
        return None
    if isinstance(case.stdin, bytes):
        return _fill_bytes(case.stdin, outcome)
    return outcome.fill(case.stdin).encode()


def _run_command(outcome: Outcome, process: subprocess.Popen[bytes]) -> None:
    try:
        out, err = process.communicate(_stdin(outcome.case, outcome), timeout=HARD_LIMIT)
    except subprocess.TimeoutExpired:
        _kill(process)
        out, err = process.communicate()
    else:
        outcome.returncode = process.returncode
    outcome.stdout, outcome.stderr = (
        out.decode(errors="backslashreplace"),
        err.decode(errors="backslashreplace"),
    )


def _run_serve(outcome: Outcome, process: subprocess.Popen[bytes]) -> None:
    """Wait for "serving on URL", send the case's request, then stop the server."""
    assert process.stderr is not None and process.stdout is not None
    lines: list[bytes] = []
    found: list[str] = []
    ready = threading.Event()

    def read_stderr() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            lines.append(line)
            match = SERVING.search(line.decode(errors="replace"))
            if match and not found:
                found.append(match.group(1))
                ready.set()
        ready.set()

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    deadline = time.monotonic() + HARD_LIMIT
    ready.wait(HARD_LIMIT)
    if found and outcome.case.request is not None:
        url = found[0] + outcome.fill(outcome.case.request)
        try:
            with urllib.request.urlopen(url, timeout=max(1.0, deadline - time.monotonic())) as r:
                outcome.http_status, body = r.status, r.read()
        except urllib.error.HTTPError as error:
            outcome.http_status, body = error.code, error.read()
        except OSError as error:
            body = f"request failed: {error}".encode()
        outcome.http_body = body.decode(errors="backslashreplace")
    outcome.served = bool(found)
    if found:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(max(0.1, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        _kill(process)
        process.wait()
    else:
        outcome.returncode = process.returncode
    reader.join(5)
    outcome.stdout = process.stdout.read().decode(errors="backslashreplace")
    outcome.stderr = b"".join(lines).decode(errors="backslashreplace")


def run_case(case: Case, tmp: Path) -> Outcome:
    """Run ``case`` in the empty directory ``tmp`` and return what happened."""
    with socket.socket() as sentinel:
        sentinel.bind(("127.0.0.1", 0))
        sentinel.listen(128)
        outcome = Outcome(case, tmp, sentinel.getsockname()[1])
        fifos = _make_files(outcome)
        written: dict[str, list[bytes]] = {name: [] for name in fifos}
        started = time.monotonic()
        process = _start(outcome)
        try:
            if case.args[0] == "serve":
                _run_serve(outcome, process)
            else:
                _run_command(outcome, process)
        finally:
            _kill(process)
            outcome.seconds = time.monotonic() - started
            for name, fd in fifos.items():
                written[name].append(_drain(fd))
                os.close(fd)
        outcome.written = {name: b"".join(parts) for name, parts in written.items()}
        sentinel.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            while True:
                connection, _ = sentinel.accept()
                connection.close()
                outcome.connections += 1
    return outcome


def describe(outcome: Outcome, **extra: Any) -> str:
    return outcome.where() + "".join(f"\n{k}: {v}" for k, v in extra.items())
