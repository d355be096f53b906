"""The built-in SSH probe never imports asyncssh (a few hundred milliseconds) on
the event loop's thread: the first SSH check of a run would otherwise stall
every other check, and the watchdog would name it."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

PROGRAM = """
import sys, threading
import anyprobe

main_thread = threading.get_ident()
importing_threads = []

class Witness:  # a finder that finds nothing: it notes which thread imports asyncssh

    def find_spec(self, name, path=None, target=None):
        if name == "asyncssh":
            importing_threads.append(threading.get_ident())
        return None

sys.meta_path.insert(0, Witness())
results = anyprobe.check_sync(["ssh://alice@127.0.0.1:{port}"], backend={backend!r})
assert results[0].status is anyprobe.Status.CRITICAL, results
assert importing_threads, "asyncssh was not imported"
print("on the loop thread" if main_thread in importing_threads else "off the loop thread")
"""


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_first_ssh_check_imports_asyncssh_off_the_event_loop(
    backend: str, closed_port: int
) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", PROGRAM.format(port=closed_port, backend=backend)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "off the loop thread"
