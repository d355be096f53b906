"""Shared fixtures: every async test runs on asyncio and on trio."""

from __future__ import annotations

import pytest

from anyprobe import PluginManager

pytest_plugins = ["tests.servers"]


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def manager() -> PluginManager:
    """A fresh plugin manager with anyprobe's own plugins (no third-party ones)."""
    manager = PluginManager()
    manager.load_entrypoints(autoload=False)
    return manager


@pytest.fixture(params=["h11", "httptools"])
def http_parser(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The HTTP probe's HTTP/1.1 parser, forced through ANYPROBE_HTTP_PARSER:
    the HTTP suites run with each (httptools is skipped where not installed)."""
    if request.param == "httptools":
        pytest.importorskip("httptools")
    monkeypatch.setenv("ANYPROBE_HTTP_PARSER", str(request.param))
    return str(request.param)
