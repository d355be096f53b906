"""The event loop a program runs on: the ``--backend`` names, which one runs
now, and whether the one asked for is installed.

``--backend`` takes ``auto`` (the default: asyncio on uvloop when uvloop is
installed, plain asyncio otherwise), ``asyncio`` (plain asyncio, whatever is
installed), ``uvloop`` (asyncio on uvloop; an error without it) or ``trio``.
uvloop comes with ``pip install 'anyprobe[speedups]'``. The choice is made per
run: anyio creates the loop, and no process-wide event-loop policy is set.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import Any

from ._errors import UsageError

#: The values ``--backend`` takes.
BACKENDS = ("auto", "asyncio", "uvloop", "trio")


def uvloop_available() -> bool:
    """Whether uvloop can be imported here (never on Windows)."""
    return importlib.util.find_spec("uvloop") is not None


def resolve_backend(backend: str) -> str:
    """The loop ``backend`` means here: ``asyncio``, ``uvloop`` or ``trio``
    (``auto`` is uvloop when installed). One clear line, not a traceback,
    when the one asked for is missing."""
    if backend == "auto":
        return "uvloop" if uvloop_available() else "asyncio"
    if backend == "trio":
        try:
            import trio  # noqa: F401
        except ImportError:
            raise UsageError(
                "--backend trio needs the trio package (pip install 'anyprobe[trio]')"
            ) from None
    elif backend == "uvloop":
        if not uvloop_available():
            raise UsageError(
                "--backend uvloop needs the uvloop package (pip install 'anyprobe[speedups]')"
            )
    elif backend != "asyncio":
        raise UsageError(f"--backend {backend!r}: expected one of {', '.join(BACKENDS)}")
    return backend


def require_backend(backend: str) -> None:
    """Raise UsageError (one line) when ``backend``'s package is missing."""
    resolve_backend(backend)


def run(main: Callable[[], Any], backend: str) -> Any:
    """``anyio.run(main)`` on the loop ``backend`` names (see :func:`resolve_backend`)."""
    import anyio

    loop = resolve_backend(backend)
    if loop == "trio":
        return anyio.run(main, backend="trio")
    return anyio.run(main, backend="asyncio", backend_options={"use_uvloop": loop == "uvloop"})


def running_loop_name() -> str | None:
    """The loop running this code: ``asyncio``, ``uvloop``, ``trio``, or None outside one."""
    import sniffio

    try:
        library = sniffio.current_async_library()
    except sniffio.AsyncLibraryNotFoundError:
        return None
    if library != "asyncio":
        return library
    import asyncio

    module = type(asyncio.get_running_loop()).__module__
    return "uvloop" if module.startswith("uvloop") else "asyncio"


def running_on_trio() -> bool:
    """Whether the running event loop is trio's (False outside any loop)."""
    try:
        import sniffio
    except ImportError:  # trio needs sniffio: without it, this is asyncio
        return False
    try:
        return bool(sniffio.current_async_library() == "trio")
    except sniffio.AsyncLibraryNotFoundError:
        return False
