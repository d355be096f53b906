"""The JUnit XML reporter, read back by junitparser and by xml.etree."""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from junitparser import xunit2

from anyprobe import Result, Status
from anyprobe.plugins.junit import JunitOptions, JunitReporter

from .reporter_samples import cancel_mid_run, make_result, run_reporter, sample_results, summarize


async def write_report(tmp_path: Path, results: list[Result], **options: str) -> Path:
    path = tmp_path / "report.xml"
    reporter = JunitReporter(JunitOptions(path=str(path), **options))
    await run_reporter(reporter, results)
    return path


def cases_by_name(path: Path) -> dict[str, xunit2.TestCase]:
    xml = xunit2.JUnitXml.fromfile(str(path))
    return {case.name: case for suite in xml for case in suite}


@pytest.mark.anyio
async def test_each_check_is_a_testcase_named_after_check_and_probe(tmp_path: Path) -> None:
    results = sample_results()
    path = await write_report(tmp_path, results)

    xml = xunit2.JUnitXml.fromfile(str(path))
    suites = list(xml)
    assert [s.name for s in suites] == ["anyprobe"]
    suite = suites[0]
    assert (suite.tests, suite.failures, suite.errors, suite.skipped) == (5, 2, 1, 0)
    cases = {(case.classname, case.name) for case in suite}
    assert cases == {(r.probe, r.name) for r in results}


@pytest.mark.anyio
async def test_critical_is_a_failure_and_unknown_an_error(tmp_path: Path) -> None:
    cases = cases_by_name(await write_report(tmp_path, sample_results()))

    cache = cases["cache"]
    assert cache.is_failure and not cache.is_error
    (failure,) = cache.result
    assert failure.message == "connection refused by 127.0.0.1:6379"
    assert failure.type == "ConnectionRefusedError"
    assert "during connect: [Errno 111] Connection refused" in (failure.text or "")

    odd = cases["odd 'name' | a=b <&>"]
    assert odd.is_error and not odd.is_failure
    (error,) = odd.result
    assert error.type == "ValueError"
    # The NUL byte cannot exist in XML: it is replaced, everything else kept.
    assert (
        error.message == "probe raised ValueError: bad \ufffd byte | 50% <done> & more\nsecond line"
    )

    assert cases["api"].is_passed
    assert cases["db primary"].is_passed


@pytest.mark.anyio
async def test_a_warning_passes_but_says_so(tmp_path: Path) -> None:
    cases = cases_by_name(await write_report(tmp_path, sample_results()))

    warning = cases["db primary"]
    assert warning.is_passed
    properties = {p.name: p.value for p in warning.properties()}
    assert properties["status"] == "warning"
    assert warning.system_out.startswith(
        "WARNING: connected in 812.0 ms, more than warning_after 0.5 s"
    )


@pytest.mark.anyio
async def test_timings_phases_metrics_and_labels_are_kept(tmp_path: Path) -> None:
    cases = cases_by_name(await write_report(tmp_path, sample_results()))

    api = cases["api"]
    assert api.time == pytest.approx(0.041)
    properties = {p.name: p.value for p in api.properties()}
    assert properties["target"] == "https://api.example.test/health"
    assert properties["phase.tls"] == "0.018000"
    assert properties["metric.http_status"] == "200"
    assert properties["label.team"] == "payments"
    assert properties["attempts"] == "1"
    assert cases["dns"].time == pytest.approx(2.0)


@pytest.mark.anyio
async def test_document_parses_with_elementtree(tmp_path: Path) -> None:
    path = await write_report(tmp_path, sample_results(), suite_name="nightly <checks>")

    root = ET.parse(path).getroot()
    assert root.tag == "testsuites"
    (suite,) = root.findall("testsuite")
    assert suite.get("name") == "nightly <checks>"
    assert suite.get("tests") == "5"
    assert suite.get("timestamp") == "2026-11-24T10:00:00"
    suite_properties = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert suite_properties["warnings"] == "1"
    assert len(suite.findall("testcase")) == 5
    assert float(suite.get("time", "nan")) == pytest.approx(2.5)


@pytest.mark.anyio
async def test_an_empty_run_is_a_valid_empty_suite(tmp_path: Path) -> None:
    path = await write_report(tmp_path, [])

    xml = xunit2.JUnitXml.fromfile(str(path))
    (suite,) = list(xml)
    assert suite.tests == 0
    assert list(suite) == []


@pytest.mark.anyio
async def test_an_interrupted_run_is_recorded_in_the_suite(tmp_path: Path) -> None:
    path = tmp_path / "report.xml"
    results = [make_result("a"), make_result("b", status=Status.CRITICAL)]
    summary = summarize(results, total=5, not_finished=3, interrupted="SIGINT")
    await run_reporter(JunitReporter(JunitOptions(path=str(path))), results, summary)

    root = ET.parse(path).getroot()
    properties = {p.get("name"): p.get("value") for p in root.iterfind("testsuite/properties/")}
    assert properties["interrupted"] == "SIGINT"
    assert properties["not_finished"] == "3"
    assert len(root.findall("testsuite/testcase")) == 2


@pytest.mark.anyio
async def test_classname_prefix(tmp_path: Path) -> None:
    path = await write_report(tmp_path, [make_result("a")], classname_prefix="probes.")
    (case,) = cases_by_name(path).values()
    assert case.classname == "probes.tcp"


@pytest.mark.anyio
async def test_a_cancelled_report_leaves_the_previous_file_untouched(tmp_path: Path) -> None:
    path = tmp_path / "report.xml"
    path.write_text("<previous/>")
    await cancel_mid_run(JunitReporter(JunitOptions(path=str(path))), [make_result("a")])

    assert path.read_text() == "<previous/>"
    assert os.listdir(tmp_path) == ["report.xml"]


def test_junit_is_registered(manager: object) -> None:
    from anyprobe import PluginManager

    assert isinstance(manager, PluginManager)
    assert manager.reporters["junit"] is JunitReporter
