"""A real Prometheus shards /probe scrapes across four ``anyprobe serve`` replicas.

Prometheus (Debian's package) is started on a loopback port with its own
temporary storage; its scrape config keeps, for replica i, the targets whose
``hashmod`` of ``__param_target`` modulo 4 is i. Every target must end up
scraped by exactly one replica: the one ``--shard i/4`` picks for it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import pytest

from anyprobe._shard import Shard
from tests.servers.serve import WebTarget

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("prometheus") is None, reason="prometheus is not installed"),
]

REPLICAS = 4
TARGETS = 200
#: Longest a process may take to start or stop, and the whole wait for the scrapes.
PROCESS_LIMIT = 30.0
SCRAPES_LIMIT = 45.0


def free_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def replica(index: int) -> Iterator[str]:
    """One ``anyprobe serve`` process on an ephemeral loopback port; yields host:port."""
    process = subprocess.Popen(
        [sys.executable, "-m", "anyprobe", "serve", "--listen", "127.0.0.1:0"],
        env={**os.environ, "ANYPROBE_LOAD_PLUGINS": ""},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        line = process.stderr.readline()
        match = re.search(r"serving on http://(\S+)", line)
        assert match, f"replica {index}: {line}"
        yield match.group(1)
    finally:
        process.terminate()
        assert process.wait(PROCESS_LIMIT) == 0


def scrape_config(targets: list[str], replicas: list[str]) -> dict[str, object]:
    jobs = []
    for index, address in enumerate(replicas):
        jobs.append(
            {
                "job_name": f"replica-{index}",
                "metrics_path": "/probe",
                "params": {"module": ["http_2xx"]},
                "static_configs": [{"targets": targets}],
                "relabel_configs": [
                    {"source_labels": ["__address__"], "target_label": "__param_target"},
                    {
                        "source_labels": ["__param_target"],
                        "modulus": REPLICAS,
                        "target_label": "__tmp_hash",
                        "action": "hashmod",
                    },
                    {"source_labels": ["__tmp_hash"], "regex": str(index), "action": "keep"},
                    {"source_labels": ["__param_target"], "target_label": "instance"},
                    {"target_label": "__address__", "replacement": address},
                ],
            }
        )
    return {
        "global": {"scrape_interval": "2s", "scrape_timeout": "2s"},
        "scrape_configs": jobs,
    }


@contextmanager
def prometheus(config: dict[str, object], directory: Path) -> Iterator[str]:
    """Prometheus on a loopback port with its own storage; yields its base URL."""
    config_file = directory / "prometheus.yml"
    config_file.write_text(json.dumps(config))  # JSON is YAML
    port = free_port()
    log = (directory / "prometheus.log").open("w")
    process = subprocess.Popen(
        [
            "prometheus",
            f"--config.file={config_file}",
            f"--storage.tsdb.path={directory / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(PROCESS_LIMIT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(PROCESS_LIMIT)
        log.close()


def query(base: str, promql: str) -> list[dict[str, object]]:
    response = httpx.get(f"{base}/api/v1/query", params={"query": promql}, timeout=10)
    response.raise_for_status()
    data = response.json()["data"]["result"]
    assert isinstance(data, list)
    return data


def test_prometheus_hashmod_sends_each_target_to_the_replica_shard_picks(
    web_target: WebTarget, tmp_path: Path
) -> None:
    targets = [f"{web_target.url}t/{i}" for i in range(TARGETS)]
    with ExitStack() as stack:
        replicas = [stack.enter_context(replica(i)) for i in range(REPLICAS)]
        base = stack.enter_context(prometheus(scrape_config(targets, replicas), tmp_path))
        series: list[dict[str, object]] = []
        deadline = time.monotonic() + SCRAPES_LIMIT
        while time.monotonic() < deadline:  # bounded: until every target has been scraped
            try:
                series = query(base, "probe_success")
            except httpx.HTTPError:
                series = []  # not up yet
            if len({s["metric"]["instance"] for s in series}) >= TARGETS:  # type: ignore[index]
                break
            time.sleep(0.5)
        active = httpx.get(f"{base}/api/v1/targets", params={"state": "active"}, timeout=10)
        active_targets = active.json()["data"]["activeTargets"]

    scraped: dict[str, set[str]] = {}
    for entry in series:
        metric = entry["metric"]
        assert isinstance(metric, dict)
        scraped.setdefault(metric["instance"], set()).add(metric["job"])
        assert entry["value"][1] == "1"  # type: ignore[index]
    assert set(scraped) == set(targets)
    for url, jobs in scraped.items():
        [job] = jobs  # exactly one replica scraped it
        index = int(job.removeprefix("replica-"))
        assert Shard(index, REPLICAS, "").owns(url)
    # Prometheus kept each target in one job only, and every replica got some.
    per_job: dict[str, int] = {}
    for entry in active_targets:
        per_job[entry["labels"]["job"]] = per_job.get(entry["labels"]["job"], 0) + 1
    assert sum(per_job.values()) == TARGETS
    assert sorted(per_job) == [f"replica-{i}" for i in range(REPLICAS)]
    # The replicas really probed the targets: the web server saw every path.
    assert {f"/t/{i}" for i in range(TARGETS)} <= set(web_target.paths)
