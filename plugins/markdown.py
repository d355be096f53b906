"""The Markdown reporter: a GitHub-flavoured table and a summary line.

Made to be pasted into an issue or written to a CI job summary::

    anyprobe run checks.toml -r markdown="$GITHUB_STEP_SUMMARY"

Set ``append = true`` in the config file's ``[[reporter]]`` table to add to
the file instead of replacing it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, Literal

import anyio
from pydantic import Field

import anyprobe

ICONS = {
    anyprobe.Status.OK: "✅",
    anyprobe.Status.WARNING: "⚠️",
    anyprobe.Status.CRITICAL: "❌",
    anyprobe.Status.UNKNOWN: "❓",
}

# Characters that would end a cell or start Markdown/HTML formatting.
_SPECIAL = re.compile(r"([\\`*_\[\]|<>~])")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class MarkdownOptions(anyprobe.ReporterOptions):
    sort: Literal["status", "name", "latency", "none"] = Field(
        default="status",
        description="Row order: status (worst first), name, latency (fastest first), none.",
    )
    only_problems: bool = Field(default=False, description="Leave out the checks that are ok.")
    title: str | None = Field(
        default=None, description="A heading above the table, e.g. 'Health checks'."
    )
    icons: bool = Field(default=True, description="An emoji before each status.")
    append: bool = Field(
        default=False,
        description="Append to the file instead of replacing it (for $GITHUB_STEP_SUMMARY).",
    )


class MarkdownReporter(anyprobe.Reporter[MarkdownOptions]):
    """``-r markdown=summary.md``: a table of the results and a summary line."""

    name = "markdown"
    Options = MarkdownOptions
    description = "A GitHub Markdown table and summary line, for issues and CI job summaries."

    async def report(self, results: anyprobe.ResultStream, ctx: anyprobe.ReportContext) -> None:
        text = render([result async for result in results], ctx.summary, self.options)
        path = self.options.path
        if self.options.append and path not in (None, "-"):
            assert path is not None
            async with await anyio.open_file(path, "a", encoding="utf-8") as file:
                await file.write(text)
            return
        async with await anyprobe.OutputFile.open(path, atomic=True) as out:
            await out.write(text)


def render(
    results: Iterable[anyprobe.Result],
    summary: anyprobe.RunSummary | None = None,
    options: MarkdownOptions | None = None,
) -> str:
    """The Markdown document: optional title, the table, the summary line."""
    options = options or MarkdownOptions()
    rows = list(results)
    if options.sort == "status":
        rows.sort(key=lambda r: -r.status.severity)
    elif options.sort == "name":
        rows.sort(key=lambda r: r.name)
    elif options.sort == "latency":
        rows.sort(key=lambda r: r.duration)
    shown = [r for r in rows if not options.only_problems or r.status is not anyprobe.Status.OK]
    lines = []
    if options.title:
        lines += [f"## {escape(options.title)}", ""]
    if shown:
        lines.append("| Status | Check | Target | Duration | Summary |")
        lines.append("|---|---|---|---:|---|")
        for result in shown:
            status = result.status.value
            if options.icons:
                status = f"{ICONS[result.status]} {status}"
            cells = [
                status,
                escape(result.name),
                escape(result.target),
                f"{result.duration * 1000:.1f} ms",
                escape(result.summary),
            ]
            lines.append(f"| {' | '.join(cells)} |")
        lines.append("")
    elif rows:
        lines += ["All checks are ok.", ""]
    lines.append(_summary_line(rows, summary))
    return "\n".join(lines) + "\n"


def _summary_line(rows: list[anyprobe.Result], summary: anyprobe.RunSummary | None) -> str:
    if summary is None:
        count = len(rows)
        return f"**{count} check{'s' if count != 1 else ''}**"
    worst = summary.worst if summary.finished else anyprobe.Status.UNKNOWN
    head, _, rest = summary.describe().partition(":")
    text = f"**{head}**:{rest}" if rest else f"**{head}**"
    return f"{worst.value.upper()}: {text}"


def escape(text: str) -> str:
    """``text`` as the content of one table cell, shown as it is, on one line."""
    text = _CONTROL.sub("\ufffd", text).replace("&", "&amp;")
    text = _SPECIAL.sub(r"\\\1", text)
    return " <br> ".join(line.strip() for line in text.splitlines())


@anyprobe.hookimpl
def anyprobe_register_reporters(register: Any) -> None:
    register(MarkdownReporter)
