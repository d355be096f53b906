"""``anyprobe serve --shard I/N`` replicas sharing one real PostgreSQL.

Two replicas run the same config, each its shard's checks, and write to one
database on a PostgreSQL server the tests start on loopback
(tests/servers/postgres.py). Either replica serves every check on its API;
an alert is sent once, by the replica that owns the check, also for a push
that the other replica received.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from anyprobe import PluginManager
from anyprobe._serve import ProbeServer, load_serve_config
from anyprobe._serve_push import new_token, push_url
from anyprobe._shard import Shard, hashmod
from anyprobe._store_backends import open_store
from tests.servers.push import client, serving, wait_for
from tests.servers.serve import WebTarget
from tests.servers.webhook import WebhookReceiver

pytestmark = pytest.mark.anyio

SCHEDULED = 8


def write_config(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    database: str,
    web: WebTarget,
    down_port: int,
    receiver: WebhookReceiver,
) -> tuple[Path, str]:
    token = new_token()
    monkeypatch.setenv("NIGHTLY_TOKEN", token)
    lines = [f'[store]\nurl = "{database}"\n']
    for n in range(SCHEDULED):
        lines.append(f'[[check]]\nname = "web{n}"\nurl = "{web.url}?n={n}"\ninterval = 3600\n')
    lines.append(f'[[check]]\nname = "down"\nurl = "tcp://127.0.0.1:{down_port}"\ninterval = 0.1\n')
    lines.append(
        '[[check]]\nname = "nightly"\npush = true\ninterval = 0.5\ngrace = 0.2\n'
        'token_env = "NIGHTLY_TOKEN"\n'
    )
    lines.append(
        f'[[reporter]]\ntype = "webhook"\nname = "oncall"\nurl = "{receiver.url}"\n'
        'mode = "on_change"\nbackoff = 0\n'
    )
    lines.append(
        '[[alert]]\nname = "page"\nchecks = ["down", "nightly"]\nnotify = ["oncall"]\n'
        "failure_threshold = 1\nsuccess_threshold = 1\n"
    )
    path = tmp_path / "monitor.toml"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path, token


def replicas(manager: PluginManager, path: Path) -> list[ProbeServer]:
    made = []
    for index in (0, 1):
        config = load_serve_config(str(path), manager)
        server = ProbeServer(manager, config, config_path=str(path), shard=Shard(index, 2, "test"))
        server.push.shard_poll = 0.05
        made.append(server)
    return made


def notices(receiver: WebhookReceiver, check: str) -> list[str]:
    return [
        body["details"]["alert"]["event"] for body in receiver.bodies() if body["name"] == check
    ]


async def test_replicas_share_one_postgresql_every_check_shown_each_alert_sent_once(
    manager: PluginManager,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    postgres_url: str,
    web_target: WebTarget,
    closed_port: int,
    webhook_receiver: WebhookReceiver,
) -> None:
    path, token = write_config(
        tmp_path, monkeypatch, postgres_url, web_target, closed_port, webhook_receiver
    )
    down_url = f"tcp://127.0.0.1:{closed_port}"
    owner = hashmod(down_url, 2)
    servers = replicas(manager, path)
    names = {f"web{n}" for n in range(SCHEDULED)} | {"down"}
    store = open_store(postgres_url, tmp_path)
    try:
        async with serving(servers[0]) as first, serving(servers[1]) as second, client() as http:
            bases = [first, second]
            # Every scheduled check runs on one replica and reaches the shared store.
            await wait_for_store(store, names)
            # The failing check runs again and again on its owner: plenty of
            # chances to alert twice; wait until it has five results stored.
            await wait_for_results(store, "down", 5)
            for base in bases:  # either replica serves every check
                listed = (await http.get(f"{base}/api/v1/checks")).json()["checks"]
                statuses = {check["name"]: check["status"] for check in listed}
                assert names <= set(statuses), statuses
                assert statuses["down"] == "critical"
                assert all(statuses[f"web{n}"] == "ok" for n in range(SCHEDULED))
            # The push check: late on its owner, then pushed to the OTHER replica.
            push_owner = hashmod(push_url("nightly"), 2)
            await wait_for(lambda: "firing" in notices(webhook_receiver, "nightly"), "late")
            other = bases[1 - push_owner]
            answer = await http.get(f"{other}/push/{token}", params={"msg": "backup done"})
            assert answer.status_code == 200
            await wait_for(
                lambda: "resolved" in notices(webhook_receiver, "nightly"),
                "the owner resolving the alert after the other replica's push",
            )
    finally:
        await store.aclose()
    assert notices(webhook_receiver, "down") == ["firing"]
    nightly = notices(webhook_receiver, "nightly")
    assert nightly[: nightly.index("resolved") + 1] == ["firing", "resolved"]
    assert servers[owner].alerts.firing() and not servers[1 - owner].alerts.firing()
    assert token not in json.dumps(webhook_receiver.bodies())


async def wait_for_store(store: object, names: set[str]) -> None:
    found: set[str] = set()

    async def look() -> bool:
        found.update(await store.latest())  # type: ignore[attr-defined]
        return names <= found

    await poll(look, f"every check in the shared store ({sorted(names - found)} missing)")


async def wait_for_results(store: object, check: str, count: int) -> None:
    async def look() -> bool:
        results = await store.results(check, 0.0)  # type: ignore[attr-defined]
        return len(results) >= count

    await poll(look, f"{count} results of {check} in the store")


async def poll(look: object, what: str) -> None:
    import anyio

    for _ in range(1200):  # 60 s at most: a bound, not a timing assertion
        if await look():  # type: ignore[operator]
            return
        await anyio.sleep(0.05)
    raise AssertionError(f"never happened: {what}")
