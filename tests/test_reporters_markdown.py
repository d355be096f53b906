"""The Markdown reporter, read back by a CommonMark parser with GitHub's tables."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import pytest
from markdown_it import MarkdownIt

from anyprobe import Status
from anyprobe.plugins.markdown import MarkdownOptions, MarkdownReporter, render

from .reporter_samples import make_result, run_reporter, sample_results, summarize


class _Cells(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self.paragraphs: list[str] = []
        self._cell: list[str] | None = None
        self._paragraph: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "br" and self._cell is not None:
            self._cell.append("\n")
        elif tag == "p":
            self._paragraph = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append("".join(self._cell).replace(" \n ", "\n"))
            self._cell = None
        elif tag == "p" and self._paragraph is not None:
            self.paragraphs.append("".join(self._paragraph))
            self._paragraph = None

    def handle_data(self, data: str) -> None:
        for part in (self._cell, self._paragraph):
            if part is not None:
                part.append(data)


def as_html(markdown: str) -> _Cells:
    """What GitHub would show: the table's cells and the paragraphs, as text."""
    html = MarkdownIt("commonmark").enable("table").render(markdown)
    cells = _Cells()
    cells.feed(html)
    return cells


def test_a_table_row_per_check_worst_first() -> None:
    results = sample_results()
    shown = as_html(render(results, summarize(results)))

    header, *rows = shown.rows
    assert header == ["Status", "Check", "Target", "Duration", "Summary"]
    assert [row[1] for row in rows] == ["odd 'name' | a=b <&>", "cache", "dns", "db primary", "api"]
    assert rows[-1] == [
        "✅ ok",
        "api",
        "https://api.example.test/health",
        "41.0 ms",
        "HTTP 200 in 41 ms",
    ]
    assert rows[1][0] == "❌ critical"


def test_cells_show_special_characters_as_they_are() -> None:
    results = sample_results()
    shown = as_html(render(results, summarize(results)))
    odd = shown.rows[1]
    # The pipe stayed in its cell, the HTML stayed text, the newline is a <br>,
    # the NUL byte became a replacement character.
    assert odd[4] == "probe raised ValueError: bad \ufffd byte | 50% <done> & more\nsecond line"
    warning = as_html(render([make_result("x", summary="*not bold* _nor_ `code` [link](u)")]))
    assert warning.rows[1][4] == "*not bold* _nor_ `code` [link](u)"


def test_the_summary_line_follows_the_table() -> None:
    results = sample_results()
    shown = as_html(render(results, summarize(results)))
    assert shown.paragraphs == [
        "UNKNOWN: 5 checks: 1 ok, 1 warning, 2 critical, 1 unknown in 2.50 s"
    ]


def test_only_problems_title_and_order() -> None:
    results = [make_result("b"), make_result("a", status=Status.WARNING, duration=2.0)]
    options = MarkdownOptions(only_problems=True, title="Nightly | checks", icons=False)
    text = render(results, summarize(results), options)
    assert text.startswith("## Nightly \\| checks\n")
    shown = as_html(text)
    assert [row[:2] for row in shown.rows[1:]] == [["warning", "a"]]

    all_ok = render([make_result("b")], summarize([make_result("b")]), options)
    assert "All checks are ok." in all_ok

    by_name = as_html(render(results, options=MarkdownOptions(sort="name")))
    assert [row[1] for row in by_name.rows[1:]] == ["a", "b"]


@pytest.mark.anyio
async def test_reporter_replaces_or_appends(tmp_path: Path) -> None:
    path = tmp_path / "summary.md"
    path.write_text("# Earlier step\n\n")
    results = sample_results()
    await run_reporter(MarkdownReporter(MarkdownOptions(path=str(path))), results)
    assert path.read_text() == render(results, summarize(results))

    path.write_text("# Earlier step\n\n")
    options = MarkdownOptions(path=str(path), append=True)
    await run_reporter(MarkdownReporter(options), results)
    assert path.read_text() == "# Earlier step\n\n" + render(results, summarize(results))
