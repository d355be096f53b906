"""The JUnit XML reporter: one test case per check, for CI systems' test views.

A check is a test case named after the check, with the probe as its class
name. ``critical`` is a ``<failure>``, ``unknown`` (anyprobe could not tell)
an ``<error>``; a ``warning`` passes but says so in a ``status`` property and
in ``<system-out>``. The file is written once, when the run ends, under a
temporary name renamed into place: a reader (or an interrupted run) never
sees half a document.
"""

from __future__ import annotations

import re
import socket
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterable
from datetime import UTC
from typing import Any

from pydantic import Field

import anyprobe

# Characters XML 1.0 cannot carry at all, even escaped: a banner or a body
# excerpt from a misbehaving server may contain them.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


class JunitOptions(anyprobe.ReporterOptions):
    suite_name: str = Field(
        default="anyprobe",
        min_length=1,
        description="Name of the test suite (and of the test suites).",
    )
    classname_prefix: str = Field(
        default="",
        description="Prefix of every test case's class name, e.g. 'probes.' gives 'probes.http'.",
    )


class JunitReporter(anyprobe.Reporter[JunitOptions]):
    """``-r junit=report.xml``: JUnit XML, written atomically when the run ends."""

    name = "junit"
    Options = JunitOptions
    description = "JUnit XML: a test case per check (critical = failure, unknown = error)."

    async def report(self, results: anyprobe.ResultStream, ctx: anyprobe.ReportContext) -> None:
        collected = [result async for result in results]
        document = render(
            collected,
            ctx.summary,
            suite_name=self.options.suite_name,
            classname_prefix=self.options.classname_prefix,
        )
        async with await anyprobe.OutputFile.open(self.options.path, atomic=True) as out:
            await out.write(document)


def render(
    results: Iterable[anyprobe.Result],
    summary: anyprobe.RunSummary | None = None,
    *,
    suite_name: str = "anyprobe",
    classname_prefix: str = "",
) -> str:
    """The JUnit XML document for ``results``, XML declaration included."""
    rows = list(results)
    counts = Counter(result.status for result in rows)
    # The run's wall time when known (checks overlap), else the checks' sum.
    total_time = summary.duration if summary else sum(result.duration for result in rows)
    attributes = {
        "name": _text(suite_name),
        "tests": str(len(rows)),
        "failures": str(counts[anyprobe.Status.CRITICAL]),
        "errors": str(counts[anyprobe.Status.UNKNOWN]),
        "skipped": "0",
        "time": _seconds(total_time),
    }
    root = ET.Element("testsuites", attributes)
    suite = ET.SubElement(root, "testsuite", attributes)
    if rows:
        first = min(result.started for result in rows)
        suite.set("timestamp", first.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S"))
    suite.set("hostname", _text(socket.gethostname()))
    properties = {"warnings": str(counts[anyprobe.Status.WARNING])}
    if summary is not None:
        properties["not_finished"] = str(summary.not_finished)
        if summary.interrupted:
            properties["interrupted"] = summary.interrupted
    _properties(suite, properties)
    for result in rows:
        _testcase(suite, result, classname_prefix)
    ET.indent(root)
    body = ET.tostring(root, encoding="unicode")
    return f'<?xml version="1.0" encoding="UTF-8"?>\n{body}\n'


def _testcase(suite: ET.Element, result: anyprobe.Result, classname_prefix: str) -> None:
    case = ET.SubElement(
        suite,
        "testcase",
        {
            "classname": _text(f"{classname_prefix}{result.probe}"),
            "name": _text(result.name),
            "time": _seconds(result.duration),
        },
    )
    properties = {
        "status": result.status.value,
        "target": result.target,
        "started": result.started.isoformat(),
        "attempts": str(result.attempts),
    }
    properties.update({f"phase.{k}": _seconds(v) for k, v in result.phases.items()})
    properties.update({f"metric.{k}": _value(v) for k, v in result.metrics.items()})
    properties.update({f"label.{k}": v for k, v in result.labels.items()})
    _properties(case, properties)
    status = result.status
    if status in (anyprobe.Status.CRITICAL, anyprobe.Status.UNKNOWN):
        tag = "failure" if status is anyprobe.Status.CRITICAL else "error"
        kind = result.error.type if result.error else status.value
        verdict = ET.SubElement(case, tag, {"message": _text(result.summary), "type": _text(kind)})
        verdict.text = _text(_explanation(result))
    # Every case says in plain words what happened, so a warning is visible
    # in CI views that only show the output of passed tests.
    case_output = ET.SubElement(case, "system-out")
    case_output.text = _text(f"{status.value.upper()}: {result.summary}\n{_explanation(result)}")


def _explanation(result: anyprobe.Result) -> str:
    lines = [f"target: {result.target}", f"status: {result.status.value}"]
    if result.error:
        where = f" during {result.error.phase}" if result.error.phase else ""
        lines.append(f"error: {result.error.type}{where}: {result.error.message}")
    if result.phases:
        timings = ", ".join(f"{k} {v * 1000:.1f} ms" for k, v in result.phases.items())
        lines.append(f"phases: {timings}")
    if result.attempts > 1:
        lines.append(f"attempts: {result.attempts}")
    lines.extend(f"{event.at * 1000:8.1f} ms  {event.message}" for event in result.trace)
    return "\n".join(lines) + "\n"


def _properties(parent: ET.Element, values: dict[str, str]) -> None:
    element = ET.SubElement(parent, "properties")
    for key, value in values.items():
        ET.SubElement(element, "property", {"name": _text(key), "value": _text(value)})


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _seconds(value: float) -> str:
    return f"{max(value, 0.0):.6f}"


def _text(value: str) -> str:
    return _NOT_XML.sub("\ufffd", value)


@anyprobe.hookimpl
def anyprobe_register_reporters(register: Any) -> None:
    register(JunitReporter)
