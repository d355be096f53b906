"""The pushgateway reporter, against a loopback receiver that records each push."""

from __future__ import annotations

import base64

import pytest
from prometheus_client.parser import text_string_to_metric_families

from anyprobe import PluginManager
from anyprobe._config import make_reporter
from anyprobe._model import RunSummary
from anyprobe._run import Run
from anyprobe._targets import build_targets
from anyprobe.plugins.pushgateway import group_path
from tests.servers.serve import PushReceiver

pytestmark = pytest.mark.anyio


async def _run(
    manager: PluginManager, urls: list[str], labels: dict[str, str], options: dict[str, object]
) -> RunSummary:
    targets = build_targets(manager, urls, labels=labels, timeout=2)
    reporter = make_reporter(manager, "pushgateway", options)
    return await Run(list(targets), manager, [reporter]).execute()


async def test_shard_pushes_its_results_to_its_own_group(
    manager: PluginManager, push_receiver: PushReceiver, free_tcp_port: int
) -> None:
    urls = [f"tcp://127.0.0.1:{free_tcp_port}", "tcp://127.0.0.1:1"]
    summary = await _run(
        manager, urls, {"shard": "2", "run_id": "nightly-1"}, {"path": push_receiver.url + "/"}
    )
    assert summary.reporter_failures == ()
    [push] = push_receiver.pushes
    assert push.method == "PUT"
    assert push.path == "/metrics/job/anyprobe/shard/2"
    assert push.content_type.startswith("text/plain; version=0.0.4")
    families = {f.name: f for f in text_string_to_metric_families(push.body.decode())}
    success = families["probe_success"].samples
    assert sorted(s.labels["target"] for s in success) == sorted(urls)
    assert {(s.labels["shard"], s.labels["run_id"]) for s in success} == {("2", "nightly-1")}
    checks = {s.labels["status"]: s.value for s in families["anyprobe_run_checks"].samples}
    assert checks["critical"] == 2


async def test_empty_shard_pushes_its_run_metrics_under_the_environment_s_index(
    manager: PluginManager, push_receiver: PushReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANYPROBE_SHARD_INDEX", "3")
    options = {"url": push_receiver.url, "job": "probes", "grouping": {"site": "eu/1"}}
    summary = await _run(manager, [], {}, options)
    assert summary.reporter_failures == ()
    [push] = push_receiver.pushes
    encoded = base64.urlsafe_b64encode(b"eu/1").decode()
    assert push.path == f"/metrics/job/probes/site@base64/{encoded}/shard/3"
    names = {f.name for f in text_string_to_metric_families(push.body.decode())}
    assert "anyprobe_run_checks" in names
    assert "probe_success" not in names


async def test_refused_push_is_a_reporter_failure(
    manager: PluginManager, push_receiver: PushReceiver
) -> None:
    push_receiver.status = 400
    summary = await _run(manager, ["tcp://127.0.0.1:1"], {"shard": "0"}, {"url": push_receiver.url})
    assert summary.reporter_failures == (
        "reporter pushgateway failed: PushgatewayError: pushgateway "
        f"{push_receiver.url}/metrics/job/anyprobe/shard/0: HTTP 400: pushed metrics are invalid",
    )


async def test_unreachable_gateway_is_a_reporter_failure_without_the_password(
    manager: PluginManager, free_tcp_port: int
) -> None:
    url = f"http://user:s3cret@127.0.0.1:{free_tcp_port}"
    summary = await _run(manager, ["tcp://127.0.0.1:1"], {"shard": "1"}, {"url": url})
    [failure] = summary.reporter_failures
    assert "ConnectError" in failure
    assert "s3cret" not in failure
    assert "user:***@127.0.0.1" in failure


def test_group_path_encodes_values() -> None:
    assert group_path("anyprobe", {"shard": "0"}) == "/metrics/job/anyprobe/shard/0"
    assert group_path("a b", {"x": ""}) == "/metrics/job/a%20b/x@base64/="
