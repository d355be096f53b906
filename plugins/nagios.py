"""The Nagios reporter: the monitoring-plugins output convention.

One check gives the classic one-line plugin output::

    TCP OK: connected to 127.0.0.1:22 in 0.3 ms | time=0.000412s;0.5;1;0; resolve=...

Several checks give a first line with the worst status and a count per
status, carrying every check's performance data (labels ``NAME::LABEL``),
then one line per check, worst first::

    ANYPROBE CRITICAL: 3 checks: 1 ok, 1 warning, 1 critical, 0 unknown | api::time=0.041s;;;0; ...
    cache CRITICAL: connection refused by 127.0.0.1:6379
    db WARNING: connected in 812.0 ms, more than warning_after 0.5 s
    api OK: HTTP 200 in 41 ms

Nagios, Icinga and Naemon read the first line as the service output and the
others as long output; the exit status of ``anyprobe`` (0, 1, 2, 3) is the
plugin's status.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from pydantic import Field

import anyprobe

#: Units of measurement the monitoring-plugins guidelines allow, by metric suffix.
UNITS = {"_seconds": "s", "_bytes": "B", "_percent": "%"}

_UNSAFE_TEXT = re.compile(r"\s*[|\r\n]+\s*")
_UNSAFE_LABEL = re.compile(r"[=|\r\n]+")
_SAFE_LABEL = re.compile(r"[A-Za-z0-9_.:/-]+")


class NagiosOptions(anyprobe.ReporterOptions):
    service: str | None = Field(
        default=None,
        description=(
            "The SERVICE word of the first line [default: the probe's name, upper-cased, "
            "for one check; ANYPROBE for several]."
        ),
    )
    perfdata: Literal["full", "time", "none"] = Field(
        default="full",
        description=(
            "Performance data: full (time, each phase, numeric metrics), time (the "
            "check's duration only) or none."
        ),
    )


class NagiosReporter(anyprobe.Reporter[NagiosOptions]):
    """``-r nagios``: plugin output for Nagios, Icinga or Naemon."""

    name = "nagios"
    Options = NagiosOptions
    description = "Nagios plugin output: SERVICE STATUS: summary | perfdata, a line per check."

    async def report(self, results: anyprobe.ResultStream, ctx: anyprobe.ReportContext) -> None:
        collected = [result async for result in results]
        text = render(collected, ctx.summary, self.options)
        async with await anyprobe.OutputFile.open(self.options.path, atomic=True) as out:
            await out.write(text)


def render(
    results: Iterable[anyprobe.Result],
    summary: anyprobe.RunSummary | None = None,
    options: NagiosOptions | None = None,
) -> str:
    """The plugin output for ``results``, newline-terminated lines."""
    options = options or NagiosOptions()
    rows = list(results)
    not_finished = summary.not_finished if summary else 0
    if len(rows) == 1 and not not_finished:
        (result,) = rows
        service = options.service or result.probe.upper()
        line = f"{service} {_word(result.status)}: {_text(result.summary)}"
        return _with_perfdata(line, perfdata(result, options)) + "\n"

    counts = Counter(result.status for result in rows)
    worst = anyprobe.Status.worst(counts)
    if not rows or not_finished:
        # Some checks never gave a verdict: the run cannot vouch for them.
        worst = anyprobe.Status.UNKNOWN
    text = f"{len(rows)} check{'s' if len(rows) != 1 else ''}: "
    text += ", ".join(f"{counts.get(status, 0)} {status.value}" for status in anyprobe.Status)
    if not_finished:
        text += f"; {not_finished} not finished"
    if summary and summary.interrupted:
        text += f" (interrupted by {summary.interrupted})"
    data = " ".join(
        item for result in rows if (item := perfdata(result, options, prefix=f"{result.name}::"))
    )
    lines = [_with_perfdata(f"{options.service or 'ANYPROBE'} {_word(worst)}: {text}", data)]
    for result in sorted(rows, key=lambda r: -r.status.severity):
        lines.append(f"{_text(result.name)} {_word(result.status)}: {_text(result.summary)}")
    return "".join(f"{line}\n" for line in lines)


def perfdata(result: anyprobe.Result, options: NagiosOptions, *, prefix: str = "") -> str:
    """``result``'s performance data: ``label=value[UOM];warn;crit;min;max`` items."""
    if options.perfdata == "none":
        return ""
    items = [
        _item(
            f"{prefix}time",
            result.duration,
            "s",
            warn=result.thresholds.get("warning_after"),
            crit=result.thresholds.get("critical_after"),
            minimum=0,
        )
    ]
    if options.perfdata == "full":
        items.extend(
            _item(f"{prefix}{phase}", seconds, "s", minimum=0)
            for phase, seconds in result.phases.items()
        )
        items.extend(
            _item(f"{prefix}{key}", number, _unit(key)) for key, number in _numbers(result.metrics)
        )
    return " ".join(item for item in items if item)


def _numbers(metrics: Mapping[str, Any]) -> Iterable[tuple[str, float]]:
    for key, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if math.isfinite(value):
            yield key, value


def _unit(key: str) -> str:
    for suffix, unit in UNITS.items():
        if key.endswith(suffix):
            return unit
    return ""


def _item(
    label: str,
    value: float,
    unit: str,
    *,
    warn: float | None = None,
    crit: float | None = None,
    minimum: float | None = None,
) -> str:
    if not math.isfinite(value):
        return ""
    fields = [_number(warn), _number(crit), _number(minimum), ""]
    return f"{quote_label(label)}={_number(value)}{unit};{';'.join(fields)}"


def quote_label(label: str) -> str:
    """A perfdata label: ``=`` and ``|`` replaced, quoted when it has other characters.

    Quotes inside a quoted label are doubled, as the guidelines say.
    """
    label = _UNSAFE_LABEL.sub("_", label) or "_"
    if _SAFE_LABEL.fullmatch(label):
        return label
    return "'" + label.replace("'", "''") + "'"


def _number(value: float | None) -> str:
    """Plain decimal notation: perfdata values may not use exponents."""
    if value is None:
        return ""
    if isinstance(value, int) or float(value).is_integer():
        return str(int(value))
    return f"{value:.6f}".rstrip("0").rstrip(".") or "0"


def _with_perfdata(line: str, data: str) -> str:
    return f"{line} | {data}" if data else line


def _word(status: anyprobe.Status) -> str:
    return status.value.upper()


def _text(text: str) -> str:
    # A "|" would start the performance data, a newline a new line of output.
    return _UNSAFE_TEXT.sub(" / ", text).strip()


@anyprobe.hookimpl
def anyprobe_register_reporters(register: Any) -> None:
    register(NagiosReporter)
