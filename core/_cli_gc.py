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

During the run the youngest generation is collected ten times less often
than Python's default (every 7,000 net allocations, not 700): a check leaves
no reference cycle behind, so a collection finds next to nothing to free and
its cost was the objects of the checks in flight, walked again and again
(``serve`` under load spent 5% of its CPU there). ``serve`` freezes once more
when its HTTP server is ready (:func:`settle`), after the imports that start-up
did not do, so that full collections do not walk the server's modules either.
"""

from __future__ import annotations

import gc

#: True while the collector is held off by :func:`hold_collector`.
_held = False
#: True once the console script holds the collector: :func:`settle` freezes then.
_managed = False
#: The youngest generation's threshold during a run (Python's default: 700).
YOUNG_THRESHOLD = 7_000


def hold_collector() -> None:
    """Hold the collector off for start-up (unless something else turned it off)."""
    global _held, _managed
    if gc.isenabled():
        gc.disable()
        _held = _managed = True


def start_collecting() -> None:
    """Start-up is over: what it built is frozen, and the collector runs again."""
    global _held
    if _held:
        _held = False
        gc.freeze()
        _young, older, oldest = gc.get_threshold()
        gc.set_threshold(YOUNG_THRESHOLD, older, oldest)
        gc.enable()


def settle() -> None:
    """A long-running command's set-up is over: freeze what it built
    (nothing happens unless the console script holds the collector)."""
    if _managed:
        gc.freeze()


def leave_objects_to_exit() -> None:
    """The process is about to exit: no collection walks its objects again."""
    start_collecting()
    gc.freeze()
