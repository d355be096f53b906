"""The RDAP probe: ``rdap://example.com``, the domain registration's expiry.

A check finds the RDAP server for the domain's TLD in an RDAP bootstrap file
(RFC 9224: the one shipped with anyprobe, ``bootstrap_file`` or
``bootstrap_url``) unless ``rdap_server`` names one, asks it
``GET {base}domain/{name}`` (RFC 9082) and reads the ``expiration`` event of
the answer (RFC 9083). The days left are held against
``domain_expiry_warning_days`` and ``domain_expiry_critical_days``, as the
certificate options of the HTTP probe.

The request goes through the HTTP probe's HTTP/1.1 client on a connection
``ctx.connect()`` opens: the address policy, the shared TLS options and
certificate verification, the phases (``resolve``, ``connect``, ``tls``,
``first_byte``, ``transfer``) and the ``--explain`` trace are those of every
other probe. HTTP redirects are followed (RFC 7480 lets a server redirect,
as rdap.org's does); ``links`` to a registrar's RDAP server are not: the
registry's expiry is the one that counts.

An answer that says nothing about the domain (a rate limit, a server error,
JSON that is not a domain object, no expiration event) is ``unknown``: the
check could not tell. A 404 is the registry saying the name is not
registered: ``critical``.
"""

from __future__ import annotations

import json
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import SplitResult, quote, urljoin, urlsplit

import anyio
from pydantic import Field, PrivateAttr, field_validator, model_validator

import anyprobe
from anyprobe.net import IpFamily
from anyprobe.tls import CERTIFICATE_MODULES, TlsOptions

from ._http_client import HttpRequest, Response, exchange_h11, io_failure
from ._rdap_bootstrap import IANA_URL, Bootstrap, BootstrapError, parse, read_file, read_shipped

__all__ = ["RdapOptions", "RdapProbe"]

RDAP_TYPE = "application/rdap+json"
DEFAULT_PORTS = {"http": 80, "https": 443}
REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})
#: Most redirects followed (rdap.org's bootstrap service needs one).
MAX_REDIRECTS = 5
#: The longest response head read.
MAX_HEAD_BYTES = 32 * 1024
#: Domain statuses (RFC 8056's EPP mapping) that say the registration is over.
ENDED_STATUSES = ("redemption period", "pending delete")
_SECONDS_PER_DAY = 86400.0


def _http_url(value: str, field: str) -> str:
    parts = urlsplit(value)
    if parts.scheme.lower() not in DEFAULT_PORTS or not parts.hostname:
        raise ValueError(f"{field} must be an http:// or https:// URL with a host")
    if anyprobe.find_control(value) is not None:
        raise ValueError(f"control characters are not allowed in {field}")
    try:
        parts.port  # noqa: B018 (raises for a bad port)
    except ValueError:
        raise ValueError(f"{field}: the port is not a number from 1 to 65535") from None
    return value


class RdapOptions(TlsOptions):
    """Options of the RDAP probe; the TLS ones apply to the RDAP server."""

    domain_expiry_warning_days: float = Field(
        30, ge=0, description="Warning when the domain's registration expires in fewer days."
    )
    domain_expiry_critical_days: float = Field(
        7, ge=0, description="Critical when the domain's registration expires in fewer days."
    )
    rdap_server: str | None = Field(
        None,
        description="Base URL of the RDAP server to ask, e.g. "
        "'https://rdap.verisign.com/com/v1/', instead of the one the bootstrap file "
        "gives for the TLD.",
    )
    bootstrap_file: Path | None = Field(
        None,
        description="An RDAP bootstrap file (RFC 9224, IANA's dns.json) to use instead of "
        "the one shipped with anyprobe; read when the options are validated.",
    )
    bootstrap_url: str | None = Field(
        None,
        description="URL of an RDAP bootstrap file to fetch once per run instead "
        f"(IANA's: {IANA_URL}).",
    )
    follow_redirects: bool = Field(
        True, description=f"Follow HTTP redirects of the RDAP server (at most {MAX_REDIRECTS})."
    )
    max_body_bytes: int = Field(
        1024 * 1024,
        ge=1024,
        le=64 * 1024 * 1024,
        description="Bytes of an answer read at most; a longer one is unknown.",
    )
    ip_family: IpFamily = Field(
        "any", description="Address family to reach the RDAP server over: any, ipv4 or ipv6."
    )

    _bootstrap: Bootstrap | None = PrivateAttr(default=None)

    @field_validator("rdap_server")
    @classmethod
    def _server_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = _http_url(value, "rdap_server")
        return value if value.endswith("/") else value + "/"

    @field_validator("bootstrap_url")
    @classmethod
    def _bootstrap_url(cls, value: str | None) -> str | None:
        return None if value is None else _http_url(value, "bootstrap_url")

    @model_validator(mode="after")
    def _consistent(self) -> RdapOptions:
        if self.domain_expiry_critical_days > self.domain_expiry_warning_days:
            raise ValueError(
                "domain_expiry_critical_days must not be greater than domain_expiry_warning_days"
            )
        if self.bootstrap_file is not None and self.bootstrap_url is not None:
            raise ValueError("give bootstrap_file or bootstrap_url, not both")
        if self.bootstrap_file is not None:
            try:
                self._bootstrap = read_file(self.bootstrap_file)
            except BootstrapError as exc:
                raise ValueError(f"bootstrap_file: {exc}") from None
        return self


@dataclass(frozen=True, slots=True)
class Answer:
    """The RDAP server's last answer and where it came from."""

    url: str
    server: str  # host[:port] of the server that answered
    response: Response


class RdapProbe(anyprobe.Probe[RdapOptions]):
    """Read a domain's registration expiry over RDAP."""

    name = "rdap"
    schemes = ("rdap",)
    Options = RdapOptions
    description = "Domain registration expiry over RDAP (RFC 9083), with the IANA bootstrap."

    def validate_url(self, url: SplitResult, text: str) -> tuple[str, int | None]:
        anyprobe.check_url_shape(url, text, user=False)
        host = url.hostname or ""
        if not host:
            raise anyprobe.TargetError(f"{text}: no domain in the URL (rdap://example.com)")
        try:
            port = url.port
        except ValueError:
            port = -1
        if port is not None:
            raise anyprobe.TargetError(
                f"{text}: a port is not taken by rdap:// URLs (the RDAP server comes from "
                "the bootstrap file or rdap_server)"
            )
        if _is_ip_address(host):
            raise anyprobe.TargetError(
                f"{text}: an IP address is not a domain name (rdap://example.com)"
            )
        if "." not in host.strip("."):
            raise anyprobe.TargetError(
                f"{text}: {host} is not a registered domain name (rdap://example.com)"
            )
        return host.rstrip("."), None

    def load_dependencies(self, targets: Sequence[anyprobe.Target]) -> None:
        """h11 always; certificate parsing (most RDAP servers are https)."""
        import importlib

        for module in ("h11", "anyio.streams.tls", *CERTIFICATE_MODULES):
            importlib.import_module(module)

    async def check(
        self, target: anyprobe.Target, options: RdapOptions, ctx: anyprobe.CheckContext
    ) -> anyprobe.Outcome:
        domain = _a_label(target.host)
        base = options.rdap_server
        if base is None:
            bootstrap = await _bootstrap(options, ctx)
            found = bootstrap.lookup(domain)
            if found is None:
                tld = domain.rsplit(".", 1)[-1]
                raise anyprobe.CheckFailed(
                    f"no RDAP server for .{tld} in {bootstrap.source}"
                    f"{_published(bootstrap)}: give one in rdap_server",
                    status=anyprobe.Status.UNKNOWN,
                )
            suffix, base = found
            ctx.trace(f"RDAP server for .{suffix}: {base} ({bootstrap.source})")
        url = urljoin(base, "domain/" + quote(domain, safe=""))
        answer = await _get(url, RDAP_TYPE, options, ctx)
        ctx.metrics["rdap_server"] = answer.server
        return await _verdict(domain, answer, options, ctx)


def _is_ip_address(host: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _a_label(host: str) -> str:
    """``host`` as RDAP wants it: A-labels (``xn--bcher-kva.de``)."""
    if host.isascii():
        return host.lower()
    try:
        return host.encode("idna").decode("ascii").lower()
    except UnicodeError:
        raise anyprobe.CheckFailed(
            f"{host} is not a valid internationalised domain name",
            status=anyprobe.Status.UNKNOWN,
        ) from None


def _published(bootstrap: Bootstrap) -> str:
    return f" (published {bootstrap.publication})" if bootstrap.publication else ""


# -- the bootstrap file ---------------------------------------------------------------


@dataclass(slots=True)
class _Fetched:
    """A bootstrap file fetched once per run (or why it could not be)."""

    lock: anyio.Lock
    bootstrap: Bootstrap | None = None
    failure: str | None = None


async def _bootstrap(options: RdapOptions, ctx: anyprobe.CheckContext) -> Bootstrap:
    """The bootstrap file the check uses: ``bootstrap_file`` (read when the
    options were validated), ``bootstrap_url`` (fetched once per run), or the
    shipped one (read once per run, off the event loop)."""
    if options._bootstrap is not None:
        return options._bootstrap
    if options.bootstrap_url is None:
        cache: dict[str, Bootstrap] = ctx.shared("anyprobe.plugins.rdap.shipped", dict)
        if "shipped" not in cache:
            cache["shipped"] = await anyprobe.off_loop(
                read_shipped, work=anyprobe.OFF_LOOP_BYTES + 1
            )
        return cache["shipped"]
    url = options.bootstrap_url
    fetched = ctx.shared(("anyprobe.plugins.rdap.fetched", url), lambda: _Fetched(anyio.Lock()))
    async with fetched.lock:
        if fetched.bootstrap is None and fetched.failure is None:
            with ctx.phase("bootstrap"):
                try:
                    answer = await _get(url, "application/json", options, ctx)
                    fetched.bootstrap = await _parse_fetched(answer, url, options)
                except anyprobe.CheckFailed as failed:
                    fetched.failure = failed.summary
    if fetched.bootstrap is None:
        raise anyprobe.CheckFailed(
            f"cannot fetch the bootstrap file {url}: {fetched.failure}",
            status=anyprobe.Status.UNKNOWN,
        )
    return fetched.bootstrap


async def _parse_fetched(answer: Answer, url: str, options: RdapOptions) -> Bootstrap:
    response = answer.response
    if response.status != 200:
        raise anyprobe.CheckFailed(f"HTTP {response.status} from {answer.server}")
    if response.truncated:
        raise anyprobe.CheckFailed(f"larger than max_body_bytes ({options.max_body_bytes} bytes)")
    body = bytes(response.body)
    try:
        return await anyprobe.off_loop(parse, body, url, work=len(body))
    except BootstrapError as exc:
        raise anyprobe.CheckFailed(str(exc).removeprefix(f"{url}: ")) from None


# -- HTTP -----------------------------------------------------------------------------


async def _get(url: str, accept: str, options: RdapOptions, ctx: anyprobe.CheckContext) -> Answer:
    """GET ``url``, following redirects as ``options`` say: the last answer."""
    seen = [url]
    while True:
        answer = await _get_once(url, accept, options, ctx)
        response = answer.response
        location = response.header("location")
        if not (options.follow_redirects and response.status in REDIRECT_CODES and location):
            return answer
        next_url = urljoin(url, location.strip())
        ctx.trace(f"redirect {response.status} to {next_url}")
        if not _fetchable(next_url):
            raise anyprobe.CheckFailed(
                f"{answer.server} redirects to {next_url[:200]}, not an http(s) URL with a host",
                status=anyprobe.Status.UNKNOWN,
            )
        if next_url in seen or len(seen) > MAX_REDIRECTS:
            why = "a redirect loop" if next_url in seen else f"more than {MAX_REDIRECTS} redirects"
            raise anyprobe.CheckFailed(
                f"{why} from {answer.server} (last to {next_url[:200]})",
                status=anyprobe.Status.UNKNOWN,
            )
        seen.append(next_url)
        url = next_url


def _fetchable(url: str) -> bool:
    """Whether ``url`` is an http(s) URL with a host and a valid port."""
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 (raises for a bad port)
    except ValueError:
        return False
    return parts.scheme.lower() in DEFAULT_PORTS and bool(parts.hostname)


async def _get_once(
    url: str, accept: str, options: RdapOptions, ctx: anyprobe.CheckContext
) -> Answer:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    port = parts.port or DEFAULT_PORTS[scheme]
    shown_host = f"[{host}]" if ":" in host else host
    server = shown_host if port == DEFAULT_PORTS[scheme] else f"{shown_host}:{port}"
    path = parts.path or "/"
    target = path + (f"?{parts.query}" if parts.query else "")
    headers = [
        ("Host", server),
        ("User-Agent", f"anyprobe/{anyprobe.__version__}"),
        ("Accept", accept if accept == "application/json" else f"{accept}, application/json;q=0.9"),
        ("Accept-Encoding", "identity"),
        ("Connection", "close"),
    ]
    server_name = options.server_name or host
    async with ctx.connect(
        host,
        port,
        ip_family=options.ip_family,
        tls=options if scheme == "https" else None,
        server_name=server_name,
        alpn=("http/1.1",),
    ) as conn:
        ctx.trace(f"> GET {url}")
        try:
            response = await exchange_h11(
                conn.stream,
                HttpRequest("GET", target, headers),
                ctx,
                max_body_bytes=options.max_body_bytes,
                max_head_bytes=MAX_HEAD_BYTES,
            )
        except (OSError, anyio.BrokenResourceError, anyio.EndOfStream, ssl.SSLError) as exc:
            raise io_failure(exc, server_name) from None
        response.address = conn.address
        response.tls = conn.tls
    ctx.metrics["http_status"] = response.status
    if ctx.explain:
        ctx.trace(
            f"< HTTP/{response.http_version} {response.status} {response.reason}, "
            f"{response.header('content-type') or 'no Content-Type'}, "
            f"{response.body_bytes} bytes"
        )
    return Answer(url, server, response)


# -- the verdict ----------------------------------------------------------------------


async def _verdict(
    domain: str, answer: Answer, options: RdapOptions, ctx: anyprobe.CheckContext
) -> anyprobe.Outcome:
    response, server = answer.response, answer.server
    status = response.status
    if status == 404:
        return anyprobe.Outcome.critical(f"{domain} is not registered ({server} answered HTTP 404)")
    if status == 429:
        retry = response.header("retry-after")
        after = f"; Retry-After: {retry.strip()[:40]}" if retry else ""
        raise anyprobe.CheckFailed(
            f"rate limited by {server} (HTTP 429){after}", status=anyprobe.Status.UNKNOWN
        )
    if status != 200:
        title = _error_title(response)
        raise anyprobe.CheckFailed(
            f"{server} answered HTTP {status} {response.reason}".rstrip() + title,
            status=anyprobe.Status.UNKNOWN,
        )
    if response.truncated:
        raise anyprobe.CheckFailed(
            f"the answer from {server} is larger than max_body_bytes "
            f"({options.max_body_bytes} bytes)",
            status=anyprobe.Status.UNKNOWN,
        )
    body = bytes(response.body)
    document = await anyprobe.off_loop(_json, body, work=len(body))
    if not isinstance(document, dict):
        raise anyprobe.CheckFailed(
            f"{server} answered with something else than RDAP JSON ({_json_problem(body)})",
            status=anyprobe.Status.UNKNOWN,
        )
    kind = document.get("objectClassName")
    if kind is not None and kind != "domain":
        raise anyprobe.CheckFailed(
            f"{server} answered with an RDAP {str(kind)[:40]!r} object, not a domain",
            status=anyprobe.Status.UNKNOWN,
        )
    return _expiry_outcome(domain, server, document, answer.url, options, ctx)


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        return None


def _json_problem(body: bytes) -> str:
    try:
        value = json.loads(body)
    except (ValueError, RecursionError) as exc:
        text = str(exc) or type(exc).__name__
        return f"not JSON: {text[:80]}"
    return f"a JSON {type(value).__name__}, not an object"


def _error_title(response: Response) -> str:
    """``: title`` of an RDAP error answer (RFC 9083 section 6), if it has one."""
    document = _json(bytes(response.body)) if not response.truncated else None
    if isinstance(document, dict) and isinstance(document.get("title"), str):
        return f": {anyprobe.show_bytes(document['title'].encode())}"
    return ""


def _events(document: dict[str, Any]) -> dict[str, str]:
    """The ``eventAction -> eventDate`` of a domain object (the first of each)."""
    events: dict[str, str] = {}
    raw = document.get("events")
    if isinstance(raw, list):
        for event in raw:
            if isinstance(event, dict):
                action, date = event.get("eventAction"), event.get("eventDate")
                if isinstance(action, str) and isinstance(date, str):
                    events.setdefault(action.lower(), date)
    return events


def _registrar(document: dict[str, Any]) -> str | None:
    """The name (vCard ``fn``) of the entity with role ``registrar``, if any."""
    entities = document.get("entities")
    for entity in entities if isinstance(entities, list) else ():
        if not isinstance(entity, dict) or "registrar" not in (entity.get("roles") or ()):
            continue
        vcard = entity.get("vcardArray")
        if isinstance(vcard, list) and len(vcard) == 2 and isinstance(vcard[1], list):
            for item in vcard[1]:
                if isinstance(item, list) and len(item) == 4 and item[0] == "fn":
                    return str(item[3])[:120]
    return None


def _parse_date(text: str) -> datetime | None:
    """An RFC 3339 date-time (``2027-08-13T04:00:00Z``) in UTC; None if it is not one."""
    try:
        value = datetime.fromisoformat(text.strip().replace("z", "Z").replace("Z", "+00:00"))
    except ValueError:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _expiry_outcome(
    domain: str,
    server: str,
    document: dict[str, Any],
    url: str,
    options: RdapOptions,
    ctx: anyprobe.CheckContext,
) -> anyprobe.Outcome:
    events = _events(document)
    statuses = [s for s in document.get("status") or () if isinstance(s, str)]
    registrar = _registrar(document)
    details: dict[str, Any] = {"rdap_url": url, "events": events, "domain_status": statuses}
    if registrar:
        details["registrar"] = registrar
    if ctx.explain:
        for action, date in events.items():
            ctx.trace(f"event {action}: {date}")
        if statuses:
            ctx.trace(f"status: {', '.join(statuses)}")
    raw = events.get("expiration")
    if raw is None:
        return anyprobe.Outcome(
            anyprobe.Status.UNKNOWN,
            f"no expiration event in {server}'s answer for {domain}",
            details=details,
        )
    expires = _parse_date(raw)
    if expires is None:
        return anyprobe.Outcome(
            anyprobe.Status.UNKNOWN,
            f"{server} gives {domain} an expiration date that is not a date: {raw[:60]!r}",
            details=details,
        )
    timestamp = expires.timestamp()
    days = (timestamp - time.time()) / _SECONDS_PER_DAY
    metrics = {"domain_expiry_days": round(days, 2), "domain_expiry_timestamp": timestamp}
    day = expires.date().isoformat()
    ended = [s for s in statuses if s.lower() in ENDED_STATUSES]
    if days < 0:
        ago = -days
        text = f"{ago:.0f} days ago" if ago >= 1 else f"{ago * 24:.1f} hours ago"
        summary = f"{domain} expired {text} ({day})"
        return anyprobe.Outcome.critical(summary, metrics=metrics, details=details)
    summary = f"{domain} expires in {days:.1f} days ({day})"
    if ended:
        return anyprobe.Outcome.critical(
            f"{summary}; status {ended[0]}", metrics=metrics, details=details
        )
    if days < options.domain_expiry_critical_days:
        summary += (
            f", less than domain_expiry_critical_days ({options.domain_expiry_critical_days:g})"
        )
        return anyprobe.Outcome.critical(summary, metrics=metrics, details=details)
    if days < options.domain_expiry_warning_days:
        summary += (
            f", less than domain_expiry_warning_days ({options.domain_expiry_warning_days:g})"
        )
        return anyprobe.Outcome.warning(summary, metrics=metrics, details=details)
    return anyprobe.Outcome.ok(f"{summary}, from {server}", metrics=metrics, details=details)


@anyprobe.hookimpl
def anyprobe_register_probes(register: Any) -> None:
    register(RdapProbe)


@anyprobe.hookimpl
def anyprobe_demo_services(register: Any) -> None:
    from ._demo_rdap import demo_services

    register(demo_services)
