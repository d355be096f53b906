"""The garbage collector in the console script's process (issue 18: cold start).

Start-up (imports, plugins, targets) creates objects that live until the exit
and frees few: a collection then only costs time. The console script holds
the collector off until the run starts (:func:`start_collecting`, called by
the CLI where its checks or ``serve`` begin), then freezes what start-up
built, so that the run's collections never walk it again. At the exit, the
interpreter tears down every module while the collector walks every object,
which costs a one-check run nearly as much as its check:
:func:`leave_objects_to_exit` freezes them all first, and the exit frees the
memory anyway. Only ``main()`` called as the console script does any of this,
never a program or a test that calls ``main(args)`` and goes on.
"""

from __future__ import annotations

import gc

#: True while the collector is held off by :func:`hold_collector`.
_held = False


def hold_collector() -> None:
    """Hold the collector off for start-up (unless something else turned it off)."""
    global _held
    if gc.isenabled():
        gc.disable()
        _held = True


def start_collecting() -> None:
    """Start-up is over: what it built is frozen, and the collector runs again."""
    global _held
    if _held:
        _held = False
        gc.freeze()
        gc.enable()


def leave_objects_to_exit() -> None:
    """The process is about to exit: no collection walks its objects again."""
    start_collecting()
    gc.freeze()
