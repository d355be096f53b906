"""Text that comes from outside anyprobe: check it, parse it, and show it safely.

Targets, ``--set`` values, config files and the bytes a server sends are
untrusted: this module holds the few rules every part of anyprobe applies to
them, so that they are applied the same way everywhere.

- :func:`escape_controls`: text as it may be printed (terminal escapes, NUL,
  line breaks and bidirectional marks made visible), used by error lines and
  the table reporter.
- :func:`find_control`: the first control character of a text, to refuse it.
- :func:`host_problem`: why a URL's host can never be resolved, or None.
- :func:`loads_toml`: :func:`tomllib.loads` with nesting and number sizes
  bounded, so that no input can end in a RecursionError.
"""

from __future__ import annotations

import re
import sys
from typing import Any

#: Characters shown escaped: C0 and C1 controls, DEL, line and paragraph
#: separators, the bidirectional marks that reorder what a terminal shows, and
#: lone surrogates (bytes that were not UTF-8), which no UTF-8 stream can write.
_UNSAFE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069\ufeff\ud800-\udfff]"
)
_NAMED = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape_controls(text: str) -> str:
    r"""``text`` safe to print on one line of a terminal.

    Control characters become Python-style escapes (``\x1b``, ``\x00``,
    ``\n``); everything else, non-ASCII letters included, is kept::

        >>> escape_controls("ok\x1b[2J\n")
        'ok\\x1b[2J\\n'
    """
    if _UNSAFE.search(text) is None:
        return text
    return _UNSAFE.sub(_escape, text)


#: Refused in targets: C0 and C1 controls, DEL, and the invisible format
#: characters that reorder or hide text (zero-width space, bidirectional
#: marks, overrides and isolates, line and paragraph separators, the BOM).
#: The zero-width joiners (U+200C, U+200D) are letters' business: IDNA
#: allows them where a script needs them, and checks them in host names.
_CONTROL = re.compile(
    "[\x00-\x1f\x7f-\x9f\u200b\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff]"
)


def find_control(text: str) -> str | None:
    r"""The first control or invisible format character of ``text`` as an
    escape (``\x00``, ``\u202e``), or None."""
    match = _CONTROL.search(text)
    return None if match is None else _escape(match)


#: The longest host name DNS can carry (RFC 1035), without the final dot.
MAX_HOST_NAME = 253
#: The longest label of a host name.
MAX_LABEL = 63
_LABEL = re.compile(r"^[a-z0-9_-]+$")
#: An ASCII host name (an IPv4 address included) within the limits.
_PLAIN_NAME = re.compile(
    r"^(?=[^.]{1,63}(?:\.|$))(?!.{254})[A-Za-z0-9_-]+(?:\.(?=[^.]{1,63}(?:\.|$))[A-Za-z0-9_-]+)*\.?$"
)


def host_problem(host: str, *, bracketed: bool = False) -> str | None:
    """Why ``host`` (a URL's host, brackets removed) can never be resolved, or None.

    An IP address is fine (an IPv6 one must be ``bracketed`` in the URL, and a
    bracketed host must be an IPv6 address). A name must be at most 253
    characters with labels of 1 to 63 letters, digits, ``-`` or ``_`` once
    encoded as IDNA; a non-ASCII name must follow IDNA 2008 (the ``idna``
    package's rules, as httpx applies them). Percent-encoding is refused: no
    resolver decodes it.
    """
    import ipaddress

    control = find_control(host)
    if control is not None:
        return f"a control character ({control}) in the host"
    if bracketed:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return f"[{host}] is not an IPv6 address"
        return None
    if _PLAIN_NAME.match(host):  # the common case, quickly
        return None
    if "%" in host:
        return f"{host!r}: a host name cannot be percent-encoded"
    if ":" in host:
        try:
            ipaddress.IPv6Address(host)
            return None
        except ValueError:
            pass
    name = host
    if not host.isascii():
        import idna

        try:
            name = idna.encode(host.lower()).decode("ascii")
        except (idna.IDNAError, UnicodeError) as exc:
            return f"{host!r} is not a valid international domain name ({exc})"
    name = name.lower()
    if name == ".":
        return None
    if name.endswith("."):
        name = name[:-1]
    if len(name) > MAX_HOST_NAME:
        return f"the host name is {len(name)} characters long (at most {MAX_HOST_NAME})"
    for label in name.split("."):
        if not label:
            return f"{host!r}: empty label in the host name"
        if len(label) > MAX_LABEL:
            return f"a label of the host name is {len(label)} characters long (at most {MAX_LABEL})"
        if not _LABEL.match(label):
            bad = next(c for c in label if not _LABEL.match(c))
            return f"{host!r}: {bad!r} cannot appear in a host name"
    return None


#: The deepest nesting of arrays and tables a TOML value may have.
MAX_TOML_DEPTH = 64


class TomlLimitError(ValueError):
    """A TOML document nested deeper than :data:`MAX_TOML_DEPTH`, or with a
    number too long to convert."""


def loads_toml(text: str) -> dict[str, Any]:
    """Parse TOML like :func:`tomllib.loads`, bounded.

    Raises :class:`tomllib.TOMLDecodeError` for a syntax error, and
    :class:`TomlLimitError` for a value nested deeper than :data:`MAX_TOML_DEPTH`
    or an integer longer than Python converts (``sys.get_int_max_str_digits``):
    never a RecursionError.
    """
    import tomllib

    if _max_brackets(text) > MAX_TOML_DEPTH:
        raise TomlLimitError(f"nested deeper than {MAX_TOML_DEPTH} levels")
    try:
        document = tomllib.loads(text)
    except RecursionError:
        raise TomlLimitError(f"nested deeper than {MAX_TOML_DEPTH} levels") from None
    except tomllib.TOMLDecodeError:
        raise
    except ValueError:
        # int() refuses more digits than sys.get_int_max_str_digits().
        limit = sys.get_int_max_str_digits()
        raise TomlLimitError(f"a number longer than {limit} digits") from None
    if _depth(document) > MAX_TOML_DEPTH:
        raise TomlLimitError(f"nested deeper than {MAX_TOML_DEPTH} levels")
    return document


def _max_brackets(text: str) -> int:
    """An upper bound of the nesting of ``text``'s inline arrays and tables.

    Brackets inside strings count too, so this overestimates; it is only used
    to refuse, before parsing, what could never parse within the limit, and
    anything it refuses is re-checked by counting outside strings.
    """
    depth = deepest = 0
    for char in text:
        if char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth = max(0, depth - 1)
    if deepest <= MAX_TOML_DEPTH:
        return deepest
    return _brackets_outside_strings(text)


def _brackets_outside_strings(text: str) -> int:
    r"""The nesting of ``text``'s brackets, skipping strings and comments (a
    rough TOML lexer: enough to tell ``["[[[["]`` from ``[[[[...``)."""
    depth = deepest = 0
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if char == "#":
            end = text.find("\n", i)
            i = n if end < 0 else end
            continue
        if char in "\"'":
            quote = text[i : i + 3] if text[i : i + 3] in ('"""', "'''") else char
            j = i + len(quote)
            while j < n and not text.startswith(quote, j):
                j += 2 if (char == '"' and text[j] == "\\") else 1
            i = j + len(quote)
            continue
        if char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth = max(0, depth - 1)
        i += 1
    return deepest


def _depth(value: Any) -> int:
    """How deeply ``value``'s lists and dicts nest (iterative: no recursion)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        depth += 1
        if depth > MAX_TOML_DEPTH:
            return depth
        deepest = max(deepest, depth)
        stack.extend((child, depth) for child in children)
    return deepest
