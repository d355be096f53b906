"""The DNS probe: ``dns://[SERVER[:PORT]]/NAME?type=T`` asks a server one question.

Without a server (``dns://NAME?type=T``) the question goes to the nameservers
of the system's resolver configuration (``/etc/resolv.conf``), in order.

Over UDP the question goes through dnspython's async API, imported on first
use. Its async backend is passed explicitly on every call: dnspython
otherwise detects the event loop once and caches it for the whole process,
which breaks a process that runs asyncio and then trio.

DNS over TCP, over TLS (RFC 7858) and over HTTPS (RFC 8484, HTTP/1.1 POST)
are spoken on a connection ``ctx.connect()`` opens, DNS over HTTPS through
the HTTP probe's HTTP/1.1 client, with dnspython only building and reading
the messages: the certificate checks of :mod:`anyprobe.tls` apply, and all
work on trio (dnspython's own DNS over HTTPS needs httpx2 and finds its
event loop by the cached detection above).

The options and the URL's question are in ``_dns_options``, the exchanges in
``_dns_transport``, the verdict in ``_dns_verdict``, the demo in ``_demo_dns``.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import suppress
from typing import Any
from urllib.parse import SplitResult

import anyprobe
from anyprobe.net import check_destination
from anyprobe.tls import CERTIFICATE_MODULES, TlsInfo

from ._dns_options import (
    DEFAULT_PORT,
    DEFAULT_PORTS,
    EDNS_PAYLOAD,
    DnsOptions,
    parse_dns_url,
    parse_url,
    question_codes,
)
from ._dns_transport import ask, ask_over_stream, join_host_port, system_nameservers
from ._dns_verdict import add_certificate_verdict, judge

#: What a query imports on its way (dnspython imports much of itself lazily).
_DNS_MODULES = (
    "dns.asyncbackend",
    "dns.asyncquery",
    "dns.edns",
    "dns.exception",
    "dns.flags",
    "dns.message",
    "dns.name",
    "dns.query",
    "dns.rcode",
    "dns.rdataclass",
    "dns.rdatatype",
    "dns.resolver",
    "dns.reversename",
    "dns.rrset",
    "dns.rdtypes.ANY.OPT",
    "dns.rdtypes.ANY.SOA",
    "dns.rdtypes.ANY.PTR",
    "dns.rdtypes.ANY.TSIG",
    "hashlib",
    "hmac",
)
#: Record types whose rdata modules are imported before the run (others on first use).
_COMMON_TYPES = ("A", "AAAA", "CNAME", "MX", "NS", "PTR", "SOA", "SRV", "TXT", "CAA")


class DnsProbe(anyprobe.Probe[DnsOptions]):
    """Ask one DNS question and compare the response code and answers."""

    name = "dns"
    schemes = ("dns",)
    Options = DnsOptions
    description = (
        "DNS query (UDP, TCP, TLS or HTTPS) with rcode, answer and certificate assertions."
    )

    def load_dependencies(self, targets: Sequence[anyprobe.Target]) -> None:
        """dnspython's query, message and rdata modules (it imports the module of
        each record type on first use), its backends, and TLS for DoT/DoH."""
        import importlib

        for module in _DNS_MODULES:
            importlib.import_module(module)
        for backend in ("dns._asyncio_backend", "dns._trio_backend"):
            with suppress(ImportError):  # trio's only when trio is installed
                importlib.import_module(backend)
        import dns.rdata
        import dns.rdataclass
        import dns.rdatatype

        for record_type in _COMMON_TYPES:
            rdtype = dns.rdatatype.from_text(record_type)
            dns.rdata.get_rdata_class(dns.rdataclass.IN, rdtype)  # type: ignore[no-untyped-call]
        if any(t.options.transport in ("tls", "https") for t in targets):
            for module in ("h11", "anyio.streams.tls", *CERTIFICATE_MODULES):
                importlib.import_module(module)

    def validate_url(self, url: SplitResult, text: str) -> tuple[str, int | None]:
        """The host is the server when the URL names one (the per-host limit then
        protects that server); without one it is the name being looked up."""
        try:
            question = parse_url(url)
        except ValueError as exc:
            raise anyprobe.TargetError(f"{text}: {exc}") from None
        if question.server is None:
            return question.name, None
        return question.server, question.port or DEFAULT_PORT

    async def check(
        self, target: anyprobe.Target, options: DnsOptions, ctx: anyprobe.CheckContext
    ) -> anyprobe.Outcome:
        import dns.asyncbackend
        import dns.flags
        import dns.message
        import sniffio

        backend = dns.asyncbackend.get_backend(sniffio.current_async_library())
        question = parse_dns_url(target.url)
        type_text = question.record_type or options.record_type
        qname, rdtype, rdclass, what = question_codes(
            question.name, type_text, options.record_class
        )
        query = dns.message.make_query(
            qname,
            rdtype,
            rdclass,
            use_edns=0 if options.edns else False,
            payload=EDNS_PAYLOAD,
        )
        if not options.recursion_desired:
            query.flags &= ~dns.flags.RD
        ctx.metrics["record_type"] = type_text

        encrypted = options.transport in ("tls", "https")
        tls: TlsInfo | None = None
        transport: str
        if question.server is None:
            if encrypted:
                raise anyprobe.CheckFailed(
                    f"transport {options.transport} needs a server in the URL "
                    "(dns://SERVER[:PORT]/NAME): the system's resolvers are asked over UDP",
                    status=anyprobe.Status.UNKNOWN,
                )
            servers = await system_nameservers(options.resolv_conf, ctx)
            for server in servers:  # the address policy (serve's allow_targets) holds here too
                check_destination(server, [server])
            port = DEFAULT_PORT
            response, server, transport = await ask(query, servers, port, options, ctx, backend)
        else:
            port = question.port or DEFAULT_PORTS[options.transport]
            if options.transport == "udp":
                servers = await ctx.resolve(question.server, port, options.ip_family)
                response, server, transport = await ask(
                    query, servers[:1], port, options, ctx, backend
                )
            else:  # tcp, tls, https: on a connection ctx.connect() opens
                response, server, tls = await ask_over_stream(
                    query, question.server, port, options, ctx
                )
                transport = options.transport
        ctx.metrics["server"] = join_host_port(server, port)
        ctx.metrics["transport"] = transport
        outcome = await judge(what, rdtype, response, options, ctx)
        if tls is not None:
            add_certificate_verdict(outcome, tls, options, ctx)
        return outcome


@anyprobe.hookimpl
def anyprobe_register_probes(register: Any) -> None:
    register(DnsProbe)


@anyprobe.hookimpl
def anyprobe_demo_services(register: Any) -> None:
    from ._demo_dns import demo_services

    register(demo_services)
