"""Whether any installed package may declare an entry point of a group, read
cheaply: one directory listing per ``sys.path`` entry.

``importlib.metadata.entry_points()`` imports ``email``, ``csv`` and more and
parses every installed distribution's metadata: at a cold start that costs
more than a ``tcp://`` check. Most environments have no third-party anyprobe
plugin; this scan says so without importlib.metadata, reading the
``entry_points.txt`` files of the ``*.dist-info`` and ``*.egg-info``
directories that the standard path finder reads. Wherever it cannot be sure
(a zip or egg on the path, another finder that lists distributions, an
unreadable file) it answers "maybe", and the caller asks importlib.metadata.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable


def only_known_entry_points(group: str, known: Callable[[str, str], bool]) -> bool:
    """True when every entry point of ``group`` installed on ``sys.path`` is
    one that ``known(name, module)`` accepts (or there is none); False when
    another may exist."""
    import importlib.machinery

    for finder in sys.meta_path:
        if finder is not importlib.machinery.PathFinder and hasattr(finder, "find_distributions"):
            return False
    for entry in sys.path:
        path = entry or "."
        if entry.endswith(".egg") or os.path.isfile(path):
            return False
        try:
            listing = os.scandir(path)
        except OSError:
            continue  # importlib.metadata finds nothing there either
        with listing:
            for item in listing:
                if not item.name.endswith((".dist-info", ".egg-info")):
                    continue
                try:
                    with open(os.path.join(item.path, "entry_points.txt"), "rb") as file:
                        data = file.read()
                except FileNotFoundError:
                    continue
                except OSError:
                    return False
                if group.encode() in data and not _all_known(data, group, known):
                    return False
    return True


def _all_known(data: bytes, group: str, known: Callable[[str, str], bool]) -> bool:
    """Whether each entry point of section ``[group]`` of an entry_points.txt is known."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    section = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1].strip()
            continue
        if section != group:
            continue
        name, eq, value = line.partition("=")
        if not eq:
            return False
        module = value.partition(":")[0].partition("[")[0].strip()
        if not known(name.strip(), module):
            return False
    return True
