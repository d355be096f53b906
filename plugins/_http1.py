"""HTTP/1.1 on one connection: the request written, the response parsed.

Two parsers behind one interface, :class:`H11Parser` (h11, pure Python,
always installed) and :class:`LlhttpParser` (httptools, the C parser llhttp
that aiohttp and Node use; ``pip install 'anyprobe[speedups]'``). A check
uses httptools when it is installed, unless the environment variable
``ANYPROBE_HTTP_PARSER`` is ``h11`` (``httptools`` insists on it). Both keep
the same limits and give the same verdicts: a head over ``max_head_bytes``,
the body byte budget, chunked and Content-Length framing, a connection
closed early, 1xx heads skipped, HEAD responses, HTTP/1.0, and whether the
connection can carry another request. What llhttp refuses is described with
h11's words (the bytes are parsed again by h11 to find them), so a summary
does not depend on the parser.

With httptools the request is written here, not by h11, under h11's rules
(the same patterns for the method, the target, header names and values; one
Host header); anything out of the ordinary (a Transfer-Encoding or second
Content-Length header, a header h11 refuses) is written by h11, which
refuses it with its own words.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

import anyprobe
from anyprobe.tls import TlsInfo

#: The environment variable that picks the HTTP/1.1 parser: ``h11`` or ``httptools``.
PARSER_ENV = "ANYPROBE_HTTP_PARSER"
#: Bytes of a response kept to describe what llhttp refused in h11's words.
_KEPT_FOR_ERRORS = 256 * 1024


def h11_message(exc: Exception) -> str:
    """h11's message for ``exc``, the bytes it quotes shown as ``b'...'``.

    h11 quotes the line it refused with ``repr()`` of a bytearray; a summary
    reads better without the type's name.
    """
    text = str(exc)
    start = text.find("bytearray(b")
    if start >= 0 and text.endswith(")"):
        text = text[:start] + text[start + len("bytearray(") : -1]
    return text


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """What goes out: ``target`` is the request target (``/path?query``, or
    the absolute form a proxy wants); header names are ASCII tokens."""

    method: str
    target: str
    headers: Sequence[tuple[str, str]]
    body: bytes | None = None
    #: The header lines and the blank line ending the head, as
    #: :func:`write_head` wrote them for ``headers`` and ``body`` (worked
    #: out once for many requests), or None: written for this request.
    head: bytes | None = None


@dataclass(slots=True)
class Response:
    """What came back: header names are lower-case; ``body`` holds what was
    kept of ``body_bytes`` read, ``truncated`` when the body passed the limit."""

    status: int
    reason: str
    http_version: str
    headers: list[tuple[str, str]]
    body: bytearray
    body_bytes: int
    address: str = ""
    tls: TlsInfo | None = None
    truncated: bool = False

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (lower-case), or None."""
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def add_body(self, chunk: bytes, limit: int, keep: bool) -> bool:
        """Count ``chunk`` (and keep it when ``keep``); False once the body
        passed ``limit`` bytes: it is then truncated, the rest is not read."""
        size = len(chunk)
        if self.body_bytes + size > limit:
            if keep:
                self.body += chunk[: limit - self.body_bytes]
            self.body_bytes = limit
            self.truncated = True
            return False
        self.body_bytes += size
        if keep:
            self.body += chunk
        return True


class RemoteProtocolError(Exception):
    """What the server sent is not HTTP/1.1 (the name h11 gives the same error)."""


@functools.cache
def httptools_available() -> bool:
    """Whether httptools can be imported here (asked once a process)."""
    try:
        import httptools  # noqa: F401
    except ImportError:
        return False
    return True


def parser_name() -> str:
    """The parser a new connection uses: ``httptools`` when installed, else ``h11``;
    ``ANYPROBE_HTTP_PARSER=h11`` forces h11, ``=httptools`` requires httptools."""
    wanted = os.environ.get(PARSER_ENV, "").strip().lower()
    if wanted == "h11":
        return "h11"
    if wanted == "httptools":
        anyprobe.require(
            "httptools", needed_for=f"{PARSER_ENV}=httptools", install="anyprobe[speedups]"
        )
        return "httptools"
    return "httptools" if httptools_available() else "h11"


def new_parser(max_head_bytes: int, name: str | None = None) -> H11Parser | LlhttpParser:
    """A parser for a new connection: ``name``'s, or :func:`parser_name`'s."""
    if (name or parser_name()) == "httptools":
        return LlhttpParser(max_head_bytes)
    return H11Parser(max_head_bytes)


#: The last headers tuple :func:`_closes` read, and its answer: a run's checks
#: to one origin send the same (immutable) headers, their route's (kept here,
#: so that no other tuple can take its identity).
_LAST_CLOSES: list[tuple[Any, bool]] = [((), False)]


def _closes(headers: Any) -> bool:
    """Whether ``Connection: close`` is among ``headers`` (as h11 reads it)."""
    for name, value in headers:
        if name.lower() == "connection" and "close" in (
            part.strip().lower() for part in value.split(",")
        ):
            return True
    return False


# -- h11 ---------------------------------------------------------------------------


class H11Parser:
    """HTTP/1.1 through h11's state machine, which writes the request too."""

    name = "h11"

    def __init__(self, max_head_bytes: int) -> None:
        import h11

        self.connection = h11.Connection(h11.CLIENT, max_incomplete_event_size=max_head_bytes)
        self.closed = False  # the server closed its side
        self.limit = 0
        self.keep = True
        self.response: Response | None = None

    def start(self, request: HttpRequest, limit: int, keep: bool) -> bytes:
        """The request's bytes; read a body of at most ``limit`` bytes (kept when ``keep``)."""
        self.limit, self.keep, self.response = limit, keep, None
        return h11_request_bytes(self.connection, request)

    def feed(self, data: bytes) -> None:
        """Bytes from the server; ``b""`` when it closed the connection."""
        if not data:
            self.closed = True
        self.connection.receive_data(data)

    def _next(self) -> Any:
        import h11

        connection = self.connection
        state = connection.their_state  # h11 moves it to ERROR as it raises
        try:
            return connection.next_event()
        except h11.RemoteProtocolError as exc:
            if self.closed and state is h11.SEND_BODY:
                summary = "the server closed the connection before the end of the body"
            elif self.closed:
                summary = "the server closed the connection without a response"
            else:
                summary = f"invalid HTTP response: {h11_message(exc)}"
            exc.__traceback__ = None  # a cycle with h11's frame: see LlhttpParser._h11_words
            raise anyprobe.CheckFailed(summary, error=exc) from None

    def head(self) -> Response | None:
        """The response head once it is all in (1xx heads skipped), else None."""
        import h11

        while True:
            event = self._next()
            if event is h11.NEED_DATA:
                return None
            if isinstance(event, h11.Response):
                break
            if isinstance(event, h11.ConnectionClosed):
                raise anyprobe.CheckFailed("the server closed the connection without a response")
        self.response = Response(
            status=event.status_code,
            reason=event.reason.decode("latin-1", errors="replace"),
            http_version=event.http_version.decode("ascii", errors="replace"),
            headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in event.headers],
            body=bytearray(),
            body_bytes=0,
        )
        return self.response

    def body_done(self) -> bool:
        """Take in the body read so far; True once it ended or passed the limit."""
        import h11

        response = self.response
        assert response is not None
        while True:
            event = self._next()
            if event is h11.NEED_DATA:
                return False
            if isinstance(event, h11.Data):
                if not response.add_body(event.data, self.limit, self.keep):
                    return True
            elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                return True

    def why_not_reusable(self) -> str | None:
        """None when the connection can carry another request, else why not."""
        import h11

        protocol = self.connection
        if protocol.our_state is h11.DONE and protocol.their_state is h11.DONE:
            if protocol.trailing_data[0]:
                # They would be read as the next request's response.
                return "the server sent more than the response"
            return None
        if protocol.their_state is h11.MUST_CLOSE:
            return "the server asked to close it"
        if protocol.our_state is h11.MUST_CLOSE:
            return "the request asked to close it"
        return "the response was not read to its end"

    def start_next_cycle(self) -> None:
        """Ready for the next request on the same connection."""
        self.connection.start_next_cycle()


def h11_request_bytes(connection: Any, request: HttpRequest) -> bytes:
    """The request as h11 writes it; a request h11 refuses to send is unknown."""
    import h11

    try:
        data: bytes = connection.send(
            h11.Request(
                method=request.method,
                target=request.target,
                headers=[(k.encode("ascii"), v.encode("utf-8")) for k, v in request.headers],
            )
        )
        if request.body:
            data += connection.send(h11.Data(data=request.body))
        data += connection.send(h11.EndOfMessage())
    except h11.LocalProtocolError as exc:
        raise anyprobe.CheckFailed(
            f"cannot send the request: {exc}", status=anyprobe.Status.UNKNOWN
        ) from None
    return data


# -- httptools (llhttp) ------------------------------------------------------------

# h11's patterns (h11/_abnf.py), so that both paths send and refuse the same requests.
_TOKEN = re.compile(rb"[-!#$%&'*+.^_`|~0-9a-zA-Z]+")
_FIELD_VALUE = re.compile(rb"(?:[^\x00\s]+(?:[ \t]+[^\x00\s]+)*)?")
_REQUEST_TARGET = re.compile(rb"[\x21-\x7e]+")
#: Headers whose framing rules only h11's writer applies.
_FRAMING = frozenset({"transfer-encoding", "content-length"})
#: Header lines already checked, by (name, value): most are the same in every check.
_LINES: dict[tuple[str, str], bytes] = {}
_MAX_LINES = 4096


def _header_line(name: str, value: str) -> bytes | None:
    """``name: value\\r\\n``, or None when h11 would refuse the header."""
    key = (name, value)
    line = _LINES.get(key)
    if line is None:
        raw_name, raw_value = name.encode("ascii", "replace"), value.encode("utf-8")
        if not (_TOKEN.fullmatch(raw_name) and _FIELD_VALUE.fullmatch(raw_value)):
            return None
        line = raw_name + b": " + raw_value + b"\r\n"
        if len(_LINES) >= _MAX_LINES:
            _LINES.clear()
        _LINES[key] = line
    return line


def write_request(request: HttpRequest) -> bytes | None:
    """The request's bytes as h11 writes them, or None when it is out of the
    ordinary (then h11 writes it, or refuses it in its own words)."""
    method, target = request.method.encode("ascii", "replace"), request.target.encode("utf-8")
    if not (_TOKEN.fullmatch(method) and _REQUEST_TARGET.fullmatch(target)):
        return None
    head = request.head
    if head is None:
        head = write_head(request.headers, request.body)
        if head is None:
            return None
    body = request.body
    if body:
        return b"".join((method, b" ", target, b" HTTP/1.1\r\n", head, body))
    return b"".join((method, b" ", target, b" HTTP/1.1\r\n", head))


def write_head(headers: Sequence[tuple[str, str]], body: bytes | None) -> bytes | None:
    """The header lines of a request with ``headers`` and ``body`` and the
    blank line after them, as h11 writes them; None when they are out of the
    ordinary (see :func:`write_request`). The same for every request that
    sends them: worth keeping for a run's many requests to one origin."""
    lines: list[bytes] = []
    hosts = lengths = 0
    for name, value in headers:
        lower = name.lower()
        if lower == "host":
            hosts += 1
        elif lower in _FRAMING:
            if lower != "content-length" or lengths or not value.isdigit():
                return None
            lengths += 1
        line = _header_line(name, value)
        if line is None:
            return None
        lines.append(line)
    if hosts != 1 or (body and not lengths) or (lengths and not body):
        return None
    lines.append(b"\r\n")
    return b"".join(lines)


#: Response header names as received, and lower-cased: the same in every response.
_NAMES: dict[bytes, str] = {}
_MAX_NAMES = 4096


@functools.cache
def _httptools() -> Any:
    """The httptools module (imported the first time a parser needs it)."""
    import httptools

    return httptools


class LlhttpParser:
    """HTTP/1.1 parsed by llhttp through httptools; a parser per response.

    httptools calls the ``on_*`` methods from inside ``feed_data``.
    """

    name = "httptools"

    def __init__(self, max_head_bytes: int) -> None:
        self.max_head_bytes = max_head_bytes
        self.request: HttpRequest | None = None
        self.request_closes = False
        self.limit = 0
        self.keep = True
        self._reset()

    def _reset(self) -> None:
        self.parser: Any = None
        self.response: Response | None = None
        self.reason = b""
        self.headers: list[tuple[str, str]] = []
        self.informational = False
        self.complete = False  # the whole response was read
        self.stopped = False  # the body passed the limit: the rest is not read
        self.keep_alive = False
        self.extra = False  # bytes after the response: the connection is not reused
        self.head_bytes = 0
        self.received: list[bytes] = []
        self.received_size = 0

    def start(self, request: HttpRequest, limit: int, keep: bool) -> bytes:
        """The request's bytes; read a body of at most ``limit`` bytes (kept when ``keep``)."""
        data = write_request(request)
        if data is None:
            import h11

            data = h11_request_bytes(h11.Connection(h11.CLIENT), request)
        self._reset()
        self.request = request
        headers = request.headers
        last = _LAST_CLOSES[0]
        if headers is last[0]:
            self.request_closes = last[1]
        else:
            closes = self.request_closes = _closes(headers)
            if isinstance(headers, tuple):
                _LAST_CLOSES[0] = (headers, closes)
        self.limit, self.keep = limit, keep
        self.parser = _httptools().HttpResponseParser(self)
        return data

    # httptools' callbacks

    def on_message_begin(self) -> None:
        if self.response is not None:
            self.extra = True  # a second response: never asked for
        self.headers = []

    def on_status(self, reason: bytes) -> None:
        self.reason = reason

    def on_header(self, name: bytes, value: bytes) -> None:
        lower = _NAMES.get(name)
        if lower is None:
            if len(_NAMES) >= _MAX_NAMES:
                _NAMES.clear()  # a bound: a server inventing names
            lower = _NAMES[name] = name.decode("latin-1").lower()
        self.headers.append((lower, value.decode("latin-1").strip(" \t")))

    def on_headers_complete(self) -> None:
        if self.response is not None:
            return
        parser = self.parser
        status = parser.get_status_code()
        if 100 <= status < 200 and status != 101:
            self.informational = True  # skipped, as h11 does: the real head follows
            return
        version = parser.get_http_version()
        self.response = Response(
            status=status,
            reason=self.reason.decode("latin-1", errors="replace"),
            http_version=version,
            headers=self.headers,
            body=bytearray(),
            body_bytes=0,
        )
        # h11 keeps no HTTP/1.0 connection open, keep-alive or not.
        self.keep_alive = version == "1.1" and parser.should_keep_alive()
        assert self.request is not None
        if self.request.method == "HEAD":
            self.complete = True  # no body follows a HEAD response, whatever it announces
            self.parser = None  # nothing more is parsed: see on_message_complete

    def on_body(self, chunk: bytes) -> None:
        response = self.response
        if response is None or self.complete or self.stopped:
            self.extra = True
            return
        if not response.add_body(chunk, self.limit, self.keep):
            self.stopped = True
            self.parser = None  # the rest is not read: see on_message_complete

    def on_message_complete(self) -> None:
        if self.informational:
            self.informational = False
        elif self.response is not None and not self.stopped:
            self.complete = True
            # The parser holds this object's methods: dropped now, the pair is
            # freed with the check, not left to the cyclic garbage collector.
            self.parser = None

    # the interface H11Parser has too

    def feed(self, data: bytes) -> None:
        """Bytes from the server; ``b""`` when it closed the connection."""
        if not data:
            self._closed()
            return
        if self.complete or self.stopped:
            self.extra = True
            return
        if self.received_size < _KEPT_FOR_ERRORS:
            self.received.append(data)
            self.received_size += len(data)
        try:
            self.parser.feed_data(data)
        except Exception as exc:
            httptools = _httptools()
            if isinstance(exc, httptools.HttpParserUpgrade):
                self._refused("the server switched protocols")
            if not isinstance(exc, httptools.HttpParserError):
                raise
            if self.complete or self.stopped:
                self.extra = True  # garbage after the response
            else:
                self._refused(str(exc))
        if self.response is None:
            self.head_bytes += len(data)
            if self.head_bytes > self.max_head_bytes:
                too_long = "Receive buffer too long"  # h11's words
                self._fail(f"invalid HTTP response: {too_long}", too_long)

    def _closed(self) -> None:
        if self.complete or self.stopped:
            return
        response = self.response
        if response is None:
            if not self.received:
                raise anyprobe.CheckFailed("the server closed the connection without a response")
            self._fail("the server closed the connection without a response")
        names = {name for name, _ in response.headers}
        if "content-length" not in names and "transfer-encoding" not in names:
            self.complete = True  # the body ends with the connection (keep_alive is False)
            return
        self._fail("the server closed the connection before the end of the body")

    def _refused(self, message: str) -> None:
        """Fail as h11 would on the same bytes (its words), else with llhttp's."""
        reason = self._h11_words() or message
        self._fail(f"invalid HTTP response: {reason}", reason)

    def _h11_words(self) -> str | None:
        """What h11 says of the bytes received, or None when it takes them."""
        import h11

        assert self.request is not None
        connection = h11.Connection(h11.CLIENT, max_incomplete_event_size=self.max_head_bytes)
        try:
            request = h11.Request(method=self.request.method, target="/", headers=[("Host", "x")])
            connection.send(request)
            connection.send(h11.EndOfMessage())
            connection.receive_data(b"".join(self.received))
            for _ in range(1000):
                event = connection.next_event()
                if event is h11.NEED_DATA or isinstance(
                    event, h11.EndOfMessage | h11.ConnectionClosed
                ):
                    return None
        except h11.ProtocolError as exc:
            words = h11_message(exc)
            # h11 raises it from a method of the exception itself: its
            # traceback and that frame would hold each other until a collection.
            exc.__traceback__ = None
            return words
        return None

    def _fail(self, summary: str, reason: str = "") -> NoReturn:
        self.parser = None
        raise anyprobe.CheckFailed(summary, error=RemoteProtocolError(reason or summary))

    def head(self) -> Response | None:
        """The response head once it is all in (1xx heads skipped), else None."""
        return self.response

    def body_done(self) -> bool:
        """True once the body ended or passed the limit."""
        return self.complete or self.stopped

    def why_not_reusable(self) -> str | None:
        """None when the connection can carry another request, else why not
        (h11's answers for the same exchange)."""
        if self.complete:
            if self.keep_alive and not self.request_closes and not self.extra:
                return None
            if self.extra and self.keep_alive and not self.request_closes:
                return "the server sent more than the response"
            return "the server asked to close it"
        if self.request_closes:
            return "the request asked to close it"
        return "the response was not read to its end"

    def start_next_cycle(self) -> None:
        """Ready for the next request on the same connection (:meth:`start`
        starts each exchange afresh: nothing left to do)."""
