"""Property tests: generated targets, --set values and config files, in-process.

Whatever hypothesis draws (see :mod:`tests.fuzz.strategies`), target parsing,
``--set`` parsing and config loading give a result or one
:class:`~anyprobe._errors.UsageError` whose text is one line: any other
exception is a crash the CLI would show as a traceback. Nothing here touches
the network: targets are only validated, never checked.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from anyprobe import PluginManager
from anyprobe._config import load_config
from anyprobe._errors import UsageError
from anyprobe._targets import build_targets, parse_set
from tests.fuzz.strategies import VALUES, config_files, targets

# The joiners U+200C and U+200D are left to IDNA, which allows them where a script needs them.
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b\u200e\u200f\u202a-\u202e\ufeff]")
#: No shrinking: a failing input is reported as drawn, so that a failure
#: costs CI seconds, not minutes (the drawn input is short enough to read).
PROPERTY = settings(
    max_examples=150,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow],
)
#: One URL per built-in probe, none of which is ever connected to.
PROBE_URLS = [
    "tcp://127.0.0.1:1",
    "https://127.0.0.1:1/",
    "dns://127.0.0.1:1/example.com",
    "ssh://deploy@127.0.0.1:1",
    "rdap://example.test",
]


def _manager() -> PluginManager:
    if not _MANAGER:
        manager = PluginManager()
        manager.load_entrypoints(autoload=False)
        _MANAGER.append(manager)
    return _MANAGER[0]


_MANAGER: list[PluginManager] = []


def option_names() -> list[str]:
    manager = _manager()
    return sorted(
        {name for probe in manager.probes.values() for name in probe.Options.model_fields}
    )


def assert_one_line(error: UsageError) -> None:
    text = str(error)
    assert text and "\n" not in text and "\r" not in text, repr(text)


@PROPERTY
@given(targets())
def test_any_target_gives_a_target_or_one_usage_error(text: str) -> None:
    try:
        build_targets(_manager(), [text])
    except UsageError as error:
        assert_one_line(error)


@PROPERTY
@given(targets())
def test_an_accepted_target_has_no_control_character_in_any_part(text: str) -> None:
    try:
        [target] = build_targets(_manager(), [text])
    except UsageError:
        return
    assert not CONTROL.search(target.url), f"accepted {text!r}"
    assert not CONTROL.search(target.host), f"accepted {text!r} (host {target.host!r})"


@PROPERTY
@given(st.sampled_from(PROBE_URLS), st.sampled_from(option_names()), VALUES)
def test_any_set_value_gives_options_or_one_usage_error(url: str, key: str, value: str) -> None:
    try:
        options = parse_set([f"{key}={value}"])
        build_targets(_manager(), [url], options=options)
    except UsageError as error:
        assert_one_line(error)


@PROPERTY
@given(st.lists(st.text(max_size=40), max_size=3))
def test_any_set_text_gives_options_or_one_usage_error(items: list[str]) -> None:
    try:
        options = parse_set(items)
        build_targets(_manager(), PROBE_URLS, options=options)
    except UsageError as error:
        assert_one_line(error)


@PROPERTY
@given(config_files(option_names()))
def test_any_config_file_gives_a_config_or_one_usage_error(text: str) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "checks.toml"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        try:
            load_config(str(path), _manager())
        except UsageError as error:
            assert_one_line(error)
