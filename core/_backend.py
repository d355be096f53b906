"""The anyio backend a program runs on: which one runs now, and whether the
one asked for is installed."""

from __future__ import annotations

from ._errors import UsageError


def require_backend(backend: str) -> None:
    """One clear line, not a traceback, when the backend's package is missing."""
    if backend == "trio":
        try:
            import trio  # noqa: F401
        except ImportError:
            raise UsageError(
                "--backend trio needs the trio package (pip install 'anyprobe[trio]')"
            ) from None


def running_on_trio() -> bool:
    """Whether the running event loop is trio's (False outside any loop)."""
    try:
        import sniffio
    except ImportError:  # trio needs sniffio: without it, this is asyncio
        return False
    return bool(sniffio.current_async_library() == "trio")
