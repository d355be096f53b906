"""``anyprobe serve``: the /probe contract, /metrics, reload, limits, scheduled checks.

Each test starts the server in its own event loop (both backends) on an
ephemeral loopback port and talks to it over real HTTP.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.parser import text_string_to_metric_families

import anyprobe
from anyprobe import PluginManager, UsageError
from anyprobe._serve import (
    FALLBACK_TIMEOUT,
    AllowList,
    ProbeServer,
    is_loopback,
    load_serve_config,
    parse_listen,
    probe_timeout,
)
from tests.servers.serve import SilentTarget, WebTarget

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("asgi_server")]

#: Longest any request of these tests may take (a bound, not an assertion on time).
REQUEST_LIMIT = 30.0


@asynccontextmanager
async def running(
    manager: PluginManager, config: Path | None = None, **options: Any
) -> AsyncIterator[str]:
    """Serve on 127.0.0.1 (an ephemeral port) until the block ends; yields the base URL."""
    from tests.servers.push import serving

    path = str(config) if config else None
    server = ProbeServer(manager, load_serve_config(path, manager), config_path=path, **options)
    async with serving(server) as url:
        yield url


def samples(text: str) -> dict[str, float]:
    """Unlabelled samples of an exposition, parsed by prometheus_client."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if not sample.labels:
                found[sample.name] = sample.value
    return found


def labelled(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    return [
        (sample.labels, sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    ]


async def get(url: str, **kwargs: Any) -> httpx.Response:
    async with httpx.AsyncClient(timeout=REQUEST_LIMIT) as client:
        return await client.get(url, **kwargs)


# -- the /probe contract --------------------------------------------------------


async def test_ok_target_is_probe_success_1(manager: PluginManager, web_target: WebTarget) -> None:
    async with running(manager) as url:
        response = await get(f"{url}/probe", params={"target": web_target.url})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    found = samples(response.text)
    assert found["probe_success"] == 1.0
    assert found["probe_http_status_code"] == 200.0
    assert found["probe_duration_seconds"] > 0
    # One target per answer: the scraper's labels identify it, as with blackbox_exporter.
    assert labelled(response.text, "probe_success") == [({}, 1.0)]


async def test_dead_port_is_200_with_probe_success_0(
    manager: PluginManager, free_tcp_port: int
) -> None:
    async with running(manager) as url:
        response = await get(
            f"{url}/probe", params={"target": f"127.0.0.1:{free_tcp_port}", "module": "tcp_connect"}
        )
    assert response.status_code == 200
    found = samples(response.text)
    assert found["probe_success"] == 0.0
    assert found["anyprobe_status"] == 2.0


async def test_missing_target_is_400(manager: PluginManager) -> None:
    async with running(manager) as url:
        response = await get(f"{url}/probe")
        blank = await get(f"{url}/probe", params={"target": " "})
    assert response.status_code == 400
    assert response.text == "Target parameter is missing\n"
    assert blank.status_code == 400


async def test_unknown_module_is_400_naming_the_known_ones(
    manager: PluginManager, web_target: WebTarget
) -> None:
    async with running(manager) as url:
        response = await get(f"{url}/probe", params={"target": web_target.url, "module": "http2xx"})
    assert response.status_code == 400
    assert "Unknown module 'http2xx' (did you mean 'http_2xx'?)" in response.text
    assert "tcp_connect" in response.text


async def test_target_for_another_probe_is_400(manager: PluginManager) -> None:
    async with running(manager) as url:
        response = await get(
            f"{url}/probe", params={"target": "tcp://127.0.0.1:22", "module": "http_2xx"}
        )
    assert response.status_code == 400
    assert "module http_2xx runs probe http" in response.text


async def test_debug_shows_trace_metrics_and_module(
    manager: PluginManager, web_target: WebTarget, tmp_path: Path
) -> None:
    config = tmp_path / "serve.toml"
    config.write_text(
        '[module.web]\nprobe = "http"\ntimeout = 4\nexpect_status = [200]\n'
        'password = "hunter2"\nusername = "probe"\n'
    )
    async with running(manager, config) as url:
        response = await get(
            f"{url}/probe", params={"target": web_target.url, "module": "web", "debug": "true"}
        )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    logs, _, rest = text.partition("Metrics that would have been returned:")
    metrics, _, module = rest.partition("Module configuration:")
    assert logs.startswith("Logs for the probe:")
    assert "> GET / " in logs or "> GET /\n" in logs
    assert "< HTTP/1.1 200" in logs
    assert ": ok: HTTP 200" in logs
    assert samples(metrics)["probe_success"] == 1.0
    assert "[module.web]" in module
    assert "timeout = 4" in module
    assert "expect_status = [200]" in module
    assert "hunter2" not in text


async def test_scrape_timeout_header_ends_the_probe_at_its_deadline(
    manager: PluginManager, silent_target: SilentTarget
) -> None:
    async with running(manager) as url:
        response = await get(
            f"{url}/probe",
            params={"target": silent_target.url, "debug": "true"},
            headers={"X-Prometheus-Scrape-Timeout-Seconds": "1.5"},
        )
    # 1.5 s scrape timeout minus the 0.5 s offset.
    assert "critical: timed out after 1 s during first_byte" in response.text
    assert (
        samples(
            response.text.split("Metrics that would have been returned:")[1].split(
                "Module configuration:"
            )[0]
        )["probe_success"]
        == 0.0
    )


async def test_module_timeout_wins_when_smaller(
    manager: PluginManager, silent_target: SilentTarget, tmp_path: Path
) -> None:
    config = tmp_path / "serve.toml"
    config.write_text('[module.quick]\nprobe = "http"\ntimeout = 0.3\n')
    async with running(manager, config) as url:
        response = await get(
            f"{url}/probe",
            params={"target": silent_target.url, "module": "quick", "debug": "true"},
            headers={"X-Prometheus-Scrape-Timeout-Seconds": "10"},
        )
        plain = await get(
            f"{url}/probe",
            params={"target": silent_target.url, "module": "quick"},
            headers={"X-Prometheus-Scrape-Timeout-Seconds": "10"},
        )
    assert "timed out after 0.3 s" in response.text
    assert samples(plain.text)["probe_success"] == 0.0


async def test_bad_scrape_timeout_header_is_400(
    manager: PluginManager, web_target: WebTarget
) -> None:
    async with running(manager) as url:
        response = await get(
            f"{url}/probe",
            params={"target": web_target.url},
            headers={"X-Prometheus-Scrape-Timeout-Seconds": "soon"},
        )
    assert response.status_code == 400
    assert "X-Prometheus-Scrape-Timeout-Seconds" in response.text


def test_probe_timeout_is_the_smaller_of_module_and_scrape() -> None:
    assert probe_timeout(None, None, 0.5) == FALLBACK_TIMEOUT == 120.0
    assert probe_timeout(5.0, None, 0.5) == 5.0
    assert probe_timeout(None, "10", 0.5) == 9.5
    assert probe_timeout(5.0, "10", 0.5) == 5.0
    assert probe_timeout(15.0, "10", 0.5) == 9.5
    assert probe_timeout(None, "0.4", 0.5) == 0.4
    for bad in ("0", "-1", "nan", "inf", "x"):
        with pytest.raises(ValueError):
            probe_timeout(None, bad, 0.5)


async def test_hostname_overrides_host_header(
    manager: PluginManager, web_target: WebTarget
) -> None:
    async with running(manager) as url:
        response = await get(
            f"{url}/probe", params={"target": web_target.url, "hostname": "www.example.test"}
        )
    assert samples(response.text)["probe_success"] == 1.0
    assert web_target.hosts == [f"www.example.test:{web_target.port}"]


async def test_hostname_on_a_probe_without_tls_is_400(
    manager: PluginManager, tmp_path: Path
) -> None:
    config = tmp_path / "serve.toml"
    config.write_text('[module.s]\nprobe = "ssh"\n')
    async with running(manager, config) as url:
        response = await get(
            f"{url}/probe",
            params={"target": "ssh://monitor@127.0.0.1", "module": "s", "hostname": "x"},
        )
    assert response.status_code == 400
    assert "hostname= applies to probes with TLS (not ssh)" in response.text


# -- the metrics come from a plugin (anyprobe_metrics_registry) ---------------------


class OwnMetrics:
    """Answers anyprobe_metrics_registry before the prometheus plugin does."""

    calls: list[tuple[int, bool]]

    def __init__(self) -> None:
        self.calls = []

    @anyprobe.hookimpl(tryfirst=True)
    def anyprobe_metrics_registry(
        self, results: list[anyprobe.Result], check_labels: bool
    ) -> CollectorRegistry:
        self.calls.append((len(results), check_labels))
        registry = CollectorRegistry()
        answered = Gauge("own_results", "Results given to the plugin.", registry=registry)
        answered.set(len(results))
        return registry


class BrokenMetrics:
    @anyprobe.hookimpl(tryfirst=True)
    def anyprobe_metrics_registry(self, results: list[anyprobe.Result]) -> None:
        raise RuntimeError("no metrics today")


async def test_a_plugin_implementing_anyprobe_metrics_registry_builds_the_answers(
    manager: PluginManager, web_target: WebTarget, tmp_path: Path
) -> None:
    plugin = OwnMetrics()
    manager.register(plugin, name="own-metrics")
    config = tmp_path / "serve.toml"
    config.write_text(f'[[check]]\nname = "web"\nurl = "{web_target.url}"\ninterval = 3600\n')
    async with running(manager, config) as url:
        response = await get(f"{url}/probe", params={"target": web_target.url})
        for _ in range(400):  # bounded: until the scheduled check has run once
            metrics = await get(f"{url}/metrics")
            if "own_results" in metrics.text:
                break
            await anyio.sleep(0.05)
    assert samples(response.text) == {"own_results": 1.0}
    assert samples(metrics.text)["own_results"] == 1.0
    assert "probe_success" not in metrics.text
    # Asked once at start (no results), then per /probe without check labels,
    # per /metrics with them.
    assert plugin.calls[0] == (0, False)
    assert (1, False) in plugin.calls
    assert (1, True) in plugin.calls


async def test_a_metrics_plugin_that_raises_is_broken_and_the_next_one_answers(
    manager: PluginManager, web_target: WebTarget
) -> None:
    manager.register(BrokenMetrics(), name="broken-metrics")
    async with running(manager) as url:
        response = await get(f"{url}/probe", params={"target": web_target.url})
    assert samples(response.text)["probe_success"] == 1.0
    broken = {info.name: info.error for info in manager.broken}
    assert broken == {
        "broken-metrics": "anyprobe_metrics_registry raised RuntimeError: no metrics today"
    }


def test_serve_without_a_metrics_plugin_refuses_to_start() -> None:
    from anyprobe.plugins import http, tcp

    manager = PluginManager()
    manager.register(http)
    manager.register(tcp)
    assert "prometheus" not in manager.reporters
    with pytest.raises(UsageError, match="implements anyprobe_metrics_registry"):
        ProbeServer(manager, load_serve_config(None, manager))


# -- /metrics, /-/healthy, /-/reload -----------------------------------------------


async def test_metrics_count_probes_by_module_and_result(
    manager: PluginManager, web_target: WebTarget, free_tcp_port: int
) -> None:
    async with running(manager) as url:
        await get(f"{url}/probe", params={"target": web_target.url})
        await get(f"{url}/probe", params={"target": f"http://127.0.0.1:{free_tcp_port}/"})
        await get(f"{url}/probe", params={"module": "nope", "target": "x"})
        response = await get(f"{url}/metrics")
    assert response.status_code == 200
    text = response.text
    probes = {
        (labels["module"], labels["result"]): value
        for labels, value in labelled(text, "anyprobe_probes_total")
    }
    assert probes == {("http_2xx", "success"): 1.0, ("http_2xx", "failure"): 1.0}
    errors = labelled(text, "anyprobe_probe_errors_total")
    assert [(labels["module"], value) for labels, value in errors] == [("http_2xx", 1.0)]
    rejected = {
        labels["reason"]: value
        for labels, value in labelled(text, "anyprobe_probe_requests_rejected_total")
    }
    assert rejected == {"unknown_module": 1.0}
    assert samples(text)["anyprobe_config_last_reload_successful"] == 1.0
    assert "process_cpu_seconds_total" in samples(text)


async def test_healthy(manager: PluginManager) -> None:
    async with running(manager) as url:
        response = await get(f"{url}/-/healthy")
    assert response.status_code == 200
    assert response.text == "Healthy\n"


async def test_reload_with_a_broken_config_keeps_the_old_one(
    manager: PluginManager, web_target: WebTarget, tmp_path: Path
) -> None:
    config = tmp_path / "serve.toml"
    config.write_text('[module.mine]\nprobe = "http"\nexpect_status = [200]\n')
    async with running(manager, config) as url, httpx.AsyncClient(timeout=REQUEST_LIMIT) as client:
        params = {"target": web_target.url, "module": "mine"}
        assert samples((await client.get(f"{url}/probe", params=params)).text)["probe_success"] == 1

        config.write_text('[module.mine]\nprobe = "http"\nexpect_status = [200\n')
        broken = await client.post(f"{url}/-/reload")
        assert broken.status_code == 500
        assert "keeping the running one" in broken.text
        assert "invalid TOML" in broken.text
        config.write_text('[module.mine]\nprobe = "htp"\n')
        unknown = await client.post(f"{url}/-/reload")
        assert unknown.status_code == 500
        assert "unknown probe 'htp'" in unknown.text
        still = await client.get(f"{url}/probe", params=params)
        assert samples(still.text)["probe_success"] == 1
        metrics = await client.get(f"{url}/metrics")
        assert samples(metrics.text)["anyprobe_config_last_reload_successful"] == 0

        config.write_text('[module.other]\nprobe = "http"\n')
        assert (await client.post(f"{url}/-/reload")).status_code == 200
        gone = await client.get(f"{url}/probe", params=params)
        new = await client.get(f"{url}/probe", params={**params, "module": "other"})
        metrics = await client.get(f"{url}/metrics")
    assert gone.status_code == 400
    assert samples(new.text)["probe_success"] == 1
    assert samples(metrics.text)["anyprobe_config_last_reload_successful"] == 1


async def test_a_reload_applies_to_a_target_probed_before(
    manager: PluginManager, web_target: WebTarget, tmp_path: Path
) -> None:
    config = tmp_path / "serve.toml"
    config.write_text('[module.mine]\nprobe = "http"\nexpect_status = [200]\n')
    async with running(manager, config) as url, httpx.AsyncClient(timeout=REQUEST_LIMIT) as client:
        params = {"target": web_target.url, "module": "mine"}
        for _ in range(2):  # the second time, the target is the one kept from the first
            answer = await client.get(f"{url}/probe", params=params)
            assert samples(answer.text)["probe_success"] == 1
        config.write_text('[module.mine]\nprobe = "http"\nexpect_status = [204]\n')
        assert (await client.post(f"{url}/-/reload")).status_code == 200
        after = await client.get(f"{url}/probe", params=params)
    assert samples(after.text)["probe_success"] == 0


# -- safety --------------------------------------------------------------------------


async def test_allow_targets_limits_where_probe_connects(
    manager: PluginManager, web_target: WebTarget, tmp_path: Path
) -> None:
    config = tmp_path / "serve.toml"
    config.write_text('[serve]\nallow_targets = ["127.0.0.1/32", "*.allowed.test"]\n')
    async with running(manager, config) as url:
        allowed = await get(f"{url}/probe", params={"target": web_target.url})
        refused = await get(
            f"{url}/probe", params={"target": f"http://127.0.0.2:{web_target.port}/"}
        )
        outside = await get(f"{url}/probe", params={"target": "http://10.1.2.3/"})
    assert samples(allowed.text)["probe_success"] == 1
    assert refused.status_code == 403
    assert "'127.0.0.2' is not in allow_targets" in refused.text
    assert outside.status_code == 403
    assert web_target.paths == ["/"]


def test_allow_list_matches_names_and_networks() -> None:
    allow = AllowList(["*.example.com", "10.0.0.0/8", "2001:db8::/32", "db?.internal"])
    assert allow.allows("www.example.com")
    assert allow.allows("WWW.Example.COM")
    assert not allow.allows("example.com")
    assert not allow.allows("evil.com")
    assert allow.allows("10.20.30.40")
    assert not allow.allows("11.0.0.1")
    assert allow.allows("2001:db8::1")
    assert allow.allows("[2001:db8::1]")
    assert allow.allows("db1.internal")
    assert not allow.allows("db10.internal")
    assert AllowList().allows("anything")
    with pytest.raises(ValueError, match="neither a host pattern"):
        AllowList(["http://x/"])


async def test_probes_beyond_concurrency_and_queue_get_503(
    manager: PluginManager, silent_target: SilentTarget
) -> None:
    async with (
        running(manager, concurrency=1, max_waiting=0) as url,
        httpx.AsyncClient(timeout=REQUEST_LIMIT) as client,
        anyio.create_task_group() as tg,
    ):
        first: list[httpx.Response] = []

        async def slow_probe() -> None:
            first.append(
                await client.get(
                    f"{url}/probe",
                    params={"target": silent_target.url},
                    headers={"X-Prometheus-Scrape-Timeout-Seconds": "2.5"},
                )
            )

        tg.start_soon(slow_probe)
        assert await anyio.to_thread.run_sync(silent_target.wait_connected)
        busy = await client.get(f"{url}/probe", params={"target": silent_target.url})
        metrics = await client.get(f"{url}/metrics")
    assert busy.status_code == 503
    assert busy.headers["retry-after"] == "1"
    assert "Busy" in busy.text
    assert samples(first[0].text)["probe_success"] == 0
    assert samples(metrics.text)["anyprobe_probes_in_flight"] == 1


async def test_waiting_probe_runs_when_a_slot_frees(
    manager: PluginManager, silent_target: SilentTarget, web_target: WebTarget
) -> None:
    async with (
        running(manager, concurrency=1, max_waiting=1) as url,
        httpx.AsyncClient(timeout=REQUEST_LIMIT) as client,
        anyio.create_task_group() as tg,
    ):
        answers: dict[str, httpx.Response] = {}

        async def probe(key: str, target: str, scrape_timeout: str) -> None:
            answers[key] = await client.get(
                f"{url}/probe",
                params={"target": target},
                headers={"X-Prometheus-Scrape-Timeout-Seconds": scrape_timeout},
            )

        tg.start_soon(probe, "slow", silent_target.url, "1.5")
        assert await anyio.to_thread.run_sync(silent_target.wait_connected)
        # It waits for the slow probe's slot (1 s), within its own 9.5 s.
        tg.start_soon(probe, "waiting", web_target.url, "10")
    assert samples(answers["slow"].text)["probe_success"] == 0
    assert answers["waiting"].status_code == 200
    assert samples(answers["waiting"].text)["probe_success"] == 1


# -- scheduled checks ------------------------------------------------------------------


async def test_scheduled_checks_export_latest_results_and_report_changes(
    manager: PluginManager, web_target: WebTarget, free_tcp_port: int, tmp_path: Path
) -> None:
    report = tmp_path / "changes.jsonl"
    config = tmp_path / "serve.toml"
    config.write_text(
        f'[[check]]\nname = "web"\nurl = "{web_target.url}"\ninterval = 0.05\n'
        'labels = { team = "core" }\n\n'
        f'[[check]]\nname = "db"\nurl = "tcp://127.0.0.1:{free_tcp_port}"\ninterval = 0.05\n\n'
        f'[[reporter]]\ntype = "jsonl"\npath = "{report}"\n'
    )
    async with running(manager, config) as url, httpx.AsyncClient(timeout=REQUEST_LIMIT) as client:
        text = ""
        for _ in range(400):  # bounded: until each check has run a few times
            text = (await client.get(f"{url}/metrics")).text
            runs = sum(v for _, v in labelled(text, "anyprobe_scheduled_checks_total"))
            if runs >= 8:
                break
            await anyio.sleep(0.05)
    success = {labels["name"]: (labels, value) for labels, value in labelled(text, "probe_success")}
    assert success["web"][1] == 1.0
    assert success["web"][0]["team"] == "core"
    assert success["web"][0]["target"] == web_target.url
    assert success["db"][1] == 0.0
    assert runs >= 8
    # Only state changes reach the reporters: each check's first result, once.
    lines = [json.loads(line) for line in report.read_text().splitlines()]
    assert sorted((r["name"], r["status"]) for r in lines) == [("db", "critical"), ("web", "ok")]


# -- listening -------------------------------------------------------------------------


def test_listen_addresses() -> None:
    assert parse_listen("127.0.0.1:9115") == ("127.0.0.1", 9115)
    assert parse_listen("[::1]:0") == ("::1", 0)
    for bad in ("9115", ":9115", "host:port", "127.0.0.1:70000"):
        with pytest.raises(UsageError):
            parse_listen(bad)
    assert is_loopback("127.0.0.2") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.0.2.1")
