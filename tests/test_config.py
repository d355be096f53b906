"""The TOML config: validated as a whole, errors name file, line, check and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from anyprobe import ConfigError, PluginManager, Status
from anyprobe._config import load_config


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "checks.toml"
    path.write_text(text)
    return str(path)


GOOD = """
[defaults]
timeout = 2.5
retries = 1
concurrency = 20
warning_after = 0.5
labels = { env = "test" }

[[check]]
name = "db"
url = "tcp://127.0.0.1:5432"
labels = { team = "data" }

[[check]]
url = "tcp://127.0.0.1:6379"
timeout = 1
critical_after = 0.9

[[reporter]]
type = "jsonl"
path = "out.jsonl"
"""


def test_valid_config_gives_targets_defaults_and_reporters(
    tmp_path: Path, manager: PluginManager
) -> None:
    config = load_config(write(tmp_path, GOOD), manager)
    db, cache = config.targets
    assert (db.name, db.timeout, db.retries) == ("db", 2.5, 1)
    assert db.labels == {"env": "test", "team": "data"}
    assert db.options.warning_after == 0.5
    assert (cache.name, cache.timeout, cache.options.critical_after) == (
        "tcp://127.0.0.1:6379",
        1,
        0.9,
    )
    assert config.defaults.concurrency == 20
    [(name, reporter)] = config.reporters
    assert name == "jsonl" and reporter.options.path == "out.jsonl"


def test_cli_overrides_replace_defaults_but_not_a_checks_own(
    tmp_path: Path, manager: PluginManager
) -> None:
    config = load_config(write(tmp_path, GOOD), manager, overrides={"timeout": 9, "retries": 0})
    assert [t.timeout for t in config.targets] == [9, 1]
    assert [t.retries for t in config.targets] == [0, 0]


def error_for(tmp_path: Path, manager: PluginManager, text: str) -> str:
    with pytest.raises(ConfigError) as error:
        load_config(write(tmp_path, text), manager)
    message = str(error.value)
    assert "\n" not in message
    return message


def test_unknown_check_key_names_line_check_field_and_suggests(
    tmp_path: Path, manager: PluginManager
) -> None:
    text = (
        '[[check]]\nurl = "tcp://a:1"\n\n'
        '[[check]]\nname = "db"\nurl = "tcp://b:2"\nwarnig_after = 1\n'
    )
    message = error_for(tmp_path, manager, text)
    assert message.endswith(
        "checks.toml:7: check 'db': field 'warnig_after': unknown option for probe tcp"
        " (did you mean 'warning_after'?)"
    )


def test_wrong_type_names_field(tmp_path: Path, manager: PluginManager) -> None:
    message = error_for(
        tmp_path, manager, '[[check]]\nurl = "tcp://a:1"\ncritical_after = "soon"\n'
    )
    assert (
        "checks.toml:3: check #1: field 'critical_after': Input should be a valid number" in message
    )


def test_bad_url_names_check_and_line(tmp_path: Path, manager: PluginManager) -> None:
    message = error_for(tmp_path, manager, '[[check]]\nname = "x"\n\nurl = "nope://a"\n')
    assert "checks.toml:4: check 'x': field 'url': nope://a: unknown scheme 'nope'" in message


def test_invalid_toml_names_line(tmp_path: Path, manager: PluginManager) -> None:
    message = error_for(tmp_path, manager, '[[check]]\nurl = "tcp://a:1"\ntimeout = \n')
    assert "checks.toml:3: invalid TOML" in message


def test_unknown_table_suggests(tmp_path: Path, manager: PluginManager) -> None:
    message = error_for(tmp_path, manager, '[[checks]]\nurl = "tcp://a:1"\n')
    assert "checks.toml:1: unknown table [checks] (did you mean 'check'?)" in message


def test_unknown_reporter_suggests(tmp_path: Path, manager: PluginManager) -> None:
    text = '[[check]]\nurl = "tcp://a:1"\n[[reporter]]\ntype = "jsnol"\n'
    message = error_for(tmp_path, manager, text)
    assert (
        "checks.toml:4: field 'type': unknown reporter 'jsnol' (did you mean 'jsonl'?)" in message
    )


def test_unknown_default_suggests(tmp_path: Path, manager: PluginManager) -> None:
    text = '[defaults]\ntimeuot = 3\n[[check]]\nurl = "tcp://a:1"\n'
    message = error_for(tmp_path, manager, text)
    assert "checks.toml:2: field 'timeuot'" in message and "did you mean 'timeout'?" in message


def test_duplicate_check_names_are_refused(tmp_path: Path, manager: PluginManager) -> None:
    text = '[[check]]\nname = "a"\nurl = "tcp://a:1"\n[[check]]\nname = "a"\nurl = "tcp://b:1"\n'
    message = error_for(tmp_path, manager, text)
    assert "checks.toml:5: check 'a': field 'name': duplicate check name" in message


def test_missing_url_and_no_checks(tmp_path: Path, manager: PluginManager) -> None:
    assert "a check needs url" in error_for(tmp_path, manager, '[[check]]\nname = "x"\n')
    assert "nothing to check" in error_for(tmp_path, manager, "[defaults]\ntimeout = 1\n")


def test_unreadable_config_is_one_line(tmp_path: Path, manager: PluginManager) -> None:
    with pytest.raises(ConfigError) as error:
        load_config(str(tmp_path / "missing.toml"), manager)
    assert "cannot read config: No such file or directory" in str(error.value)


def test_status_order_is_monitoring_plugins_convention() -> None:
    assert Status.OK < Status.WARNING < Status.CRITICAL < Status.UNKNOWN
    assert Status.worst([Status.WARNING, Status.UNKNOWN, Status.OK]) is Status.UNKNOWN
    assert Status.worst([]) is Status.OK
    assert [s.severity for s in Status] == [0, 1, 2, 3]
