"""Target URLs, --set values and target files: a target or one clear error."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from anyprobe import OptionsError, PluginManager, TargetError, UsageError
from anyprobe._targets import build_targets, parse_set, read_target_lines, redact_url


def test_tcp_target_is_parsed_with_host_and_port(manager: PluginManager) -> None:
    [target] = build_targets(manager, ["tcp://DB.example:5432"])
    assert (target.probe, target.host, target.port) == ("tcp", "db.example", 5432)
    assert target.name == "tcp://DB.example:5432"


def test_unknown_scheme_names_target_and_suggests(manager: PluginManager) -> None:
    with pytest.raises(TargetError) as error:
        build_targets(manager, ["tpc://host:1"])
    assert "tpc://host:1: unknown scheme 'tpc' (did you mean 'tcp'?)" in str(error.value)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("tcp://host-without-port", "no port in the URL"),
        ("tcp://:80", "no host in the URL"),
        ("tcp://127.0.0.1:99999", "Port out of range"),
        ("tcp://127.0.0.1:0", "port 0 cannot be checked"),
        ("tcp://127.0.0.1:http", "Port could not be cast"),
        ("127.0.0.1:80", "not a URL"),
        ("tcp://a b:1", "without spaces"),
    ],
)
def test_bad_target_is_one_clear_error(manager: PluginManager, url: str, message: str) -> None:
    with pytest.raises(TargetError) as error:
        build_targets(manager, [url])
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_target_file_error_names_file_and_line(manager: PluginManager) -> None:
    with pytest.raises(TargetError) as error:
        build_targets(manager, [("tcp://a:1", 1), ("nope://b", 4)], source="targets.txt")
    assert str(error.value).startswith("targets.txt:4: nope://b: unknown scheme")


def test_password_in_url_is_redacted_everywhere_shown(manager: PluginManager) -> None:
    [target] = build_targets(manager, ["tcp://admin:s3cret@127.0.0.1:22"])
    assert "s3cret" not in target.display_url and "s3cret" not in target.name
    assert target.display_url == "tcp://admin:***@127.0.0.1:22"
    with pytest.raises(TargetError) as error:
        build_targets(manager, ["nope://admin:s3cret@host"])
    assert "s3cret" not in str(error.value)


def test_redact_url_keeps_urls_without_password() -> None:
    assert redact_url("ssh://deploy@host:22") == "ssh://deploy@host:22"
    assert redact_url("https://u:p@h/x?y=@") == "https://u:***@h/x?y=@"


def test_set_values_are_typed_like_toml() -> None:
    values = parse_set(["a=5", "b=1.5", "c=true", "d=[200, 301]", "e=UP", 'f="a b"', "g.h=1"])
    values = {
        k: v.value if hasattr(v, "value") else {kk: vv.value for kk, vv in v.items()}
        for k, v in values.items()
    }
    assert values == {
        "a": 5,
        "b": 1.5,
        "c": True,
        "d": [200, 301],
        "e": "UP",
        "f": "a b",
        "g": {"h": 1},
    }


@pytest.mark.parametrize("item", ["novalue", "=5", "bad key=1"])
def test_malformed_set_is_one_clear_error(item: str) -> None:
    with pytest.raises(OptionsError) as error:
        parse_set([item])
    assert "--set" in str(error.value)


def test_set_with_wrong_type_names_field(manager: PluginManager) -> None:
    with pytest.raises(OptionsError) as error:
        build_targets(manager, ["tcp://h:1"], options=parse_set(["warning_after=abc"]))
    assert "field 'warning_after'" in str(error.value)
    assert str(error.value).startswith("--set: check tcp://h:1:")


def test_set_unknown_option_suggests_the_close_one(manager: PluginManager) -> None:
    with pytest.raises(OptionsError) as error:
        build_targets(manager, ["tcp://h:1"], options={"warnig_after": 1})
    assert "did you mean 'warning_after'?" in str(error.value)


def test_options_are_shared_between_targets_with_the_same_settings(
    manager: PluginManager,
) -> None:
    targets = build_targets(
        manager, [f"tcp://h{i}:1" for i in range(50)], options={"warning_after": 1}
    )
    assert len({id(t.options) for t in targets}) == 1


def test_target_lines_skip_comments_and_blanks() -> None:
    text = "# list\n\ntcp://a:1\n  tcp://b:2  # the db\n#tcp://c:3\n"
    assert read_target_lines(text) == [(3, "tcp://a:1"), (4, "tcp://b:2")]


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
def test_any_target_text_gives_a_target_or_one_usage_error(text: str) -> None:
    manager = _manager()
    try:
        [target] = build_targets(manager, [text])
    except UsageError as error:
        assert str(error) and "\n" not in str(error)
    else:
        assert target.probe == "tcp" and target.port


@settings(max_examples=200, deadline=None)
@given(st.from_regex(r"tcp://[a-z0-9.:\[\]@%-]{0,20}(:[0-9a-z]{0,6})?", fullmatch=True))
def test_url_shaped_targets_give_a_target_or_one_usage_error(text: str) -> None:
    try:
        build_targets(_manager(), [text])
    except UsageError as error:
        assert "\n" not in str(error)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(max_size=30), max_size=4))
def test_any_set_values_give_options_or_one_usage_error(items: list[str]) -> None:
    try:
        values = parse_set(items)
        build_targets(_manager(), ["tcp://127.0.0.1:1"], options=values)
    except UsageError as error:
        assert str(error) and "\n" not in str(error)


_MANAGER: list[PluginManager] = []


def _manager() -> PluginManager:
    if not _MANAGER:
        manager = PluginManager()
        manager.load_entrypoints(autoload=False)
        _MANAGER.append(manager)
    return _MANAGER[0]


@pytest.mark.parametrize("keep", [0, 1000])
def test_target_list_gives_the_same_targets_kept_or_rebuilt(
    manager: PluginManager, keep: int
) -> None:
    urls = [f"tcp://h{i}:{i + 1}" for i in range(100)]
    targets = build_targets(manager, urls, options={"warning_after": 2}, keep=keep)
    assert len(targets) == 100
    assert [t.url for t in targets] == urls
    assert targets[5].host == "h5" and targets[5].port == 6
    assert [t.port for t in targets[10:12]] == [11, 12]
    assert {t.options.warning_after for t in targets} == {2}


@pytest.mark.parametrize("keep", [0, 2])
def test_compact_targets_are_rebuilt_exactly(manager: PluginManager, keep: int) -> None:
    # keep=2: the list is compacted when its third target comes, the two
    # targets it kept until then included.
    from tests import probes

    manager.register(probes)
    urls = [
        "tcp://admin:s3cret@[::1]:22",
        "tcp://UPPER.Example:8080",
        "test://ok-1",
        "tcp://127.0.0.1:5432",
    ]
    kept = list(build_targets(manager, urls, keep=100))
    rebuilt = list(build_targets(manager, urls, keep=keep))
    assert rebuilt == kept
    assert rebuilt[0].host == "::1" and rebuilt[0].display_url == "tcp://admin:***@[::1]:22"
    assert rebuilt[1].host == "upper.example" and rebuilt[2].port is None


def test_set_number_for_a_text_option_is_the_text_as_typed(manager: PluginManager) -> None:
    [target] = build_targets(manager, ["tcp://h:1"], options=parse_set(["expect=220 "]))
    assert target.options.expect == "220 "
    [target] = build_targets(manager, ["tcp://h:1"], options=parse_set(["warning_after=2"]))
    assert target.options.warning_after == 2


def test_thresholds_must_be_in_order(manager: PluginManager) -> None:
    with pytest.raises(OptionsError) as error:
        build_targets(manager, ["tcp://h:1"], options={"warning_after": 2, "critical_after": 1})
    assert "warning_after must not be greater than critical_after" in str(error.value)


@pytest.mark.parametrize(
    ("pattern", "why"),
    [
        ("(", "not a regular expression"),
        ("a{1001}", "a repetition count"),  # RE2 caps counts at 1000
        ("(" * 5000, "not a regular expression"),
    ],
)
def test_any_bad_regex_option_is_one_clear_error(
    manager: PluginManager, pattern: str, why: str
) -> None:
    with pytest.raises(OptionsError) as error:
        build_targets(manager, ["tcp://h:1"], options={"expect_regex": pattern})
    assert f"field 'expect_regex': {why}" in str(error.value)
