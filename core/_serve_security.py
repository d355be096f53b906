"""What keeps ``anyprobe serve`` safe to expose: the allow-list of targets and
the listener's TLS and basic authentication (``--web-config``).

The allow-list is enforced where connections are made: :meth:`AllowList.refusal`
is the address policy (:func:`anyprobe.net.address_policy`) of every ``/probe``
check, so every name resolved, every address connected to and every redirect
hop is checked, not only the URL of the request.

The web config file mirrors blackbox_exporter's ``--web.config.file``, in TOML::

    [tls_server_config]
    cert_file = "server.crt"     # relative to this file
    key_file = "server.key"

    [basic_auth_users]
    prometheus = "$2b$12$..."    # a bcrypt hash: htpasswd -nBC 12 prometheus

    [access]
    public = ["page", "badges"]  # open to all, read-only; the rest wants the users

The file and the certificate and key it names are read again when they change.

Who sees what (:func:`access_part`) is decided by path prefix, so that every
route added under a prefix falls under its rule: ``/`` and ``/check/...``
(the status page), ``/badge/...``, ``/api/...``, ``/push/...``, and the rest
(``/probe``, ``/metrics``, ``/-/reload`` and every admin action). With users,
everything wants their credentials except ``/push/TOKEN`` (its token is its
credential) and, for GET and HEAD only, the parts listed in ``public``.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import ipaddress
import logging
import os
import re
import ssl
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import anyio
from pydantic import ConfigDict, Field, ValidationError

from ._errors import UsageError
from ._options import SettingsModel

log = logging.getLogger("anyprobe.serve")

#: Seconds between looks at the web config file and the certificate files.
RELOAD_POLL = 1.0

_CONTROL = re.compile(r"[\x00-\x20\x7f]")
_HOST_NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?\.?$")


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def valid_host_name(text: str) -> bool:
    """Whether ``text`` is a host name or an IP address (no control character,
    space, slash, ``@``, port...), as ``hostname=`` must be."""
    text = text.strip("[]") if text.startswith("[") else text
    if _CONTROL.search(text):
        return False
    return _is_address(text) or (bool(_HOST_NAME.match(text)) and len(text) <= 253)


class AllowList:
    """Which hosts ``/probe`` may connect to.

    Name patterns use shell wildcards (``*.example.com``) and allow the names
    they match, whatever those resolve to. Networks (``10.0.0.0/8``) allow a
    target written as an address in them, and a name that matches no pattern
    when every address it resolves to is in them. Every address connected to
    must have been allowed this way; a host holding a control character or a
    space is never allowed.
    """

    _PATTERN = re.compile(r"^[a-z0-9*?\[\]._-]+$")

    def __init__(self, entries: Sequence[str] = ()) -> None:
        self.entries = tuple(entries)
        self.networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        self.patterns: list[str] = []
        for entry in entries:
            text = entry.strip().lower()
            try:
                self.networks.append(ipaddress.ip_network(text, strict=False))
                continue
            except ValueError:
                pass
            if not text or not self._PATTERN.match(text) or not _brackets_pair(text):
                raise ValueError(
                    f"{entry!r} is neither a host pattern (*.example.com) nor a network "
                    "(10.0.0.0/8)"
                )
            self.patterns.append(text)

    def __bool__(self) -> bool:
        return bool(self.entries)

    def __add__(self, other: AllowList) -> AllowList:
        return AllowList([*self.entries, *other.entries])

    def allows(self, host: str) -> bool:
        """Whether ``host`` (a name or an address, as in the target URL) is allowed
        by itself: an address in a network, a name matching a pattern."""
        if _CONTROL.search(host):
            return False
        if not self.entries:
            return True
        host = host.strip("[]").lower()
        if self._in_networks(host):
            return True
        return any(fnmatch.fnmatchcase(host, pattern) for pattern in self.patterns)

    def _in_networks(self, host: str) -> bool:
        try:
            address = ipaddress.ip_address(host.strip("[]").split("%")[0])
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in net for net in self.networks)

    def refusal(self, host: str, addresses: Sequence[str]) -> str | None:
        """Why connecting to ``host`` at ``addresses`` is refused, or None.

        ``addresses`` is empty before the name is resolved: a name that matches
        no pattern then passes for now, and is decided on its addresses.
        """
        if _CONTROL.search(host):
            return f"{host!r} holds control characters or spaces"
        if not self.entries:
            return None
        if _is_address(host.strip("[]").split("%")[0]):
            if self.allows(host):
                return None
            return f"{host} is not in allow_targets"
        if self.allows(host):
            return None
        if not self.networks:
            return f"{host} is not in allow_targets"
        for address in addresses:
            if not _is_address(address.split("%")[0]):
                return f"{host} is not in allow_targets"  # not resolved here (a proxy)
            if not self._in_networks(address):
                return f"{host} resolves to {address}, which is not in allow_targets"
        return None


# -- the listener: TLS and basic authentication -----------------------------------


def _brackets_pair(pattern: str) -> bool:
    """Whether every ``[`` of a pattern closes a non-empty ``[...]`` class
    (fnmatch reads a lone ``[`` as itself, which no host contains)."""
    return re.fullmatch(r"[^\[\]]*(\[[^\[\]]+\][^\[\]]*)*", pattern) is not None


class _TlsServerConfig(SettingsModel):
    model_config = ConfigDict(extra="forbid")

    cert_file: str = Field(description="PEM certificate chain the listener presents.")
    key_file: str = Field(description="PEM private key of the certificate.")


#: What ``[access] public`` may open, and the path prefixes of each.
PUBLIC_PARTS: dict[str, tuple[str, ...]] = {
    "page": ("/check/", "/static/"),
    "badges": ("/badge/",),
}


def access_part(path: str) -> str:
    """Which part of the server ``path`` belongs to: ``page`` (``/`` and
    ``/check/...``), ``badges``, ``api``, ``push``, or ``protected`` (the rest:
    ``/probe``, ``/metrics``, ``/-/...`` admin actions and whatever is added)."""
    if path.startswith("/push/"):
        return "push"
    if path.startswith("/api/"):
        return "api"
    if path == "/":
        return "page"
    for part, prefixes in PUBLIC_PARTS.items():
        if path.startswith(prefixes):
            return part
    return "protected"


class _Access(SettingsModel):
    model_config = ConfigDict(extra="forbid")

    public: list[Literal["page", "badges"]] = Field(
        default_factory=list,
        description="Parts anyone may read (GET) without credentials: page, badges.",
    )


class _WebConfigFile(SettingsModel):
    model_config = ConfigDict(extra="forbid")

    tls_server_config: _TlsServerConfig | None = None
    access: _Access = Field(default_factory=_Access)
    basic_auth_users: dict[str, str] = Field(
        default_factory=dict, description="User name -> bcrypt hash of the password."
    )


@dataclass
class WebConfig:
    """A validated web config file."""

    path: Path
    cert_file: Path | None = None
    key_file: Path | None = None
    users: dict[str, bytes] = field(default_factory=dict)
    #: The parts (``page``, ``badges``) open to all for reading.
    public: frozenset[str] = frozenset()

    @property
    def tls(self) -> bool:
        return self.cert_file is not None


def load_web_config(path: str | os.PathLike[str]) -> WebConfig:
    """Read and validate the web config file; raises UsageError naming the file."""
    file = Path(path)
    try:
        document = tomllib.loads(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"--web-config {file}: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"--web-config {file}: {exc}") from None
    try:
        parsed = _WebConfigFile.model_validate(document)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"])
        raise UsageError(f"--web-config {file}: {where}: {error['msg']}") from None
    config = WebConfig(file, public=frozenset(parsed.access.public))
    if parsed.basic_auth_users:
        try:
            import bcrypt  # noqa: F401
        except ImportError:
            raise UsageError(
                f"--web-config {file}: basic_auth_users needs bcrypt "
                "(pip install 'anyprobe[serve]')"
            ) from None
    for user, hashed in parsed.basic_auth_users.items():
        if not re.match(r"^\$2[aby]?\$\d\d\$[./A-Za-z0-9]{53}$", hashed):
            raise UsageError(
                f"--web-config {file}: basic_auth_users.{user}: not a bcrypt hash ($2b$...)"
            )
        config.users[user] = hashed.encode("ascii")
    tls = parsed.tls_server_config
    if tls is not None:
        config.cert_file = file.parent / tls.cert_file
        config.key_file = file.parent / tls.key_file
        try:
            _load_certificate(ssl.create_default_context(ssl.Purpose.CLIENT_AUTH), config)
        except (OSError, ssl.SSLError) as exc:
            raise UsageError(f"--web-config {file}: tls_server_config: {exc}") from None
    return config


def _load_certificate(context: ssl.SSLContext, config: WebConfig) -> None:
    assert config.cert_file is not None and config.key_file is not None
    context.load_cert_chain(certfile=config.cert_file, keyfile=config.key_file)


def _stamp(*paths: Path | None) -> tuple[tuple[int, int] | None, ...]:
    stamps: list[tuple[int, int] | None] = []
    for path in paths:
        try:
            info = os.stat(path) if path is not None else None
        except OSError:
            info = None
        stamps.append((info.st_mtime_ns, info.st_size) if info else None)
    return tuple(stamps)


#: A well-formed bcrypt hash checked for unknown users, so that the answer takes
#: as long for a user that does not exist as for a wrong password.
_DUMMY_HASH = b"$2b$12$RnjBxrRmvQ2OHRVNZ7I1murKe/cGUAYN5.uG.tevHoEGzTjC09FEW"
_CACHE_LIMIT = 1024


class ListenerSecurity:
    """The listener's TLS context and users, kept current with their files."""

    def __init__(self, config: WebConfig | None) -> None:
        self.config = config
        self.context: ssl.SSLContext | None = None
        self._verified: dict[tuple[str, bytes], bool] = {}
        self._limiter: anyio.CapacityLimiter | None = None
        self._stamp = self._files_stamp()

    @property
    def users(self) -> Mapping[str, bytes]:
        return self.config.users if self.config else {}

    def requires_credentials(self, method: str, path: str) -> bool:
        """Whether a ``method`` request for ``path`` needs the users' credentials:
        False without users, for ``/push/TOKEN`` (its token is the credential),
        and for reading (GET, HEAD) a part the web config makes public; True for
        the rest. A route may ask it to decide what to show (a link to the API)."""
        if not self.users:
            return False
        part = access_part(path)
        if part == "push":
            return False
        public = self.config.public if self.config else frozenset()
        return not (method in ("GET", "HEAD") and part in public)

    def _files_stamp(self) -> tuple[tuple[int, int] | None, ...]:
        config = self.config
        if config is None:
            return ()
        return _stamp(config.path, config.cert_file, config.key_file)

    def ssl_context(self, base: ssl.SSLContext | None) -> ssl.SSLContext | None:
        """The listener's context (made by hypercorn from the files), kept to reload."""
        self.context = base
        return base

    async def watch(self) -> None:
        """Re-read the web config and the certificate when their files change."""
        while self.config is not None:
            await anyio.sleep(RELOAD_POLL)
            stamp = self._files_stamp()
            if stamp == self._stamp:
                continue
            self._stamp = stamp
            self.reload()

    def reload(self) -> None:
        """Re-read the files now; on any error keep what is in use and log it."""
        assert self.config is not None
        try:
            config = load_web_config(self.config.path)
            if config.tls != self.config.tls:
                raise UsageError(
                    f"--web-config {config.path}: turning TLS on or off needs a restart"
                )
            if self.context is not None:
                _load_certificate(self.context, config)
        except (UsageError, OSError, ssl.SSLError) as exc:
            log.warning("web config not reloaded, keeping the running one: %s", exc)
            return
        self.config = config
        self._verified.clear()
        log.info("web config reloaded from %s", config.path)

    async def authorized(self, headers: Sequence[tuple[bytes, bytes]]) -> bool:
        """Whether the request's Basic credentials match a user (True without users)."""
        users = self.users
        if not users:
            return True
        value = next((v for k, v in headers if k == b"authorization"), None)
        if value is None or value[:6].lower() != b"basic ":
            return False
        try:
            decoded = base64.b64decode(value[6:].strip(), validate=True).decode("utf-8")
        except ValueError:
            return False
        user, colon, password = decoded.partition(":")
        if not colon:
            return False
        hashed = users.get(user)
        key = (user, hashlib.sha256(password.encode() + (hashed or b"")).digest())
        if hashed is not None and self._verified.get(key):
            return True
        if self._limiter is None:
            # bcrypt is slow on purpose: a few threads at most, never the event loop.
            self._limiter = anyio.CapacityLimiter(4)
        import bcrypt

        ok = await anyio.to_thread.run_sync(
            bcrypt.checkpw, password.encode(), hashed or _DUMMY_HASH, limiter=self._limiter
        )
        ok = bool(ok) and hashed is not None
        if ok:
            if len(self._verified) >= _CACHE_LIMIT:
                self._verified.clear()
            self._verified[key] = True
        return ok


def hypercorn_config_class(security: ListenerSecurity) -> type[Any]:
    """hypercorn's Config, whose TLS context ``security`` keeps and reloads."""
    from hypercorn.config import Config as HypercornConfig

    class Config(HypercornConfig):
        def create_ssl_context(self) -> ssl.SSLContext | None:
            return security.ssl_context(super().create_ssl_context())

    return Config
