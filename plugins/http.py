"""The HTTP(S) probe: ``http://`` and ``https://`` targets.

Each check opens a fresh connection, because a health check must see the
handshake a client sees. The probe resolves the name itself (``resolve``
phase, honouring ``ip_family``), connects to the address (``connect``), does
the TLS handshake with SNI set to the name (``tls``), sends the request and
waits for the response head (``first_byte``), then reads the body up to
``max_body_bytes`` (``transfer``). HTTP/1.1 is spoken with h11 directly; when
``http2`` is on and the server picks ``h2`` in ALPN, the request goes through
httpcore's HTTP/2 connection over the same socket.

By default nothing is pooled between checks except the SSL contexts (one per
distinct TLS options, through ``ctx.shared``): a shared connection pool would
hide the handshake and, under load, queue healthy checks into false timeouts.

``reuse_connections`` (off by default) is for many URLs on one host: each
check takes an idle HTTP/1.1 connection of the run's :class:`ConnectionPool`
or opens its own, never waits for one, and gives it back only when h11 says
the connection can carry another request. A reused check has no ``resolve``,
``connect`` or ``tls`` phase; it reports the certificate of its connection's
handshake. A connection the server closed while it was idle is replaced by a
fresh one within the same check.
"""

from __future__ import annotations

import base64
import ipaddress
import os
import re
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Hashable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import SplitResult, quote, urljoin, urlsplit

import anyio
from anyio.abc import ByteStream
from pydantic import Field, PrivateAttr, SecretStr, field_validator, model_validator

import anyprobe
from anyprobe.masking import (
    Masker,
    is_credential_header,
    mask_url_password,
    masked_check,
    options_masker,
)
from anyprobe.net import (
    IpFamily,
    check_destination,
    connect_tcp,
    describe_os_error,
    fail_from_os_error,
    resolve,
)
from anyprobe.tls import (
    CERTIFICATE_MODULES,
    TlsInfo,
    TlsOptions,
    client_certificate_expiry_days,
    describe_tls_error,
    expiry_verdict,
    find_ssl_error,
    start_tls,
)

DEFAULT_PORTS = {"http": 80, "https": 443}
REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})
READ_SIZE = 65536
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_STATUS_CLASS = re.compile(r"^[1-5]xx$")


def _header_value_ok(value: str) -> bool:
    return not any((ord(c) < 32 and c != "\t") or ord(c) == 127 for c in value)


def check_header_env(value: dict[str, str]) -> dict[str, str]:
    """``header_env`` if every variable it names is set and not empty (the
    check would otherwise fail, or send an empty secret, at run time)."""
    for header, variable in value.items():
        if not variable:
            raise ValueError(f"header {header}: the environment variable name is empty")
        text = os.environ.get(variable)
        if text is None:
            raise ValueError(f"header {header}: environment variable {variable} is not set")
        if not text:
            raise ValueError(f"header {header}: environment variable {variable} is empty")
    return value


class HttpOptions(TlsOptions):
    """Options of the HTTP probe (the TLS ones are shared with the TCP/TLS probe)."""

    method: str = Field("GET", description="Request method: GET, HEAD, POST...")
    headers: dict[str, str] = Field(
        default_factory=dict, description="Request headers, e.g. {Accept = 'application/json'}."
    )
    header_env: dict[str, str] = Field(
        default_factory=dict,
        description="Secret request headers: header name -> environment variable holding "
        "its value, e.g. {X-Api-Key = 'API_KEY'}. Never shown in any output.",
    )
    body: str | None = Field(None, description="Request body, sent as it is (UTF-8).")
    json_body: Any = Field(
        None,
        description="Request body as JSON (sets Content-Type: application/json).",
    )
    follow_redirects: bool = Field(True, description="Follow 3xx redirects.")
    keep_credentials_on_redirect: bool = Field(
        False,
        description="Send credential headers (Authorization, Cookie, header_env, API-key "
        "headers...) again after a redirect to another origin (scheme, host or port). "
        "Off: they are dropped, as browsers and httpx do.",
    )
    max_redirects: int = Field(
        10, ge=0, le=100, description="Most redirects to follow before the check fails."
    )
    http2: bool = Field(False, description="Offer HTTP/2 in ALPN (https only); the server decides.")
    ip_family: IpFamily = Field(
        "any", description="Address family to connect over: any, ipv4 or ipv6."
    )
    proxy: str | None = Field(
        None,
        description="HTTP proxy URL, http://[user:password@]host:port; https targets "
        "go through a CONNECT tunnel.",
    )
    username: str | None = Field(None, description="User name for basic authentication.")
    password: SecretStr | None = Field(
        None, description="Password for basic authentication (prefer password_env)."
    )
    password_env: str | None = Field(
        None, description="Environment variable holding the basic-authentication password."
    )
    bearer_token: SecretStr | None = Field(
        None, description="Bearer token for the Authorization header (prefer bearer_token_env)."
    )
    bearer_token_env: str | None = Field(
        None, description="Environment variable holding the bearer token."
    )
    expect_status: list[int | str] = Field(
        default_factory=lambda: list[int | str](["2xx"]),
        description="Accepted status codes and classes, e.g. [200, '3xx'].",
    )
    body_contains: list[str] = Field(
        default_factory=list, description="Strings the body must contain (all of them)."
    )
    body_matches: list[str] = Field(
        default_factory=list,
        description="Regular expressions (RE2 syntax) the body must match (all of them).",
    )
    body_not_matches: list[str] = Field(
        default_factory=list,
        description="Regular expressions (RE2 syntax) the body must not match (none of them).",
    )
    json_assertions: list[str] = Field(
        default_factory=list,
        description="JMESPath expressions on the JSON body that must be true, "
        "e.g. \"status == 'UP'\".",
    )
    expect_headers: dict[str, str] = Field(
        default_factory=dict,
        description="Response headers that must be present and match a regular "
        "expression (RE2 syntax), e.g. {Content-Type = 'json'}.",
    )
    max_body_bytes: int = Field(
        10 * 1024 * 1024,
        gt=0,
        description="Bytes of body read at most; a longer body is critical "
        "(it is never read whole into memory).",
    )
    user_agent: str = Field(
        "anyprobe/" + anyprobe.__version__, description="The User-Agent header."
    )
    reuse_connections: bool = Field(
        False,
        description="Keep HTTP/1.1 connections open and reuse them for later checks of the "
        "same host, port and TLS options. A reused check measures no resolve, connect or "
        "TLS phase and sees no new handshake; the first check on a connection does. "
        "Not for HTTP/2 or a proxy.",
    )

    _body_patterns: tuple[anyprobe.Pattern, ...] = PrivateAttr(default=())
    _body_antipatterns: tuple[anyprobe.Pattern, ...] = PrivateAttr(default=())
    _header_patterns: tuple[tuple[str, anyprobe.Pattern], ...] = PrivateAttr(default=())
    _json_expressions: tuple[tuple[str, Any], ...] = PrivateAttr(default=())

    @field_validator(
        "expect_status",
        "body_contains",
        "body_matches",
        "body_not_matches",
        "json_assertions",
        mode="before",
    )
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str | int) and not isinstance(value, bool) else value

    @field_validator("body_matches", "body_not_matches")
    @classmethod
    def _valid_regexes(cls, value: list[str]) -> list[str]:
        for pattern in value:
            anyprobe.check_regex(pattern)
        return value

    @field_validator("method")
    @classmethod
    def _method_is_token(cls, value: str) -> str:
        if not _TOKEN.match(value):
            raise ValueError(f"{value!r} is not an HTTP method")
        return value.upper()

    @field_validator("headers", "expect_headers", "header_env")
    @classmethod
    def _header_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            if not _TOKEN.match(name):
                raise ValueError(f"{name!r} is not a header name")
            if not _header_value_ok(text):
                raise ValueError(f"header {name}: control characters are not allowed in a value")
        return value

    @field_validator("header_env")
    @classmethod
    def _header_env_is_set(cls, value: dict[str, str]) -> dict[str, str]:
        return check_header_env(value)

    @field_validator("expect_headers")
    @classmethod
    def _header_regexes(cls, value: dict[str, str]) -> dict[str, str]:
        for name, pattern in value.items():
            try:
                anyprobe.check_regex(pattern)
            except ValueError as exc:
                raise ValueError(f"header {name}: {exc}") from None
        return value

    @field_validator("user_agent")
    @classmethod
    def _user_agent_is_a_header_value(cls, value: str) -> str:
        if not _header_value_ok(value):
            raise ValueError("control characters are not allowed in user_agent")
        return value

    @field_validator("bearer_token")
    @classmethod
    def _token_is_a_header_value(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not _header_value_ok(value.get_secret_value()):
            raise ValueError("control characters are not allowed in bearer_token")
        token = None if value is None else value.get_secret_value()
        if token is not None and (not token or token.strip() != token):
            raise ValueError("bearer_token is empty or starts or ends with a space")
        return value

    @field_validator("expect_status")
    @classmethod
    def _status_codes(cls, value: list[int | str]) -> list[int | str]:
        checked: list[int | str] = []
        for item in value:
            if isinstance(item, str) and item.isdigit():
                item = int(item)
            if isinstance(item, int) and not isinstance(item, bool) and 100 <= item <= 599:
                checked.append(item)
            elif isinstance(item, str) and _STATUS_CLASS.match(item.lower()):
                checked.append(item.lower())
            else:
                raise ValueError(f"{item!r} is not a status code (100-599) or class like '2xx'")
        if not checked:
            raise ValueError("expect_status needs at least one code or class")
        return checked

    @field_validator("proxy")
    @classmethod
    def _proxy_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            url = urlsplit(value)
            url.port  # noqa: B018 - raises ValueError for a bad port
        except ValueError as exc:
            raise ValueError(f"bad proxy URL: {exc}") from None
        if url.scheme != "http" or not url.hostname:
            raise ValueError("proxy must be an http://host:port URL")
        return value

    @field_validator("password_env", "bearer_token_env")
    @classmethod
    def _env_name(cls, value: str | None) -> str | None:
        if value is not None and not value:
            raise ValueError("the environment variable name is empty")
        return value

    @model_validator(mode="after")
    def _http_options_consistent(self) -> HttpOptions:
        if self.body is not None and self.json_body is not None:
            raise ValueError("set body or json_body, not both")
        if self.password is not None and self.password_env is not None:
            raise ValueError("set password or password_env, not both")
        if self.bearer_token is not None and self.bearer_token_env is not None:
            raise ValueError("set bearer_token or bearer_token_env, not both")
        basic = self.username is not None or self.password or self.password_env
        if basic and (self.bearer_token is not None or self.bearer_token_env is not None):
            raise ValueError("set basic authentication or a bearer token, not both")
        if (self.password is not None or self.password_env) and self.username is None:
            raise ValueError("a password needs a username")
        if self.json_body is not None:
            import json

            try:
                # JSON has no NaN nor Infinity: json.dumps would write them anyway.
                json.dumps(self.json_body, allow_nan=False)
            except (TypeError, ValueError, RecursionError) as exc:
                raise ValueError(f"json_body is not JSON-serialisable: {exc}") from None
        return self

    def model_post_init(self, context: Any, /) -> None:
        compile_pattern = anyprobe.compile_pattern  # validated: they compile
        self._body_patterns = tuple(compile_pattern(p) for p in self.body_matches)
        self._body_antipatterns = tuple(compile_pattern(p) for p in self.body_not_matches)
        self._header_patterns = tuple(
            (name.lower(), compile_pattern(p)) for name, p in self.expect_headers.items()
        )
        if self.json_assertions:
            import jmespath  # type: ignore[import-untyped]
            from jmespath.exceptions import JMESPathError  # type: ignore[import-untyped]

            compiled = []
            for text in self.json_assertions:
                try:
                    compiled.append((text, jmespath.compile(text)))
                except RecursionError:
                    raise ValueError(
                        f"json_assertions: bad JSON assertion {text[:40]!r}...: nested too deep"
                    ) from None
                except JMESPathError as exc:
                    reason = str(exc).splitlines()[0].removesuffix(", for expression:")
                    raise ValueError(
                        f"json_assertions: bad JSON assertion {text!r}: {reason}"
                    ) from None
            self._json_expressions = tuple(compiled)

    @property
    def needs_body(self) -> bool:
        """True when an assertion reads the body (else it is only counted)."""
        return bool(
            self.body_contains or self.body_matches or self.body_not_matches or self.json_assertions
        )

    def secret_values(self) -> list[str]:
        """Every secret this check may send, to redact from any text shown."""
        values = [os.environ.get(name, "") for name in self.header_env.values()]
        if self.password is not None:
            values.append(self.password.get_secret_value())
        if self.password_env:
            values.append(os.environ.get(self.password_env, ""))
        if self.bearer_token is not None:
            values.append(self.bearer_token.get_secret_value())
        if self.bearer_token_env:
            values.append(os.environ.get(self.bearer_token_env, ""))
        return [v for v in values if len(v) >= 3]


# -- one request, one fresh connection -----------------------------------------


@dataclass(slots=True)
class Hop:
    """One request of a check (the first, or one after a redirect)."""

    url: str  # as requested: may hold userinfo, never shown
    parts: SplitResult
    scheme: str
    host: str
    port: int
    method: str
    body: bytes | None
    headers: list[tuple[str, str]]

    @property
    def display(self) -> str:
        return redact_userinfo(self.url)

    @property
    def origin(self) -> tuple[str, str, int]:
        return self.scheme, self.host, self.port


@dataclass(slots=True)
class Response:
    status: int
    reason: str
    http_version: str
    headers: list[tuple[str, str]]
    body: bytearray
    body_bytes: int
    address: str
    tls: TlsInfo | None = None
    truncated: bool = False

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None


@dataclass(slots=True)
class Exchange:
    """What a check saw across its hops."""

    redirects: list[dict[str, Any]] = field(default_factory=list)
    tls: list[tuple[str, TlsInfo]] = field(default_factory=list)


#: Seconds an idle connection is kept; an older one is closed instead of reused
#: (servers close idle connections after 5 to 75 s; a stale one costs a retry).
IDLE_SECONDS = 15.0


class StaleConnection(Exception):
    """A reused connection that the server had closed while it was idle."""


@dataclass(slots=True, eq=False)
class PooledConnection:
    """An open connection: the TCP stream, what requests go over, and for
    HTTP/1.1 under ``reuse_connections`` the h11 state machine that spoke on it."""

    socket: ByteStream
    transport: ByteStream  # the TLS stream for https, else ``socket``
    address: str
    tls: TlsInfo | None
    protocol: Any = None  # h11.Connection, kept across requests
    requests: int = 0
    idle_since: float = 0.0

    async def aclose(self) -> None:
        """Close the socket at once (no TLS close_notify: nobody waits for it)."""
        await anyio.aclose_forcefully(self.socket)


class ConnectionPool:
    """The idle HTTP/1.1 connections of one run, for ``reuse_connections``.

    Kept through ``ctx.shared`` and closed by core when the run ends. It is
    not a queue: :meth:`take` hands out an idle connection of the key or
    None (the check then opens its own), so a check never waits for another.
    The pool keeps at most as many idle connections, all keys together, as
    the most checks that held a connection at once (so never more than the
    run's concurrency): with those in use, a run holds at most two sockets
    per concurrent check, which is what the scheduler's open-file budget
    allows a check. The oldest idle connection is closed to make room.
    """

    SHARED_KEY = "anyprobe.plugins.http.ConnectionPool"

    def __init__(self) -> None:
        self._idle: dict[Hashable, list[PooledConnection]] = {}
        self._oldest_first: OrderedDict[PooledConnection, Hashable] = OrderedDict()
        self._in_use = 0
        self._peak = 0
        self._closed = False

    @property
    def idle(self) -> int:
        """How many connections wait in the pool."""
        return len(self._oldest_first)

    def take(self, key: Hashable) -> tuple[PooledConnection | None, list[PooledConnection]]:
        """An idle connection for ``key`` (None: open one), and the expired
        ones the caller must close. Pair every call with :meth:`give_back`
        or :meth:`release`."""
        self._in_use += 1
        self._peak = max(self._peak, self._in_use)
        expired: list[PooledConnection] = []
        stack = self._idle.get(key)
        if stack is None:
            return None, expired
        found: PooledConnection | None = None
        now = time.monotonic()
        while stack:
            candidate = stack.pop()  # the most recently used: the least likely closed
            del self._oldest_first[candidate]
            if now - candidate.idle_since < IDLE_SECONDS:
                found = candidate
                break
            expired.append(candidate)
        if not stack:
            del self._idle[key]
        return found, expired

    def give_back(
        self, key: Hashable, connection: PooledConnection
    ) -> tuple[bool, list[PooledConnection]]:
        """Keep ``connection`` (ready for its next request) for a later check.

        Returns whether it was kept (not when the pool is closed: the caller
        then closes it and calls :meth:`release`) and the oldest idle
        connections it displaced, which the caller must close.
        """
        if self._closed:
            return False, []
        self._in_use -= 1
        displaced: list[PooledConnection] = []
        while self._oldest_first and len(self._oldest_first) >= self._peak:
            oldest, oldest_key = self._oldest_first.popitem(last=False)
            others = self._idle[oldest_key]
            others.remove(oldest)
            if not others:
                del self._idle[oldest_key]
            displaced.append(oldest)
        connection.idle_since = time.monotonic()
        self._idle.setdefault(key, []).append(connection)
        self._oldest_first[connection] = key
        return True, displaced

    def release(self) -> None:
        """The check of a :meth:`take` ended without giving a connection back."""
        self._in_use -= 1

    async def aclose(self) -> None:
        """Close every idle connection; later ones are not kept."""
        self._closed = True
        idle = list(self._oldest_first)
        self._oldest_first.clear()
        self._idle.clear()
        await _close_all(idle)


async def _close_all(connections: Sequence[PooledConnection]) -> None:
    """Close ``connections``, all of them even in a cancelled check (each close
    is immediate: no TLS close_notify is awaited)."""
    if connections:
        with anyio.CancelScope(shield=True):
            for connection in connections:
                await connection.aclose()


def _why_not_reusable(protocol: Any) -> str | None:
    """None when the h11 connection can carry another request, else why not."""
    if protocol is None:
        return "HTTP/2 connections are not reused"
    import h11

    if protocol.our_state is h11.DONE and protocol.their_state is h11.DONE:
        return None
    if protocol.their_state is h11.MUST_CLOSE:
        return "the server asked to close it"
    if protocol.our_state is h11.MUST_CLOSE:
        return "the request asked to close it"
    return "the response was not read to its end"


redact_userinfo = mask_url_password


def _check_masker(
    target: anyprobe.Target,
    options: HttpOptions,
    headers: Sequence[tuple[str, str]],
    auth: str | None,
) -> Masker:
    """Every secret one check may send: the options' own, the credential and
    ``header_env`` headers, the Authorization value, the URL passwords."""
    masker = options_masker(options)
    for value in options.secret_values():
        masker.add(value)
    secret_headers = {name.lower() for name in options.header_env}
    for name, value in headers:
        masker.add_header(name, value)
        if name.lower() in secret_headers:
            masker.add(value)
    if auth is not None:
        masker.add_header("Authorization", auth)
    masker.add_url(target.url)
    if options.proxy:
        masker.add_url(options.proxy)
    return masker


def _cross_origin_headers(
    headers: Sequence[tuple[str, str]], options: HttpOptions
) -> list[tuple[str, str]]:
    """The headers a hop to another origin gets: no credential or header_env header."""
    if options.keep_credentials_on_redirect:
        return list(headers)
    secret = {name.lower() for name in options.header_env}
    return [
        (name, value)
        for name, value in headers
        if not is_credential_header(name) and name.lower() not in secret
    ]


def _host_header(host: str, port: int, scheme: str) -> str:
    text = f"[{host}]" if ":" in host else host
    return text if DEFAULT_PORTS[scheme] == port else f"{text}:{port}"


def _secret_from_env(name: str, what: str) -> str:
    value = os.environ.get(name)
    if value is None:
        raise anyprobe.CheckFailed(
            f"environment variable {name} ({what}) is not set", status=anyprobe.Status.UNKNOWN
        )
    if not _header_value_ok(value):
        raise anyprobe.CheckFailed(
            f"environment variable {name} ({what}) holds control characters",
            status=anyprobe.Status.UNKNOWN,
        )
    if what == "bearer_token_env" and (not value or value.strip() != value):
        raise anyprobe.CheckFailed(
            f"environment variable {name} ({what}) is empty or starts or ends with a space",
            status=anyprobe.Status.UNKNOWN,
        )
    return value


def _encode_headers(headers: Sequence[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    """Header names are ASCII tokens (validated); values go out as UTF-8."""
    return [(name.encode("ascii"), value.encode("utf-8")) for name, value in headers]


#: Characters left as they are in a request target; anything else is percent-encoded.
_PATH_SAFE = "!#$%&'()*+,/:;=?@[]~"


def _auth_header(options: HttpOptions, url: SplitResult) -> str | None:
    if options.bearer_token is not None:
        return "Bearer " + options.bearer_token.get_secret_value()
    if options.bearer_token_env:
        return "Bearer " + _secret_from_env(options.bearer_token_env, "bearer_token_env")
    username = options.username
    password = ""
    if options.password is not None:
        password = options.password.get_secret_value()
    elif options.password_env:
        password = _secret_from_env(options.password_env, "password_env")
    if username is None and url.username is not None:
        from urllib.parse import unquote

        username, password = unquote(url.username), unquote(url.password or "")
    if username is None:
        return None
    token = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
    return "Basic " + token


def _split(url: str) -> tuple[SplitResult, str, str, int]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise anyprobe.CheckFailed(
            f"cannot follow a redirect to {scheme}:// ({redact_userinfo(url)})"
        )
    try:
        port = parts.port or DEFAULT_PORTS[scheme]
    except ValueError:
        raise anyprobe.CheckFailed(f"bad URL {redact_userinfo(url)}") from None
    host = (parts.hostname or "").lower()
    if not host:
        raise anyprobe.CheckFailed(f"no host in URL {redact_userinfo(url)}")
    return parts, scheme, host, port


class HttpProbe(anyprobe.Probe[HttpOptions]):
    """Send one HTTP request (following redirects) over a fresh connection."""

    name = "http"
    schemes = ("http", "https")
    Options = HttpOptions
    default_ports = DEFAULT_PORTS
    description = "HTTP(S) request with assertions, like blackbox's http prober and check_http."

    def load_dependencies(self, targets: Sequence[anyprobe.Target]) -> None:
        """h11 always; certificate parsing for https; httpcore and h2 for HTTP/2."""
        import importlib

        modules = ["h11", "json", "anyio.streams.tls"]
        https = [t for t in targets if t.url[:6].lower() == "https:" or t.options.proxy]
        if https:
            modules.extend(CERTIFICATE_MODULES)
        if any(t.options.http2 for t in https):
            anyprobe.require("h2", needed_for="http2 = true", install="anyprobe[http2]")
            modules.append("httpcore")
        if any(t.options.json_assertions for t in targets):
            modules.append("jmespath.visitor")
        for module in modules:
            importlib.import_module(module)

    async def check(
        self, target: anyprobe.Target, options: HttpOptions, ctx: anyprobe.CheckContext
    ) -> anyprobe.Outcome:
        started = time.perf_counter()
        base_headers = self._base_headers(options)
        auth = _auth_header(options, urlsplit(target.url))
        masker = _check_masker(target, options, base_headers, auth)
        return await masked_check(
            lambda: self._check(target, options, ctx, masker, base_headers, auth, started),
            ctx,
            masker,
        )

    async def _check(
        self,
        target: anyprobe.Target,
        options: HttpOptions,
        ctx: anyprobe.CheckContext,
        redactor: Masker,
        base_headers: list[tuple[str, str]],
        auth: str | None,
        started: float,
    ) -> anyprobe.Outcome:
        body: bytes | None = None
        content_type: str | None = None
        if options.json_body is not None:
            import json

            body = json.dumps(options.json_body, allow_nan=False).encode()
            content_type = "application/json"
        elif options.body is not None:
            body = options.body.encode()
        url = target.url
        method = options.method
        exchange = Exchange()
        seen = [redact_userinfo(url)]
        first_origin: tuple[str, str, int] | None = None
        while True:
            parts, scheme, host, port = _split(url)
            if first_origin is None:
                first_origin = (scheme, host, port)
            same_origin = (scheme, host, port) == first_origin
            headers = (
                list(base_headers) if same_origin else _cross_origin_headers(base_headers, options)
            )
            if auth is not None and (same_origin or options.keep_credentials_on_redirect):
                headers.append(("Authorization", auth))
            if body is not None:
                headers.append(("Content-Length", str(len(body))))
                if content_type and not any(k.lower() == "content-type" for k, _ in headers):
                    headers.append(("Content-Type", content_type))
            hop = Hop(url, parts, scheme, host, port, method, body, headers)
            response = await self._request(hop, options, ctx, redactor, exchange)
            location = response.header("location")
            if not (options.follow_redirects and response.status in REDIRECT_CODES and location):
                break
            next_url = urljoin(url, location.strip())
            shown = redactor.text(redact_userinfo(next_url))
            try:
                check_destination(_split(next_url)[2])
            except anyprobe.CheckFailed as refused:
                raise anyprobe.CheckFailed(
                    f"redirect {response.status} to {shown} refused: {refused.summary}",
                    metrics={"http_status": response.status},
                ) from None
            if ctx.explain:
                ctx.trace(f"redirect {response.status} to {shown}")
            exchange.redirects.append({"status": response.status, "location": shown})
            ctx.metrics["redirects"] = len(exchange.redirects)
            if shown in seen:
                loop = " -> ".join([*seen[seen.index(shown) :], shown])
                raise anyprobe.CheckFailed(
                    f"redirect loop: {redactor.text(loop)}",
                    metrics={"http_status": response.status},
                )
            if len(exchange.redirects) > options.max_redirects:
                raise anyprobe.CheckFailed(
                    f"more than {options.max_redirects} redirects (last to {shown})",
                    metrics={"http_status": response.status},
                )
            seen.append(shown)
            if response.status == 303 or (response.status in (301, 302) and method == "POST"):
                method, body, content_type = ("HEAD" if method == "HEAD" else "GET"), None, None
            url = next_url
        elapsed = time.perf_counter() - started
        return await self._verdict(response, options, exchange, elapsed, ctx, redactor)

    def _base_headers(self, options: HttpOptions) -> list[tuple[str, str]]:
        headers = [
            ("User-Agent", options.user_agent),
            ("Accept", "*/*"),
            ("Accept-Encoding", "identity"),
        ]
        if not (options.reuse_connections and options.proxy is None):
            headers.append(("Connection", "close"))
        given = {k.lower() for k in [*options.headers, *options.header_env]}
        headers = [(k, v) for k, v in headers if k.lower() not in given]
        headers.extend(options.headers.items())
        for name, variable in options.header_env.items():
            headers.append((name, _secret_from_env(variable, f"header_env {name}")))
        return headers

    async def _request(
        self,
        hop: Hop,
        options: HttpOptions,
        ctx: anyprobe.CheckContext,
        redactor: Masker,
        exchange: Exchange,
    ) -> Response:
        server_name = options.server_name or hop.host
        proxy = urlsplit(options.proxy) if options.proxy else None
        target = quote(hop.parts.path or "/", safe=_PATH_SAFE)
        if hop.parts.query:
            target += "?" + quote(hop.parts.query, safe=_PATH_SAFE)
        if proxy is not None and hop.scheme == "http":
            target = f"http://{_host_header(hop.host, hop.port, 'http')}{target}"
            proxy_auth = _proxy_auth(proxy)
            if proxy_auth:
                hop.headers.append(("Proxy-Authorization", proxy_auth))
        if not any(k.lower() == "host" for k, _ in hop.headers):
            hop.headers.insert(0, ("Host", _host_header(server_name, hop.port, hop.scheme)))
        if not options.reuse_connections:
            connection = await self._connect(hop, options, ctx, exchange, server_name, proxy)
            async with connection.socket:
                response = await self._send(
                    connection, hop, target, options, ctx, redactor, server_name
                )
        elif proxy is not None:
            # Reuse through a proxy is not supported: one connection per request.
            ctx.metrics["connection_reused"] = False
            connection = await self._connect(hop, options, ctx, exchange, server_name, proxy)
            async with connection.socket:
                response = await self._send(
                    connection, hop, target, options, ctx, redactor, server_name
                )
        else:
            response = await self._pooled_request(
                hop, target, options, ctx, redactor, exchange, server_name
            )
        for name, value in response.headers:
            redactor.add_header(name, value)  # a Set-Cookie value is a secret from now on
        if ctx.explain:
            ctx.trace(f"< HTTP/{response.http_version} {response.status} {response.reason}")
            for name, value in response.headers:
                ctx.trace(f"< {name}: {redactor.header(name, value)}")
            ctx.trace(f"read {response.body_bytes} bytes of body")
        return response

    async def _pooled_request(
        self,
        hop: Hop,
        target: str,
        options: HttpOptions,
        ctx: anyprobe.CheckContext,
        redactor: Masker,
        exchange: Exchange,
        server_name: str,
    ) -> Response:
        """One request on an idle connection of the run's pool, or on a new one.

        The connection goes back to the pool only when the exchange finished
        and h11 says it can carry another request; on any error, a timeout or
        a cancellation it is closed instead.
        """
        import h11

        pool = ctx.shared(ConnectionPool.SHARED_KEY, ConnectionPool)
        key = (
            hop.scheme,
            hop.host,
            hop.port,
            server_name,
            options.ip_family,
            options.verify,
            options.ca_file,
            options.client_cert,
            options.client_key,
            options.http2,
            options.proxy,
        )
        connection, expired = pool.take(key)
        kept = False
        try:
            await _close_all(expired)
            response: Response | None = None
            if connection is not None:
                check_destination(hop.host, [connection.address])
                connection.requests += 1
                ctx.metrics["connection_reused"] = True
                if ctx.explain:
                    ctx.trace(
                        f"reusing the connection to {connection.address} port {hop.port} "
                        f"(request {connection.requests} on it; no new handshake)"
                    )
                try:
                    response = await self._send(
                        connection, hop, target, options, ctx, redactor, server_name, reused=True
                    )
                except StaleConnection as stale:
                    if ctx.explain:
                        ctx.trace(
                            f"the server had closed the idle connection ({stale}); "
                            "retrying on a fresh connection"
                        )
                    stale_connection, connection = connection, None
                    await _close_all([stale_connection])
                else:
                    if connection.tls is not None:
                        exchange.tls.append((hop.display, connection.tls))
            if connection is None:
                ctx.metrics["connection_reused"] = False
                connection = await self._connect(hop, options, ctx, exchange, server_name, None)
                if connection.tls is None or connection.tls.alpn != "h2":
                    connection.protocol = h11.Connection(
                        h11.CLIENT, max_incomplete_event_size=64 * 1024
                    )
                connection.requests = 1
                response = await self._send(
                    connection, hop, target, options, ctx, redactor, server_name
                )
            assert response is not None
            protocol = connection.protocol
            why_not = _why_not_reusable(protocol)
            if why_not is None:
                assert protocol is not None
                protocol.start_next_cycle()
                kept, displaced = pool.give_back(key, connection)
                if not kept:
                    why_not = "the run is over"
                await _close_all(displaced)
            if ctx.explain:
                ctx.trace(
                    "connection kept open for the next check"
                    if kept
                    else f"connection closed: {why_not}"
                )
            return response
        finally:
            if not kept:
                pool.release()
                if connection is not None:
                    await _close_all([connection])

    async def _connect(
        self,
        hop: Hop,
        options: HttpOptions,
        ctx: anyprobe.CheckContext,
        exchange: Exchange,
        server_name: str,
        proxy: SplitResult | None,
    ) -> PooledConnection:
        """Resolve, connect, tunnel through the proxy, TLS handshake: a new connection."""
        connect_host, connect_port = (
            (proxy.hostname or "", proxy.port or 80) if proxy else (hop.host, hop.port)
        )
        if proxy is not None:
            # The proxy resolves the name: it must be allowed as it is.
            check_destination(hop.host, [hop.host])
        with ctx.phase("resolve"):
            addresses = await resolve(connect_host, connect_port, options.ip_family)
        if ctx.explain:
            ctx.trace(f"resolved {connect_host} to {', '.join(addresses)}")
        with ctx.phase("connect"):
            stream, address = await connect_tcp(addresses, connect_port)
        if ctx.explain:
            ctx.trace(f"connected to {address} port {connect_port}")
        try:
            transport: ByteStream = stream
            if proxy is not None and hop.scheme == "https":
                await _tunnel(stream, hop, proxy, ctx)
            tls: TlsInfo | None = None
            if hop.scheme == "https":
                transport, tls = await self._handshake(
                    stream, hop, address, server_name, options, ctx
                )
                exchange.tls.append((hop.display, tls))
        except BaseException:
            await anyio.aclose_forcefully(stream)
            raise
        return PooledConnection(stream, transport, address, tls)

    async def _send(
        self,
        connection: PooledConnection,
        hop: Hop,
        target: str,
        options: HttpOptions,
        ctx: anyprobe.CheckContext,
        redactor: Masker,
        server_name: str,
        *,
        reused: bool = False,
    ) -> Response:
        """Send the request on ``connection`` and read the response."""
        if ctx.explain:
            ctx.trace(f"> {hop.method} {redactor.text(target)}")
            for name, value in hop.headers:
                ctx.trace(f"> {name}: {redactor.header(name, value)}")
        transport = connection.transport
        try:
            if connection.tls is not None and connection.tls.alpn == "h2":
                response = await _exchange_h2(transport, hop, target, options, ctx)
            else:
                response = await _exchange_h11(
                    transport, hop, target, options, ctx, connection.protocol, reused=reused
                )
        except (anyprobe.CheckFailed, StaleConnection):
            raise
        except (OSError, anyio.BrokenResourceError, anyio.EndOfStream) as exc:
            raise _io_failure(exc, server_name) from None
        response.address = connection.address
        response.tls = connection.tls
        return response

    async def _handshake(
        self,
        stream: ByteStream,
        hop: Hop,
        address: str,
        server_name: str,
        options: HttpOptions,
        ctx: anyprobe.CheckContext,
    ) -> tuple[ByteStream, TlsInfo]:
        alpn = ("h2", "http/1.1") if options.http2 else ("http/1.1",)
        # Through a proxy the certificate cannot be fetched again directly.
        peek_at = (address, hop.port) if options.proxy is None else None
        with ctx.phase("tls"):
            return await start_tls(stream, server_name, options, ctx, alpn=alpn, peek_at=peek_at)

    async def _verdict(
        self,
        response: Response,
        options: HttpOptions,
        exchange: Exchange,
        elapsed: float,
        ctx: anyprobe.CheckContext,
        masker: Masker,
    ) -> anyprobe.Outcome:
        metrics: dict[str, Any] = {
            "http_status": response.status,
            "http_version": response.http_version,
            "body_bytes": response.body_bytes,
            "redirects": len(exchange.redirects),
            "address": response.address,
        }
        details: dict[str, Any] = {}
        if exchange.redirects:
            details["redirects"] = exchange.redirects
        cert_status = anyprobe.Status.OK
        cert_summary = ""
        if exchange.tls:
            # The leaf that expires first among the hops (usually there is one).
            shown_url, tls = min(
                exchange.tls, key=lambda item: item[1].cert_expiry_days() or float("inf")
            )
            metrics.update(tls.metrics())
            details["tls"] = {"url": shown_url, **tls.details()}
            days = tls.cert_expiry_days()
            if days is not None:
                cert_status, cert_summary = expiry_verdict(days, options)
        client_days = client_certificate_expiry_days(options, ctx)
        if client_days is not None:
            metrics["client_cert_expiry_days"] = client_days
        took = f"in {elapsed * 1000:.0f} ms"
        if exchange.redirects:
            n = len(exchange.redirects)
            took += f" after {n} redirect{'s' if n != 1 else ''}"
        failure = await _assertion_failure(response, options, masker)
        if failure is not None:
            return anyprobe.Outcome.critical(
                f"HTTP {response.status}: {failure}", metrics=metrics, details=details
            )
        if response.truncated:
            return anyprobe.Outcome.critical(
                f"HTTP {response.status}: body larger than max_body_bytes "
                f"({options.max_body_bytes} bytes)",
                metrics=metrics,
                details=details,
            )
        summary = f"HTTP {response.status} {took}"
        if exchange.tls and not options.verify:
            # As the SSH probe says of a host key: a pass that proves less, said so.
            summary += "; certificate NOT verified (verify = false)"
            metrics["cert_verified"] = False
        if cert_status is not anyprobe.Status.OK:
            return anyprobe.Outcome(
                cert_status, f"{summary}; {cert_summary}", metrics=metrics, details=details
            )
        return anyprobe.Outcome.ok(summary, metrics=metrics, details=details)


async def _assertion_failure(
    response: Response, options: HttpOptions, masker: Masker
) -> str | None:
    """The first assertion the response fails, described; None when all hold.

    Decoding, searching and parsing a body are done in a worker thread when
    their worst case is past ``anyprobe.OFF_LOOP_BYTES`` (a large body, a
    pattern with a large program), so that the event loop (other checks, the
    timeout, signals) keeps running.
    """
    if not status_expected(response.status, options.expect_status):
        wanted = ", ".join(str(s) for s in options.expect_status)
        return f"expected status {wanted}"
    for name, pattern in options._header_patterns:
        value = response.header(name)
        if value is None:
            return f"header {name} missing"
        if not await pattern.search_off_loop(value):
            shown = _clip(masker.text(value))
            return f"header {name} is {shown}, expected to match {pattern.pattern!r}"
    if not options.needs_body:
        return None
    size = len(response.body)
    patterns = (*options._body_patterns, *options._body_antipatterns)
    # Decoding and parsing count a byte each (the unit of OFF_LOOP_BYTES).
    work = size * (2 if options._json_expressions else 1) + sum(p.work(size) for p in patterns)
    return await anyprobe.off_loop(body_failure, response.body, options, masker, work=work)


def body_failure(body: bytes, options: HttpOptions, masker: Masker) -> str | None:
    """The first body assertion ``body`` fails, described; None when all hold.

    Plain code, to run in a worker thread for a large body: invalid UTF-8
    is replaced by U+FFFD before the patterns see the text.
    """
    text = body.decode("utf-8", errors="replace")
    for needle in options.body_contains:
        if needle not in text:
            return f"body does not contain {_clip(needle)}"
    for pattern in options._body_patterns:
        if pattern.search(text) is None:
            return f"body does not match {pattern.pattern!r}"
    for pattern in options._body_antipatterns:
        found = pattern.search(text)
        if found is not None:
            # A secret the match overlaps is masked whole, even when the
            # pattern matched only its first characters.
            shown = masker.excerpt(text, found.start, found.end)
            return f"body matches {pattern.pattern!r} ({_clip(shown)})"
    if options._json_expressions:
        return json_failure(masker.text(text), options._json_expressions)
    return None


def _clip(value: str, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 4] + "...'"


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def status_expected(status: int, expected: Sequence[int | str]) -> bool:
    """True when ``status`` is one of the codes or in one of the classes (``2xx``)."""
    for item in expected:
        if isinstance(item, int):
            if status == item:
                return True
        elif status // 100 == int(item[0]):
            return True
    return False


def json_failure(text: str, expressions: Sequence[tuple[str, Any]]) -> str | None:
    """The first JSON assertion that is not true, described; None when all hold."""
    import json

    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        return f"body is not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
    except RecursionError:
        return "body is not JSON anyprobe can read (nested too deep)"
    for source, expression in expressions:
        try:
            value = expression.search(document)
        except Exception as exc:  # a JMESPath function given the wrong types
            return f"JSON assertion {source!r} failed: {exc}"
        if value is not True:
            return f"JSON assertion {source!r} is not true{_found(expression, document, value)}"
    return None


def _found(expression: Any, document: Any, value: Any) -> str:
    """`` (status is 'DOWN')`` for ``status == 'UP'``: what the left side holds."""
    import json

    node = expression.parsed
    if node.get("type") == "comparator" and node.get("children"):
        from jmespath.visitor import TreeInterpreter  # type: ignore[import-untyped]

        left = node["children"][0]
        try:
            found = TreeInterpreter().visit(left, document)
        except Exception:
            return ""
        shown = expression.expression.split(_COMPARATORS.get(node["value"], "\0"))[0].strip()
        return f" ({shown} is {_clip(json.dumps(found))})"
    return f" (got {_clip(json.dumps(value))})"


_COMPARATORS = {"eq": "==", "ne": "!=", "lt": "<", "lte": "<=", "gt": ">", "gte": ">="}


def _proxy_auth(proxy: SplitResult) -> str | None:
    if proxy.username is None:
        return None
    from urllib.parse import unquote

    raw = f"{unquote(proxy.username)}:{unquote(proxy.password or '')}"
    return "Basic " + base64.b64encode(raw.encode()).decode("ascii")


async def _tunnel(
    stream: ByteStream, hop: Hop, proxy: SplitResult, ctx: anyprobe.CheckContext
) -> None:
    """Open a CONNECT tunnel through the proxy to ``hop``'s host and port."""
    import h11

    authority = _host_header(hop.host, hop.port, "http") if hop.port != 80 else f"{hop.host}:80"
    if ":" not in authority.rpartition("]")[2]:
        authority += f":{hop.port}"
    headers = [("Host", authority)]
    proxy_auth = _proxy_auth(proxy)
    if proxy_auth:
        headers.append(("Proxy-Authorization", proxy_auth))
    connection = h11.Connection(h11.CLIENT)
    with ctx.phase("connect"):
        await stream.send(
            connection.send(h11.Request(method="CONNECT", target=authority, headers=headers))
        )
        if ctx.explain:
            ctx.trace(f"> CONNECT {authority} (proxy)")
        while True:
            event = connection.next_event()
            if event is h11.NEED_DATA:
                try:
                    connection.receive_data(await stream.receive(READ_SIZE))
                except anyio.EndOfStream:
                    connection.receive_data(b"")
                continue
            if isinstance(event, h11.Response):
                break
            if isinstance(event, h11.ConnectionClosed):
                raise anyprobe.CheckFailed("the proxy closed the connection on CONNECT")
    if not 200 <= event.status_code < 300:
        raise anyprobe.CheckFailed(
            f"the proxy refused CONNECT {authority}: HTTP {event.status_code}",
            metrics={"http_status": event.status_code},
        )
    if ctx.explain:
        ctx.trace(f"< proxy tunnel open ({event.status_code})")


def _io_failure(exc: BaseException, server_name: str) -> anyprobe.CheckFailed:
    if find_ssl_error(exc) is not None:
        return anyprobe.CheckFailed(describe_tls_error(exc, server_name), error=find_ssl_error(exc))
    if isinstance(exc, anyio.EndOfStream):
        return anyprobe.CheckFailed(
            "the server closed the connection without a response", error=exc
        )
    return fail_from_os_error(exc)


async def _exchange_h11(
    stream: ByteStream,
    hop: Hop,
    target: str,
    options: HttpOptions,
    ctx: anyprobe.CheckContext,
    protocol: Any = None,
    *,
    reused: bool = False,
) -> Response:
    """One request over HTTP/1.1. ``protocol`` is the h11 connection of a kept
    connection (else a new one is made); on a ``reused`` one, a connection the
    server closed before sending a byte raises :class:`StaleConnection`."""
    import h11

    connection = protocol or h11.Connection(h11.CLIENT, max_incomplete_event_size=64 * 1024)
    try:
        data = connection.send(
            h11.Request(method=hop.method, target=target, headers=_encode_headers(hop.headers))
        )
        if hop.body:
            data += connection.send(h11.Data(data=hop.body))
        data += connection.send(h11.EndOfMessage())
    except h11.LocalProtocolError as exc:
        raise anyprobe.CheckFailed(
            f"cannot send the request: {exc}", status=anyprobe.Status.UNKNOWN
        ) from None

    closed = False
    received = False

    async def next_event() -> Any:
        nonlocal closed, received
        while True:
            try:
                event = connection.next_event()
            except h11.RemoteProtocolError as exc:
                if closed and connection.their_state is h11.SEND_BODY:
                    summary = "the server closed the connection before the end of the body"
                elif closed:
                    summary = "the server closed the connection without a response"
                else:
                    summary = f"invalid HTTP response: {exc}"
                raise anyprobe.CheckFailed(summary, error=exc) from None
            if event is not h11.NEED_DATA:
                return event
            try:
                chunk = await stream.receive(READ_SIZE)
            except anyio.EndOfStream:
                if reused and not received:
                    raise StaleConnection("closed") from None
                chunk = b""
                closed = True
            except (OSError, anyio.BrokenResourceError) as exc:
                if reused and not received:
                    raise StaleConnection(describe_os_error(exc)) from None
                raise
            received = True
            connection.receive_data(chunk)

    with ctx.phase("first_byte"):
        try:
            await stream.send(data)
        except (OSError, anyio.BrokenResourceError) as exc:
            if reused:
                raise StaleConnection(describe_os_error(exc)) from None
            raise
        while True:
            event = await next_event()
            if isinstance(event, h11.Response):
                break
            if isinstance(event, h11.ConnectionClosed):
                raise anyprobe.CheckFailed("the server closed the connection without a response")
    version = event.http_version.decode("ascii", errors="replace")
    headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in event.headers]
    response = Response(
        status=event.status_code,
        reason=event.reason.decode("latin-1", errors="replace"),
        http_version=version,
        headers=headers,
        body=bytearray(),
        body_bytes=0,
        address="",
    )
    keep = options.needs_body
    limit = options.max_body_bytes
    with ctx.phase("transfer"):
        while True:
            event = await next_event()
            if isinstance(event, h11.Data):
                size = len(event.data)
                if response.body_bytes + size > limit:
                    if keep:
                        response.body += event.data[: limit - response.body_bytes]
                    response.body_bytes = limit
                    response.truncated = True
                    break
                response.body_bytes += size
                if keep:
                    response.body += event.data
            elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                break
    return response


async def _exchange_h2(
    stream: ByteStream, hop: Hop, target: str, options: HttpOptions, ctx: anyprobe.CheckContext
) -> Response:
    """One request over HTTP/2, through httpcore's connection on our socket."""
    import httpcore
    from anyio.streams.tls import TLSAttribute

    class SocketAdapter(httpcore.AsyncNetworkStream):
        async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109
            try:
                return await stream.receive(max_bytes)
            except anyio.EndOfStream:
                return b""

        async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109
            if buffer:
                await stream.send(buffer)

        async def aclose(self) -> None:
            await stream.aclose()

        def get_extra_info(self, info: str) -> Any:
            if info == "ssl_object":
                return stream.extra(TLSAttribute.ssl_object, None)
            return None

    origin = httpcore.Origin(hop.scheme.encode(), hop.host.encode(), hop.port)
    connection = httpcore.AsyncHTTP2Connection(origin=origin, stream=SocketAdapter())
    headers = [(k, v) for k, v in hop.headers if k.lower() not in ("connection", "keep-alive")]
    request = httpcore.Request(
        hop.method,
        httpcore.URL(
            scheme=hop.scheme.encode(),
            host=hop.host.encode(),
            port=hop.port,
            target=target.encode(),
        ),
        headers=_encode_headers(headers),
        content=hop.body or b"",
    )
    response = Response(0, "", "2", [], bytearray(), 0, "")
    keep = options.needs_body
    limit = options.max_body_bytes
    try:
        with ctx.phase("first_byte"):
            reply = await connection.handle_async_request(request)
        response.status = reply.status
        response.reason = reply.extensions.get("reason_phrase", b"").decode("latin-1")
        response.headers = [
            (k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in reply.headers
        ]
        with ctx.phase("transfer"):
            try:
                async for chunk in reply.aiter_stream():
                    size = len(chunk)
                    if response.body_bytes + size > limit:
                        if keep:
                            response.body += chunk[: limit - response.body_bytes]
                        response.body_bytes = limit
                        response.truncated = True
                        break
                    response.body_bytes += size
                    if keep:
                        response.body += chunk
            finally:
                await reply.aclose()
    except httpcore.ProtocolError as exc:
        raise anyprobe.CheckFailed(f"HTTP/2 error: {exc}", error=exc) from None
    except (httpcore.ReadError, httpcore.WriteError) as exc:
        raise _io_failure(exc, hop.host) from None
    finally:
        with anyio.CancelScope(shield=True):
            await connection.aclose()
    return response


# -- demo --------------------------------------------------------------------------


@asynccontextmanager
async def demo_services() -> AsyncIterator[list[anyprobe.DemoCheck]]:
    """An endpoint that answers, a slow one, a failing one (plain HTTP on loopback)."""
    from anyprobe.plugins._demo_http import DemoRoutes, serve_http

    async with serve_http(DemoRoutes()) as port:
        base = f"http://127.0.0.1:{port}"
        yield [
            anyprobe.DemoCheck(
                "http: healthy endpoint",
                f"{base}/health",
                anyprobe.Status.OK,
                options={"json_assertions": ["status == 'UP'"]},
            ),
            anyprobe.DemoCheck(
                "http: slow endpoint",
                f"{base}/slow",
                anyprobe.Status.WARNING,
                options={"warning_after": 0.2},
            ),
            anyprobe.DemoCheck("http: failing endpoint", f"{base}/fail", anyprobe.Status.CRITICAL),
        ]


@anyprobe.hookimpl
def anyprobe_register_probes(register: Any) -> None:
    register(HttpProbe)


@anyprobe.hookimpl
def anyprobe_demo_services(register: Any) -> None:
    register(demo_services)
