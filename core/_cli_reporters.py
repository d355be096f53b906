"""The command line's side of reporters: ``-r`` parsed, report paths checked
before the run, and the reporters the CLI adds for itself (they read the same
result stream as any other)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

from ._errors import UsageError
from ._model import Result, Status
from ._option_defaults import DefaultOptions
from ._reporter import ReportContext, Reporter, ResultStream

if TYPE_CHECKING:
    from ._manager import PluginManager
    from ._reporter import ReporterOptions


REPORT_SYNTAX = "expected NAME, NAME=DEST or NAME:KEY=VALUE[,KEY=VALUE...]"


def _name_end(spec: str) -> int:
    return min((i for i in (spec.find(":"), spec.find("=")) if i >= 0), default=len(spec))


def report_name(spec: str) -> str:
    """The reporter name of a ``-r`` spec (see :func:`parse_report`)."""
    return spec[: _name_end(spec)].strip()


def parse_report(manager: PluginManager, spec: str) -> tuple[str, dict[str, Any], str]:
    """``-r NAME``, ``-r NAME=DEST`` (DEST as typed, ':' and ',' included) or
    ``-r NAME:KEY=VALUE,KEY=VALUE`` (each VALUE read like ``--set``'s; a ','
    belongs to the VALUE unless a ``KEY=`` follows it). DEST fills the option
    the reporter names in its ``destination`` (``path`` unless it says otherwise).
    Returns the name, the raw options and the spec as an error line shows it."""
    import re

    from ._targets import SetValue, _plain, parse_value

    cut = _name_end(spec)
    name, separator, rest = spec[:cut].strip(), spec[cut : cut + 1], spec[cut + 1 :]
    if not name:
        raise UsageError(f"--report {spec!r}: {REPORT_SYNTAX}")
    reporter_type = manager.reporter_type(name)
    if separator == "=":
        # The reporter says which option DEST fills: a file's path, a notifier's URL.
        destination = reporter_type.destination if reporter_type else "path"
        if not rest:
            what = (
                "a file, '-' for standard output" if destination == "path" else f"its {destination}"
            )
            raise UsageError(f"--report {name}=: DEST is empty (give {what}, or leave out '=')")
        return name, {destination: rest}, f"{name}={shown_dest(rest)}"
    if separator != ":":
        return name, {}, name
    fields = reporter_type.Options.model_fields if reporter_type else {}
    options: dict[str, Any] = {}
    for pair in re.split(r",(?=\s*[A-Za-z_][A-Za-z0-9_]*\s*=)", rest):
        key, eq, raw = pair.partition("=")
        key = key.strip()
        if not eq or not key.isidentifier():
            raise UsageError(f"--report {name}:...: {pair!r} is not KEY=VALUE ({REPORT_SYNTAX})")
        field = fields.get(key)
        value = SetValue(raw, parse_value(raw))
        options[key] = _plain(value, field.annotation if field else None)
    return name, options, f"{name}:{','.join(options)}"


def check_outputs(reporters: list[tuple[str, Reporter[Any]]], shown_as: dict[int, str]) -> None:
    """Every file a reporter will write can be written (nothing is created):
    a bad path is found before an hour-long run, not after it."""
    from ._reporter import output_problem

    for name, reporter in reporters:
        for path in reporter.outputs():
            problem = None if path is None else output_problem(path)
            if problem:
                raise UsageError(problem, source=shown_as.get(id(reporter), f"reporter {name}"))


def shown_dest(dest: str) -> str:
    """A report DEST as an error line shows it: a URL without its path and query,
    which for a chat webhook are its key, and without a password."""
    from .masking import redact_url

    if "://" not in dest:
        return dest
    return f"{redact_url(dest, path=False)}/..."


def any_stdout(outputs: Sequence[str | None]) -> bool:
    """Whether a reporter writes to standard output (``None``, ``/dev/stdout``)."""
    import os

    try:
        stdout = os.fstat(sys.stdout.fileno())
    except (OSError, ValueError):
        stdout = None
    for path in outputs:
        if path is None:
            return True
        try:
            if stdout is not None and os.path.samestat(os.stat(path), stdout):
                return True
        except OSError:
            continue
    return False


def _no_options(reporter_type: type[Reporter[Any]]) -> ReporterOptions:
    """The options of a reporter the CLI adds for itself (none are set), without pydantic."""
    return cast("ReporterOptions", DefaultOptions(reporter_type, {"path": None}))


class Collect(Reporter["ReporterOptions"]):
    """Keeps the results (the demo compares them with the verdicts it expects)."""

    name = "_collect"

    def __init__(self, into: list[Result]) -> None:
        super().__init__(_no_options(type(self)))
        self.into = into

    async def report(self, results: ResultStream, ctx: ReportContext) -> None:
        async for result in results:
            self.into.append(result)


class Progress(Reporter["ReporterOptions"]):
    """A rich progress bar on stderr."""

    name = "_progress"

    def __init__(self) -> None:
        super().__init__(_no_options(type(self)))

    async def report(self, results: ResultStream, ctx: ReportContext) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, TimeRemainingColumn
        from rich.progress import Progress as Bar

        columns = [BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()]
        with Bar(*columns, console=Console(stderr=True), transient=True) as bar:
            task = bar.add_task("checking", total=ctx.total)
            async for batch in results.batches():
                bar.advance(task, len(batch))


class Diagnostics(Reporter["ReporterOptions"]):
    """``-v``: a line on stderr for each check that is not ok; ``-vv``: for
    every check, with its attempts, phases and error."""

    name = "_diagnostics"

    def __init__(self, verbosity: int) -> None:
        super().__init__(_no_options(type(self)))
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
