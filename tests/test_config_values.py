"""Values of the right TOML type but the wrong kind are refused by name:
``true`` where a number goes, a SQLite store that cannot be opened."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from anyprobe import ConfigError, PluginManager
from anyprobe._config import load_config
from tests.cli import anyprobe, assert_one_clear_line

CHECK = '[[check]]\nname = "web"\nurl = "tcp://127.0.0.1:9"\n'


def error_for(tmp_path: Path, manager: PluginManager, text: str) -> str:
    path = tmp_path / "checks.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as error:
        load_config(str(path), manager)
    message = str(error.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("[defaults]\ntimeout = true\n" + CHECK, "timeout"),
        ("[defaults]\nconcurrency = false\n" + CHECK, "concurrency"),
        (CHECK + "retries = true\n", "retries"),
        (CHECK + "timeout = true\n", "timeout"),
        (CHECK + "interval = true\n", "interval"),
        (CHECK + "critical_after = true\n", "critical_after"),
        (CHECK + "max_bytes = true\n", "max_bytes"),
        (CHECK + "[store]\nretention_days = true\n", "retention_days"),
        (CHECK + "[store]\nbuffer = true\n", "buffer"),
        (CHECK + "[store]\nflush_interval = false\n", "flush_interval"),
        (CHECK + '[[alert]]\nchecks = ["web"]\nfailure_threshold = true\n', "failure_threshold"),
        (CHECK + "[serve]\ninterval = true\n", "interval"),
        (
            CHECK + '[[reporter]]\ntype = "webhook"\nurl = "http://127.0.0.1:9/"\ntimeout = true\n',
            "timeout",
        ),
    ],
)
def test_true_is_not_a_number(
    tmp_path: Path, manager: PluginManager, text: str, field: str
) -> None:
    # pydantic alone reads true as 1: retries = true would retry once.
    message = error_for(tmp_path, manager, text)
    assert f"field '{field}'" in message
    assert "'true'" in message or "'false'" in message


SERVE_STORE = '[[check]]\nname = "web"\nurl = "tcp://127.0.0.1:9"\ninterval = 30\n\n[store]\n'


def test_serve_refuses_a_sqlite_store_that_is_not_a_database(tmp_path: Path) -> None:
    (tmp_path / "junk.db").write_bytes(b"this is not a database\n" * 200)
    config = tmp_path / "monitor.toml"
    config.write_text(SERVE_STORE + 'url = "sqlite:junk.db"\n')
    proc = anyprobe("serve", str(config), "--listen", "127.0.0.1:0")
    line = assert_one_clear_line(proc, "monitor.toml", "[store]", "not a database")
    assert "url" in line


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_serve_refuses_a_sqlite_store_it_cannot_create(tmp_path: Path) -> None:
    locked = tmp_path / "ro"
    locked.mkdir(mode=0o500)
    config = tmp_path / "monitor.toml"
    config.write_text(SERVE_STORE + f'url = "sqlite:///{locked}/sub/history.db"\n')
    proc = anyprobe("serve", str(config), "--listen", "127.0.0.1:0")
    assert_one_clear_line(proc, "monitor.toml", "[store]")


def test_serve_refuses_a_sqlite_store_under_a_file(tmp_path: Path) -> None:
    # A path whose parent is a regular file: no directory can be made there.
    (tmp_path / "plain").write_text("x")
    config = tmp_path / "monitor.toml"
    config.write_text(SERVE_STORE + f'url = "sqlite:///{tmp_path}/plain/history.db"\n')
    proc = anyprobe("serve", str(config), "--listen", "127.0.0.1:0")
    assert_one_clear_line(proc, "monitor.toml", "[store]")
