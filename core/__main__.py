"""``python -m anyprobe``."""

import signal

# Signals are handled from the first line: one that comes while the CLI is
# still being imported is kept and handled by main() (see cli._Signals).
_received: list[str] = []


def _keep(signum: int, frame: object) -> None:
    _received.append(signal.Signals(signum).name)


signal.signal(signal.SIGINT, _keep)
signal.signal(signal.SIGTERM, _keep)

from ._cli import main  # noqa: E402

main(pending_signals=_received)
