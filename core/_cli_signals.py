"""SIGINT and SIGTERM in the command line, from its first line to its exit."""

from __future__ import annotations

import signal
from typing import Any


class Interrupted(BaseException):
    """SIGINT or SIGTERM before any check ran (imports, plugins, targets)."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


class Signals:
    """SIGINT and SIGTERM from the moment the CLI starts.

    Before the run starts a signal stops the CLI at once (nothing has been
    checked, nothing is written); once it starts, signals are recorded and
    handed to the run, which reports what finished. The first signal decides
    the exit status.
    """

    def __init__(self) -> None:
        self.received: list[str] = []
        self.raising = True
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous = signal.signal(signum, self._handle)
            self._previous.setdefault(signum, previous)

    def uninstall(self) -> None:
        """The handlers from before :meth:`install` (``serve`` handles its own)."""
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)

    def _handle(self, signum: int, frame: object) -> None:
        self.received.append(signal.Signals(signum).name)
        if self.raising:
            self.raising = False  # a second signal must not interrupt the exit
            raise Interrupted(self.received[0])
