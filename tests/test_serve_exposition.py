"""What ``anyprobe serve`` answers fast: the text exposition (the same bytes as
prometheus_client's) and the choice of its HTTP server."""

from __future__ import annotations

import dataclasses

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from anyprobe._errors import UsageError
from anyprobe._exposition import TextExposition
from anyprobe._serve_asgi import resolve_server, uvicorn_available
from anyprobe.plugins.prometheus import build_registry
from tests.cli import anyprobe as run_anyprobe
from tests.cli import assert_one_clear_line
from tests.reporter_samples import make_result, sample_results, summarize


def _awkward_results() -> list[object]:
    awkward = make_result(
        'quote " backslash \\ newline \n done',
        target='tcp://127.0.0.1:9/?q="x"',
        labels={"note": 'a "b" \\ c\nd', "1st": "x", "é": "y"},
        duration=1e-7,
        metrics={"http_status": 503, "cert_expiry_days": -2.5},
    )
    per_address = dataclasses.replace(
        make_result("all addresses", probe="http", phases={"connect": 12345678.5}),
        details={
            "addresses": [
                {"address": "127.0.0.1", "status": "ok", "duration": 0.01},
                {"address": "::1", "status": "critical"},
            ],
            "tls": {
                "certificates": [
                    {
                        "fingerprint_sha256": "ab" * 32,
                        "subject": 'CN="x"',
                        "issuer": "CN=ca\\",
                        "sans": ["a", "b"],
                    }
                ]
            },
        },
    )
    expiring = make_result("domain", probe="rdap", metrics={"domain_expiry_timestamp": 1.9e9})
    return [awkward, per_address, expiring, make_result("nan", duration=float("nan"))]


@pytest.mark.parametrize("check_labels", [True, False])
def test_text_exposition_is_what_generate_latest_writes(check_labels: bool) -> None:
    results = [*sample_results(), *_awkward_results()]
    exposition = TextExposition()
    for chosen in (results, results[:1], results[-3:], []):
        registry = build_registry(chosen, check_labels=check_labels)  # type: ignore[arg-type]
        expected = generate_latest(registry)
        assert exposition(registry) == expected
        assert exposition(registry) == expected  # the header lines kept give the same
    with_summary = build_registry(results, summarize(results))  # type: ignore[arg-type]
    assert exposition(with_summary) == generate_latest(with_summary)


def test_a_collector_added_to_a_built_registry_is_written_too() -> None:
    """build_registry's registries carry their gauges as plain data for the fast
    writer; a caller that registers more on one must not lose it."""
    registry = build_registry(sample_results())  # type: ignore[arg-type]
    extra = CollectorRegistry()
    Gauge("extra_gauge", "Added by the caller.", registry=extra).set(7)
    for collector in list(extra._collector_to_names):
        registry.register(collector)
    written = TextExposition()(registry)
    assert written == generate_latest(registry)
    assert b"extra_gauge 7.0" in written


def test_a_registry_with_counters_and_histograms_is_written_as_generate_latest_does() -> None:
    registry = CollectorRegistry()
    Counter("requests", "Requests.", ["code"], registry=registry).labels("200").inc(3)
    Histogram("latency_seconds", "Latency.", registry=registry).observe(0.2)
    Gauge("up", "Up.", registry=registry).set(1)
    assert TextExposition()(registry) == generate_latest(registry)


def test_auto_picks_builtin_on_trio_and_uvicorn_on_asyncio_when_installed() -> None:
    assert resolve_server("auto", trio=True) == "builtin"
    assert resolve_server("hypercorn", trio=False) == "hypercorn"
    assert resolve_server("hypercorn", trio=True) == "hypercorn"
    assert resolve_server("builtin", trio=False) == "builtin"
    expected = "uvicorn" if uvicorn_available() else "builtin"
    assert resolve_server("auto", trio=False) == expected


def test_auto_picks_builtin_on_asyncio_without_uvicorn(monkeypatch: pytest.MonkeyPatch) -> None:
    from anyprobe import _serve_asgi

    monkeypatch.setattr(_serve_asgi, "uvicorn_available", lambda: False)
    assert resolve_server("auto", trio=False) == "builtin"


def test_uvicorn_on_trio_is_refused() -> None:
    with pytest.raises(UsageError, match="asyncio only"):
        resolve_server("uvicorn", trio=True)


def test_serve_with_uvicorn_on_trio_is_one_clear_line() -> None:
    proc = run_anyprobe(
        "serve", "--listen", "127.0.0.1:0", "--backend", "trio", "--server", "uvicorn"
    )
    assert_one_clear_line(proc, "--server uvicorn")
