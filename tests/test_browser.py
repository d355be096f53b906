"""The status page in a real browser: Debian's chromium, headless, driven by Selenium.

``anyprobe serve`` runs in this process (on the test's backend, in a thread
of its own) with a small realistic config: four checks in two groups over
real loopback targets, and 30 days of history in a store. The browser loads
the page, finds the groups and checks, sees the page turn when a target goes
down, and logs no console error. Set ``ANYPROBE_UPDATE_SCREENSHOT=1`` to
write the screenshot of the documentation (docs/img/status-page.png).
"""

from __future__ import annotations

import os
import queue
import random
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

from anyprobe import PluginManager
from anyprobe._model import Status
from anyprobe._store import Record
from anyprobe.testing import HttpServer
from tests.memory_store import MemoryStore, running
from tests.test_serve_page import Switch

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
SCREENSHOT = Path(__file__).parent.parent / "docs" / "img" / "status-page.png"
#: Longest the page may take to show what a test waits for (a bound, not a timing).
WAIT_LIMIT = 60.0

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        CHROMIUM is None or CHROMEDRIVER is None,
        reason="the browser test needs chromium and chromedriver "
        "(Debian: apt-get install chromium chromium-driver)",
    ),
]


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    """Headless chromium with a profile of its own, logging its console."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="the browser test needs selenium")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1200,900",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--no-first-run",
        "--disable-extensions",
    ):
        options.add_argument(argument)
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        options.add_argument("--no-sandbox")  # chromium refuses to sandbox as root
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    driver.set_page_load_timeout(WAIT_LIMIT)
    try:
        yield driver
    finally:
        driver.quit()


@contextmanager
def serving(
    backend: str, manager: PluginManager, config: Path, store: MemoryStore
) -> Iterator[str]:
    """``anyprobe serve`` on ``backend`` in a thread until the block ends; yields its URL."""
    answers: queue.Queue[str | BaseException] = queue.Queue()
    stop = threading.Event()

    async def main() -> None:
        async with running(manager, config, store) as (url, _server):
            answers.put(url)
            await anyio.to_thread.run_sync(stop.wait)

    def run() -> None:
        try:
            anyio.run(main, backend=backend)
        except BaseException as exc:
            answers.put(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        answer = answers.get(timeout=WAIT_LIMIT)
        if isinstance(answer, BaseException):
            raise answer
        yield answer
    finally:
        stop.set()
        thread.join(WAIT_LIMIT)
    assert not thread.is_alive()


def fill_history(store: MemoryStore, now: float) -> None:
    """30 days of results every 10 minutes for the four checks, with a few incidents."""
    rng = random.Random(16)
    profiles = {
        "api": (0.045, ("resolve", "connect", "first_byte", "transfer"), "HTTP 200 in {ms} ms"),
        "checkout": (
            0.120,
            ("resolve", "connect", "first_byte", "transfer"),
            "HTTP 200 in {ms} ms",
        ),
        "postgres": (0.002, ("resolve", "connect"), "connected in {ms} ms"),
        "redis": (0.001, ("resolve", "connect"), "connected in {ms} ms"),
    }
    outages = {
        "api": [(now - 2 * 86400, now - 2 * 86400 + 25 * 60)],
        "checkout": [(now - 9 * 86400, now - 9 * 86400 + 2 * 3600)],
        "postgres": [],
        "redis": [(now - 20 * 86400, now - 20 * 86400 + 40 * 60), (now - 25 * 60, now)],
    }
    for name, (base, phases, summary) in profiles.items():
        at = now - 30 * 86400
        while at < now - 30:
            down = any(start <= at < end for start, end in outages[name])
            duration = base * rng.lognormvariate(0, 0.35)
            shares = [rng.random() + 0.2 for _ in phases]
            split = {
                phase: duration * s / sum(shares) for phase, s in zip(phases, shares, strict=True)
            }
            store.add(
                Record(
                    check=name,
                    at=at,
                    status=Status.CRITICAL if down else Status.OK,
                    summary="connection refused"
                    if down
                    else summary.format(ms=round(duration * 1000)),
                    duration=duration,
                    phases=split,
                    error="ConnectionRefusedError" if down else None,
                )
            )
            at += 600


@pytest.fixture
def small_setup(
    anyprobe_http_server: Callable[..., HttpServer], tmp_path: Path
) -> Iterator[tuple[Path, Switch, MemoryStore]]:
    """A realistic small config: two groups, one check failing, 30 days of history."""
    api, checkout = Switch(), Switch()
    api.server = anyprobe_http_server(default=api.answer)
    checkout.server = anyprobe_http_server(default=checkout.answer)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        closed_port = closed.getsockname()[1]
    config = tmp_path / "status.toml"
    config.write_text(
        '[serve]\ntitle = "Example Corp status"\ngroup_by = "team"\n\n'
        f'[[check]]\nname = "api"\nurl = "{api.url}"\ninterval = 0.5\n'
        'labels = { team = "Payments" }\n\n'
        f'[[check]]\nname = "checkout"\nurl = "{checkout.url}"\ninterval = 600\n'
        'labels = { team = "Payments" }\n\n'
        f'[[check]]\nname = "postgres"\nurl = "tcp://127.0.0.1:{listener.getsockname()[1]}"\n'
        'interval = 600\nlabels = { team = "Storage" }\n\n'
        f'[[check]]\nname = "redis"\nurl = "tcp://127.0.0.1:{closed_port}"\ninterval = 600\n'
        'labels = { team = "Storage" }\n'
    )
    store = MemoryStore()
    fill_history(store, time.time())
    try:
        yield config, api, store
    finally:
        listener.close()


def until(driver: Any, url: str, ready: Callable[[Any], bool]) -> None:
    """Load ``url`` again until ``ready(driver)`` holds (bounded)."""
    deadline = time.monotonic() + WAIT_LIMIT
    while True:
        driver.get(url)
        if ready(driver):
            return
        assert time.monotonic() < deadline, f"{url} never got ready"
        time.sleep(0.2)


def rows(driver: Any) -> dict[str, str]:
    from selenium.webdriver.common.by import By

    found = driver.find_elements(By.CSS_SELECTOR, "tr[data-check]")
    return {row.get_attribute("data-check"): row.get_attribute("data-status") for row in found}


def overall(driver: Any) -> str:
    from selenium.webdriver.common.by import By

    return str(driver.find_element(By.ID, "overall").get_attribute("data-status"))


def console_errors(driver: Any) -> list[dict[str, Any]]:
    return [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def test_status_page_in_a_real_browser(
    anyio_backend: str,
    manager: PluginManager,
    browser: Any,
    small_setup: tuple[Path, Switch, MemoryStore],
    tmp_path: Path,
) -> None:
    from selenium.webdriver.common.by import By

    config, api, store = small_setup
    with serving(anyio_backend, manager, config, store) as url:
        browser.execute_cdp_cmd(
            "Emulation.setEmulatedMedia",
            {"features": [{"name": "prefers-color-scheme", "value": "light"}]},
        )
        until(browser, url + "/", lambda d: "pending" not in rows(d).values() and len(rows(d)) == 4)
        assert browser.title == "Example Corp status: Down"
        sections = browser.find_elements(By.CSS_SELECTOR, "section[data-group]")
        assert [s.get_attribute("data-group") for s in sections] == ["Payments", "Storage"]
        headings = [s.find_element(By.TAG_NAME, "h2").text for s in sections]
        assert headings == ["Up:\nPayments", "Down:\nStorage"]  # in words for screen readers
        assert rows(browser) == {
            "api": "ok",
            "checkout": "ok",
            "postgres": "ok",
            "redis": "critical",
        }
        assert overall(browser) == "critical"
        assert "1 of 4 checks down" in browser.find_element(By.ID, "overall").text
        redis = browser.find_element(By.CSS_SELECTOR, 'tr[data-check="redis"]')
        assert "Down" in redis.text  # the status in words, beside its icon and colour
        # Sparklines with a tooltip per point, the incidents, and the light theme.
        assert browser.find_elements(By.CSS_SELECTOR, "svg.spark circle title")
        incidents = browser.find_element(By.ID, "incidents").text
        assert incidents == "Recent incidents"
        background = browser.execute_script(
            "return getComputedStyle(document.body).backgroundColor"
        )
        assert background == "rgb(255, 255, 255)"
        shot = tmp_path / "status-page.png"
        assert browser.save_screenshot(str(shot))
        assert shot.read_bytes().startswith(b"\x89PNG")
        if os.environ.get("ANYPROBE_UPDATE_SCREENSHOT") == "1":
            browser.set_window_size(1200, 1400)
            SCREENSHOT.write_bytes(browser.find_element(By.TAG_NAME, "body").screenshot_as_png)

        # The target goes down: a reload shows it.
        api.up = False
        until(browser, url + "/", lambda d: rows(d)["api"] == "critical")
        assert "2 of 4 checks down" in browser.find_element(By.ID, "overall").text

        # A check's own page, and the dark theme.
        browser.execute_cdp_cmd(
            "Emulation.setEmulatedMedia",
            {"features": [{"name": "prefers-color-scheme", "value": "dark"}]},
        )
        browser.find_element(By.LINK_TEXT, "api").click()
        assert browser.find_element(By.TAG_NAME, "h1").text == "api"
        assert "HTTP 503" in browser.find_element(By.ID, "overall").text
        dark = browser.execute_script("return getComputedStyle(document.body).backgroundColor")
        assert dark == "rgb(13, 17, 23)"
        assert console_errors(browser) == []
