"""The table reporter: colours when the program asks or the output is a terminal."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from anyprobe.plugins.table import TableOptions, TableReporter

from .reporter_samples import run_reporter, sample_results, summarize

pytestmark = pytest.mark.anyio

ESCAPE = "\x1b["


@pytest.mark.parametrize(("color", "coloured"), [(None, False), (False, False), (True, True)])
async def test_the_programs_colour_choice_wins_over_the_outputs_kind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, color: bool | None, coloured: bool
) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    path = tmp_path / "table.txt"
    results = sample_results()
    await run_reporter(TableReporter(TableOptions(path=str(path))), results, color=color)
    text = path.read_text(encoding="utf-8")
    assert (ESCAPE in text) is coloured
    plain = re.sub(r"\x1b\[[0-9;]*m", "", text)
    assert plain.rstrip().endswith(summarize(results).describe())
    assert plain.count("\n") >= len(results) + 1
