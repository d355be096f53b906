"""The JSON Lines reporter: one record per result, written as results arrive.

The record is :meth:`anyprobe.Result.as_dict`: a retried check adds
``attempt_log`` (every attempt) next to ``attempts`` (their count).
"""

from __future__ import annotations

import json
from typing import Any

import anyprobe


class JsonlReporter(anyprobe.Reporter[anyprobe.ReporterOptions]):
    """``-r jsonl`` (stdout) or ``-r jsonl=results.jsonl``: the JSON Lines contract."""

    name = "jsonl"
    description = "JSON Lines, one record per result, written as results arrive."

    async def report(self, results: anyprobe.ResultStream, ctx: anyprobe.ReportContext) -> None:
        async with await anyprobe.OutputFile.open(self.options.path) as out:
            async for batch in results.batches():
                await out.write("".join(encode(result) for result in batch))


def encode(result: anyprobe.Result) -> str:
    """One result as one line of JSON, newline included."""
    return json.dumps(result.as_dict(), ensure_ascii=False, default=str) + "\n"


@anyprobe.hookimpl
def anyprobe_register_reporters(register: Any) -> None:
    register(JsonlReporter)
