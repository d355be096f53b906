"""RDAP bootstrap files (RFC 9224): which RDAP server answers for a TLD.

IANA publishes the file for domain names at https://data.iana.org/rdap/dns.json::

    {"version": "1.0", "publication": "2026-11-01T00:00:00Z",
     "services": [[["com", "net"], ["https://rdap.verisign.com/com/v1/"]], ...]}

Each service is a list of labels (a TLD, or a longer suffix) and the base
URLs of the RDAP servers for them. A domain is looked up by its longest
matching suffix; an https URL is preferred over an http one.

anyprobe ships a subset of that file (``_rdap_bootstrap.json``, next to this
module); the rdap probe's ``bootstrap_file`` and ``bootstrap_url`` options
replace it.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

#: The shipped file, in this package.
SHIPPED = "_rdap_bootstrap.json"
#: The largest bootstrap file read (IANA's is about 100 KB).
MAX_BOOTSTRAP_BYTES = 4 * 1024 * 1024
IANA_URL = "https://data.iana.org/rdap/dns.json"


class BootstrapError(ValueError):
    """A file that is not an RDAP bootstrap file for domain names."""


@dataclass(frozen=True, slots=True)
class Bootstrap:
    """A parsed bootstrap file: base URLs (each ending in ``/``) by label
    suffix, lower-case; ``source`` says where it came from."""

    servers: dict[str, tuple[str, ...]]
    publication: str
    source: str

    def lookup(self, domain: str) -> tuple[str, str] | None:
        """The suffix of ``domain`` (an A-label name) that has an entry and the
        base URL to ask, by longest match (``co.uk`` before ``uk``); None when
        no suffix has one."""
        labels = domain.lower().rstrip(".").split(".")
        for start in range(1, len(labels)):
            suffix = ".".join(labels[start:])
            urls = self.servers.get(suffix)
            if urls:
                secure = [url for url in urls if url.lower().startswith("https://")]
                return suffix, (secure or list(urls))[0]
        return None


def parse(data: bytes, source: str) -> Bootstrap:
    """The bootstrap file in ``data``; :class:`BootstrapError` says what is wrong."""
    try:
        document = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise BootstrapError(f"{source}: not JSON ({_short(exc)})") from None
    if not isinstance(document, dict) or not isinstance(document.get("services"), list):
        raise BootstrapError(f'{source}: not an RDAP bootstrap file (no "services" list)')
    servers: dict[str, tuple[str, ...]] = {}
    for index, service in enumerate(document["services"]):
        if not _is_service(service):
            raise BootstrapError(
                f"{source}: services[{index}] is not [[labels...], [base URLs...]]"
            )
        urls = tuple(url if url.endswith("/") else url + "/" for url in service[1])
        bad = [url for url in urls if not url.lower().startswith(("https://", "http://"))]
        if bad:
            raise BootstrapError(
                f"{source}: services[{index}]: {bad[0][:80]!r} is not an http(s) URL"
            )
        for label in service[0]:
            servers.setdefault(label.lower().strip("."), urls)
    publication = document.get("publication")
    return Bootstrap(servers, publication if isinstance(publication, str) else "", source)


def _is_service(service: Any) -> bool:
    return (
        isinstance(service, list)
        and len(service) >= 2
        and isinstance(service[0], list)
        and isinstance(service[1], list)
        and all(isinstance(label, str) and label for label in service[0])
        and all(isinstance(url, str) and url for url in service[1])
    )


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 100 else text[:100] + "..."


def read_file(path: Path) -> Bootstrap:
    """The bootstrap file at ``path`` (blocking: call it off the event loop or
    at validation, before the run)."""
    shown = _shown(str(path))
    try:
        # Not a FIFO or a device: reading one would block or never end.
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise BootstrapError(f"{shown} is not a regular file")
        with open(path, "rb") as file:
            data = file.read(MAX_BOOTSTRAP_BYTES + 1)
    except (OSError, ValueError) as exc:
        if isinstance(exc, BootstrapError):
            raise
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise BootstrapError(f"cannot read {shown}: {why}") from None
    if len(data) > MAX_BOOTSTRAP_BYTES:
        raise BootstrapError(f"{shown}: larger than {MAX_BOOTSTRAP_BYTES} bytes")
    return parse(data, shown)


def _shown(path: str) -> str:
    """``path`` as one line shows it: quoted with escapes when it holds a
    control character, cut when long."""
    if not path.isprintable():
        path = repr(path)
    return path if len(path) <= 120 else path[:120] + "..."


def read_shipped() -> Bootstrap:
    """The bootstrap file shipped with anyprobe (blocking)."""
    data = resources.files("anyprobe.plugins").joinpath(SHIPPED).read_bytes()
    return parse(data, "the bootstrap file shipped with anyprobe")
