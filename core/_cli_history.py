"""``anyprobe history``: uptime, incidents and latency of the checks, read from the store.

::

    anyprobe history --config monitor.toml --since 7d
    anyprobe history api db --store postgresql://anyprobe@db/anyprobe --since 24h --json

It reads the store ``anyprobe serve`` writes (the config's ``[store]``, or
its default SQLite file beside the config), so scripts and CI can read the
history without the server.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from ._errors import UsageError, did_you_mean
from ._model import Status

if TYPE_CHECKING:
    from ._manager import PluginManager
    from ._store_sql import SqlStore

__all__ = ["CheckHistory", "history_main", "parse_since"]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
#: The longest period asked for: the rollups' default life and then some.
MAX_SINCE = 10 * 366 * 86400
_STYLES = {
    Status.OK: "green",
    Status.WARNING: "yellow",
    Status.CRITICAL: "red",
    Status.UNKNOWN: "magenta",
}


def parse_since(text: str) -> float:
    """``30m``, ``24h``, ``7d``, ``2w`` (or ``90s``) as seconds; UsageError otherwise."""
    found = _DURATION.match(text)
    seconds = float(found.group(1)) * _UNITS[found.group(2).lower()] if found else 0.0
    if not found or not 0 < seconds <= MAX_SINCE:
        raise UsageError(
            f"--since {text!r}: expected a period like 30m, 24h, 7d or 2w (at most 10 years)"
        )
    return seconds


@dataclass(frozen=True)
class CheckHistory:
    """One check's history over the period asked for."""

    name: str
    results: int
    uptime: float | None
    incidents: int
    p50: float | None
    p95: float | None
    p99: float | None
    status: Status | None
    last: float | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "results": self.results,
            "uptime": self.uptime,
            "incidents": self.incidents,
            "latency": {"p50": self.p50, "p95": self.p95, "p99": self.p99},
            "status": self.status.value if self.status else None,
            "last": _iso(self.last) if self.last is not None else None,
        }


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat()


def _open(
    manager: PluginManager, config_path: str | None, store_url: str | None
) -> tuple[SqlStore, list[str]]:
    """The store to read and the checks the config names (none with --store)."""
    from ._store_backends import SQLiteConnector, open_store

    if (config_path is None) == (store_url is None):
        raise UsageError("anyprobe history needs --config FILE or --store URL (one of them)")
    if store_url is not None:
        try:
            store = open_store(store_url, Path.cwd())
        except ValueError as exc:
            raise UsageError(f"--store: {exc}") from None
        names: list[str] = []
    else:
        assert config_path is not None
        from ._serve_server import load_serve_config
        from ._store_config import configured_store

        config = load_serve_config(config_path, manager)
        table = config.serve.store if config.serve is not None else None
        found = configured_store(config, table)
        if found is None:
            raise UsageError(
                f"{config_path}: no history store (no scheduled [[check]], or [store] url = none)"
            )
        store = found
        names = [target.name for target in config.targets]
    connector = store.connector
    if isinstance(connector, SQLiteConnector) and not connector.path.exists():
        raise UsageError(f"no history yet: {connector.path} does not exist")
    return store, names


async def read_history(store: SqlStore, names: Sequence[str], since: float) -> list[CheckHistory]:
    """Each of ``names``' history since ``since`` (a Unix timestamp)."""
    latest = await store.latest()
    found = []
    for name in names:
        latency = await store.latency(name, since)
        incidents = await store.incidents(name, since, limit=1_000_000)
        record = latest.get(name)
        found.append(
            CheckHistory(
                name=name,
                results=latency.count,
                uptime=await store.uptime(name, since),
                incidents=len(incidents),
                p50=latency.p50,
                p95=latency.p95,
                p99=latency.p99,
                status=record.status if record else None,
                last=record.at if record else None,
            )
        )
    return found


def history_main(
    manager: PluginManager,
    names: Sequence[str],
    *,
    config_path: str | None,
    store_url: str | None,
    since: str,
    as_json: bool,
    backend: str = "asyncio",
    echo: Callable[[str], None] = print,
) -> int:
    """``anyprobe history``: exit 0 with the table (or JSON), 3 on bad input."""
    period = parse_since(since)
    store, configured = _open(manager, config_path, store_url)

    async def main() -> tuple[list[CheckHistory], list[str]]:
        try:
            stored = sorted(await store.latest())
            known = list(dict.fromkeys([*configured, *stored]))
            for name in names:
                if name not in known:
                    hint = did_you_mean(name, known)
                    shown = ", ".join(known[:20]) + (", ..." if len(known) > 20 else "")
                    raise UsageError(f"unknown check {name!r}{hint} (known: {shown or 'none'})")
            wanted = list(dict.fromkeys(names)) if names else known
            return await read_history(store, wanted, time.time() - period), wanted
        finally:
            await store.aclose()

    rows, _ = anyio.run(main, backend=backend)
    if as_json:
        echo(
            json.dumps(
                {
                    "since": _iso(time.time() - period),
                    "store": store.description,
                    "checks": [row.as_dict() for row in rows],
                },
                indent=2,
            )
        )
    else:
        echo(render(rows).rstrip("\n"))
    return 0


HEADERS = ("CHECK", "UPTIME", "INCIDENTS", "P50", "P95", "P99", "RESULTS", "LAST")


def _cells(row: CheckHistory) -> list[str]:
    def ms(value: float | None) -> str:
        if value is None:
            return "-"
        return f"{value * 1000:.1f} ms" if value < 0.1 else f"{value * 1000:.0f} ms"

    uptime = "-" if row.uptime is None else f"{row.uptime * 100:.2f}%"
    last = row.status.value if row.status else "-"
    return [
        row.name,
        uptime,
        str(row.incidents),
        ms(row.p50),
        ms(row.p95),
        ms(row.p99),
        str(row.results),
        last,
    ]


def render(rows: Sequence[CheckHistory]) -> str:
    """The table: rich (coloured) on a terminal, aligned plain text otherwise."""
    if not rows:
        return "no checks in the history\n"
    cells = [_cells(row) for row in rows]
    if not sys.stdout.isatty():
        widths = [max(len(HEADERS[i]), *(len(c[i]) for c in cells)) for i in range(len(HEADERS))]
        right = {1, 2, 3, 4, 5, 6}

        def line(values: Sequence[str]) -> str:
            parts = [
                value.rjust(widths[i]) if i in right else value.ljust(widths[i])
                for i, value in enumerate(values)
            ]
            return "  ".join(parts).rstrip()

        return "".join(f"{line(values)}\n" for values in [HEADERS, *cells])
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(box=None, header_style="bold", pad_edge=False)
    for i, header in enumerate(HEADERS):
        table.add_column(header, justify="left" if i in (0, 7) else "right", overflow="fold")
    for row, values in zip(rows, cells, strict=True):
        style = _STYLES.get(row.status, "") if row.status else ""
        table.add_row(*[Text(v) for v in values[:-1]], Text(values[-1], style=style))
    console = Console(file=sys.stdout, highlight=False)
    with console.capture() as capture:
        console.print(table)
    return capture.get()
