"""Alerts through a real ``anyprobe serve``: a TCP target that goes down and
comes back (a listener closed and opened again), a real webhook receiver, the
maintenance API and /metrics."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from anyprobe import PluginManager
from anyprobe._serve import ProbeServer, load_serve_config
from tests.memory_store import MemoryStore
from tests.servers.banner import TlsCa
from tests.servers.push import serving
from tests.servers.smtp import SmtpServer
from tests.servers.webhook import WebhookReceiver

pytestmark = pytest.mark.anyio

#: Longest a request, or the wait for a notice, may take (a bound, not a timing assertion).
LIMIT = 30.0


class Listener:
    """A TCP port on 127.0.0.1 that a test opens and closes (refused while
    closed), served by a thread: it accepts and closes each connection."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    async def open(self) -> None:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        sock.listen(128)
        sock.settimeout(0.05)
        stop = self._stop = threading.Event()

        def serve() -> None:
            with sock:
                while not stop.is_set():  # bounded by close()
                    try:
                        client, _ = sock.accept()
                    except TimeoutError:
                        continue
                    client.close()

        self._thread = threading.Thread(target=serve, daemon=True)
        self._thread.start()

    async def close(self) -> None:
        assert self._thread is not None
        self._stop.set()
        await anyio.to_thread.run_sync(self._thread.join, LIMIT)
        self._thread = None

    async def __aenter__(self) -> Listener:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._thread is not None:
            await self.close()


@asynccontextmanager
async def running(
    manager: PluginManager, config: Path, store: MemoryStore | None = None
) -> AsyncIterator[tuple[str, ProbeServer]]:
    server = ProbeServer(manager, load_serve_config(str(config), manager), config_path=str(config))
    if store is not None:
        server.store = store  # type: ignore[attr-defined]
    async with serving(server) as url:
        yield url, server


def config_file(
    tmp_path: Path,
    port: int,
    receiver: WebhookReceiver,
    extra: str = "",
    other_port: int | None = None,
) -> Path:
    path = tmp_path / "serve.toml"
    other = other_port or port
    path.write_text(
        f'[[check]]\nname = "db"\nurl = "tcp://127.0.0.1:{port}"\ninterval = 0.05\ntimeout = 2\n\n'
        f'[[check]]\nname = "other"\nurl = "tcp://127.0.0.1:{other}"\ninterval = 0.05\n\n'
        f'[[reporter]]\ntype = "webhook"\nname = "oncall"\nurl = "{receiver.url}"\n'
        'mode = "on_change"\nbackoff = 0\n\n'
        f'[[reporter]]\ntype = "jsonl"\npath = "{tmp_path / "changes.jsonl"}"\n\n'
        '[[alert]]\nname = "page"\nchecks = ["db"]\nnotify = ["oncall"]\n' + extra,
        encoding="utf-8",
    )
    return path


async def wait_for(condition: Callable[[], bool]) -> None:
    for _ in range(int(LIMIT / 0.02)):  # bounded
        if condition():
            return
        await anyio.sleep(0.02)
    raise AssertionError(f"not true within {LIMIT:g} s")


def events(receiver: WebhookReceiver) -> list[tuple[str, str, str]]:
    return [(b["name"], b["details"]["alert"]["event"], b["status"]) for b in receiver.bodies()]


def failures(server: ProbeServer) -> int:
    return failures_of(server, "page")


def failures_of(server: ProbeServer, alert: str) -> int:
    state = server.alerts.state.get((alert, "db"))
    return 0 if state is None else state.failures


def sample(text: str, name: str, **labels: str) -> float | None:
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return None


async def test_a_target_down_then_up_fires_once_and_resolves_once(
    manager: PluginManager,
    webhook_receiver: WebhookReceiver,
    free_tcp_port: int,
    tmp_path: Path,
) -> None:
    target = Listener(free_tcp_port)
    config = config_file(tmp_path, free_tcp_port, webhook_receiver)
    async with (
        target,
        running(manager, config) as (url, server),
        httpx.AsyncClient(timeout=LIMIT) as client,
    ):
        await wait_for(lambda: "db" in server.latest and server.latest["db"].status.value == "ok")
        await target.close()
        await wait_for(lambda: len(webhook_receiver.requests) >= 1)
        assert events(webhook_receiver) == [("db", "firing", "critical")]
        [firing] = server.alerts.firing()
        assert (firing.alert, firing.check) == ("page", "db")
        assert firing.failures >= 3
        await target.open()
        await wait_for(lambda: len(webhook_receiver.requests) >= 2)
        # Counted once the receiver's answer is back: wait for it.
        registry = server.metrics.registry
        total = "anyprobe_notifications_total"
        await wait_for(lambda: registry.get_sample_value(total, {"notifier": "oncall"}) == 2)
        metrics = (await client.get(f"{url}/metrics")).text
    assert events(webhook_receiver) == [("db", "firing", "critical"), ("db", "resolved", "ok")]
    # The reporter no alert names still gets every status change, as without alerts.
    changes = [json.loads(line) for line in (tmp_path / "changes.jsonl").read_text().splitlines()]
    assert [c["status"] for c in changes if c["name"] == "db"] == ["ok", "critical", "ok"]
    assert all("alert" not in c.get("details", {}) for c in changes)
    body = webhook_receiver.bodies()[0]
    assert body["details"]["alert"]["alert"] == "page"
    assert body["details"]["alert"]["since"]
    assert sample(metrics, "anyprobe_notifications_total", notifier="oncall") == 2
    assert sample(metrics, "anyprobe_alerts_firing") == 0


async def test_maintenance_from_the_api_holds_the_alert_until_it_ends(
    manager: PluginManager,
    webhook_receiver: WebhookReceiver,
    free_tcp_port: int,
    tmp_path: Path,
) -> None:
    target = Listener(free_tcp_port)
    config = config_file(tmp_path, free_tcp_port, webhook_receiver)
    async with (
        target,
        running(manager, config) as (url, server),
        httpx.AsyncClient(timeout=LIMIT) as client,
    ):
        answer = await client.post(
            f"{url}/api/v1/maintenance",
            json={"checks": ["db"], "duration": "1h", "reason": "moving the database"},
        )
        assert answer.status_code == 201, answer.text
        window = answer.json()
        assert window["checks"] == ["db"] and window["reason"] == "moving the database"
        listed = (await client.get(f"{url}/api/v1/maintenance")).json()["maintenance"]
        assert [w["id"] for w in listed] == [window["id"]]
        bad = await client.post(
            f"{url}/api/v1/maintenance", json={"checks": ["dbb"], "duration": 5}
        )
        assert bad.status_code == 400 and "did you mean 'db'" in bad.json()["error"]
        bad = await client.post(f"{url}/api/v1/maintenance", json={"duration": "soon"})
        assert bad.status_code == 400 and "duration" in bad.json()["error"]
        # Down during the window: it fails again and again, no notice.
        await target.close()
        await wait_for(lambda: failures(server) >= 6)
        assert webhook_receiver.requests == []
        ended = await client.delete(f"{url}/api/v1/maintenance/{window['id']}")
        assert ended.status_code == 204
        again = await client.delete(f"{url}/api/v1/maintenance/{window['id']}")
        assert again.status_code == 404
        await wait_for(lambda: len(webhook_receiver.requests) >= 1)
    assert events(webhook_receiver) == [("db", "firing", "critical")]


async def test_the_connectivity_check_holds_target_alerts(
    manager: PluginManager,
    webhook_receiver: WebhookReceiver,
    free_tcp_port_factory: Callable[[], int],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("WARNING", logger="anyprobe.alerts")
    target, uplink = Listener(free_tcp_port_factory()), Listener(free_tcp_port_factory())
    config = config_file(
        tmp_path,
        target.port,
        webhook_receiver,
        '\n[serve]\nconnectivity = "other"\n',
        other_port=uplink.port,
    )
    async with target, uplink, running(manager, config) as (_url, server):
        await wait_for(lambda: "db" in server.latest and "other" in server.latest)
        await uplink.close()  # the monitor's own network is down...
        await wait_for(lambda: server.alerts.offline)
        await target.close()  # ...so every target looks down
        await wait_for(lambda: failures(server) >= 6)
        assert webhook_receiver.requests == []
        await uplink.open()  # online again: db is still down, it fires
        await wait_for(lambda: len(webhook_receiver.requests) >= 1)
    assert events(webhook_receiver) == [("db", "firing", "critical")]
    offline = [r for r in caplog.records if "seems offline" in r.getMessage()]
    assert len(offline) == 1
    assert any("passes again" in r.getMessage() for r in caplog.records)


async def test_a_restarted_server_sends_no_alert_again(
    manager: PluginManager,
    webhook_receiver: WebhookReceiver,
    free_tcp_port: int,
    tmp_path: Path,
) -> None:
    store = MemoryStore()
    config = config_file(tmp_path, free_tcp_port, webhook_receiver)  # nothing listens: down
    async with running(manager, config, store) as (_url, server):
        await wait_for(lambda: len(webhook_receiver.requests) >= 1)
    assert events(webhook_receiver) == [("db", "firing", "critical")]
    assert "alerts" in store.state
    async with running(manager, config, store) as (_url, server):
        await wait_for(lambda: failures(server) >= 6)
        assert [f.check for f in server.alerts.firing()] == ["db"]
    assert len(webhook_receiver.requests) == 1, "the restarted server knew it had fired"


async def test_an_alert_by_email_through_a_real_smtp_server(
    manager: PluginManager,
    smtp_server: Callable[..., SmtpServer],
    tls_ca: TlsCa,
    free_tcp_port: int,
    tmp_path: Path,
) -> None:
    mail = smtp_server("starttls")
    config = tmp_path / "serve.toml"
    config.write_text(
        f'[[check]]\nname = "db"\nurl = "tcp://127.0.0.1:{free_tcp_port}"\ninterval = 0.05\n\n'
        f'[[reporter]]\ntype = "email"\nhost = "127.0.0.1"\nport = {mail.port}\n'
        f'ca_file = "{tls_ca.ca_file}"\nfrom = "anyprobe@example.test"\n'
        'to = "oncall@example.test"\n\n'
        '[[alert]]\nseverity = "warning"\n',
        encoding="utf-8",
    )
    async with running(manager, config) as (_url, server):
        await wait_for(lambda: len(mail.messages) >= 1)
        await wait_for(lambda: failures_of(server, "alert-1") >= 6)
    [message] = mail.messages
    assert message["Subject"] == "[FIRING] db: connection refused"
    assert "severity: warning" in message.get_content()
