"""The Prometheus reporter, read back by prometheus_client's parser and by promtool."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from anyprobe import Status
from anyprobe._reporter import ReporterOptions
from anyprobe.plugins.prometheus import (
    PrometheusReporter,
    build_registry,
    exposition,
    label_name,
)

from .reporter_samples import (
    START,
    cancel_mid_run,
    make_result,
    run_reporter,
    sample_results,
    summarize,
)

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not installed (Debian package 'prometheus')"
)


def samples(text: str) -> dict[str, dict[frozenset[tuple[str, str]], float]]:
    """Every sample of ``text``: metric name -> label set -> value."""
    found: dict[str, dict[frozenset[tuple[str, str]], float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, {})[frozenset(sample.labels.items())] = sample.value
    return found


def of_check(found: dict[frozenset[tuple[str, str]], float], name: str) -> dict[str, float]:
    """The samples of check ``name`` in one metric, keyed by their phase (or "")."""
    return {
        dict(labels).get("phase", ""): value
        for labels, value in found.items()
        if dict(labels)["name"] == name
    }


def promtool_check(text: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_blackbox_metric_names_and_values() -> None:
    found = samples(exposition(sample_results()))

    assert of_check(found["probe_success"], "api") == {"": 1.0}
    assert of_check(found["probe_success"], "db primary") == {"": 1.0}
    assert of_check(found["probe_success"], "cache") == {"": 0.0}
    assert of_check(found["probe_duration_seconds"], "db primary") == {"": 0.812}
    assert of_check(found["probe_http_status_code"], "api") == {"": 200.0}
    assert of_check(found["probe_dns_lookup_time_seconds"], "api") == {"": 0.002}
    expiry = START.timestamp() + 61.5 * 86400
    assert of_check(found["probe_ssl_earliest_cert_expiry"], "api") == {"": expiry}
    assert of_check(found["probe_http_duration_seconds"], "api") == {
        "resolve": 0.002,
        "connect": 0.011,
        "tls": 0.018,
        "processing": 0.009,
        "transfer": 0.001,
    }
    assert of_check(found["probe_dns_duration_seconds"], "dns") == {
        "resolve": 0.0001,
        "request": 1.9999,
    }


def test_only_checks_with_a_value_have_a_sample() -> None:
    found = samples(exposition(sample_results()))

    # Only the HTTP check has a status code and a certificate.
    assert {dict(k)["name"] for k in found["probe_http_status_code"]} == {"api"}
    assert {dict(k)["name"] for k in found["probe_ssl_earliest_cert_expiry"]} == {"api"}


def test_anyprobe_status_is_the_severity() -> None:
    found = samples(exposition(sample_results()))
    statuses = {dict(k)["name"]: v for k, v in found["anyprobe_status"].items()}
    assert statuses == {
        "api": 0.0,
        "db primary": 1.0,
        "cache": 2.0,
        "odd 'name' | a=b <&>": 3.0,
        "dns": 2.0,
    }


def test_labels_are_the_check_name_target_probe_and_its_own_labels() -> None:
    found = samples(exposition(sample_results()))
    api = next(dict(k) for k in found["probe_success"] if dict(k)["name"] == "api")
    assert api == {
        "name": "api",
        "target": "https://api.example.test/health",
        "probe": "http",
        "team": "payments",
        "env_name": "prod",
        # A check label called "name" cannot replace the check's name.
        "label_name": "shadowed",
    }
    cache = next(dict(k) for k in found["probe_success"] if dict(k)["name"] == "cache")
    assert cache == {"name": "cache", "target": "tcp://cache.example.test:6379", "probe": "tcp"}


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("team", "team"),
        ("env-name", "env_name"),
        ("2fa", "_2fa"),
        ("__meta", "label__meta"),
        ("phase", "label_phase"),
        ("", "_"),
        ("équipe", "_quipe"),
    ],
)
def test_label_names_are_made_valid(key: str, expected: str) -> None:
    assert label_name(key) == expected


def test_one_url_checked_twice_is_one_series() -> None:
    first = make_result("same", status=Status.CRITICAL)
    second = make_result("same", status=Status.OK)
    found = samples(exposition([first, second]))
    assert list(found["anyprobe_status"].values()) == [0.0]


def test_run_metrics_come_with_the_summary() -> None:
    results = sample_results()
    registry = build_registry(
        results, summarize(results, not_finished=2, interrupted="SIGINT"), now=1700000000.0
    )
    found = samples(generate_latest(registry).decode())
    by_status = {dict(k)["status"]: v for k, v in found["anyprobe_run_checks"].items()}
    assert by_status == {"ok": 1.0, "warning": 1.0, "critical": 2.0, "unknown": 1.0}
    assert list(found["anyprobe_run_timestamp_seconds"].values()) == [1700000000.0]
    assert list(found["anyprobe_run_interrupted"].values()) == [1.0]
    assert list(found["anyprobe_run_not_finished"].values()) == [2.0]
    assert list(found["anyprobe_run_duration_seconds"].values()) == [2.5]

    without = samples(generate_latest(build_registry(results)).decode())
    assert not any(name.startswith("anyprobe_run_") for name in without)


@needs_promtool
def test_promtool_accepts_the_exposition() -> None:
    results = sample_results()
    text = exposition(results, summarize(results))
    checked = promtool_check(text)
    assert checked.returncode == 0, checked.stdout + checked.stderr


@needs_promtool
def test_promtool_accepts_awkward_label_values() -> None:
    awkward = make_result(
        'quote " backslash \\ newline \n done',
        target='tcp://127.0.0.1:9/?q="x"',
        labels={"note": 'a "b" \\ c\nd', "1st": "x", "é": "y"},
    )
    text = exposition([awkward, make_result("plain")])
    checked = promtool_check(text)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    found = samples(text)
    names = {dict(k)["name"] for k in found["probe_success"]}
    assert names == {'quote " backslash \\ newline \n done', "plain"}


@needs_promtool
def test_promtool_accepts_an_empty_run() -> None:
    checked = promtool_check(exposition([], summarize([])))
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.mark.anyio
async def test_reporter_writes_the_file_atomically(tmp_path: Path) -> None:
    path = tmp_path / "anyprobe.prom"
    path.write_text("# previous\n")
    results = sample_results()
    await run_reporter(PrometheusReporter(ReporterOptions(path=str(path))), results)

    text = path.read_text()
    assert samples(text) == samples(exposition(results, summarize(results))) | {
        "anyprobe_run_timestamp_seconds": samples(text)["anyprobe_run_timestamp_seconds"]
    }
    # Written under a temporary name and renamed: nothing else is left behind.
    assert os.listdir(tmp_path) == ["anyprobe.prom"]
    if PROMTOOL:
        checked = promtool_check(text)
        assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.mark.anyio
async def test_a_cancelled_report_leaves_the_previous_file(tmp_path: Path) -> None:
    path = tmp_path / "anyprobe.prom"
    path.write_text("# previous\n")
    await cancel_mid_run(PrometheusReporter(ReporterOptions(path=str(path))), [make_result("a")])
    assert path.read_text() == "# previous\n"
    assert os.listdir(tmp_path) == ["anyprobe.prom"]
