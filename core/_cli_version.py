"""``anyprobe --version``: the version, and with ``-v`` the Python, the event
loops and the speed-ups installed."""

from __future__ import annotations

from typing import Any

import click

from . import __version__

#: Event-loop libraries ``--version -v`` reports: import name, what anyprobe does
#: with it, what to install when it is missing.
EVENT_LOOP_LIBRARIES = (
    ("anyio", "runs anyprobe on either loop", "anyprobe"),
    ("trio", "--backend trio", "anyprobe[trio]"),
    ("uvloop", "--backend uvloop, and --backend auto's choice", "anyprobe[speedups]"),
    (
        "httptools",
        "the HTTP/1.1 parser of the http probe and of serve's builtin server; h11 without it",
        "anyprobe[speedups]",
    ),
    ("hypercorn", "anyprobe serve --server hypercorn", "anyprobe[serve]"),
    ("uvicorn", "anyprobe serve's HTTP server on asyncio, with httptools", "anyprobe[speedups]"),
)


def version_lines(verbose: int) -> list[str]:
    """What ``--version`` prints; with ``-v`` also Python and the event loops available."""
    lines = [f"anyprobe, version {__version__}"]
    if verbose <= 0:
        return lines
    import importlib.metadata
    import importlib.util
    import platform

    lines.append(f"python {platform.python_version()} ({platform.python_implementation()})")
    from ._backend import resolve_backend

    lines.append("asyncio: built in (--backend asyncio)")
    for module, role, install in EVENT_LOOP_LIBRARIES:
        if importlib.util.find_spec(module) is None:
            lines.append(f"{module}: not installed ({role}; pip install '{install}')")
            continue
        try:
            version = importlib.metadata.version(module)
        except importlib.metadata.PackageNotFoundError:
            version = "installed"
        lines.append(f"{module}: {version} ({role})")
    lines.append(f"--backend auto runs on: {resolve_backend('auto')}")
    from ._serve_asgi import describe, resolve_server

    on_asyncio = describe(resolve_server("auto", trio=False))
    on_trio = describe(resolve_server("auto", trio=True))
    lines.append(f"anyprobe serve --server auto runs on: {on_asyncio} (asyncio), {on_trio} (trio)")
    return lines


class VersionOption(click.Option):
    """``-V/--version``, which reads ``-v`` wherever it is on the command line
    (click hands an eager option's callback only the options before it)."""

    def handle_parse_result(
        self, ctx: click.Context, opts: Any, args: list[str]
    ) -> tuple[Any, list[str]]:
        if opts.get(self.name) and not ctx.resilient_parsing:
            for line in version_lines(int(opts.get("verbose") or 0)):
                click.echo(line)
            ctx.exit()
        return super().handle_parse_result(ctx, opts, args)
