"""``anyprobe serve --shard I/N``: replicas that split a config's checks.

Each replica runs only the scheduled checks whose target URL hashes to its
shard (Prometheus' hashmod, as ``run --shard``), and watches only the push
checks whose ``push://NAME`` does; any replica accepts a push. Two replicas
run in one test process (both backends) against a real loopback web server.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from anyprobe import PluginManager
from anyprobe._serve import ProbeServer, load_serve_config
from anyprobe._serve_push import new_token, push_url
from anyprobe._shard import Shard, hashmod
from tests.cli import anyprobe, assert_one_clear_line
from tests.memory_store import MemoryStore
from tests.servers.push import client, series, serving, wait_for
from tests.servers.serve import WebTarget

pytestmark = pytest.mark.anyio

SCHEDULED = 16
PUSHED = ["backup", "etl", "report", "sync"]


def write_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, web: WebTarget | None, window: str
) -> tuple[Path, dict[str, str]]:
    """A config of scheduled checks on ``web`` (one run each: a long interval)
    and push checks; returns it and each push check's token."""
    lines = []
    if web is not None:
        for n in range(SCHEDULED):
            lines.append(f'[[check]]\nname = "web{n}"\nurl = "{web.url}?n={n}"\ninterval = 3600\n')
    tokens = {}
    for name in PUSHED:
        tokens[name] = new_token()
        monkeypatch.setenv(f"{name.upper()}_TOKEN", tokens[name])
        lines.append(
            f'[[check]]\nname = "{name}"\npush = true\n{window}\n'
            f'token_env = "{name.upper()}_TOKEN"\n'
        )
    path = tmp_path / "checks.toml"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path, tokens


def replica(manager: PluginManager, path: Path, index: int) -> ProbeServer:
    config = load_serve_config(str(path), manager)
    shard = Shard(index, 2, "test")
    return ProbeServer(manager, config, config_path=str(path), shard=shard)


def owner(url: str) -> int:
    return hashmod(url, 2)


def test_the_push_checks_of_these_tests_fall_on_both_shards() -> None:
    assert {owner(push_url(name)) for name in PUSHED} == {0, 1}


async def test_each_replica_runs_and_exports_only_its_own_checks(
    manager: PluginManager, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, web_target: WebTarget
) -> None:
    path, tokens = write_config(tmp_path, monkeypatch, web_target, 'interval = "1d"')
    urls = {f"web{n}": f"{web_target.url}?n={n}" for n in range(SCHEDULED)}
    mine = [{name for name, url in urls.items() if owner(url) == i} for i in (0, 1)]
    assert mine[0] and mine[1]  # 16 URLs: all on one shard has odds of 1 in 32768
    watched = [{name for name in PUSHED if owner(push_url(name)) == i} for i in (0, 1)]
    replicas = [replica(manager, path, 0), replica(manager, path, 1)]
    metrics = []
    async with serving(replicas[0]) as first, serving(replicas[1]) as second, client() as http:
        for i, server in enumerate(replicas):
            await wait_for(lambda s=server, i=i: mine[i] <= set(s.latest), f"shard {i}'s checks")
        # A push is accepted by any replica, whichever watches the check.
        other = next(name for name in PUSHED if owner(push_url(name)) == 1)
        pushed = await http.get(f"{first}/push/{tokens[other]}", params={"msg": "to shard 0"})
        for base in (first, second):
            metrics.append((await http.get(f"{base}/metrics")).text)
    for i in (0, 1):
        assert set(series(metrics[i], "anyprobe_status")) - set(PUSHED) == mine[i]
        assert set(series(metrics[i], "anyprobe_push_deadline_timestamp_seconds")) == watched[i]
        assert series(metrics[i], "anyprobe_shard_info") == {"": 1.0}
        assert f'anyprobe_shard_info{{shard="{i}",shards="2"}} 1.0' in metrics[i]
    # Each scheduled check ran once, on one replica.
    assert sorted(web_target.paths) == sorted(f"/?n={n}" for n in range(SCHEDULED))
    assert pushed.status_code == 200
    assert replicas[0].latest[other].summary == "to shard 0"


async def test_the_owner_sees_a_push_another_replica_received(
    manager: PluginManager, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, tokens = write_config(tmp_path, monkeypatch, None, "interval = 0.3\ngrace = 0.2")
    store = MemoryStore()  # one database shared by the replicas
    name = next(name for name in PUSHED if owner(push_url(name)) == 0)
    replicas = [replica(manager, path, 0), replica(manager, path, 1)]
    for server in replicas:
        server.store = store  # type: ignore[attr-defined]
    async with serving(replicas[0]), serving(replicas[1]) as second, client() as http:
        await http.get(f"{second}/push/{tokens[name]}")
        arrival = replicas[1].latest[name].started
        await wait_for(
            lambda: "last at" in getattr(replicas[0].latest.get(name), "summary", ""),
            "the owner's late result after the other replica's push",
        )
    late = replicas[0].latest[name]
    assert late.summary.endswith(f"(last at {arrival.isoformat(timespec='seconds')})")
    # The replica that received the push does not watch the check.
    assert all(
        "no push" not in result.summary
        for check, result in replicas[1].latest.items()
        if owner(push_url(check)) == 0
    )


def test_serve_says_which_shard_it_runs(tmp_path: Path) -> None:
    config = tmp_path / "checks.toml"
    config.write_text(
        "".join(
            f'[[check]]\nname = "c{n}"\nurl = "tcp://127.0.0.1:{n + 1}"\ninterval = 3600\n'
            for n in range(6)
        )
    )
    owned = sum(1 for n in range(6) if hashmod(f"tcp://127.0.0.1:{n + 1}", 3) == 2)
    command = [sys.executable, "-m", "anyprobe", "serve", str(config), "--listen", "127.0.0.1:0"]
    process = subprocess.Popen(
        [*command, "--shard", "auto/3"],
        env={"ANYPROBE_SHARD_INDEX": "2", "PATH": "/usr/bin:/bin"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        line = process.stderr.readline()
        match = re.search(r"serving on (http://\S+) .* as shard 2/3 \((\d+) of 6 checks\)", line)
        assert match, line
        assert int(match.group(2)) == owned
        text = httpx.get(f"{match.group(1)}/metrics", timeout=30).text
        assert 'anyprobe_shard_info{shard="2",shards="3"} 1.0' in text
    finally:
        process.terminate()
        process.wait(30)


@pytest.mark.parametrize(
    ("value", "fragment"),
    [("2/2", "from 0 to 1"), ("1", "expected I/N"), ("x/2", "whole number")],
)
def test_a_bad_shard_is_one_clear_line(value: str, fragment: str) -> None:
    proc = anyprobe("serve", "--listen", "127.0.0.1:0", "--shard", value)
    assert_one_clear_line(proc, "--shard", fragment)
