"""The fast path of target validation agrees with the full parser.

``split_url`` splits the common ``scheme://host[:port][/path]`` shape with one
regex and hands anything else to urlsplit and the full host checks;
``split_plain_url`` gives that shape's host and port too, which target
validation takes instead of asking a probe that keeps the default
``validate_url``. For every input, both ways must give the same parts or the
same error line, and a target built either way must be the same target.
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import SplitResult

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import anyprobe
from anyprobe import PluginManager, TargetError, UsageError
from anyprobe._targets import (
    _WELL_FORMED,
    TargetFactory,
    _split_url_slowly,
    build_targets,
    split_plain_url,
)
from anyprobe._targets import split_url as fast_split_url
from tests.fuzz.strategies import targets as hostile_targets

#: Inputs the fast path takes: it must give what urlsplit gives.
WELL_FORMED = [
    "tcp://example.com:443",
    "tcp://127.0.0.1:0",
    "tcp://127.0.0.1:65535",
    "tcp://h:080",
    "tcp://h:00000",
    "http://EXAMPLE.com/Path?q=1#frag",
    "HTTP://example.com",
    "Https://Example.COM:8443/",
    "t+c.p-x://h",
    "https://a.b.c./",
    "http://a_b.example/",
    "http://-a-.example/",
    "http://999.1.1.1/",
    "http://h?x#y?z",
    "http://h#y?z",
    "http://h/a#",
    "http://h?",
    "http://h#",
    "http://h/ä?ü#ö",
    "http://h/%00%zz",
    "http://h/a@b:c",
    "http://h/[::1]",
    "dns://9.9.9.9/example.com?type=AAAA",
    "unknown://h",
    "http://" + "a" * 63 + ".example/",
    "http://" + ".".join(["a" * 63] * 3) + "." + "a" * 61,  # 253 characters
]

#: Inputs the fast path leaves to the full parser: accepted or refused there.
UNUSUAL = [
    "",
    "://h",
    "h:80",
    "1tcp://h",
    "tcp//h",
    "tcp:/h",
    "tcp://",
    "tcp:///path",
    "tcp://:80",
    "tcp://h:",
    "tcp://h:-1",
    "tcp://h:8a",
    "tcp://h:65536",
    "tcp://h:99999",
    "tcp://h:123456",
    "tcp://h:80:90/",
    "tcp://h:\uff18\uff10",
    "tcp://h:٨٠",
    "http://user@h",
    "http://user:pw@h:80/x",
    "http://user:@h/",
    "http://@h/",
    "http://h@/",
    "http://h:80@x/",
    "http://u%00@h",
    "http://u:p%0a@h",
    "http://u%e2%80%ae@h",
    "http://%41@h",
    "http://h%41/",
    "http://127%2e0.0.1/",
    "http://h%/",
    "http://[::1]:80/",
    "http://[::1]/",
    "http://[::FFFF:127.0.0.1]/",
    "http://[::1",
    "http://::1]/",
    "http://[127.0.0.1]/",
    "http://[v1.x]/",
    "http://[fe80::1%25eth0]/",
    "http://[fe80::1%eth0]/",
    "http://[]/",
    "http://[::1]x/",
    "tcp://::1:80",
    "http://bücher.de/",
    "http://BÜCHER.de/",
    "http://xn--bcher-kva.de/",
    "http://xn--/",
    "http://xn--zz.invalid/",
    "http://☃.invalid/",
    "http://\uff41.com/",
    "http://a\u2100b/",
    "http://a\u200cb/",
    "http://a\u200db/",
    "http://h\x00/",
    "http://h\x1b[2J/",
    "http://h/\x7f",
    "http://h/\x85",
    "http://h/ path",
    "http://h/\tpath",
    "http://h/\npath",
    "http://h/\u202e",
    "http://h/\u200b",
    "http://h/\ufeff",
    "http://h\ud800/",
    "http://h/\udcff",
    "tcp://a b:1",
    " tcp://h:1",
    "tcp://h:1 ",
    "http://a..b/",
    "http://.a/",
    "http://./",
    "http://../",
    "http://h\\x/",
    "http://h;x/",
    "http://h,x/",
    "http://h!x/",
    "http://h~x/",
    "http://h*x/",
    "http://" + "a" * 64 + ".example/",
    "http://example." + "a" * 64 + "/",
    "tcp://a." + "b" * 64 + ".c:80",
    "http://" + ".".join(["a" * 63] * 3) + "." + "a" * 62,  # 254 characters
    "http://" + ".".join(["a" * 63] * 3) + "." + "a" * 61 + ".",  # 253 and the root
    "http://" + "a." * 200 + "/",
]


def outcome(split: object, text: str) -> SplitResult | str:
    """What splitting ``text`` gives: its parts, or the error line."""
    try:
        return split(text)  # type: ignore[operator, no-any-return]
    except TargetError as exc:
        return f"TargetError: {exc}"


def parts(url: SplitResult | str) -> object:
    """Everything a probe may read of a split URL, or the error line."""
    if isinstance(url, str):
        return url
    try:
        port: object = url.port
    except ValueError as exc:
        port = f"ValueError: {exc}"
    return (tuple(url), url.hostname, port, url.username, url.password)


def assert_agree(text: str) -> None:
    fast, slow = outcome(fast_split_url, text), outcome(_split_url_slowly, text)
    assert parts(fast) == parts(slow), text
    assert type(fast) is type(slow)
    plain = split_plain_url(text)
    if plain is not None:
        # What the regex read is what urlsplit's properties give, and the
        # full parser accepts the URL.
        assert isinstance(slow, SplitResult), text
        assert (tuple(plain.split()), plain.hostname, plain.port) == parts(slow)[:3], text
        assert type(plain.split()) is SplitResult


def take_the_long_way(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make target validation split every URL with the full parser."""
    monkeypatch.setattr("anyprobe._targets.split_url", _split_url_slowly)
    monkeypatch.setattr("anyprobe._targets.split_plain_url", lambda text: None)


@pytest.mark.parametrize("text", WELL_FORMED)
def test_well_formed_target_takes_the_fast_path_and_splits_as_urlsplit(text: str) -> None:
    assert _WELL_FORMED.fullmatch(text) is not None
    assert_agree(text)
    assert isinstance(outcome(fast_split_url, text), SplitResult)
    assert split_plain_url(text) is not None


@pytest.mark.parametrize("text", [text for text in UNUSUAL if not _WELL_FORMED.fullmatch(text)])
def test_unusual_target_has_no_plain_split(text: str) -> None:
    # Each of these needs urlsplit or the full host checks (or is refused).
    assert split_plain_url(text) is None


def test_plain_split_reads_host_and_port_as_urlsplit_does() -> None:
    for text, host, port in [
        ("ntp://127.0.0.1", "127.0.0.1", None),
        ("udp://Example.COM:053/x?y#z", "example.com", 53),
        ("NTP://h.:00123", "h.", 123),
        ("tcp://h:0", "h", 0),
        ("tcp://h:65535", "h", 65535),
    ]:
        plain = split_plain_url(text)
        assert plain is not None
        assert (plain.hostname, plain.port) == (host, port)
    assert split_plain_url("tcp://h:65536") is None


@pytest.mark.parametrize("text", UNUSUAL)
def test_unusual_target_is_split_or_refused_as_the_full_parser_does(text: str) -> None:
    assert_agree(text)


def test_fast_path_is_refused_where_urlsplit_refuses() -> None:
    # Inputs the shape regex matches but that must still be refused.
    for text in ("tcp://h:65536", "tcp://h:99999"):
        assert _WELL_FORMED.fullmatch(text) is not None
        assert outcome(fast_split_url, text) == f"TargetError: {text}: Port out of range 0-65535"


@st.composite
def plain_targets(draw: st.DrawFn) -> str:
    """Targets near the fast path's edges: label and host lengths, ports, separators."""
    scheme = draw(st.sampled_from(["tcp", "HTTP", "h2+x.y-z", "9p", "dns"]))
    label = st.text(alphabet="aZ09_-.", min_size=0, max_size=70)
    host = ".".join(draw(st.lists(label, min_size=1, max_size=6)))
    port = draw(st.one_of(st.just(""), st.integers(0, 700_000).map(":{}".format)))
    rest = draw(st.text(alphabet="/?#@:[]%aé", max_size=12))
    return f"{scheme}://{host}{port}{rest}"


@settings(max_examples=400, deadline=None)
@given(st.one_of(hostile_targets(), plain_targets()))
def test_fast_path_and_full_parser_agree_on_any_target(text: str) -> None:
    assert_agree(text)


def _built(manager: PluginManager, text: str) -> object:
    try:
        target = TargetFactory(manager).build(text)
    except UsageError as exc:
        return f"{type(exc).__name__}: {exc}"
    return (target.probe, target.host, target.port, target.name, target.display_url)


#: Targets of probes that keep the default validate_url (its host and port
#: come from the regex), with its errors: no port, port 0.
DEFAULT_VALIDATION = [
    "ntp://127.0.0.1",
    "ntp://Time.Example.ORG.",
    "NTP://h:0123",
    "ntp://h:0",
    "ntp://h:65535/path?q=1#f",
    "ntp://h:65536",
    "ntp://user@h",
    "ntp://[::1]:123",
    "ntp://h:",
    "udp://127.0.0.1:53",
    "udp://h",
    "udp://h:00000",
    "udp://H_1-x.example:9/?a#b",
    "udp://a..b:1",
    "tcp://h",
    "http://h",
    "https://H:08443/x",
]


@pytest.mark.parametrize("text", WELL_FORMED + UNUSUAL + DEFAULT_VALIDATION)
def test_target_built_through_the_fast_path_is_the_same_target(
    manager: PluginManager, monkeypatch: pytest.MonkeyPatch, text: str
) -> None:
    fast = _built(manager, text)
    take_the_long_way(monkeypatch)
    assert fast == _built(manager, text)


@st.composite
def probe_targets(draw: st.DrawFn) -> str:
    """Targets of every built-in probe near the fast path's edges."""
    scheme = draw(st.sampled_from(["ntp", "udp", "tcp", "http", "NTP", "Udp", "dns", "ssh"]))
    host = draw(st.sampled_from(["127.0.0.1", "h", "H.example.", "a..b", "[::1]", "u@h", ""]))
    port = draw(st.one_of(st.just(""), st.integers(0, 70_000).map(":{}".format)))
    rest = draw(st.sampled_from(["", "/", "/x?y#z", "?", "#", ":", "@"]))
    return f"{scheme}://{host}{port}{rest}"


_BUILT_MANAGER: list[PluginManager] = []


@settings(max_examples=300, deadline=None)
@given(st.one_of(probe_targets(), plain_targets()))
def test_any_target_is_built_alike_by_the_fast_path_and_the_full_parser(text: str) -> None:
    if not _BUILT_MANAGER:
        _BUILT_MANAGER.append(PluginManager())
        _BUILT_MANAGER[0].load_entrypoints(autoload=False)
    manager = _BUILT_MANAGER[0]
    fast = _built(manager, text)
    with pytest.MonkeyPatch.context() as monkeypatch:
        take_the_long_way(monkeypatch)
        slow = _built(manager, text)
    assert fast == slow


def _bad_targets() -> Iterator[str]:
    yield from ("tcp://h:65536", "tcp://:80", "http://h\x00/", "http://[127.0.0.1]/")
    yield from ("http://a..b/", "http://" + "a" * 64 + ".example/", "tpc://h:1")


@pytest.mark.anyio
@pytest.mark.parametrize("text", list(_bad_targets()))
async def test_embedding_api_refuses_a_bad_target_as_the_full_parser_does(
    manager: PluginManager, monkeypatch: pytest.MonkeyPatch, text: str
) -> None:
    targets = ["tcp://127.0.0.1:9", text]
    with pytest.raises(TargetError) as fast:
        await anyprobe.check(targets, manager=manager)
    take_the_long_way(monkeypatch)
    with pytest.raises(TargetError) as slow:
        await anyprobe.check(targets, manager=manager)
    assert str(fast.value) == str(slow.value)


def test_target_list_built_fast_matches_the_one_built_slowly(
    manager: PluginManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    urls = [text for text in WELL_FORMED if text.split(":")[0].lower() in {"http", "https"}]
    urls += ["tcp://127.0.0.1:80", "tcp://[::1]:80", "http://u:pw@h/", "https://bücher.de/"]
    fast = [(t.probe, t.host, t.port, t.display_url) for t in build_targets(manager, urls)]
    take_the_long_way(monkeypatch)
    slow = [(t.probe, t.host, t.port, t.display_url) for t in build_targets(manager, urls)]
    assert fast == slow
