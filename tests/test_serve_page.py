"""The status page of ``anyprobe serve`` (``/``, ``/check/NAME``) and its badges.

Each test serves a real config on loopback (both backends) with real HTTP
and TCP targets that go up and down, and reads the page over HTTP; the HTML
is parsed (html.parser) for its structure. Without a store the page shows the
current status only; with one (tests/memory_store.py, the HistoryStore
contract in memory) it shows uptime, sparklines and incidents.
"""

from __future__ import annotations

import math
import socket
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from anyprobe import PluginManager
from anyprobe._alerts import AlertEngine
from anyprobe._model import Status
from anyprobe._serve import ProbeServer
from anyprobe._serve_page import is_page_path, percent, seconds, span
from anyprobe._serve_view import DAY, iso, parse_since, public_target
from anyprobe._store import Record
from anyprobe.testing import HttpReply, HttpRequest, HttpServer
from tests.memory_store import MemoryStore, running

pytestmark = pytest.mark.anyio

REQUEST_LIMIT = 30.0
HTML = {"accept": "text/html"}


# -- targets that go up and down ---------------------------------------------------------


@dataclass
class Switch:
    """An HTTP target answering 200 while ``up``, else 503."""

    server: HttpServer | None = None
    up: bool = True

    @property
    def url(self) -> str:
        assert self.server is not None
        return self.server.url("/health")

    def answer(self, request: HttpRequest) -> HttpReply:
        if self.up:
            return HttpReply(200, "UP\n", content_type="text/plain")
        return HttpReply(503, "DOWN\n", content_type="text/plain")


@pytest.fixture
def switch(anyprobe_http_server: Callable[..., HttpServer]) -> Switch:
    target = Switch()
    target.server = anyprobe_http_server(default=target.answer)
    return target


@pytest.fixture
def tcp_listener() -> Iterator[socket.socket]:
    """A loopback TCP port that accepts (through the kernel's backlog) until closed."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    try:
        yield sock
    finally:
        sock.close()


# -- reading the page ------------------------------------------------------------------


@dataclass
class Element:
    tag: str
    attrs: dict[str, str]
    text: list[str] = field(default_factory=list)

    @property
    def content(self) -> str:
        return " ".join(" ".join(self.text).split())


class Page(HTMLParser):
    """Every element of a page, with the text inside it (nested text included)."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.elements: list[Element] = []
        self._open: list[Element] = []
        self.feed(html)
        self.close()

    VOID = frozenset({"meta", "link", "br", "img", "input", "hr", "use", "circle", "rect",
                      "path", "polyline", "stop"})  # fmt: skip

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {k: v or "" for k, v in attrs})
        self.elements.append(element)
        if tag not in self.VOID:
            self._open.append(element)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append(Element(tag, {k: v or "" for k, v in attrs}))

    def handle_endtag(self, tag: str) -> None:
        for index in range(len(self._open) - 1, -1, -1):
            if self._open[index].tag == tag:
                del self._open[index:]
                break

    def handle_data(self, data: str) -> None:
        for element in self._open:
            element.text.append(data)

    def find(self, tag: str, **attrs: str) -> list[Element]:
        return [
            e
            for e in self.elements
            if e.tag == tag and all(e.attrs.get(k.replace("_", "-")) == v for k, v in attrs.items())
        ]

    def one(self, tag: str, **attrs: str) -> Element:
        found = self.find(tag, **attrs)
        assert len(found) == 1, (tag, attrs, found)
        return found[0]

    def rows(self) -> dict[str, str]:
        """Each check's row: name -> status."""
        return {
            e.attrs["data-check"]: e.attrs["data-status"]
            for e in self.find("tr")
            if "data-check" in e.attrs
        }

    @property
    def overall(self) -> str:
        return self.one("p", id="overall").attrs["data-status"]


async def get(url: str, **kwargs: Any) -> httpx.Response:
    async with httpx.AsyncClient(timeout=REQUEST_LIMIT) as client:
        return await client.get(url, **kwargs)


async def page(url: str, path: str = "/") -> tuple[httpx.Response, Page]:
    response = await get(url + path, headers=HTML)
    return response, Page(response.text)


async def until_ran(server: Any, *names: str) -> None:
    """Wait until each named check has a result (bounded)."""
    for _ in range(600):
        if all(name in server.latest for name in names):
            return
        await anyio.sleep(0.05)
    raise AssertionError(f"checks never ran: {names}")


async def until_page(url: str, ready: Callable[[Page], bool], path: str = "/") -> Page:
    """The page, fetched again until ``ready`` holds (bounded)."""
    found = Page("")
    for _ in range(600):  # bounded: scheduled checks run every 0.1 s
        response, found = await page(url, path)
        assert response.status_code == 200
        if ready(found):
            return found
        await anyio.sleep(0.05)
    raise AssertionError(f"the page never got ready: {found.rows()}")


def write_config(tmp_path: Path, text: str) -> Path:
    config = tmp_path / "serve.toml"
    config.write_text(text)
    return config


def two_groups(switch: Switch, port: int) -> str:
    return (
        '[serve]\ngroup_by = "team"\ntitle = "Example status"\n\n'
        f'[[check]]\nname = "api"\nurl = "{switch.url}"\ninterval = 0.1\n'
        'labels = { team = "payments" }\n\n'
        f'[[check]]\nname = "db"\nurl = "tcp://127.0.0.1:{port}"\ninterval = 0.1\n'
        'labels = { team = "storage" }\n\n'
        f'[[check]]\nname = "cache"\nurl = "tcp://127.0.0.1:{port}"\ninterval = 0.1\n'
    )


def all_ran(found: Page) -> bool:
    rows = found.rows()
    return bool(rows) and "pending" not in rows.values()


# -- the page without history --------------------------------------------------------------


async def test_page_shows_groups_and_each_checks_status_in_words(
    manager: PluginManager, switch: Switch, tcp_listener: socket.socket, tmp_path: Path
) -> None:
    port = tcp_listener.getsockname()[1]
    config = write_config(tmp_path, two_groups(switch, port))
    async with running(manager, config) as (url, _server):
        found = await until_page(url, all_ran)
        response, _ = await page(url)
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert found.one("html").attrs["lang"] == "en"
    assert found.one("h1").content == "Example status"
    groups = [e.attrs["data-group"] for e in found.find("section") if "data-group" in e.attrs]
    # Named groups by name, then the checks without the label.
    assert groups == ["payments", "storage", "Checks"]
    assert found.rows() == {"api": "ok", "db": "ok", "cache": "ok"}
    assert found.overall == "ok"
    assert "All 3 checks up" in found.one("p", id="overall").content
    # Status in words (and an icon), not by colour alone; table headers label the columns.
    api = next(e for e in found.find("tr") if e.attrs.get("data-check") == "api")
    assert "Up" in api.content
    assert [th.content for th in found.find("th", scope="col")][:3] == [
        "Check",
        "Status",
        "Uptime 24 h",
    ]
    assert "no history kept" in response.text
    # The target is shown without its query or credentials; links go to each check's page.
    assert found.find("a", href="/check/api")
    assert switch.url in response.text


async def test_a_failing_target_turns_the_page_and_back(
    manager: PluginManager, switch: Switch, tcp_listener: socket.socket, tmp_path: Path
) -> None:
    port = tcp_listener.getsockname()[1]
    config = write_config(tmp_path, two_groups(switch, port))
    async with running(manager, config) as (url, _server):
        await until_page(url, lambda p: p.overall == "ok" and all_ran(p))
        switch.up = False
        down = await until_page(url, lambda p: p.overall == "critical")
        assert down.rows()["api"] == "critical"
        assert "1 of 3 checks down" in down.one("p", id="overall").content
        assert (
            "HTTP 503"
            in next(e for e in down.find("tr") if e.attrs.get("data-check") == "api").content
        )
        tcp_listener.close()  # the TCP target goes down too: refused
        both = await until_page(url, lambda p: p.rows()["db"] == "critical")
        assert both.rows()["cache"] == "critical"
        switch.up = True
        back = await until_page(url, lambda p: p.rows()["api"] == "ok")
    assert back.overall == "critical"  # db and cache are still down


async def test_check_page_shows_the_last_failure_with_its_trace(
    manager: PluginManager, switch: Switch, tmp_path: Path
) -> None:
    switch.up = False
    config = write_config(
        tmp_path, f'[[check]]\nname = "api"\nurl = "{switch.url}"\ninterval = 0.1\n'
    )
    async with running(manager, config) as (url, _server):
        found = await until_page(url, lambda p: p.overall == "critical", path="/check/api")
        response, _ = await page(url, "/check/api")
    assert found.one("h1").content == "api"
    assert "Down: HTTP 503" in found.one("p", id="overall").content
    failures = found.one("h2", id="failures")
    assert failures.content == "Last failures"
    trace = found.find("pre")
    assert trace, "the failure's --explain trace is shown"
    assert "GET /health" in trace[0].content or "connect" in trace[0].content
    assert "No history kept" in response.text


async def test_hostile_names_labels_and_summaries_are_escaped(
    manager: PluginManager, switch: Switch, tmp_path: Path
) -> None:
    hostile = "<script>alert(1)</script>"
    config = write_config(
        tmp_path,
        '[serve]\ngroup_by = "team"\n'
        f'[[check]]\nname = "{hostile}"\nurl = "{switch.url}"\ninterval = 0.1\n'
        f'body_contains = "{hostile}"\nlabels = {{ team = "<b onmouseover=x>t</b>" }}\n',
    )
    async with running(manager, config) as (url, _server):
        found = await until_page(url, lambda p: p.overall == "critical")
        index = await get(f"{url}/", headers=HTML)
        detail = await get(f"{url}/check/{hostile}", headers=HTML)
        api = await get(f"{url}/api/v1/checks")
        badge = await get(f"{url}/badge/{hostile}/status.svg", params={"label": hostile})
    for body in (index.text, detail.text):
        assert "<script>" not in body  # the page has no script of its own either
        assert "<b onmouseover" not in body
    assert hostile in " ".join(e.content for e in found.find("tr"))  # shown as text...
    assert not found.find("script") and not found.find("b")  # ...never as markup
    assert "&lt;script&gt;" in detail.text and "<script>" not in detail.text
    assert not Page(detail.text).find("script")
    assert api.json()["checks"][0]["name"] == hostile
    assert "<script>" not in badge.text
    ET.fromstring(badge.text)  # still well-formed XML


async def test_no_secret_on_the_page_the_api_or_the_badges(
    manager: PluginManager, anyprobe_http_server: Callable[..., HttpServer], tmp_path: Path
) -> None:
    # A target that echoes the request back (a secret a server reflects) and fails.
    def echo(request: HttpRequest) -> HttpReply:
        text = f"{request.method} {request.target} {request.headers}"
        return HttpReply(500, text, content_type="text/plain")

    server = anyprobe_http_server(default=echo)
    secrets = ("pw-s3cret-9f", "tok3n-qs-4d", "hdr-s3cret-7a")
    target = f"http://user:{secrets[0]}@127.0.0.1:{server.port}/x?token={secrets[1]}"
    config = write_config(
        tmp_path,
        f'[[check]]\nname = "private"\nurl = "{target}"\ninterval = 0.1\n'
        f'headers = {{ Authorization = "Bearer {secrets[2]}" }}\n',
    )
    async with running(manager, config, MemoryStore()) as (url, _server):
        await until_page(url, lambda p: p.overall == "critical")
        await until_page(url, lambda p: bool(p.find("pre")), path="/check/private")
        bodies = [
            (await get(f"{url}{path}", headers=HTML)).text
            for path in (
                "/",
                "/check/private",
                "/api/v1/checks",
                "/api/v1/checks/private/results",
                "/api/v1/incidents",
                "/badge/private/status.svg",
                "/badge/private/latency.json",
            )
        ]
    assert any("private" in body for body in bodies)
    assert any("Trace" in body or "<pre" in body for body in bodies)
    for body in bodies:
        for secret in secrets:
            assert secret not in body


async def test_unknown_checks_and_badges_are_404(
    manager: PluginManager, switch: Switch, tmp_path: Path
) -> None:
    config = write_config(
        tmp_path, f'[[check]]\nname = "api"\nurl = "{switch.url}"\ninterval = 0.1\n'
    )
    async with running(manager, config) as (url, _server):
        missing = await get(f"{url}/check/nope", headers=HTML)
        badge = await get(f"{url}/badge/nope/status.svg")
        kind = await get(f"{url}/badge/api/colour.svg")
        extension = await get(f"{url}/badge/api/status.png")
    assert missing.status_code == 404
    assert "No check named nope" in Page(missing.text).one("h1").content
    assert badge.status_code == 404 and "nope" in badge.text
    assert kind.status_code == 404 and "status.svg" in kind.text
    assert extension.status_code == 404


async def test_plain_text_clients_get_the_list_of_endpoints(manager: PluginManager) -> None:
    async with running(manager, None) as (url, _server):
        text = await get(f"{url}/", headers={"accept": "text/plain"})
        helped = await get(f"{url}/-/help")
        browser = await get(
            f"{url}/", headers={"accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
        )
    assert text.headers["content-type"].startswith("text/plain")
    assert "/probe?target=URL&module=NAME" in text.text
    assert helped.text == text.text
    assert browser.headers["content-type"].startswith("text/html")
    assert "Waiting for the first results" in browser.text or "No checks configured" in browser.text


async def test_the_page_and_the_api_are_gzipped_for_clients_that_take_it(
    manager: PluginManager, switch: Switch, tcp_listener: socket.socket, tmp_path: Path
) -> None:
    config = write_config(tmp_path, two_groups(switch, tcp_listener.getsockname()[1]))
    async with (
        running(manager, config) as (url, _server),
        httpx.AsyncClient(timeout=REQUEST_LIMIT) as client,
    ):
        zipped = await client.get(f"{url}/", headers={**HTML, "accept-encoding": "gzip"})
        plain = await client.get(f"{url}/", headers={**HTML, "accept-encoding": "identity"})
        await until_page(url, all_ran)
        api = await client.get(f"{url}/api/v1/checks", headers={"accept-encoding": "gzip"})
    assert zipped.headers["content-encoding"] == "gzip"
    assert "content-encoding" not in plain.headers
    assert zipped.text.startswith("<!doctype html>")  # httpx decoded it
    assert api.headers["content-encoding"] == "gzip"
    assert len(api.json()["checks"]) == 3


# -- the page with history -----------------------------------------------------------------


def history(store: MemoryStore, name: str, now: float, *, down_from: float, down_to: float) -> None:
    """30 days of hourly results of ``name``, failing between the two times."""
    at = now - 30 * DAY + 60
    while at < now - 120:
        failing = down_from <= at < down_to
        store.add(
            Record(
                check=name,
                at=at,
                status=Status.CRITICAL if failing else Status.OK,
                summary="HTTP 503" if failing else "HTTP 200",
                duration=0.25 if failing else 0.05,
                phases={"connect": 0.01, "first_byte": 0.03},
                error="HTTPStatusError" if failing else None,
                trace=("    0.100 ms  connect to 127.0.0.1",) if failing else (),
            )
        )
        at += 3600


async def test_page_with_history_shows_uptime_sparkline_and_incidents(
    manager: PluginManager, switch: Switch, tmp_path: Path
) -> None:
    now = time.time()
    store = MemoryStore()
    # Down for 12 hours three days ago: 24 h at 100 %, 7 d and 30 d below.
    history(store, "api", now, down_from=now - 3 * DAY, down_to=now - 3 * DAY + 12 * 3600)
    config = write_config(
        tmp_path, f'[[check]]\nname = "api"\nurl = "{switch.url}"\ninterval = 3600\n'
    )
    async with running(manager, config, store) as (url, server):
        await until_ran(server, "api")  # before the first page: its history has the result
        found = await until_page(url, all_ran)
        response, _ = await page(url)
        detail_response, detail = await page(url, "/check/api")
    row = next(e for e in found.find("tr") if e.attrs.get("data-check") == "api")
    cells = [e.content for e in found.find("td")]
    week = await store.uptime("api", now - 7 * DAY)
    month = await store.uptime("api", now - 30 * DAY)
    assert week is not None and month is not None and week < 1
    assert percent(week) in cells and percent(month) in cells
    assert "100%" in cells
    assert "Up" in row.content
    # The sparkline: an inline SVG, each point titled with its time, status and phases.
    sparks = found.find("svg", role="img")
    assert sparks and sparks[0].attrs["aria-label"].startswith("Latency of the last")
    titles = [e.content for e in found.find("title")][1:]
    assert any("connect 10 ms, first_byte 30 ms" in t for t in titles)
    # The incident, with its start, end and duration.
    assert found.one("h2", id="incidents").content == "Recent incidents"
    incident_rows = [e.content for e in found.find("tr") if "HTTP 503" in e.content]
    assert incident_rows and "12 h" in incident_rows[0]
    assert "no history kept" not in response.text
    # The check's own page: uptime table, failures with their trace, incidents, results.
    assert detail_response.status_code == 200
    assert detail.one("h2", id="uptime").content == "Uptime and latency"
    assert "connect to 127.0.0.1" in detail.find("pre")[0].content
    assert detail.one("h2", id="incidents").content == "Incidents"
    assert len(detail.find("tr")) > 20


async def test_a_store_that_fails_leaves_the_current_status(
    manager: PluginManager, switch: Switch, tmp_path: Path
) -> None:
    store = MemoryStore()
    store.fail = OSError("disk full")
    config = write_config(
        tmp_path, f'[[check]]\nname = "api"\nurl = "{switch.url}"\ninterval = 0.1\n'
    )
    async with running(manager, config, store) as (url, _server):
        found = await until_page(url, all_ran)
        response, _ = await page(url)
        detail = await get(f"{url}/check/api", headers=HTML)
        badge = await get(f"{url}/badge/api/status.json")
    assert found.rows() == {"api": "ok"}
    assert "history unavailable: the history store is unavailable (OSError)" in response.text
    assert detail.status_code == 200 and "History unavailable" in detail.text
    assert badge.json()["message"] == "up"


class Alerts(AlertEngine):
    """The alert engine with fixed answers to what the page asks of it."""

    def __init__(self, server: ProbeServer, now: float) -> None:
        super().__init__(registry=CollectorRegistry(), store=lambda: None)
        self.configure([], [], server.config.all_targets, None)
        self.now = now

    def active_maintenance(self, now: float) -> list[Any]:  # type: ignore[override]
        @dataclass
        class Window:
            name: str
            title: str
            start: float
            end: float
            checks: list[str]

        return [Window("db-upgrade", "Database <upgrade>", self.now - 60, self.now + 3600, ["api"])]

    async def firing(self) -> list[Any]:  # type: ignore[override]
        @dataclass
        class Firing:
            check: str
            severity: str

        return [Firing("api", "page")]

    def notifier_failures(self) -> dict[str, str]:
        raise RuntimeError("broken")


async def test_active_maintenance_and_firing_alerts_are_shown(
    manager: PluginManager, switch: Switch, tmp_path: Path
) -> None:
    config = write_config(
        tmp_path, f'[[check]]\nname = "api"\nurl = "{switch.url}"\ninterval = 0.1\n'
    )
    async with running(manager, config) as (url, server):
        server.alerts = Alerts(server, time.time())
        found = await until_page(url, all_ran)
        api = await get(f"{url}/api/v1/checks")
    assert found.one("h2", id="maintenance").content == "Maintenance in progress"
    assert "Database <upgrade>" in " ".join(e.content for e in found.find("div"))
    assert not found.find("upgrade")  # text, not markup
    assert found.one("h2", id="alerts").content == "Alerts"
    assert api.json()["maintenance"][0]["title"] == "Database <upgrade>"
    assert api.json()["maintenance"][0]["checks"] == ["api"]


async def test_checks_another_replica_runs_are_shown_from_the_store(
    manager: PluginManager, switch: Switch, tmp_path: Path
) -> None:
    now = time.time()
    store = MemoryStore()
    store.add(Record("elsewhere", now - 90, Status.OK, "HTTP 200", 0.05))
    store.add(Record("elsewhere", now - 30, Status.WARNING, "slow: 2.1 s", 2.1))
    config = write_config(
        tmp_path, f'[[check]]\nname = "api"\nurl = "{switch.url}"\ninterval = 0.1\n'
    )
    async with running(manager, config, store) as (url, server):
        await until_ran(server, "api")
        found = await until_page(url, all_ran)
        detail = await get(f"{url}/check/elsewhere", headers=HTML)
        badge = await get(f"{url}/badge/elsewhere/status.json")
    assert found.rows() == {"api": "ok", "elsewhere": "warning"}
    assert found.overall == "warning"
    assert "1 of 2 checks degraded" in found.one("p", id="overall").content
    assert detail.status_code == 200 and "Degraded: slow: 2.1 s" in detail.text
    assert badge.json()["message"] == "degraded"


async def test_refresh_reloads_the_page_for_a_wall_screen(manager: PluginManager) -> None:
    async with running(manager, None) as (url, _server):
        _, asked = await page(url, "/?refresh=5")
        _, plain = await page(url, "/?refresh=soon")
    (meta,) = [m for m in asked.find("meta") if m.attrs.get("http-equiv") == "refresh"]
    assert meta.attrs["content"] == "10"  # at least 10 seconds
    assert not [m for m in plain.find("meta") if m.attrs.get("http-equiv") == "refresh"]


# -- badges --------------------------------------------------------------------------------


async def test_badges_as_svg_and_shields_endpoint(
    manager: PluginManager, switch: Switch, tmp_path: Path
) -> None:
    now = time.time()
    store = MemoryStore()
    history(store, "api", now, down_from=now - 3 * DAY, down_to=now - 3 * DAY + 12 * 3600)
    config = write_config(
        tmp_path, f'[[check]]\nname = "api"\nurl = "{switch.url}"\ninterval = 3600\n'
    )
    async with running(manager, config, store) as (url, server):
        await until_ran(server, "api")
        answers = {
            kind: await get(f"{url}/badge/api/{kind}")
            for kind in (
                "status.svg",
                "status.json",
                "uptime-24h.svg",
                "uptime-7d.svg",
                "uptime-30d.json",
                "latency.svg",
                "latency.json",
            )
        }
    for kind, response in answers.items():
        assert response.status_code == 200, kind
        assert response.headers["cache-control"] == "max-age=60"
    svg = ET.fromstring(answers["status.svg"].text)
    assert svg.attrib["aria-label"] == "api: up"
    assert answers["status.svg"].headers["content-type"].startswith("image/svg+xml")
    assert answers["status.json"].json() == {
        "schemaVersion": 1,
        "label": "api",
        "message": "up",
        "color": "brightgreen",
    }
    week = await store.uptime("api", now - 7 * DAY)
    assert (
        ET.fromstring(answers["uptime-7d.svg"].text).attrib["aria-label"]
        == f"uptime 7d: {percent(week)}"
    )
    assert ET.fromstring(answers["uptime-24h.svg"].text).attrib["aria-label"] == "uptime 24h: 100%"
    month = answers["uptime-30d.json"].json()
    assert month["label"] == "uptime 30d" and month["color"] in (
        "yellowgreen",
        "yellow",
        "green",
        "orange",
    )
    latency = await store.latency("api", now - DAY)
    assert answers["latency.json"].json()["message"] == seconds(latency.p50)


async def test_badges_without_history_say_so(
    manager: PluginManager, switch: Switch, tmp_path: Path
) -> None:
    switch.up = False
    config = write_config(
        tmp_path, f'[[check]]\nname = "api"\nurl = "{switch.url}"\ninterval = 0.1\n'
    )
    async with running(manager, config) as (url, _server):
        await until_page(url, all_ran)
        status = await get(f"{url}/badge/api/status.json")
        uptime = await get(f"{url}/badge/api/uptime-7d.json")
        latency = await get(f"{url}/badge/api/latency.json")
    assert status.json()["message"] == "down" and status.json()["color"] == "red"
    assert uptime.json()["message"] == "no data"
    assert latency.json()["message"].endswith("ms")


# -- helpers of the view (no server) ----------------------------------------------------


def test_since_takes_unix_times_iso_dates_and_durations() -> None:
    now = 1_764_770_400.0
    assert parse_since("1764770000", now) == 1_764_770_000.0
    assert parse_since("1764770000.5", now) == 1_764_770_000.5
    assert parse_since("2025-12-03T14:00:00Z", now) == 1_764_770_400.0
    assert parse_since("2025-12-03T14:00:00", now) == 1_764_770_400.0  # UTC without offset
    assert parse_since("2025-12-03T15:00:00+01:00", now) == 1_764_770_400.0
    assert parse_since("24h", now) == now - DAY
    assert parse_since("7d", now) == now - 7 * DAY
    assert parse_since("30m", now) == now - 1800
    assert parse_since("2w", now) == now - 14 * DAY
    for bad in ("", "yesterday", "-5", "7 days", "nan", "inf", "24H", "1e999", "1e300", "9e20w"):
        with pytest.raises(ValueError, match="since="):
            parse_since(bad, now)


@given(st.text(max_size=40))
def test_any_since_is_a_time_or_one_clear_error(text: str) -> None:
    try:
        value = parse_since(text, 1_764_770_400.0)
    except ValueError as exc:
        assert str(exc).startswith("since=")
    else:
        assert math.isfinite(value)
        assert iso(value)  # every answer can write it back


def test_targets_are_shown_without_credentials_or_query() -> None:
    assert (
        public_target("https://u:***@h.example:8443/a/b?token=x#f", "http")
        == "https://h.example:8443/a/b"
    )
    assert public_target("tcp://db:5432", "tcp") == "tcp://db:5432"
    assert public_target("push://anything/TOKEN", "push") is None
    assert public_target("not a url", "x") is None


def test_figures_as_the_page_shows_them() -> None:
    assert percent(None) == "\N{EN DASH}"
    assert percent(1.0) == "100%"
    assert percent(0.99999) == "99.99%"  # never rounded up to 100 %
    assert (
        seconds(0.041) == "41 ms"
        and seconds(0.0012) == "1.2 ms"
        and seconds(0.000024) == "24 \N{MICRO SIGN}s"
        and seconds(2.5) == "2.50 s"
    )
    assert span(None) == "ongoing" and span(45) == "45 s" and span(3 * 3600 + 300) == "3 h 5 min"
    assert is_page_path("/") and is_page_path("/badge/a/status.svg") and is_page_path("/check/a")
    assert not is_page_path("/api/v1/checks") and not is_page_path("/metrics")


def test_a_row_is_drawn_again_only_when_what_it_shows_changed() -> None:
    from anyprobe._serve_page import RowCache
    from anyprobe._serve_view import CheckView, Current

    def view(status: Status, summary: str, history: object = None) -> CheckView:
        current = Current(status, summary, 1000.0, 0.01, {}, None, ())
        return CheckView("api", "Checks", {}, "http", "http://a.test/", current, history)  # type: ignore[arg-type]

    rows = RowCache()
    first = rows.start(view(Status.OK, "HTTP 200"))
    assert rows.start(view(Status.OK, "HTTP 200")) is first
    down = rows.start(view(Status.CRITICAL, "HTTP 503: <expected 2xx>"))
    assert down is not first
    assert 'data-status="critical"' in down and "&lt;expected 2xx&gt;" in down
    rows.forget(set())
    assert rows.start(view(Status.CRITICAL, "HTTP 503: <expected 2xx>")) is not down
