"""The CSV reporter: a header, then one row per result, written as results arrive.

The columns are fixed, so a spreadsheet or a script can rely on them; phases,
metrics and labels, whose keys vary by probe, are one JSON object per cell.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from typing import Any, Literal

from pydantic import Field

import anyprobe

#: The columns, in order. New columns may be added at the end, never renamed.
COLUMNS = (
    "name",
    "target",
    "probe",
    "status",
    "summary",
    "started",
    "duration",
    "attempts",
    "error_type",
    "error_phase",
    "error_message",
    "phases",
    "metrics",
    "labels",
)


class CsvOptions(anyprobe.ReporterOptions):
    delimiter: Literal[",", ";", "\t"] = Field(
        default=",", description="Field separator: ',' (default), ';' or a tab."
    )
    header: bool = Field(default=True, description="Write the header row first.")


class CsvReporter(anyprobe.Reporter[CsvOptions]):
    """``-r csv=results.csv``: one row per result."""

    name = "csv"
    Options = CsvOptions
    description = "CSV: a header and one row per result, with fixed columns."

    async def report(self, results: anyprobe.ResultStream, ctx: anyprobe.ReportContext) -> None:
        delimiter = self.options.delimiter
        async with await anyprobe.OutputFile.open(self.options.path) as out:
            if self.options.header:
                await out.write(_rows([COLUMNS], delimiter))
            async for batch in results.batches():
                await out.write(_rows((row(result) for result in batch), delimiter))


def row(result: anyprobe.Result) -> list[str]:
    """``result`` as the cells of one row, in :data:`COLUMNS` order."""
    error = result.error
    return [
        result.name,
        result.target,
        result.probe,
        result.status.value,
        result.summary,
        result.started.isoformat(),
        repr(float(result.duration)),
        str(result.attempts),
        error.type if error else "",
        (error.phase or "") if error else "",
        error.message if error else "",
        _json(result.phases),
        _json(result.metrics),
        _json(result.labels),
    ]


def _json(value: Any) -> str:
    return json.dumps(dict(value), ensure_ascii=False, default=str, sort_keys=True)


def _rows(rows: Iterable[Iterable[str]], delimiter: str) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator="\n")
    writer.writerows(rows)
    return buffer.getvalue()


@anyprobe.hookimpl
def anyprobe_register_reporters(register: Any) -> None:
    register(CsvReporter)
