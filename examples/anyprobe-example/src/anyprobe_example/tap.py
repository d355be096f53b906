"""``-r tap[=FILE]``: the results as a TAP 14 stream (Test Anything Protocol).

One ``ok`` or ``not ok`` line per check, written as results arrive, with a
YAML block of details under each failure; the plan (``1..N``) comes last, as
TAP allows, since a stream does not know its length in advance.
"""

from __future__ import annotations

import json
from typing import Any, Literal

import anyprobe
from pydantic import Field


class TapOptions(anyprobe.ReporterOptions):
    fail_on: Literal["warning", "critical"] = Field(
        default="warning", description="The least severe status written as 'not ok'."
    )
    diagnostics: bool = Field(
        default=True,
        description="A YAML block (status, summary, duration, error) under each 'not ok'.",
    )


class TapReporter(anyprobe.Reporter[TapOptions]):
    name = "tap"
    Options = TapOptions
    description = "TAP 14 (Test Anything Protocol), one line per check as it completes."

    async def report(self, results: anyprobe.ResultStream, ctx: anyprobe.ReportContext) -> None:
        threshold = anyprobe.Status(self.options.fail_on)
        count = 0
        async with await anyprobe.OutputFile.open(self.options.path) as out:
            await out.write("TAP version 14\n")
            async for batch in results.batches():
                lines = []
                for result in batch:
                    count += 1
                    lines.append(self.test_line(count, result, failed=result.status >= threshold))
                await out.write("".join(lines))
            summary = ctx.summary
            tail = f"1..{count}\n"
            if summary is not None:
                tail += f"# {summary.describe()}\n"
            await out.write(tail)

    def test_line(self, number: int, result: anyprobe.Result, *, failed: bool) -> str:
        description = f"{result.name}: {result.summary}".replace("\\", "\\\\").replace("#", "\\#")
        line = f"{'not ok' if failed else 'ok'} {number} - {' '.join(description.split())}\n"
        if failed and self.options.diagnostics:
            line += diagnostics(result)
        return line


def diagnostics(result: anyprobe.Result) -> str:
    """A TAP YAML block; values are JSON, which is YAML too, so quoting is safe."""
    fields: dict[str, Any] = {
        "status": result.status.value,
        "target": result.target,
        "summary": result.summary,
        "duration": round(result.duration, 6),
    }
    if result.error is not None:
        fields["error"] = result.error.as_dict()
    body = "".join(f"  {key}: {json.dumps(value)}\n" for key, value in fields.items())
    return f"  ---\n{body}  ...\n"


@anyprobe.hookimpl
def anyprobe_register_reporters(register: Any) -> None:
    register(TapReporter)
