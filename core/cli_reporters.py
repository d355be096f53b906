"""Reporters the CLI adds for itself: they read the same result stream as any other."""

from __future__ import annotations

from .model import Result
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
