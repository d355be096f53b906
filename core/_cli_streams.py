"""Standard streams the process started with closed (``>&-``, ``<&-``)."""

from __future__ import annotations

import errno
import io
import os
import sys


class _ClosedOutput(io.TextIOBase):
    """Standard output when the process started with it closed (``>&-``):
    writing fails as on a closed descriptor, so a reporter fails in one line."""

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        raise OSError(errno.EBADF, "standard output is closed")

    def write(self, text: str) -> int:
        raise OSError(errno.EBADF, "standard output is closed")


def replace_closed_streams() -> None:
    """Python sets a standard stream it found closed to None; stdin then reads
    as empty and stdout fails on write. The closed descriptor itself is taken
    by /dev/null, so that no socket the run opens gets number 0, 1 or 2 (an
    event loop such as uvloop refuses to close those)."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            taken = os.open(os.devnull, os.O_RDWR)  # the lowest free number: fd
            if taken != fd:
                os.dup2(taken, fd)
                os.close(taken)
    if sys.stdin is None:
        sys.stdin = open(os.devnull, encoding="utf-8")  # noqa: SIM115 (for the process)
    if sys.stdout is None:
        sys.stdout = _ClosedOutput()
