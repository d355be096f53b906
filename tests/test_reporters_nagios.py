"""The Nagios reporter, read back by a parser of the monitoring-plugins output format.

The parser follows the monitoring-plugins development guidelines: the first
line is ``TEXT | PERFDATA``; performance data is space-separated
``'label'=value[UOM];[warn];[crit];[min];[max]`` items, where a label with
spaces is in single quotes and a quote inside is doubled, ``=`` is never part
of a label, UOM is one of s us ms % B KB MB TB c, and trailing empty fields
may be dropped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from anyprobe import Status
from anyprobe.plugins.nagios import NagiosOptions, NagiosReporter, quote_label, render

from .reporter_samples import make_result, run_reporter, sample_results, summarize

_ITEM = re.compile(
    r"""
    (?P<label>'(?:[^']|'')+'|[^'=\s]+)
    =
    (?P<value>-?[0-9]+(?:\.[0-9]+)?)
    (?P<uom>us|ms|s|%|B|KB|MB|TB|c)?
    (?:;(?P<warn>[-0-9.:~@]*))?
    (?:;(?P<crit>[-0-9.:~@]*))?
    (?:;(?P<min>-?[0-9.]*))?
    (?:;(?P<max>-?[0-9.]*))?
    (?:\s+|$)
    """,
    re.VERBOSE,
)


@dataclass
class Perf:
    value: float
    uom: str
    warn: str
    crit: str
    min: str
    max: str


def parse_perfdata(text: str) -> dict[str, Perf]:
    """Performance data items by label; fails on anything the guidelines do not allow."""
    items: dict[str, Perf] = {}
    position = 0
    text = text.strip()
    while position < len(text):
        match = _ITEM.match(text, position)
        assert match, f"not performance data at {position}: {text[position:]!r}"
        label = match["label"]
        if label.startswith("'"):
            label = label[1:-1].replace("''", "'")
        assert label not in items, f"label {label!r} twice"
        items[label] = Perf(
            float(match["value"]),
            match["uom"] or "",
            match["warn"] or "",
            match["crit"] or "",
            match["min"] or "",
            match["max"] or "",
        )
        position = match.end()
    return items


@dataclass
class PluginOutput:
    service: str
    status: str
    text: str
    perfdata: dict[str, Perf]
    long_output: list[str]


def parse_output(output: str) -> PluginOutput:
    """The first line's SERVICE STATUS: text | perfdata, then the long output lines."""
    first, *rest = output.rstrip("\n").split("\n")
    head, bar, data = first.partition("|")
    match = re.fullmatch(
        r"(?P<service>.+?) (?P<status>OK|WARNING|CRITICAL|UNKNOWN): (?P<text>.*)", head.rstrip()
    )
    assert match, f"not SERVICE STATUS: text: {head!r}"
    for line in rest:
        assert "|" not in line, f"long output must not carry a '|': {line!r}"
    return PluginOutput(
        match["service"], match["status"], match["text"], parse_perfdata(data) if bar else {}, rest
    )


def test_one_check_is_the_classic_one_line_output() -> None:
    result = sample_results()[0]
    output = render([result])

    assert output.count("\n") == 1
    parsed = parse_output(output)
    assert (parsed.service, parsed.status, parsed.text) == ("HTTP", "OK", "HTTP 200 in 41 ms")
    assert parsed.perfdata["time"] == Perf(0.041, "s", "", "", "0", "")
    assert parsed.perfdata["tls"] == Perf(0.018, "s", "", "", "0", "")
    assert parsed.perfdata["http_status"].value == 200
    assert parsed.perfdata["cert_expiry_days"].value == 61.5
    assert parsed.perfdata["body_bytes"] == Perf(512, "B", "", "", "", "")


def test_a_run_starts_with_the_worst_status_and_a_count_per_status() -> None:
    results = sample_results()
    parsed = parse_output(render(results, summarize(results)))

    assert (parsed.service, parsed.status) == ("ANYPROBE", "UNKNOWN")
    assert parsed.text == "5 checks: 1 ok, 1 warning, 2 critical, 1 unknown"
    # One line per check, worst first.
    assert [line.split(": ")[0] for line in parsed.long_output] == [
        "odd 'name' / a=b <&> UNKNOWN",
        "cache CRITICAL",
        "dns CRITICAL",
        "db primary WARNING",
        "api OK",
    ]
    assert parsed.long_output[1] == "cache CRITICAL: connection refused by 127.0.0.1:6379"


def test_a_run_carries_every_checks_perfdata_on_the_first_line() -> None:
    results = sample_results()
    parsed = parse_output(render(results, summarize(results)))

    assert parsed.perfdata["api::time"].value == 0.041
    assert parsed.perfdata["db primary::time"].value == 0.812
    assert parsed.perfdata["dns::request"] == Perf(1.9999, "s", "", "", "0", "")
    # "=" and "|" cannot be in a label; the quote is doubled and read back.
    assert parsed.perfdata["odd 'name' _ a_b <&>::ratio"].value == 0.5
    # Booleans and text are not performance data.
    assert not [label for label in parsed.perfdata if label.endswith(("::flag", "::note"))]


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        ([Status.OK, Status.OK], "OK"),
        ([Status.OK, Status.WARNING], "WARNING"),
        ([Status.WARNING, Status.CRITICAL, Status.OK], "CRITICAL"),
        ([Status.CRITICAL, Status.UNKNOWN], "UNKNOWN"),
    ],
)
def test_first_line_status_is_the_worst(statuses: list[Status], expected: str) -> None:
    results = [make_result(f"c{i}", status=s) for i, s in enumerate(statuses)]
    assert parse_output(render(results, summarize(results))).status == expected


def test_an_interrupted_run_is_unknown() -> None:
    results = [make_result("a"), make_result("b")]
    summary = summarize(results, total=4, not_finished=2, interrupted="SIGINT")
    parsed = parse_output(render(results, summary))
    assert parsed.status == "UNKNOWN"
    assert parsed.text == (
        "2 checks: 2 ok, 0 warning, 0 critical, 0 unknown; 2 not finished (interrupted by SIGINT)"
    )


def test_no_result_is_unknown() -> None:
    parsed = parse_output(render([], summarize([])))
    assert parsed.status == "UNKNOWN"
    assert parsed.text.startswith("0 checks")


def test_thresholds_are_the_checks_own_and_perfdata_options() -> None:
    # The warn and crit of each check's time are the thresholds it was held to.
    result = make_result("api", thresholds={"warning_after": 0.5, "critical_after": 1.25})
    options = NagiosOptions(perfdata="time", service="WEB")
    parsed = parse_output(render([result], options=options))
    assert parsed.service == "WEB"
    assert parsed.perfdata == {"time": Perf(0.041, "s", "0.5", "1.25", "0", "")}
    only_warning = make_result("api", thresholds={"warning_after": 0.5})
    parsed = parse_output(render([only_warning], options=options))
    assert parsed.perfdata == {"time": Perf(0.041, "s", "0.5", "", "0", "")}

    none = render([sample_results()[0]], options=NagiosOptions(perfdata="none"))
    assert none == "HTTP OK: HTTP 200 in 41 ms\n"


def test_summary_text_cannot_break_the_format() -> None:
    result = make_result("x", summary="a | b\nc", status=Status.CRITICAL)
    output = render([result])
    expected = "TCP CRITICAL: a / b / c | time=0.041s;;;0; resolve=0.001s;;;0; connect=0.002s;;;0;"
    assert output == expected + "\n"


def test_small_and_large_values_have_no_exponent() -> None:
    result = make_result("x", duration=0.0000004, metrics={"big": 12345678901.5, "neg": -2})
    parsed = parse_output(render([result]))
    assert parsed.perfdata["time"].value == 0
    assert parsed.perfdata["big"].value == 12345678901.5
    assert parsed.perfdata["neg"].value == -2


@given(st.text(min_size=1, max_size=30))
def test_any_label_reads_back(label: str) -> None:
    quoted = quote_label(label)
    parsed = parse_perfdata(f"{quoted}=1;;;;")
    (read,) = parsed
    expected = re.sub(r"[=|\r\n]+", "_", label)
    assert read == expected


@pytest.mark.anyio
async def test_reporter_writes_the_output(tmp_path: Path) -> None:
    path = tmp_path / "nagios.txt"
    results = sample_results()
    await run_reporter(NagiosReporter(NagiosOptions(path=str(path))), results)
    assert path.read_text() == render(results, summarize(results))
