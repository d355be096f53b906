"""Loopback servers the tests start: each fixture binds an ephemeral port on
127.0.0.1 (or ::1) and stops its server at teardown.

Every module of this package lists its fixtures in ``__all__``; they are all
made available to every test through ``pytest_plugins`` in ``tests/conftest.py``.
"""

from __future__ import annotations

import importlib
import pkgutil

for _module_info in pkgutil.iter_modules(__path__):
    _module = importlib.import_module(f"{__name__}.{_module_info.name}")
    for _name in getattr(_module, "__all__", ()):
        globals()[_name] = getattr(_module, _name)
