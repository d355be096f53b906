"""The table reporter: every result sorted by latency, then a one-line summary.

Coloured with rich in a terminal; plain aligned text when stdout is a file or
a pipe, so it stays readable in CI logs and greppable.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import anyprobe

if TYPE_CHECKING:
    from anyprobe.plugins._table_options import TableOptions  # noqa: F401 - in a quoted base

STYLES = {
    anyprobe.Status.OK: "green",
    anyprobe.Status.WARNING: "yellow",
    anyprobe.Status.CRITICAL: "red",
    anyprobe.Status.UNKNOWN: "magenta",
}


class TableReporter(anyprobe.Reporter["TableOptions"]):
    """A table of every result, then the run summary."""

    name = "table"
    # A run that sets no table option imports no pydantic (see anyprobe.lazy_model).
    Options = anyprobe.lazy_model("anyprobe.plugins._table_options:TableOptions")
    option_defaults = {"path": None, "sort": "latency"}
    description = "A table sorted by latency (coloured in a terminal) and a summary line."

    async def report(self, results: anyprobe.ResultStream, ctx: anyprobe.ReportContext) -> None:
        rows = [result async for result in results]
        rows = sort_rows(rows, self.options.sort)
        if ctx.verbosity < 0:
            rows = [r for r in rows if r.status is not anyprobe.Status.OK]
        summary = ctx.summary.describe() if ctx.summary and ctx.verbosity >= 0 else None
        async with await anyprobe.OutputFile.open(self.options.path) as out:
            # The program's choice (anyprobe.Run(color=...)) first, else the output's kind.
            if ctx.color or (ctx.color is None and out.is_terminal):
                text = render_rich(rows, summary, explain=ctx.explain, force=bool(ctx.color))
            else:
                text = render_plain(rows, summary, explain=ctx.explain)
            await out.write(text)


def __getattr__(name: str) -> Any:
    if name == "TableOptions":  # still importable from here
        return TableReporter.Options
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def sort_rows(rows: list[anyprobe.Result], order: str) -> list[anyprobe.Result]:
    if order == "latency":
        return sorted(rows, key=lambda r: r.duration)
    if order == "status":
        return sorted(rows, key=lambda r: (-r.status.severity, r.duration))
    if order == "name":
        return sorted(rows, key=lambda r: r.name)
    return rows


def _cells(result: anyprobe.Result) -> list[str]:
    # Names, targets and summaries (which quote what servers sent) may hold
    # terminal escapes: show them, never let the terminal act on them.
    target = "" if result.target == result.name else anyprobe.escape_controls(result.target)
    return [
        result.status.value.upper(),
        anyprobe.escape_controls(result.name),
        target,
        f"{result.duration * 1000:.1f} ms",
        anyprobe.escape_controls(result.summary),
    ]


HEADERS = ["STATUS", "NAME", "TARGET", "LATENCY", "SUMMARY"]


def _trace_lines(result: anyprobe.Result) -> list[str]:
    """The ``--explain`` lines under a row: the trace, or each attempt's when
    the check made more than one (its status, duration and summary first)."""
    if not result.attempt_log:
        return _event_lines(result.trace)
    lines = []
    for number, attempt in enumerate(result.attempt_log, 1):
        lines.append(
            f"    attempt {number}: {attempt.status.value.upper()} in "
            f"{attempt.duration * 1000:.1f} ms: {anyprobe.escape_controls(attempt.summary)}"
        )
        lines.extend(_event_lines(attempt.trace))
    return lines


def _event_lines(trace: Sequence[anyprobe.TraceEvent]) -> list[str]:
    escape = anyprobe.escape_controls
    return [f"    {event.at * 1000:8.1f} ms  {escape(event.message)}" for event in trace]


def render_plain(rows: list[anyprobe.Result], summary: str | None, *, explain: bool) -> str:
    cells = [_cells(r) for r in rows]
    show_target = any(c[2] for c in cells)
    columns = [i for i in range(len(HEADERS)) if i != 2 or show_target]
    widths = {i: max([len(HEADERS[i])] + [len(c[i]) for c in cells]) for i in columns}
    last = columns[-1]

    def line(values: list[str]) -> str:
        return "  ".join(values[i] if i == last else values[i].ljust(widths[i]) for i in columns)

    out = [line(HEADERS)] if rows else []
    for result, row in zip(rows, cells, strict=True):
        out.append(line(row))
        if explain:
            out.extend(_trace_lines(result))
    if summary:
        out.append(summary)
    return "".join(f"{text.rstrip()}\n" for text in out)


def render_rich(
    rows: list[anyprobe.Result], summary: str | None, *, explain: bool, force: bool = False
) -> str:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    cells = [_cells(r) for r in rows]
    show_target = any(c[2] for c in cells)
    table = Table(box=None, header_style="bold", pad_edge=False)
    for i, header in enumerate(HEADERS):
        if i != 2 or show_target:
            table.add_column(
                header, justify="right" if header == "LATENCY" else "left", overflow="fold"
            )
    for result, row in zip(rows, cells, strict=True):
        values: list[Any] = [Text(row[0], style=f"bold {STYLES[result.status]}")]
        # Text, not str: a name or summary holding [brackets] is not rich markup.
        values += [Text(row[i]) for i in range(1, len(row)) if i != 2 or show_target]
        table.add_row(*values)
        if explain and (result.trace or result.attempt_log):
            table.add_row("", Text("\n".join(_trace_lines(result)), style="dim"))
    # force: colours even when stdout is not a terminal (NO_COLOR still wins).
    console = Console(file=sys.stdout, highlight=False, force_terminal=force or None)
    with console.capture() as capture:
        if rows:
            console.print(table)
        if summary:
            console.print(summary)
    return capture.get()


@anyprobe.hookimpl
def anyprobe_register_reporters(register: Any) -> None:
    register(TableReporter)
