"""Hypothesis strategies for the inputs a user types: targets, --set values, config files.

They aim at the shapes that broke anyprobe before: control characters in any
part of a URL, hosts that can never resolve, invalid IDN code points, values
nested thousands deep, integers past Python's digit limit, NaN and infinity.
"""

from __future__ import annotations

from hypothesis import strategies as st

SCHEMES = ["tcp", "tls", "http", "https", "dns", "ssh", "rdap", "TCP", "Https", "nope"]
CONTROL = "".join(map(chr, [*range(0, 32), 127, 0x85, 0x200B, 0x200E, 0x200F, 0x202E, 0xFEFF]))
NASTY = st.text(
    alphabet=st.one_of(
        st.sampled_from(CONTROL),
        st.sampled_from("%[]:@/?#.-_~☃é\\ "),
        st.characters(codec="utf-8", exclude_categories=("Cs",)),
    ),
    max_size=20,
)
HOSTS = st.one_of(
    st.sampled_from(
        [
            "127.0.0.1",
            "[::1]",
            "localhost",
            "%",
            "%41",
            "127%2e0.0.1",
            "[v1.x]",
            "[::1",
            "\u2603.invalid",
            "a\u200bb.invalid",
            "xn--",
            "xn--zz.invalid",
            "a" * 64 + ".invalid",
            ".".join(["a" * 60] * 5),
            "",
            ".",
            "..",
            "-a-.invalid",
        ]
    ),
    st.builds("{}{}{}".format, st.sampled_from(["127.0.0.1", "a"]), NASTY, st.just(".invalid")),
    NASTY,
)


@st.composite
def targets(draw: st.DrawFn) -> str:
    """A target URL with every part drawn, any part possibly hostile."""
    scheme = draw(st.sampled_from(SCHEMES))
    user = draw(st.one_of(st.just(""), NASTY.map(lambda u: f"{u}@")))
    host = draw(HOSTS)
    port = draw(st.one_of(st.just(""), st.just(":1"), st.integers(-1, 70000).map(":{}".format),
                          NASTY.map(lambda p: f":{p}")))  # fmt: skip
    path = draw(st.one_of(st.just(""), NASTY.map(lambda p: f"/{p}")))
    query = draw(st.one_of(st.just(""), NASTY.map(lambda q: f"?type={q}")))
    return f"{scheme}://{user}{host}{port}{path}{query}"


def nested(depth: int, opening: str, closing: str, inner: str = "1") -> str:
    return opening * depth + inner + closing * depth


VALUES = st.one_of(
    NASTY,
    st.sampled_from(["nan", "inf", "-inf", "[nan]", "1e400", "0", "-1", "true", '""', "[]",
                     "{}", "{a = 1}", "[1, 'a']", "127.0.0.1", "['bogus']", "x\r\nQUIT"]),
    st.integers(100, 6000).map(lambda n: "9" * n),
    st.integers(1, 6000).map(lambda n: nested(n, "[", "]")),
    st.integers(1, 6000).map(lambda n: "[" * n),
    st.integers(1, 6000).map(lambda n: nested(n, "{a=", "}")),
    st.integers(1, 6000).map(lambda n: "[" + repr(nested(n, "(", ")", "a")) + "]"),
    st.integers(1, 6000).map(lambda n: repr(nested(n, "[", "]", "a"))),
)  # fmt: skip


def toml_snippet(key: str, value: str) -> str:
    return f"{key} = {value}"


REPORTER_TYPES = ['"webhook"', '"junit"', '"table"', "1"]
TEMPLATES = ['"{name:>99999999999}"', '"{name}"', '"{"', '"{0}"', '"{name.__class__}"']


@st.composite
def config_files(draw: st.DrawFn, option_names: list[str]) -> str:
    """A config file's text: [defaults], [[check]] tables, reporters, possibly damaged."""
    lines: list[str] = []
    if draw(st.booleans()):
        lines.append("[defaults]")
        keys = st.sampled_from(["timeout", "retries", "concurrency", "per_host", *option_names])
        for key in draw(st.lists(keys, max_size=3)):
            lines.append(toml_snippet(key, draw(VALUES)))
    for _ in range(draw(st.integers(0, 2))):
        lines.append("[[check]]")
        url = draw(targets())
        quoted = draw(st.sampled_from([repr(url), f'"{url}"']))
        lines.append(f"url = {quoted}")
        for key in draw(st.lists(st.sampled_from(option_names), max_size=3)):
            lines.append(toml_snippet(key, draw(VALUES)))
    if draw(st.booleans()):
        lines.append("[[reporter]]")
        lines.append(toml_snippet("type", draw(st.sampled_from(REPORTER_TYPES))))
        lines.append(toml_snippet("template", draw(st.sampled_from(TEMPLATES))))
    text = "\n".join(lines) + "\n"
    if draw(st.integers(0, 4)) == 0:
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(NASTY) + text[at:]
    return text
