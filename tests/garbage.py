"""What a piece of work leaves to the cyclic garbage collector.

A check or a served request that builds a reference cycle is freed only by a
collection, and a long run pays for every collection that walks it. These
helpers run the work with the collector off and list what is left in cycles.
"""

from __future__ import annotations

import gc
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def cycles_left() -> Iterator[Counter[str]]:
    """Run the block with the collector off; afterwards the counter holds, by
    type name, every object the block left unreachable in a reference cycle."""
    left: Counter[str] = Counter()
    was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        yield left
        gc.collect()
        left.update(type(thing).__name__ for thing in gc.garbage)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        if was_enabled:
            gc.enable()
