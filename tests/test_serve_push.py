"""Push checks of ``anyprobe serve``: ``/push/TOKEN``, lateness, tokens kept secret,
state across a restart, bad config.

Each server runs in the test's own event loop (both backends) on an ephemeral
loopback port and is talked to over real HTTP.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from anyprobe import PluginManager, Status
from anyprobe._serve import ProbeServer, load_serve_config
from anyprobe._serve_push import (
    format_duration,
    new_token,
    parse_duration,
    push_url,
    token_bits,
)
from tests.cli import anyprobe, assert_one_clear_line
from tests.memory_store import MemoryStore
from tests.servers.push import client, series, serving, wait_for

pytestmark = pytest.mark.anyio


def write_config(
    tmp_path: Path, interval: str = "3600", grace: str = "60", extra: str = ""
) -> Path:
    path = tmp_path / "push.toml"
    path.write_text(
        "[[check]]\n"
        'name = "backup"\n'
        "push = true\n"
        f"interval = {interval}\n"
        f"grace = {grace}\n"
        'token_env = "BACKUP_PUSH_TOKEN"\n'
        'labels = { team = "ops" }\n' + extra,
        encoding="utf-8",
    )
    return path


@pytest.fixture
def token(monkeypatch: pytest.MonkeyPatch) -> str:
    value = new_token()
    monkeypatch.setenv("BACKUP_PUSH_TOKEN", value)
    return value


def make_server(
    manager: PluginManager, path: Path, store: MemoryStore | None = None
) -> ProbeServer:
    server = ProbeServer(manager, load_serve_config(str(path), manager), config_path=str(path))
    if store is not None:
        server.store = store  # type: ignore[attr-defined]
    return server


# -- on time -----------------------------------------------------------------------------


async def test_a_push_on_time_is_an_ok_result(
    manager: PluginManager, tmp_path: Path, token: str
) -> None:
    server = make_server(manager, write_config(tmp_path))
    async with serving(server) as url, client() as http:
        response = await http.get(f"{url}/push/{token}")
        metrics = (await http.get(f"{url}/metrics")).text
    assert (response.status_code, response.text) == (200, "OK\n")
    result = server.latest["backup"]
    assert (result.status, result.probe, result.target) == (Status.OK, "push", "push://backup")
    assert result.summary == "push received (ok)"
    assert result.labels == {"team": "ops"}
    assert series(metrics, "anyprobe_status") == {"backup": 0.0}
    assert 'target="push://backup"' in metrics
    assert series(metrics, "anyprobe_push_last_received_timestamp_seconds")["backup"] > 0


async def test_a_pushed_status_message_and_duration_are_the_result(
    manager: PluginManager, tmp_path: Path, token: str
) -> None:
    server = make_server(manager, write_config(tmp_path))
    async with serving(server) as url, client() as http:
        params = {"status": "critical", "msg": "disk full\x1b[2J", "duration": "12.5"}
        response = await http.get(f"{url}/push/{token}", params=params)
        metrics = (await http.get(f"{url}/metrics")).text
    assert response.status_code == 200
    result = server.latest["backup"]
    assert result.status is Status.CRITICAL
    assert result.summary == "disk full\\x1b[2J"  # control characters escaped
    assert result.duration == 12.5
    assert series(metrics, "anyprobe_status") == {"backup": 2.0}


async def test_a_post_form_or_json_body_is_read(
    manager: PluginManager, tmp_path: Path, token: str
) -> None:
    server = make_server(manager, write_config(tmp_path))
    async with serving(server) as url, client() as http:
        form = await http.post(
            f"{url}/push/{token}", data={"status": "warning", "msg": "slow", "duration": "3"}
        )
        warned = server.latest["backup"]
        sent = await http.post(
            f"{url}/push/{token}?status=critical", json={"status": "ok", "msg": "done"}
        )
        done = server.latest["backup"]
        plain = await http.post(f"{url}/push/{token}?msg=from+the+query", content=b"ignored")
    assert form.status_code == sent.status_code == plain.status_code == 200
    assert (warned.status, warned.summary, warned.duration) == (Status.WARNING, "slow", 3.0)
    # The body's values win over the query string's.
    assert (done.status, done.summary) == (Status.OK, "done")
    assert server.latest["backup"].summary == "from the query"


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"status": "fine"}, "status must be one of: ok, warning, critical"),
        ({"status": "unknown"}, "status must be one of"),
        ({"duration": "-1"}, "duration must be a number of seconds"),
        ({"duration": "nan"}, "duration must be a number of seconds"),
        ({"duration": "soon"}, "duration must be a number of seconds"),
    ],
)
async def test_a_bad_status_or_duration_is_400_and_records_nothing(
    manager: PluginManager, tmp_path: Path, token: str, params: dict[str, str], fragment: str
) -> None:
    server = make_server(manager, write_config(tmp_path))
    async with serving(server) as url, client() as http:
        response = await http.get(f"{url}/push/{token}", params=params)
        as_json = await http.post(f"{url}/push/{token}", json=params)
    assert response.status_code == as_json.status_code == 400
    assert fragment in response.text
    assert "backup" not in server.latest


async def test_bodies_that_are_too_large_or_not_an_object_are_refused(
    manager: PluginManager, tmp_path: Path, token: str
) -> None:
    server = make_server(manager, write_config(tmp_path))
    async with serving(server) as url, client() as http:
        large = await http.post(f"{url}/push/{token}", data={"msg": "x" * 100_000})
        listed = await http.post(f"{url}/push/{token}", json=["ok"])
        broken = await http.post(
            f"{url}/push/{token}", content=b"{", headers={"content-type": "application/json"}
        )
    assert large.status_code == 413
    assert listed.status_code == broken.status_code == 400
    assert "backup" not in server.latest


async def test_an_unknown_token_is_404_like_any_unknown_path(
    manager: PluginManager, tmp_path: Path, token: str
) -> None:
    server = make_server(manager, write_config(tmp_path))
    async with serving(server) as url, client() as http:
        nowhere = await http.get(f"{url}/no/such/path")
        answers = [
            await http.get(f"{url}/push/{new_token()}"),
            await http.get(f"{url}/push/{token[:-1]}"),
            await http.post(f"{url}/push/{token.upper()}", data={"status": "fine"}),
            await http.get(f"{url}/push/x"),
        ]
    for answer in answers:
        assert (
            (answer.status_code, answer.text)
            == (nowhere.status_code, nowhere.text)
            == (
                404,
                "Not Found",
            )
        )
    assert "backup" not in server.latest


# -- late --------------------------------------------------------------------------------


async def test_no_push_within_interval_and_grace_is_critical_once_per_interval(
    manager: PluginManager, tmp_path: Path, token: str
) -> None:
    server = make_server(manager, write_config(tmp_path, interval="0.3", grace="0.2"))
    async with serving(server) as url, client() as http:
        await wait_for(lambda: "backup" in server.latest, "a late result")
        never = server.latest["backup"]
        await http.get(f"{url}/push/{token}")
        pushed = server.latest["backup"]
        await wait_for(lambda: server.latest["backup"].status is Status.CRITICAL, "late again")
        late = server.latest["backup"]
        # The next late result is due one interval after the last one.
        spacing = []
        for _ in range(200):  # bounded: until a deadline and its late result are seen together
            metrics = (await http.get(f"{url}/metrics")).text
            last = server.latest["backup"]
            deadline = series(metrics, "anyprobe_push_deadline_timestamp_seconds")["backup"]
            spacing.append(deadline - last.started.timestamp())
            if spacing[-1] == pytest.approx(0.3, abs=1e-3):
                break
    assert never.status is Status.CRITICAL
    assert re.fullmatch(r"no push within 0\.3s \+ 0\.2s \(none since \S+\)", never.summary)
    assert pushed.status is Status.OK
    arrival = datetime.fromisoformat(pushed.started.isoformat()).replace(microsecond=0)
    assert late.summary == (
        f"no push within 0.3s + 0.2s (last at {arrival.isoformat(timespec='seconds')})"
    )
    assert spacing[-1] == pytest.approx(0.3, abs=1e-3), spacing


# -- secrets -----------------------------------------------------------------------------


async def test_the_token_is_in_no_log_metric_page_or_result(
    manager: PluginManager, tmp_path: Path, token: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="anyprobe")  # an earlier CLI run may have raised it
    server = make_server(manager, write_config(tmp_path, interval="0.3", grace="0.2"))
    seen = []
    async with serving(server) as url, client() as http:
        await http.get(f"{url}/push/{token}", params={"msg": f"echoed {token}"})
        echoed = server.latest["backup"]
        await http.post(f"{url}/push/{token}", json={"status": "fine"})
        await wait_for(lambda: server.latest["backup"].status is Status.CRITICAL, "late")
        for path in ("/metrics", "/", "/-/healthy"):
            seen.append((await http.get(f"{url}{path}")).text)
    assert echoed.summary == "echoed ***"
    # The server's log, not the test client's (httpx logs the URLs it asks for).
    client_side = ("httpx", "httpcore")
    logged = [r.getMessage() for r in caplog.records if not r.name.startswith(client_side)]
    assert any(r.name.startswith("anyprobe") for r in caplog.records)
    seen += [*logged, repr(server.config), repr(server.latest)]
    seen += [str(r.as_dict()) for r in server.latest.values()]
    assert not [text for text in seen if token in text]


def test_the_token_is_never_in_a_config_error(tmp_path: Path) -> None:
    weak = "a" * 40  # long, but one character over and over
    proc = anyprobe("serve", str(write_config(tmp_path)), env={"BACKUP_PUSH_TOKEN": weak})
    assert_one_clear_line(proc, "push.toml:6", "'backup'", "token_env", "too short or too regular")
    assert weak not in proc.stderr


# -- across a restart --------------------------------------------------------------------


async def test_a_restart_keeps_the_last_arrival(
    manager: PluginManager, tmp_path: Path, token: str
) -> None:
    store = MemoryStore()
    path = write_config(tmp_path)
    first = make_server(manager, path, store)
    async with serving(first) as url, client() as http:
        await http.get(f"{url}/push/{token}")
        await wait_for(lambda: "push:backup:arrival" in store.state, "the arrival saved")
    arrival = store.state["push:backup:arrival"]["at"]
    second = make_server(manager, path, store)
    async with serving(second) as url, client() as http:
        deadlines: dict[str, float] = {}

        async def read() -> None:
            text = (await http.get(f"{url}/metrics")).text
            deadlines.update(series(text, "anyprobe_push_deadline_timestamp_seconds"))

        for _ in range(200):  # bounded: until the watchdog has read the store
            await read()
            if deadlines.get("backup") == pytest.approx(arrival + 3660):
                break
        metrics = (await http.get(f"{url}/metrics")).text
    # Not late at once, and late one interval and grace after the last push.
    assert deadlines["backup"] == pytest.approx(arrival + 3600 + 60)
    assert series(metrics, "anyprobe_push_last_received_timestamp_seconds") == {
        "backup": pytest.approx(arrival)
    }
    # Nothing late: at most the last push, as the history keeps it.
    assert "no push" not in getattr(second.latest.get("backup"), "summary", "")


async def test_a_check_late_while_the_server_was_down_is_late_after_a_restart(
    manager: PluginManager, tmp_path: Path, token: str
) -> None:
    store = MemoryStore()
    path = write_config(tmp_path, interval="0.3", grace="0.2")
    first = make_server(manager, path, store)
    async with serving(first) as url, client() as http:
        await http.get(f"{url}/push/{token}")
        await wait_for(lambda: "push:backup:arrival" in store.state, "the arrival saved")
    arrival = store.state["push:backup:arrival"]["at"]
    second = make_server(manager, path, store)
    async with serving(second):
        await wait_for(
            lambda: "no push" in getattr(second.latest.get("backup"), "summary", ""),
            "a late result",
        )
    when = datetime.fromtimestamp(arrival, UTC).isoformat(timespec="seconds")
    assert second.latest["backup"].summary == f"no push within 0.3s + 0.2s (last at {when})"
    assert store.state["push:backup:late"] >= arrival + 0.5


async def test_a_reload_keeps_the_last_arrival_and_reads_new_tokens(
    manager: PluginManager, tmp_path: Path, token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_config(tmp_path)
    server = make_server(manager, path)
    async with serving(server) as url, client() as http:
        await http.get(f"{url}/push/{token}")
        rotated = new_token()
        monkeypatch.setenv("BACKUP_PUSH_TOKEN", rotated)
        assert (await http.post(f"{url}/-/reload")).status_code == 200
        old = await http.get(f"{url}/push/{token}")
        new = await http.get(f"{url}/push/{rotated}", params={"msg": "rotated"})
        metrics = (await http.get(f"{url}/metrics")).text
    assert (old.status_code, new.status_code) == (404, 200)
    assert server.latest["backup"].summary == "rotated"
    assert series(metrics, "anyprobe_status") == {"backup": 0.0}


# -- the config ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra_env", "table", "fragments"),
    [
        (
            {"BACKUP_PUSH_TOKEN": "Zx9" * 7},
            "",
            ["push.toml:6", "'backup'", "token_env", "21 characters"],
        ),
        ({}, "", ["push.toml:6", "'backup'", "token_env", "BACKUP_PUSH_TOKEN is empty"]),
        (
            {"BACKUP_PUSH_TOKEN": new_token()},
            'url = "https://example.com/"\n',
            ["push.toml:8", "'backup'", "url", "a push check has no url"],
        ),
        (
            {"BACKUP_PUSH_TOKEN": new_token()},
            "intervall = 5\n",
            ["push.toml:8", "'backup'", "intervall", "did you mean 'interval'"],
        ),
        (
            {"BACKUP_PUSH_TOKEN": new_token()},
            '[[check]]\nname = "other"\npush = true\ninterval = 60\n'
            'token_env = "BACKUP_PUSH_TOKEN"\n',
            ["push.toml:12", "'other'", "token_env", "give each push check its own"],
        ),
        (
            {"BACKUP_PUSH_TOKEN": new_token()},
            '[[check]]\nname = "backup"\nurl = "tcp://127.0.0.1:1"\n',
            ["push.toml:9", "duplicate check name"],
        ),
    ],
    ids=["short-token", "empty-env", "url", "unknown-field", "shared-token", "duplicate-name"],
)
def test_a_bad_push_check_is_one_clear_line(
    tmp_path: Path, extra_env: dict[str, str], table: str, fragments: list[str]
) -> None:
    path = write_config(tmp_path, extra=table)
    env = extra_env or {"BACKUP_PUSH_TOKEN": ""}
    proc = anyprobe("serve", str(path), "--listen", "127.0.0.1:0", env=env)
    assert_one_clear_line(proc, *fragments)
    for value in extra_env.values():
        assert value not in proc.stderr


@pytest.mark.parametrize(
    ("interval", "fragment"),
    [('"1 fortnight"', "duration like 30s"), ("0", "more than 0"), ("true", "duration")],
)
def test_a_bad_interval_is_one_clear_line(tmp_path: Path, interval: str, fragment: str) -> None:
    path = write_config(tmp_path, interval=interval)
    proc = anyprobe("serve", str(path), env={"BACKUP_PUSH_TOKEN": new_token()})
    assert_one_clear_line(proc, "push.toml:4", "interval", fragment)


def test_push_token_prints_a_fresh_strong_token(tmp_path: Path) -> None:
    first, second = anyprobe("push-token"), anyprobe("push-token")
    assert first.returncode == second.returncode == 0
    token = first.stdout.strip()
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", token)
    assert token != second.stdout.strip()
    assert token_bits(token) >= 128
    # What it prints is accepted by the loader.
    proc = anyprobe("run", str(write_config(tmp_path)), env={"BACKUP_PUSH_TOKEN": token})
    assert_one_clear_line(proc, "only push checks")


def test_durations_read_and_written() -> None:
    assert [parse_duration(v) for v in (90, 0.3, "30s", "5m", "2h", "1d", "1w", "1.5h")] == [
        90, 0.3, 30, 300, 7200, 86400, 604800, 5400,
    ]  # fmt: skip
    assert parse_duration(0, zero=True) == 0
    for bad in ("", "5 minutes", "-1", "1d2h", True, None, float("inf"), 10**400, "9" * 400):
        with pytest.raises(ValueError):
            parse_duration(bad)
    assert [format_duration(s) for s in (86400, 3600, 90, 0.3, 0, 604800)] == [
        "1d", "1h", "90s", "0.3s", "0s", "1w",
    ]  # fmt: skip


def test_token_strength_counts_the_alphabet() -> None:
    assert token_bits("0123456789abcdef" * 2) == 128  # 32 hex digits
    assert token_bits(("0123456789abcdef" * 2)[:-1]) < 128
    assert token_bits(new_token()) >= 128
    assert token_bits("ab" * 40) < 128
    assert push_url("nightly backup/db") == "push://nightly%20backup%2Fdb"


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_a_serving_process_never_logs_the_token(tmp_path: Path, backend: str) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    import httpx

    token = new_token()
    path = write_config(tmp_path, interval="0.3", grace="0.2")
    env = {k: v for k, v in os.environ.items() if k != "ANYPROBE_LOAD_PLUGINS"}
    env["BACKUP_PUSH_TOKEN"] = token
    command = [sys.executable, "-m", "anyprobe", "-vv", "serve", str(path)]
    process = subprocess.Popen(
        [*command, "--listen", "127.0.0.1:0", "--backend", backend],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        line = process.stderr.readline()
        match = re.search(r"serving on (http://\S+)", line)
        assert match, line
        url = match.group(1)
        with httpx.Client(timeout=30) as http:
            assert http.get(f"{url}/push/{token}", params={"msg": token}).status_code == 200
            assert http.post(f"{url}/push/{token}", json={"status": "no"}).status_code == 400
            assert http.get(f"{url}/push/{token}x").status_code == 404
            late = re.compile(r'anyprobe_status\{name="backup"[^}]*\} 2\.0')
            for _ in range(500):  # bounded: until the check is late
                text = http.get(f"{url}/metrics").text
                if late.search(text):
                    break
                time.sleep(0.02)
            assert late.search(text)
            assert token not in text
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(30)
    assert process.returncode == 0
    assert "Traceback" not in err
    assert token not in line + out + err


_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from(["1d", "0.3", "5m", "BACKUP_PUSH_TOKEN", "NOT_SET_ANYWHERE", "1 w"]),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=2),
)


@given(
    table=st.dictionaries(
        st.sampled_from(["push", "name", "interval", "grace", "token_env", "labels", "url", "x"]),
        _VALUES,
        max_size=7,
    )
)
@settings(max_examples=300, deadline=None)
def test_any_push_check_table_loads_or_is_one_config_error(table: dict[str, object]) -> None:
    from anyprobe import ConfigError
    from anyprobe._config import parse_config

    table = {"push": True, **table}
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("BACKUP_PUSH_TOKEN", "x3Vq" * 8)
            config = parse_config({"check": [table]}, PluginManager(), require_checks=False)
    except ConfigError as exc:
        assert "\n" not in str(exc)
        assert "x3Vq" * 8 not in str(exc)
    else:
        [check] = config.push_checks
        assert check.interval > 0 and check.grace >= 0
        assert check.target.url.startswith("push://")


def test_a_config_lists_push_checks_apart_from_the_checks_it_runs(
    manager: PluginManager, tmp_path: Path, token: str
) -> None:
    extra = '[[check]]\nname = "db"\nurl = "tcp://127.0.0.1:5432"\n'
    config = load_serve_config(str(write_config(tmp_path, extra=extra)), manager)
    assert [t.name for t in config.targets] == ["db"]
    assert [c.name for c in config.push_checks] == ["backup"]
    assert [(t.name, t.url, t.probe) for t in config.all_targets] == [
        ("db", "tcp://127.0.0.1:5432", "tcp"),
        ("backup", "push://backup", "push"),
    ]
    assert token not in repr(config)
