"""Property tests for the parsers of untrusted input: any target, ``--set``
value, config file or targets file gives a result or one clear UsageError,
never another exception; and what is shown never holds a control character."""

from __future__ import annotations

import io
import string
import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from anyprobe import PluginManager, UsageError
from anyprobe._config import load_config, parse_config
from anyprobe._inputs import (
    MAX_TOML_DEPTH,
    TomlLimitError,
    escape_controls,
    find_control,
    host_problem,
    loads_toml,
)
from anyprobe._targets import build_targets, parse_set, read_target_file

PROPERTY = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

SCHEMES = ["http", "https", "tcp", "tls", "dns", "ssh", "bogus", "HTTP"]
URL_CHARS = (
    string.ascii_letters + string.digits + "-._~%!$&'()*+,;=:@/?#[]\x00\x1b\t\n é☃\u200d\u202e"
)
url_texts = st.one_of(
    st.text(max_size=80),
    st.builds(
        lambda scheme, rest: f"{scheme}://{rest}",
        st.sampled_from(SCHEMES),
        st.text(alphabet=URL_CHARS, max_size=60),
    ),
    st.builds(
        lambda scheme, host, port, path: f"{scheme}://{host}:{port}/{path}",
        st.sampled_from(SCHEMES),
        st.text(alphabet=URL_CHARS, min_size=1, max_size=70),
        st.integers(min_value=-1, max_value=70000),
        st.text(alphabet=URL_CHARS, max_size=20),
    ),
)


@PROPERTY
@given(text=url_texts)
def test_any_target_is_a_target_or_one_usage_error(manager: PluginManager, text: str) -> None:
    try:
        [target] = build_targets(manager, [text])
    except UsageError as exc:
        assert "\n" not in str(exc)
        assert find_control(str(exc)) is None
        return
    # What was accepted holds no control character and a host that can resolve.
    assert find_control(target.url) is None
    assert find_control(target.host) is None


@PROPERTY
@given(host=st.text(max_size=300), bracketed=st.booleans())
def test_host_problem_answers_for_any_host(host: str, bracketed: bool) -> None:
    problem = host_problem(host, bracketed=bracketed)
    assert problem is None or isinstance(problem, str)


@PROPERTY
@given(text=st.text())
def test_escaped_text_has_no_control_and_plain_text_is_kept(text: str) -> None:
    shown = escape_controls(text)
    assert find_control(shown) is None
    assert "\u202e" not in shown and "\n" not in shown
    if text.isprintable():  # letters, digits, marks, symbols, spaces: kept as they are
        assert shown == text


set_values = st.one_of(
    st.text(max_size=60),
    st.text(alphabet="[]{}=a,1\"' .", max_size=400),
    st.integers().map(str),
    st.floats().map(repr),
    st.builds(lambda n: "[" * n + "]" * n, st.integers(0, 3000)),
    st.builds(lambda n: "{a=" * n + "1" + "}" * n, st.integers(0, 3000)),
    st.builds(lambda n: "9" * n, st.integers(1, 6000)),
)


@PROPERTY
@given(key=st.text(max_size=20), value=set_values)
def test_any_set_assignment_is_options_or_one_usage_error(key: str, value: str) -> None:
    try:
        parsed = parse_set([f"{key}={value}"])
    except UsageError as exc:
        assert "\n" not in str(exc)
        return
    assert isinstance(parsed, dict)


@PROPERTY
@given(value=set_values)
def test_set_values_reach_the_probe_options_as_options_or_one_error(
    manager: PluginManager, value: str
) -> None:
    for key in ("warning_after", "json_body", "expect_status", "headers", "json_assertions"):
        try:
            build_targets(manager, ["http://127.0.0.1:1/"], options=parse_set([f"{key}={value}"]))
        except UsageError as exc:
            assert "\n" not in str(exc)


@PROPERTY
@given(text=st.one_of(st.text(max_size=200), st.text(alphabet="[]{}=a.\"'#\n ,1", max_size=2000)))
def test_toml_is_a_document_or_a_decode_or_limit_error(text: str) -> None:
    try:
        document = loads_toml(text)
    except (tomllib.TOMLDecodeError, TomlLimitError):
        return
    assert isinstance(document, dict)


def _nested(depth: int) -> Any:
    value: Any = 1
    for level in range(depth):
        value = [value] if level % 2 else {"a": value}
    return value


@pytest.mark.parametrize("depth", [MAX_TOML_DEPTH - 1, MAX_TOML_DEPTH + 1, 3000])
def test_toml_nesting_limit_is_a_limit_error_not_a_recursion_error(depth: int) -> None:
    text = "v = " + "[" * depth + "]" * depth
    if depth + 1 > MAX_TOML_DEPTH:
        with pytest.raises(TomlLimitError):
            loads_toml(text)
    else:
        assert loads_toml(text)["v"] is not None


toml_scalars = st.one_of(
    st.integers(-(2**70), 2**70),
    st.floats(),
    st.booleans(),
    st.text(max_size=30),
    st.sampled_from(["tcp://127.0.0.1:1", "http://%/", "dns://example.com", "ssh://[v1.x]"]),
)
toml_values = st.recursive(
    toml_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=10), inner, max_size=3)
    ),
    max_leaves=20,
)
option_names = st.sampled_from(
    [
        "url",
        "name",
        "timeout",
        "retries",
        "labels",
        "interval",
        "warning_after",
        "json_body",
        "json_assertions",
        "expect_status",
        "header_env",
        "helo_name",
        "ca_file",
        "key_file",
        "host_key_algorithms",
        "resolv_conf",
        "template",
        "type",
        "allow_targets",
        "probe",
    ]
)
tables = st.dictionaries(option_names, toml_values, max_size=5)
documents = st.fixed_dictionaries(
    {},
    optional={
        "defaults": tables,
        "check": st.lists(
            st.builds(lambda t, url: {"url": url, **t}, tables, toml_scalars), max_size=3
        ),
        "reporter": st.lists(tables, max_size=2),
        "module": st.dictionaries(st.text(max_size=8), tables, max_size=2),
        "serve": tables,
    },
)


@PROPERTY
@given(document=documents)
def test_any_config_document_is_a_config_or_one_usage_error(
    manager: PluginManager, document: dict[str, Any]
) -> None:
    try:
        parse_config(document, manager, require_checks=False)
    except UsageError as exc:
        assert "\n" not in str(exc)
        assert find_control(str(exc)) is None


@PROPERTY
@given(data=st.one_of(st.binary(max_size=400), st.text(max_size=400).map(str.encode)))
def test_any_targets_file_is_lines_or_one_usage_error(data: bytes) -> None:
    try:
        entries = read_target_file(io.BytesIO(data), "targets.txt")
    except UsageError as exc:
        assert "\n" not in str(exc)
        return
    for url, line in entries:
        assert url and url == url.strip() and not url.startswith("#")
        assert line is not None and line >= 1


config_texts = st.one_of(
    st.text(max_size=300),
    st.builds(
        lambda head, body: f'\ufeff{head}\n[[check]]\nurl = "tcp://127.0.0.1:1"\n{body}\n',
        st.sampled_from(["", "[defaults]", "[serve]", "[module.m]"]),
        st.text(alphabet="abcdefghijklmnopqrstuvwxyz_=[]{}\"'#.,1\n \x00\x1b", max_size=300),
    ),
)


@PROPERTY
@given(text=config_texts)
def test_any_config_file_is_a_config_or_one_usage_error(
    manager: PluginManager, tmp_path: Path, text: str
) -> None:
    path = tmp_path / "checks.toml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        load_config(str(path), manager, require_checks=False)
    except UsageError as exc:
        assert "\n" not in str(exc)
        assert find_control(str(exc)) is None
