"""A pytest plugin for people who write anyprobe plugins (``pytest11`` entry point).

Fixtures:

- ``anyprobe_manager``: a fresh :class:`~anyprobe.PluginManager` with
  anyprobe's own plugins loaded; register yours with ``.register(module)``.
- ``anyprobe_run``: an async function that runs targets through the real
  scheduler and returns the results, e.g.
  ``results = await anyprobe_run(["echo://127.0.0.1:7"], manager=anyprobe_manager)``.

Async tests run on both backends when the ``anyio_backend`` fixture is
parametrised; see the plugin author guide.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import pytest

from .manager import PluginManager
from .model import Result


@pytest.fixture
def anyprobe_manager() -> PluginManager:
    """A plugin manager of its own for each test, with anyprobe's plugins loaded."""
    manager = PluginManager()
    manager.load_entrypoints(autoload=False)
    return manager


@pytest.fixture
def anyprobe_run(
    anyprobe_manager: PluginManager,
) -> Callable[..., Awaitable[list[Result]]]:
    """Run targets through the real scheduler; returns every result."""
    from .api import check

    async def run(targets: Iterable[str], **kwargs: Any) -> list[Result]:
        kwargs.setdefault("manager", anyprobe_manager)
        return await check(targets, **kwargs)

    return run
