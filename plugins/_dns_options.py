"""The DNS probe's options, and the question a ``dns://`` URL asks."""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal
from urllib.parse import SplitResult, parse_qsl, unquote, urlsplit

from pydantic import Field, field_validator, model_validator

import anyprobe
from anyprobe import find_control
from anyprobe.net import IpFamily
from anyprobe.tls import TlsOptions

if TYPE_CHECKING:
    import dns.name
    import dns.rdataclass
    import dns.rdatatype

DEFAULT_PORT = 53
#: The port each transport uses when the URL gives none.
DEFAULT_PORTS = {"udp": DEFAULT_PORT, "tcp": DEFAULT_PORT, "tls": 853, "https": 443}
#: EDNS UDP payload size advertised when ``edns`` is on (the DNS flag day value).
EDNS_PAYLOAD = 1232


class DnsOptions(TlsOptions):
    record_type: str = Field(
        "A",
        description="Record type to ask for (A, AAAA, CNAME, MX, NS, TXT, SOA, SRV, PTR, "
        "CAA...); the URL's ?type= wins over it.",
    )
    record_class: str = Field("IN", description="Record class: IN, CH or HS.")
    transport: Literal["udp", "tcp", "tls", "https"] = Field(
        "udp",
        description="udp (retried over TCP when the answer is truncated), tcp, tls (DNS over "
        "TLS, port 853) or https (DNS over HTTPS, port 443, POST to doh_path).",
    )
    doh_path: str = Field(
        "/dns-query",
        description="With transport https: the path of the DNS over HTTPS endpoint on the "
        "URL's server.",
    )
    recursion_desired: bool = Field(
        True, description="Set the RD flag: ask the server to recurse for us."
    )
    edns: bool = Field(True, description=f"Send EDNS0 with a {EDNS_PAYLOAD}-byte UDP payload size.")
    expect_rcode: str = Field(
        "NOERROR",
        description="Response code that passes: NOERROR, NXDOMAIN, SERVFAIL, REFUSED...",
    )
    expect_answers: list[str] = Field(
        default_factory=list,
        description="Every one of these must be among the answers (rdata text; for MX and "
        "SRV the host name alone also matches).",
    )
    expect_any_answer: list[str] = Field(
        default_factory=list, description="At least one of these must be among the answers."
    )
    answers_match: str | None = Field(
        None,
        description="Regular expression (RE2 syntax) every answer's text must match "
        "(searched, not anchored).",
    )
    any_answer_matches: str | None = Field(
        None, description="Regular expression (RE2 syntax) at least one answer's text must match."
    )
    min_answers: int | None = Field(
        None,
        ge=0,
        description="Fewest answers that pass; default 1 when expecting NOERROR, else 0.",
    )
    resolv_conf: str = Field(
        "/etc/resolv.conf",
        description="Resolver configuration read when the URL names no server.",
    )
    ip_family: IpFamily = Field(
        "any", description="Address family for a server given by name: any, ipv4 or ipv6."
    )

    @field_validator("record_type")
    @classmethod
    def _known_type(cls, value: str) -> str:
        return _check_record_type(value)

    @field_validator("record_class")
    @classmethod
    def _known_class(cls, value: str) -> str:
        import dns.rdataclass

        try:
            dns.rdataclass.from_text(value)
        except Exception:
            raise ValueError(f"unknown record class {value!r}") from None
        return value.upper()

    @field_validator("expect_rcode")
    @classmethod
    def _known_rcode(cls, value: str) -> str:
        import dns.rcode

        try:
            dns.rcode.from_text(value)
        except Exception:
            raise ValueError(
                f"unknown response code {value!r} (NOERROR, NXDOMAIN, SERVFAIL, REFUSED...)"
            ) from None
        return value.upper()

    @field_validator("doh_path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("doh_path must start with /")
        if any(c.isspace() or not c.isprintable() or not c.isascii() for c in value):
            raise ValueError("doh_path must be printable ASCII without spaces (percent-encode)")
        if "#" in value:
            raise ValueError("doh_path takes no #fragment")
        return value

    @field_validator("answers_match", "any_answer_matches")
    @classmethod
    def _valid_regex(cls, value: str | None) -> str | None:
        return anyprobe.check_regex(value)

    @model_validator(mode="after")
    def _resolv_conf_exists(self) -> DnsOptions:
        # The default is only read for a URL without a server: a system
        # without /etc/resolv.conf may still ask servers named in URLs.
        if "resolv_conf" in self.model_fields_set and not os.path.isfile(self.resolv_conf):
            reason = "is not a file" if os.path.exists(self.resolv_conf) else "does not exist"
            raise ValueError(f"resolv_conf {self.resolv_conf} {reason}")
        return self

    @model_validator(mode="after")
    def _answers_need_noerror(self) -> DnsOptions:
        wants_answers = (
            self.expect_answers
            or self.expect_any_answer
            or self.any_answer_matches
            or self.min_answers
        )
        if wants_answers and self.expect_rcode != "NOERROR":
            raise ValueError("answers can only be expected with expect_rcode NOERROR")
        return self


def _check_record_type(value: str) -> str:
    import dns.rdatatype

    try:
        rdtype = dns.rdatatype.from_text(value)
    except Exception:
        raise ValueError(f"unknown record type {value!r}") from None
    if dns.rdatatype.is_metatype(rdtype) and rdtype != dns.rdatatype.ANY:
        raise ValueError(f"{value.upper()} is not a record type one can query")
    return value.upper()


@functools.lru_cache(maxsize=4096)
def question_codes(
    name: str, record_type: str, record_class: str
) -> tuple[dns.name.Name, dns.rdatatype.RdataType, dns.rdataclass.RdataClass, str]:
    """The name, type and class to ask for, and how summaries call the question
    (``MX for example.com``): worked out once, dnspython's parsing is not free."""
    import dns.rdataclass
    import dns.rdatatype

    qname = _to_dns_name(name, record_type)
    what = f"{record_type} for {qname.to_text(omit_final_dot=True) or '.'}"
    rdtype = dns.rdatatype.from_text(record_type)
    return qname, rdtype, dns.rdataclass.from_text(record_class), what


@dataclass(frozen=True, slots=True)
class DnsQuestion:
    """What a ``dns://`` URL asks: of which server (None: the system's), for what."""

    server: str | None
    port: int | None  # None: the transport's default
    name: str
    record_type: str | None


@functools.lru_cache(maxsize=4096)
def parse_dns_url(text: str) -> DnsQuestion:
    """Split a ``dns://`` URL into server, port, name and ``?type=``; ValueError if bad.

    ``dns://1.1.1.1/example.com?type=MX`` asks 1.1.1.1; ``dns://example.com``
    and ``dns:///example.com`` ask the system's resolvers.
    """
    url = urlsplit(text)
    return parse_url(url)


@functools.lru_cache(maxsize=4096)
def parse_url(url: SplitResult) -> DnsQuestion:
    """:func:`parse_dns_url` of a URL already split (as ``validate_url`` gets it)."""
    if url.username is not None or url.password is not None:
        raise ValueError("a dns:// URL takes no user or password")
    if url.fragment:
        raise ValueError("a dns:// URL takes no #fragment")
    path = unquote(url.path).strip("/")
    if path:
        if "/" in path:
            raise ValueError(f"{path!r} is not a domain name (one path segment expected)")
        server = url.hostname or None
        port = url.port or None
        name = path
    else:
        if url.port is not None:
            raise ValueError("a port needs a server: dns://SERVER:PORT/NAME")
        server = None
        port = None
        name = unquote(url.hostname or url.netloc)
    if not name:
        raise ValueError("no name to look up (dns://[SERVER[:PORT]]/NAME?type=T)")
    control = find_control(name)
    if control is not None:
        raise ValueError(f"a control character ({control}) in the name to look up")
    record_type = None
    for key, value in parse_qsl(url.query, keep_blank_values=True):
        if key.lower() != "type":
            raise ValueError(f"unknown URL parameter {key!r} (only ?type= is known)")
        record_type = _check_record_type(value)
    _to_dns_name(name, record_type)
    return DnsQuestion(server, port, name.rstrip(".").lower() or ".", record_type)


@functools.lru_cache(maxsize=4096)
def _to_dns_name(name: str, record_type: str | None) -> dns.name.Name:
    """The name to ask for; an IP address with type PTR becomes its reverse name."""
    import dns.exception
    import dns.name
    import dns.reversename

    if record_type == "PTR":
        try:
            return dns.reversename.from_address(name)
        except (ValueError, dns.exception.SyntaxError):
            pass
    try:
        return dns.name.from_text(name)
    except Exception as exc:
        raise ValueError(f"{name!r} is not a domain name: {exc}") from None
