"""The request parsers of ``anyprobe serve --server builtin`` (:mod:`anyprobe._serve_lean`).

One small interface, two implementations: :class:`HttptoolsParser` (httptools'
C parser, llhttp, installed with ``anyprobe[speedups]``) and :class:`H11Parser`
(h11, always installed). Each is fed the bytes of one connection as they come
and returns the requests completed so far, in order, bodies read whole
(``Content-Length`` or chunked). A request that is not plain, valid HTTP/1.1
raises :class:`BadRequest`: a head past the limit (431), a body past
:data:`MAX_BODY` (413), ``Transfer-Encoding`` with ``Content-Length``, a
folded header line, a control character, a bare CR or LF, an invalid request
line or target (400). llhttp refuses all of these itself; h11 accepts some
(it unfolds folded lines and frames by ``Transfer-Encoding`` alone), so the h11
path checks the raw head first.
"""

from __future__ import annotations

import importlib.util
import re
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

#: The largest request body read (``/push`` and the maintenance API take 64 KiB).
MAX_BODY = 1024 * 1024
#: The parsers, first installed first (tests pick one through it).
PARSER_PREFERENCE = ("httptools", "h11")

# In a head: a control character other than CR and LF, a bare CR or LF, or a
# line that starts with a space or a tab (obsolete line folding).
#: A LF without its CR, or a CR followed by anything but LF (a CR that ends
#: the bytes so far may still get its LF).
_BARE_CR_OR_LF = re.compile(rb"(?<!\r)\n|\r(?=[^\n])")
_BAD_HEAD = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]|\r(?!\n)|(?<!\r)\n|\n[ \t]")
# In a request target: spaces and control characters.
_BAD_TARGET = re.compile(rb"[\x00-\x20\x7f]")


class BadRequest(Exception):
    """A request refused before the app sees it: its status and a one-line reason."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Request:
    """One parsed request: what an ASGI ``http`` scope needs, and its body."""

    __slots__ = (
        "body",
        "headers",
        "http_version",
        "keep_alive",
        "method",
        "path",
        "query",
        "raw_path",
    )

    def __init__(
        self, method: str, target: bytes, headers: list[tuple[bytes, bytes]], http_version: str
    ) -> None:
        self.method = method
        self.headers = headers
        self.http_version = http_version
        self.raw_path, self.query = split_target(target)
        self.path = unquote(self.raw_path.decode("latin-1"))
        self.body = b""
        self.keep_alive = True


def split_target(target: bytes) -> tuple[bytes, bytes]:
    """The path and query of a request target (origin or absolute form); BadRequest else."""
    if _BAD_TARGET.search(target):
        raise BadRequest(400, "invalid request target")
    if target[:1] == b"/":
        path, _, query = target.partition(b"?")
        return path, query
    if target[:7].lower() == b"http://" or target[:8].lower() == b"https://":
        parts = urlsplit(target)
        return parts.path or b"/", parts.query
    raise BadRequest(400, "invalid request target")


def keep_alive(http_version: str, headers: list[tuple[bytes, bytes]]) -> bool:
    """Whether the client keeps the connection: HTTP/1.1 unless ``Connection:
    close``, HTTP/1.0 only with ``Connection: keep-alive``."""
    tokens: set[bytes] = set()
    for name, value in headers:
        if name == b"connection":
            tokens.update(token.strip().lower() for token in value.split(b","))
    if http_version == "1.0":
        return b"keep-alive" in tokens
    return b"close" not in tokens


def _expects_continue(headers: list[tuple[bytes, bytes]]) -> bool:
    return any(n == b"expect" and v.lower() == b"100-continue" for n, v in headers)


class RequestParser(Protocol):
    """Bytes of one connection in, complete requests out."""

    #: True while a request is partly received (its head or its body).
    partial: bool
    #: True once a head asking for ``100 Continue`` is read (the reader resets it).
    continue_wanted: bool

    def feed(self, data: bytes) -> list[Request]:
        """The requests ``data`` completes, in order; BadRequest for an invalid one."""

    def close(self) -> None:
        """The connection ended: nothing more is fed, what the parser holds is let go."""


class HttptoolsParser:
    """httptools' parser (llhttp: it refuses smuggling and malformed heads itself)."""

    def __init__(self, head_limit: int) -> None:
        import httptools

        self._errors = (httptools.HttpParserError,)
        self._upgrade = httptools.HttpParserUpgrade
        self._parser: Any = httptools.HttpRequestParser(self)
        self._head_limit = head_limit
        self._head_bytes = 0
        self._in_head = True
        self._done: list[Request] = []
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._request: Request | None = None
        self._body: list[bytes] = []
        self._body_size = 0
        self._failure: BadRequest | None = None
        self._upgraded = False
        self.partial = False
        self.continue_wanted = False

    def feed(self, data: bytes) -> list[Request]:
        if self._upgraded:
            return []  # nothing after an Upgrade head is HTTP/1.1: the connection closes
        if self._in_head:
            room = self._head_limit - self._head_bytes
            self._head_bytes += len(data)
            # The head must end within the room left (a body may follow it).
            if self._head_bytes > self._head_limit and b"\r\n\r\n" not in data[: room + 4]:
                raise BadRequest(431, "request line and headers too large")
        self.partial = True
        try:
            self._parser.feed_data(data)
        except self._upgrade:
            # Upgrade (h2c, websocket) is not offered: the request is answered
            # as plain HTTP/1.1, then the connection closes.
            self._upgraded = True
            if self._done:
                self._done[-1].keep_alive = False
        except self._errors as exc:
            raise self._failure or BadRequest(400, f"bad request: {exc}") from None
        if self._failure is not None:
            raise self._failure
        done, self._done = self._done, []
        return done

    # -- httptools' callbacks ------------------------------------------------------

    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = []
        self._in_head = True
        self.partial = True

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_bytes = 0
        parser = self._parser
        try:
            method = parser.get_method().decode("ascii")
            request = Request(method, self._url, self._headers, parser.get_http_version())
        except (BadRequest, UnicodeDecodeError) as exc:
            self._failure = exc if isinstance(exc, BadRequest) else BadRequest(400, "bad method")
            raise
        request.keep_alive = parser.should_keep_alive()
        self.continue_wanted = _expects_continue(self._headers)
        self._request = request
        self._body = []
        self._body_size = 0

    def on_body(self, body: bytes) -> None:
        self._body_size += len(body)
        if self._body_size > MAX_BODY:
            self._failure = BadRequest(413, f"request body larger than {MAX_BODY} bytes")
            raise self._failure
        self._body.append(body)

    def on_message_complete(self) -> None:
        request = self._request
        if request is not None:
            if self._body:
                request.body = b"".join(self._body)
            self._done.append(request)
        self._request = None
        self._in_head = True
        self.partial = False
        self.continue_wanted = False

    def close(self) -> None:
        # httptools' parser holds this object's methods: without this, the pair
        # would wait for the cyclic garbage collector.
        self._parser = None


class H11Parser:
    """h11's parser, one ``h11.Connection`` a request, its raw head checked first."""

    def __init__(self, head_limit: int) -> None:
        import h11

        self._h11 = h11
        self._head_limit = head_limit
        self._buffer = bytearray()
        self._connection: Any = None
        self._request: Request | None = None
        self._body: list[bytes] = []
        self._body_size = 0
        self.partial = False
        self.continue_wanted = False

    def feed(self, data: bytes) -> list[Request]:
        self._buffer += data
        self.partial = bool(self._buffer) or self._connection is not None
        done: list[Request] = []
        while True:
            if self._connection is None and not self._start_request():
                return done
            request = self._read_body()
            if request is None:
                return done
            done.append(request)
            self.partial = bool(self._buffer)

    def close(self) -> None:
        self._connection = None

    def _start_request(self) -> bool:
        """Hand a complete head to a new h11 connection; False until one is here."""
        buffer = self._buffer
        end = buffer.find(b"\r\n\r\n")
        if end < 0 or end + 4 > self._head_limit:
            if len(buffer) > self._head_limit:
                raise BadRequest(431, "request line and headers too large")
            if end < 0 and _BARE_CR_OR_LF.search(buffer):
                raise BadRequest(400, "bad request: bare CR or LF in the head")
            return False
        head = bytes(buffer[: end + 4])
        del buffer[: end + 4]
        if _BAD_HEAD.search(head, 0, end + 2):
            raise BadRequest(400, "bad request: control character or folded line in the head")
        connection = self._h11.Connection(self._h11.SERVER, max_incomplete_event_size=end + 4)
        connection.receive_data(head)
        try:
            event = connection.next_event()
            if not isinstance(event, self._h11.Request):
                raise BadRequest(400, "bad request: no request line")
            request = Request(
                event.method.decode("ascii"),
                bytes(event.target),
                list(event.headers),
                event.http_version.decode("ascii"),
            )
        except self._h11.RemoteProtocolError as exc:
            raise BadRequest(400, f"bad request: {exc}") from None
        names = {name for name, _ in request.headers}
        if b"transfer-encoding" in names and b"content-length" in names:
            raise BadRequest(400, "bad request: Transfer-Encoding with Content-Length")
        request.keep_alive = keep_alive(request.http_version, request.headers)
        self.continue_wanted = _expects_continue(request.headers)
        self._connection = connection
        self._request = request
        self._body = []
        self._body_size = 0
        return True

    def _read_body(self) -> Request | None:
        """The current request once its body is whole; None while more is needed."""
        h11 = self._h11
        connection = self._connection
        if self._buffer:
            connection.receive_data(bytes(self._buffer))
            self._buffer.clear()
        while True:
            try:
                event = connection.next_event()
            except h11.RemoteProtocolError as exc:
                raise BadRequest(400, f"bad request: {exc}") from None
            if event is h11.NEED_DATA:
                return None
            if isinstance(event, h11.Data):
                self._body_size += len(event.data)
                if self._body_size > MAX_BODY:
                    raise BadRequest(413, f"request body larger than {MAX_BODY} bytes")
                self._body.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                request = self._request
                assert request is not None
                request.body = b"".join(self._body)
                self._buffer = bytearray(connection.trailing_data[0])
                self._connection = self._request = None
                self.continue_wanted = False
                return request


def parser_name() -> str:
    """The parser :func:`parser_class` gives: the first of :data:`PARSER_PREFERENCE` installed."""
    for name in PARSER_PREFERENCE:
        if importlib.util.find_spec(name) is not None:
            return name
    return "h11"


def parser_class() -> type[HttptoolsParser] | type[H11Parser]:
    """The parser to use (see :func:`parser_name`)."""
    return HttptoolsParser if parser_name() == "httptools" else H11Parser
