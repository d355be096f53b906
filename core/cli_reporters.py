"""Reporters the CLI adds for itself: they read the same result stream as any other."""

from __future__ import annotations

from .model import Result, Status
from .reporter import ReportContext, Reporter, ReporterOptions, ResultStream


class Collect(Reporter[ReporterOptions]):
    """Keeps the results (the demo compares them with the verdicts it expects)."""

    name = "_collect"

    def __init__(self, into: list[Result]) -> None:
        super().__init__(ReporterOptions())
        self.into = into

    async def report(self, results: ResultStream, ctx: ReportContext) -> None:
        async for result in results:
            self.into.append(result)


class Progress(Reporter[ReporterOptions]):
    """A rich progress bar on stderr."""

    name = "_progress"

    def __init__(self) -> None:
        super().__init__(ReporterOptions())

    async def report(self, results: ResultStream, ctx: ReportContext) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, TimeRemainingColumn
        from rich.progress import Progress as Bar

        columns = [BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()]
        with Bar(*columns, console=Console(stderr=True), transient=True) as bar:
            task = bar.add_task("checking", total=ctx.total)
            async for batch in results.batches():
                bar.advance(task, len(batch))


class Diagnostics(Reporter[ReporterOptions]):
    """``-v``: a line on stderr for each check that is not ok; ``-vv``: for
    every check, with its attempts, phases and error."""

    name = "_diagnostics"

    def __init__(self, verbosity: int) -> None:
        super().__init__(ReporterOptions())
        self.verbosity = verbosity

    def outputs(self) -> list[str | None]:
        return []  # stderr: the run's summary line still goes there

    async def report(self, results: ResultStream, ctx: ReportContext) -> None:
        import sys

        import anyio

        async for batch in results.batches():
            lines = [self.describe(r) for r in batch]
            text = "".join(f"anyprobe: {line}\n" for line in lines if line)
            if text:
                await anyio.to_thread.run_sync(sys.stderr.write, text)

    def describe(self, result: Result) -> str | None:
        """The line for ``result``, or None when this verbosity shows none."""
        if self.verbosity < 2 and result.status is Status.OK:
            return None
        attempts = f", {result.attempts} attempts" if result.attempts != 1 else ""
        line = (
            f"check {result.name}: {result.status.value} in {result.duration:.3f} s{attempts}: "
            f"{result.summary}"
        )
        if result.error is not None:
            phase = f" during {result.error.phase}" if result.error.phase else ""
            line += f" [{result.error.type}{phase}: {result.error.message}]"
        if self.verbosity >= 2 and result.phases:
            line += " (" + ", ".join(f"{k} {v:.3f} s" for k, v in result.phases.items()) + ")"
        return " ".join(line.split())  # one line, whatever a server sent
