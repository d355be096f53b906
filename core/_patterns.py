"""User-supplied regular expressions, on a linear-time engine, and work off the loop.

Every regular expression a user gives anyprobe (``body_matches``, tcp's
``expect_regex``, dns's ``answers_match``...) is compiled by
:func:`compile_pattern` on RE2 (the ``google-re2`` package). RE2 never
backtracks: a search takes time linear in the length of the text, whatever the
pattern, so ``(x+x+)+y`` cannot stall a run as it does with Python's ``re``.
What RE2 refuses (backreferences, lookaround, possessive repetitions, a
program too large) is refused when the options are validated, before any
check runs, with one line that says why::

    pattern = anyprobe.compile_pattern(r"version: \\d+")
    found = pattern.search(text)          # a PatternMatch or None
    found = await pattern.search_off_loop(big_text)

Linear is not free: when RE2's fast automaton gives up on a pathological
pattern, its fallback costs time in proportion to the text's length times the
size of the pattern's compiled program. :meth:`Pattern.work` estimates that
worst case, and :func:`off_loop` runs work past :data:`OFF_LOOP_BYTES` in a
worker thread, so that one check never holds the event loop for long.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, overload

import anyio

T = TypeVar("T")
AnyStr = TypeVar("AnyStr", str, bytes)

#: Work (in bytes of body parsed) done on the event loop; past it, a body is
#: decoded, searched and parsed in a worker thread. Measured on the reference
#: machine (docs/reliability.md): ``json.loads`` costs about 7 ns a byte and a
#: JMESPath filter over the parsed document about 30 ns a byte more, so 16 KiB
#: holds the loop well under a millisecond, about what starting a thread and
#: waking the loop costs. Above that the thread costs less than the stall.
OFF_LOOP_BYTES = 16 * 1024

#: RE2's worst case, its NFA running when the DFA gives up, measured at up to
#: 12 ns per byte of text and instruction of the program: about 0.3 times a
#: byte of JSON parsing (40 ns), so a search counts as this many tenths of a
#: byte of work per byte and instruction.
_NFA_WORK_TENTHS = 3

#: RE2's reasons, reworded to say what to change.
_REASONS = (
    ("invalid perl operator: (?=", "lookahead (?=...) is not supported"),
    ("invalid perl operator: (?!", "lookahead (?!...) is not supported"),
    ("invalid perl operator: (?<=", "lookbehind (?<=...) is not supported"),
    ("invalid perl operator: (?<!", "lookbehind (?<!...) is not supported"),
    ("invalid perl operator: (?>", "atomic groups (?>...) are not supported"),
    ("invalid perl operator: (?#", "comments (?#...) are not supported"),
    ("invalid perl operator: (?x", "the verbose flag (?x) is not supported"),
    ("invalid escape sequence: \\Z", "\\Z is not supported: use \\z for the end of the text"),
    ("bad repetition operator: ++", "possessive repetitions (a++) are not supported"),
    ("bad repetition operator: *+", "possessive repetitions (a*+) are not supported"),
    ("bad repetition operator: ?+", "possessive repetitions (a?+) are not supported"),
    ("invalid repetition size", "a repetition count (or nested counts multiplied) is over 1000"),
    ("pattern too large", "the pattern compiles to a program over RE2's size limit"),
)

_ENGINE = " (patterns use RE2 syntax, which runs in linear time)"

#: Where the accepted syntax is described.
SYNTAX_URL = "https://github.com/google/re2/wiki/Syntax"


class PatternError(ValueError):
    """A pattern RE2 refuses; ``str(error)`` is one line saying why.

    A ValueError, so that a pydantic validator that raises it becomes an
    options error naming the check and the field.
    """


@dataclass(frozen=True, slots=True)
class PatternMatch(Generic[AnyStr]):
    """Where a pattern matched: ``text`` (``str`` or ``bytes``, as the subject was)
    spans ``start`` to ``end``. Always true, even when it matched an empty text."""

    text: AnyStr
    start: int
    end: int


class Pattern:
    """A user's regular expression compiled on RE2. Build it with :func:`compile_pattern`.

    ``pattern`` is the text as the user wrote it; ``binary`` patterns search
    bytes (every byte one character, as Python's ``re`` does for bytes),
    the others search ``str``. Thread-safe: searches may run in any thread.
    """

    __slots__ = ("_dollar", "_regexp", "binary", "multiline", "pattern", "program_size")

    def __init__(self, pattern: str, regexp: Any, *, binary: bool, multiline: bool) -> None:
        self.pattern = pattern
        self.binary = binary
        self.multiline = multiline
        self._regexp = regexp
        self.program_size: int = regexp.programsize
        # RE2's $ (without (?m)) is the end of the text only; Python's, which
        # users know, also matches before a final newline ('^ok$' matches "ok\n").
        self._dollar = "$" in pattern and not multiline

    def __repr__(self) -> str:
        return f"Pattern({self.pattern!r})"

    @overload
    def search(self, subject: str) -> PatternMatch[str] | None: ...
    @overload
    def search(self, subject: bytes) -> PatternMatch[bytes] | None: ...
    def search(self, subject: str | bytes) -> PatternMatch[Any] | None:
        """The first match in ``subject``, or None. Runs where it is called:
        use :meth:`search_off_loop` in a check when ``subject`` may be long."""
        if isinstance(subject, str) == self.binary:
            kind = "bytes" if self.binary else "str"
            raise TypeError(f"this pattern searches {kind}, not {type(subject).__name__}")
        found = self._regexp.search(subject)
        if found is None and self._dollar and subject[-1:] in ("\n", b"\n"):
            found = self._regexp.search(subject[:-1])
        if found is None:
            return None
        start, end = found.span()
        return PatternMatch(subject[start:end], start, end)

    @overload
    async def search_off_loop(self, subject: str) -> PatternMatch[str] | None: ...
    @overload
    async def search_off_loop(self, subject: bytes) -> PatternMatch[bytes] | None: ...
    async def search_off_loop(self, subject: str | bytes) -> PatternMatch[Any] | None:
        """:meth:`search`, in a worker thread when its :meth:`work` is past
        :data:`OFF_LOOP_BYTES` (see :func:`off_loop`)."""
        return await off_loop(self.search, subject, work=self.work(len(subject)))

    def work(self, length: int) -> int:
        """The worst-case cost of searching ``length`` characters, in the unit of
        :data:`OFF_LOOP_BYTES` (bytes of body parsed)."""
        searches = 2 if self._dollar else 1
        return searches * length * self.program_size * _NFA_WORK_TENTHS // 10


def compile_pattern(pattern: str, *, binary: bool = False, multiline: bool = False) -> Pattern:
    """Compile a user's ``pattern`` on RE2, or raise :class:`PatternError` saying why not.

    ``multiline``: ``^`` and ``$`` match at every line (as ``re.MULTILINE``).
    ``binary``: the pattern searches bytes, one character a byte (Latin-1), as a
    bytes pattern of Python's ``re`` does; the pattern's own non-ASCII
    characters stand for their UTF-8 bytes. Compiled patterns are cached.
    """
    return _compile(pattern, binary, multiline)


@functools.lru_cache(maxsize=256)
def _compile(pattern: str, binary: bool, multiline: bool) -> Pattern:
    import re2  # type: ignore[import-untyped]

    options = re2.Options()
    options.log_errors = False  # RE2 would log every refused pattern to stderr
    text = ("(?m)" if multiline else "") + pattern
    source: str | bytes = text
    if binary:
        options.encoding = re2.Options.Encoding.LATIN1
        source = text.encode("utf-8", "surrogatepass")
    try:
        regexp = re2.compile(source, options)
    except re2.error as exc:
        raise PatternError(_why(exc, pattern)) from None
    except (TypeError, ValueError, UnicodeError) as exc:  # a NUL or a lone surrogate
        raise PatternError(f"not a regular expression: {exc}") from None
    return Pattern(pattern, regexp, binary=binary, multiline=multiline)


def _why(exc: Exception, pattern: str) -> str:
    raw = exc.args[0] if exc.args else ""
    reason = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    reason = reason.splitlines()[0] if reason else "refused"
    if reason[:-1] == "invalid escape sequence: \\" and reason[-1].isdigit():
        return f"backreferences ({reason[-2:]}) are not supported{_ENGINE}"
    if reason.startswith("invalid perl operator: (?P") and "(?P=" in pattern:
        return f"backreferences ((?P=name)) are not supported{_ENGINE}"
    for prefix, plain in _REASONS:
        if reason.startswith(prefix):
            return f"{plain}{_ENGINE}"
    return f"not a regular expression: {reason}{_ENGINE}"


async def off_loop(func: Callable[..., T], *args: Any, work: int) -> T:
    """``func(*args)``: on the loop when ``work`` is at most :data:`OFF_LOOP_BYTES`,
    else in a worker thread, so that the loop keeps running other checks, timers
    and signal handlers meanwhile.

    ``work`` is the worst-case cost in bytes of body parsed (a body's length
    for JSON, :meth:`Pattern.work` for a search). When the caller is cancelled
    (its check timed out, the run was interrupted), this returns at once and
    the thread is abandoned: it finishes its computation and its result is
    dropped. The thread is a daemon, so an abandoned computation never keeps
    the process alive (anyio's worker threads are not daemons on asyncio).
    """
    if work <= OFF_LOOP_BYTES:
        return func(*args)
    from .bridge import _caller_wake, _safe_wake

    wake, _ = _caller_wake()
    done = anyio.Event()
    outcome: list[Any] = []

    def work_in_thread() -> None:
        try:
            outcome.append((True, func(*args)))
        except BaseException as exc:
            outcome.append((False, exc))
        finally:
            _safe_wake(wake, done.set)

    thread = threading.Thread(target=work_in_thread, name="anyprobe-off-loop", daemon=True)
    thread.start()
    await done.wait()
    # The thread has handed its result over and is returning: a join of
    # microseconds, so that no thread outlives the call that started it.
    thread.join()
    succeeded, value = outcome[0]
    if not succeeded:
        raise value
    return value  # type: ignore[no-any-return]
