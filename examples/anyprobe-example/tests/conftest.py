"""Every async test runs on asyncio and trio; the plugins come from their entry points."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from anyprobe.testing import BACKENDS


@pytest.fixture(params=BACKENDS)
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def anyprobe_plugins() -> Sequence[object]:
    # Entry-point names, not modules: loading them proves the package declares them.
    return ["memcached", "tap"]
