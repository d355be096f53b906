"""Loopback servers the tests start: each fixture binds an ephemeral port on
127.0.0.1 and stops its server at teardown.

Fixtures from the modules of this package are made available to every test
through ``pytest_plugins`` in ``tests/conftest.py``.
"""

from __future__ import annotations

from .tcp import *  # noqa: F403
