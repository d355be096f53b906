"""What the HTTP probe sends: each check's requests (hops), the headers and
secrets an options object calls for (a :class:`Plan`, worked out once per
run), and the :class:`Route` that the first request of every check to one
origin shares, down to its header bytes (checks not through a proxy, on a
fresh connection or a reused one).
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import SplitResult, quote, urlsplit

import anyprobe
from anyprobe.masking import Masker, is_credential_header, mask_url_password

from ._http1 import parser_name, write_head
from ._http_client import proxy_auth
from ._http_defaults import auth_header
from ._http_verdict import asserts_status_only

if TYPE_CHECKING:
    from ._http_options import HttpOptions

DEFAULT_PORTS = {"http": 80, "https": 443}
REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})
#: Characters left as they are in a request target; anything else is percent-encoded.
_PATH_SAFE = "!#$%&'()*+,/:;=?@[]~"


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
    headers: list[tuple[str, str]] | tuple[tuple[str, str], ...]
    #: What the first hop of a check shares with the run's other checks to
    #: its origin (see :class:`Route`), and its request target.
    route: Route | None = None
    target: str = ""

    @property
    def display(self) -> str:
        return mask_url_password(self.url)

    @property
    def origin(self) -> tuple[str, str, int]:
        return self.scheme, self.host, self.port


@dataclass(frozen=True, slots=True)
class Route:
    """The first request of every check to one origin with one options object
    and no proxy (its URL split as :func:`split_url` does, its headers, Host
    included, and their bytes), worked out once per run: such a check, on a
    fresh connection or a reused one, only adds its request line."""

    scheme: str
    host: str
    port: int
    server_name: str
    headers: tuple[tuple[str, str], ...]
    #: The header block as the httptools writer sends it (None: written per request).
    head: bytes | None
    #: The pool key of a reused check not pinned to an address (see :func:`pool_key`).
    pool_key: Hashable


#: A URL whose first request may take a :class:`Route`: scheme and authority
#: (group 1), a path (2) and a query (3) made of characters
#: :func:`request_target` sends as they are; no userinfo, no fragment.
_SIMPLE_URL = re.compile(
    r"((?i:https?)://(?:[-A-Za-z0-9._~]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?)"
    r"(/[-A-Za-z0-9._~!$&'()*+,;=:%/]*)?"
    r"(\?[-A-Za-z0-9._~!$&'()*+,;=:%/?]*)?"
)
#: Routes kept per options object (a bound: many origins, each checked rarely).
_MAX_ROUTES = 1024


@dataclass(slots=True)
class Redirects:
    """The state of one check's walk along redirects."""

    first_origin: tuple[str, str, int]
    method: str
    body: bytes | None
    content_type: str | None
    seen: list[str]


@dataclass(slots=True)
class Plan:
    """What every check with one options object sends and hides, worked out
    once per run (targets with the same options share the object)."""

    options: HttpOptions
    base_headers: list[tuple[str, str]]
    #: The Authorization value the options give (None: maybe from the URL's userinfo).
    auth: str | None
    #: The options' secrets (see :func:`request_secrets`).
    secrets: Masker
    body: bytes | None
    content_type: str | None
    #: The routes of the checks' first requests, by scheme and authority as
    #: the URL writes them; None when the options name a proxy.
    routes: dict[str, Route | None] | None
    #: The options assert nothing but the status (see :func:`asserts_status_only`).
    status_only: bool


def plan_for(options: HttpOptions) -> Plan:
    """The :class:`Plan` of ``options`` (a check finds it through ``ctx.shared(PLANS)``)."""
    base_headers = headers_for(options)
    auth = auth_header(options, NO_URL)
    body, content_type = request_body(options)
    secrets = request_secrets(options, base_headers, auth, Masker())
    routes: dict[str, Route | None] | None = None
    if options.proxy is None:
        routes = {}
    status_only = asserts_status_only(options)
    return Plan(options, base_headers, auth, secrets, body, content_type, routes, status_only)


NO_URL = urlsplit("")
PLANS = "anyprobe.plugins.http.plans"
_PARSER = "anyprobe.plugins.http.parser"


def parser_of(ctx: anyprobe.CheckContext) -> str:
    """The run's HTTP/1.1 parser (``ANYPROBE_HTTP_PARSER`` read once a run, not per check)."""
    return ctx.shared(_PARSER, parser_name)


def request_secrets(
    options: HttpOptions,
    headers: Sequence[tuple[str, str]],
    auth: str | None,
    masker: Masker,
) -> Masker:
    """Add to ``masker`` every secret the options make a check send: the values
    read from the environment, the credential and ``header_env`` headers, the
    Authorization value, the proxy's password. (Core fills each check's
    masker with the options' secret fields; the check adds its URL's password.)"""
    for value in options.secret_values():
        masker.add(value)
    secret_headers = {name.lower() for name in options.header_env}
    for name, value in headers:
        masker.add_header(name, value)
        if name.lower() in secret_headers:
            masker.add(value)
    if auth is not None:
        masker.add_header("Authorization", auth)
    if options.proxy:
        masker.add_url(options.proxy)
    return masker


def headers_for(options: HttpOptions) -> list[tuple[str, str]]:
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
    for name, secret in options.header_env.items():
        headers.append((name, secret.get_secret_value()))
    return headers


def cross_origin_headers(
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


def host_header(host: str, port: int, scheme: str) -> str:
    text = f"[{host}]" if ":" in host else host
    return text if DEFAULT_PORTS[scheme] == port else f"{text}:{port}"


def tunnel_authority(hop: Hop) -> str:
    """``host:port`` of a CONNECT request to ``hop``'s server (IPv6 in brackets)."""
    authority = host_header(hop.host, hop.port, "http") if hop.port != 80 else f"{hop.host}:80"
    if ":" not in authority.rpartition("]")[2]:
        authority += f":{hop.port}"
    return authority


def split_url(url: str) -> tuple[SplitResult, str, str, int]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise anyprobe.CheckFailed(
            f"cannot follow a redirect to {scheme}:// ({mask_url_password(url)})"
        )
    try:
        port = parts.port or DEFAULT_PORTS[scheme]
    except ValueError:
        raise anyprobe.CheckFailed(f"bad URL {mask_url_password(url)}") from None
    host = (parts.hostname or "").lower()
    if not host:
        raise anyprobe.CheckFailed(f"no host in URL {mask_url_password(url)}")
    return parts, scheme, host, port


def request_body(options: HttpOptions) -> tuple[bytes | None, str | None]:
    """The request body and the Content-Type it calls for, from the options."""
    if options.json_body is not None:
        import json

        return json.dumps(options.json_body, allow_nan=False).encode(), "application/json"
    if options.body is not None:
        return options.body.encode(), None
    return None, None


def pool_key(
    hop: Hop, options: HttpOptions, server_name: str, ctx: anyprobe.CheckContext
) -> Hashable:
    """What two checks share when one may take the other's idle connection
    (a check pinned to one address of the host takes only a connection to it)."""
    return (
        hop.scheme,
        hop.host,
        hop.port,
        ctx.pinned_address(hop.host),
        server_name,
        *_pool_key_options(options),
    )


def _pool_key_options(options: HttpOptions) -> tuple[Any, ...]:
    """The options in a pool key: two checks that differ in one of them never
    share a connection."""
    return (
        options.ip_family,
        options.verify,
        options.ca_file,
        options.client_cert,
        options.client_key,
        options.http2,
        options.proxy,
    )


def make_hop(
    url: str,
    split: tuple[SplitResult, str, str, int],
    walk: Redirects,
    options: HttpOptions,
    base_headers: list[tuple[str, str]],
    auth: str | None,
) -> Hop:
    """The request to ``url`` (``split`` by :func:`split_url`): credentials only
    for the first origin (unless ``keep_credentials_on_redirect``), the body
    as the walk has it."""
    parts, scheme, host, port = split
    same_origin = (scheme, host, port) == walk.first_origin
    headers = list(base_headers) if same_origin else cross_origin_headers(base_headers, options)
    if auth is not None and (same_origin or options.keep_credentials_on_redirect):
        headers.append(("Authorization", auth))
    if walk.body is not None:
        headers.append(("Content-Length", str(len(walk.body))))
        if walk.content_type and not any(k.lower() == "content-type" for k, _ in headers):
            headers.append(("Content-Type", walk.content_type))
    return Hop(url, parts, scheme, host, port, walk.method, walk.body, headers)


def request_target(hop: Hop, proxy: SplitResult | None) -> str:
    """The request target: path and query, percent-encoded; the absolute form
    for a plain-HTTP request through a proxy."""
    target = quote(hop.parts.path or "/", safe=_PATH_SAFE)
    if hop.parts.query:
        target += "?" + quote(hop.parts.query, safe=_PATH_SAFE)
    if proxy is not None and hop.scheme == "http":
        target = f"http://{host_header(hop.host, hop.port, 'http')}{target}"
    return target


def add_host_header(
    hop: Hop, server_name: str, proxy: SplitResult | None
) -> list[tuple[str, str]] | tuple[tuple[str, str], ...]:
    """``hop``'s headers with the ones its connection calls for: the proxy's
    credentials, and Host unless the options set one."""
    headers = hop.headers
    assert isinstance(headers, list)
    if proxy is not None and hop.scheme == "http":
        credentials = proxy_auth(proxy)
        if credentials:
            headers.append(("Proxy-Authorization", credentials))
    if not any(k.lower() == "host" for k, _ in headers):
        headers.insert(0, ("Host", host_header(server_name, hop.port, hop.scheme)))
    return headers


def route_for(plan: Plan, origin: str, parser: str) -> Route | None:
    """The first request of a check to ``origin`` (``scheme://authority``,
    as a URL writes it), or None when the URL is best split on its own
    (:func:`split_url` refuses it: each check then fails with its words)."""
    try:
        split = split_url(origin)
    except anyprobe.CheckFailed:
        return None
    _, scheme, host, port = split
    options = plan.options
    walk = Redirects((scheme, host, port), options.method, plan.body, plan.content_type, [])
    hop = make_hop(origin, split, walk, options, plan.base_headers, plan.auth)
    server_name = options.server_name or host
    headers = tuple(add_host_header(hop, server_name, None))
    head = write_head(headers, plan.body) if parser == "httptools" else None
    key = (scheme, host, port, None, server_name, *_pool_key_options(options))
    return Route(scheme, host, port, server_name, headers, head, key)


def first_hop(url: str, plan: Plan, ctx: anyprobe.CheckContext) -> Hop | None:
    """The first request of a check to ``url`` through its origin's
    :class:`Route`, or None (then the URL is split on its own)."""
    simple = _SIMPLE_URL.fullmatch(url)
    if simple is None:
        return None
    routes = plan.routes
    assert routes is not None
    origin, path, query = simple.groups()
    try:
        route = routes[origin]
    except KeyError:
        if len(routes) >= _MAX_ROUTES:
            routes.clear()
        route = routes[origin] = route_for(plan, origin, parser_of(ctx))
    if route is None:
        return None
    target = path or "/"
    if query is not None and len(query) > 1:
        target += query
    return Hop(
        url,
        NO_URL,
        route.scheme,
        route.host,
        route.port,
        plan.options.method,
        plan.body,
        route.headers,
        route,
        target,
    )
