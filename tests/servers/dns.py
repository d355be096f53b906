"""DNS fixtures: a small authoritative responder on UDP and TCP, the same
responder over TLS (DNS over TLS) and HTTPS (DNS over HTTPS), a UDP port that
never answers, and Debian's dnsmasq for an interop test.

The responder runs in a thread with its own sockets, so it serves tests on
either backend alike. It is authoritative for ``example.test`` and
``127.in-addr.arpa`` and answers from :data:`ZONE`; special names:

- ``servfail.example.test``: SERVFAIL;
- ``big.example.test`` (TXT): too large for 512 bytes of UDP, so the UDP
  answer is truncated (TC) and the full one comes over TCP;
- any other name in the zone: NXDOMAIN; a name outside it: REFUSED.

The DNS over TLS and HTTPS servers (:func:`encrypted_dns_server`) run on
blocking sockets in a thread, with trustme certificates from ``tls_ca``.
"""

from __future__ import annotations

import contextlib
import os
import random
import selectors
import shutil
import socket
import ssl
import struct
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.servers.banner import TlsCa

__all__ = [
    "dns_server",
    "dns_server_on_port_53",
    "dnsmasq_server",
    "encrypted_dns_server",
    "silent_udp_port",
]

ORIGINS = ("example.test.", "127.in-addr.arpa.")

#: (name, type) -> (ttl, [rdata text]) served by the responder.
ZONE: dict[tuple[str, str], tuple[int, list[str]]] = {
    ("example.test.", "SOA"): (
        3600,
        ["ns1.example.test. hostmaster.example.test. 2024010101 3600 600 86400 300"],
    ),
    ("example.test.", "NS"): (3600, ["ns1.example.test.", "ns2.example.test."]),
    ("example.test.", "MX"): (300, ["10 mail.example.test.", "20 backup.example.test."]),
    ("example.test.", "TXT"): (300, ['"v=spf1 -all"']),
    ("example.test.", "CAA"): (300, ['0 issue "ca.example.test"']),
    ("example.test.", "A"): (300, ["127.0.0.1"]),
    ("www.example.test.", "A"): (60, ["127.0.0.10", "127.0.0.11"]),
    ("www.example.test.", "AAAA"): (60, ["::1"]),
    ("alias.example.test.", "CNAME"): (120, ["www.example.test."]),
    ("mx2.example.test.", "MX"): (300, ["10 mx2.example.test."]),
    ("_imap._tcp.example.test.", "SRV"): (300, ["0 5 143 mail.example.test."]),
    ("1.0.0.127.in-addr.arpa.", "PTR"): (300, ["localhost.example.test."]),
    ("big.example.test.", "TXT"): (300, [f'"{"x" * 200} {i}"' for i in range(8)]),
    ("nodata.example.test.", "A"): (300, []),
}


@dataclass
class DnsServer:
    """The running responder: its address and what it was asked, per transport."""

    host: str
    port: int
    queries: Counter[str] = field(default_factory=Counter)
    #: DNS over HTTPS: (method, path, Host header, Content-Type) of each request.
    requests: list[tuple[str, str, str, str]] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def _answer(wire: bytes, *, transport: str, server: DnsServer) -> bytes | None:
    import dns.exception
    import dns.flags
    import dns.message
    import dns.name
    import dns.rcode
    import dns.rdataclass
    import dns.rdatatype
    import dns.rrset

    try:
        query = dns.message.from_wire(wire)
    except Exception:
        return None
    response = dns.message.make_response(query)
    if not query.question:
        response.set_rcode(dns.rcode.FORMERR)
        return response.to_wire()
    question = query.question[0]
    name = question.name.to_text().lower()
    rdtype = dns.rdatatype.to_text(question.rdtype)
    server.queries[transport] += 1
    if name == "closes.example.test." and transport == "tcp":
        return None  # the connection is closed without an answer
    if not any(name == o or name.endswith("." + o) for o in ORIGINS):
        response.set_rcode(dns.rcode.REFUSED)
        return response.to_wire()
    response.flags |= dns.flags.AA
    if name == "servfail.example.test.":
        response.flags &= ~dns.flags.AA
        response.set_rcode(dns.rcode.SERVFAIL)
        return response.to_wire()
    known_name = any(key[0] == name for key in ZONE)
    records = ZONE.get((name, rdtype))
    cname = ZONE.get((name, "CNAME"))
    if records is None and cname is not None and rdtype != "CNAME":
        # Follow one CNAME inside the zone, as an authoritative server does.
        ttl, targets = cname
        response.answer.append(dns.rrset.from_text_list(name, ttl, "IN", "CNAME", targets))
        name = targets[0].lower()
        records = ZONE.get((name, rdtype))
    if records is not None and records[1]:
        ttl, texts = records
        response.answer.append(dns.rrset.from_text_list(name, ttl, "IN", rdtype, texts))
    elif not known_name and cname is None:
        response.set_rcode(dns.rcode.NXDOMAIN)
    if not response.answer:
        soa_ttl, soa = ZONE[("example.test.", "SOA")]
        response.authority.append(
            dns.rrset.from_text_list("example.test.", soa_ttl, "IN", "SOA", soa)
        )
    if transport != "udp":
        return response.to_wire()
    limit = max(512, query.payload if query.edns >= 0 else 512)
    try:
        return response.to_wire(max_size=limit)
    except dns.exception.TooBig:
        truncated = dns.message.make_response(query)
        truncated.flags |= dns.flags.TC | dns.flags.AA
        return truncated.to_wire()


def _serve(
    udp: socket.socket, tcp: socket.socket, server: DnsServer, stop: threading.Event
) -> None:
    with selectors.DefaultSelector() as selector:
        selector.register(udp, selectors.EVENT_READ)
        selector.register(tcp, selectors.EVENT_READ)
        while not stop.is_set():
            for key, _ in selector.select(timeout=0.05):
                if key.fileobj is udp:
                    with contextlib.suppress(OSError):
                        wire, peer = udp.recvfrom(65535)
                        reply = _answer(wire, transport="udp", server=server)
                        if reply is not None:
                            udp.sendto(reply, peer)
                else:
                    with contextlib.suppress(OSError):
                        conn, _ = tcp.accept()
                        _serve_tcp_connection(conn, server)


def _serve_tcp_connection(conn: socket.socket, server: DnsServer, transport: str = "tcp") -> None:
    with conn:
        conn.settimeout(2.0)
        for _ in range(16):  # a few pipelined queries per connection at most
            header = _recv_exactly(conn, 2)
            if header is None:
                return
            (length,) = struct.unpack("!H", header)
            wire = _recv_exactly(conn, length)
            if wire is None:
                return
            reply = _answer(wire, transport=transport, server=server)
            if reply is None:
                return
            conn.sendall(struct.pack("!H", len(reply)) + reply)


def _recv_exactly(conn: socket.socket, size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


@contextlib.contextmanager
def run_dns_server(host: str = "127.0.0.1", port: int = 0) -> Iterator[DnsServer]:
    """Start the responder on one port (ephemeral by default), UDP and TCP alike."""
    tcp = socket.create_server((host, port))
    port = tcp.getsockname()[1]
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind((host, port))
    server = DnsServer(host, port)
    stop = threading.Event()
    thread = threading.Thread(target=_serve, args=(udp, tcp, server, stop), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        stop.set()
        thread.join(timeout=5)
        udp.close()
        tcp.close()


# -- DNS over TLS and over HTTPS --------------------------------------------------

DNS_MESSAGE = "application/dns-message"


def _serve_doh_connection(conn: ssl.SSLSocket, server: DnsServer) -> None:
    """One HTTP/1.1 request: ``POST /dns-query`` with a DNS message answers it;
    ``/portal`` answers 200 with a web page (a captive portal); ``/not-http``
    answers bytes that are not HTTP; ``/too-long`` a DNS-typed body one byte
    longer than any DNS message; else 404."""
    import h11

    protocol = h11.Connection(h11.SERVER)
    request: h11.Request | None = None
    body = bytearray()
    for _ in range(1000):
        event = protocol.next_event()
        if event is h11.NEED_DATA:
            protocol.receive_data(conn.recv(65536))
        elif isinstance(event, h11.Request):
            request = event
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
            break
    if request is None:
        return
    headers = {k.decode().lower(): v.decode() for k, v in request.headers}
    method, path = request.method.decode(), request.target.decode()
    server.requests.append((method, path, headers.get("host", ""), headers.get("content-type", "")))
    status, content_type, payload = 404, "text/plain", b"not found\n"
    if path == "/not-http":
        conn.sendall(b"\x00\x01 this is not HTTP\r\n\r\n")
        return
    if path == "/dns-query":
        reply = _answer(bytes(body), transport="https", server=server)
        if method != "POST":
            status, payload = 405, b"POST only\n"
        elif headers.get("content-type") != DNS_MESSAGE or reply is None:
            status, payload = 400, b"not a DNS message\n"
        else:
            status, content_type, payload = 200, DNS_MESSAGE, reply
    elif path == "/portal":
        status, content_type, payload = 200, "text/html", b"<html>Please log in</html>"
    elif path == "/too-long":
        status, content_type, payload = 200, DNS_MESSAGE, bytes(65536)
    response = h11.Response(
        status_code=status,
        headers=[
            ("Content-Type", content_type),
            ("Content-Length", str(len(payload))),
            ("Connection", "close"),
        ],
    )
    conn.sendall(
        protocol.send(response)
        + protocol.send(h11.Data(data=payload))
        + protocol.send(h11.EndOfMessage())
    )


def _read_until_closed(conn: ssl.SSLSocket) -> None:
    for _ in range(1000):
        if not conn.recv(65536):
            return


def _serve_encrypted(
    listener: socket.socket,
    context: ssl.SSLContext,
    transport: str,
    silent: bool,
    server: DnsServer,
    stop: threading.Event,
) -> None:
    while not stop.is_set():
        try:
            client, _ = listener.accept()
        except TimeoutError:
            continue
        except OSError:
            return
        client.settimeout(2.0)
        # As DNS servers do: without it, the answer waits behind the session
        # tickets for the client's delayed ACK (Nagle), some 40 ms a query.
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = context.wrap_socket(client, server_side=True, do_handshake_on_connect=False)
        try:
            conn.do_handshake()
            if silent:
                _read_until_closed(conn)  # the query, then nothing
            elif transport == "tls":
                _serve_tcp_connection(conn, server, "tls")
            else:
                _serve_doh_connection(conn, server)
        except (OSError, ssl.SSLError):
            # A lingering close: closing with unread data would send a reset that
            # could overtake the alert OpenSSL has just sent.
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_WR)
                _read_until_closed(conn)
        finally:
            conn.close()


@contextlib.contextmanager
def run_encrypted_dns_server(
    context: ssl.SSLContext, transport: str, silent: bool = False
) -> Iterator[DnsServer]:
    """The responder over TLS (``transport="tls"``) or HTTPS (``"https"``) on an
    ephemeral port of 127.0.0.1; ``silent``: handshake, then never answer."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.05)
    server = DnsServer("127.0.0.1", listener.getsockname()[1])
    stop = threading.Event()
    thread = threading.Thread(
        target=_serve_encrypted,
        args=(listener, context, transport, silent, server, stop),
        daemon=True,
    )
    thread.start()
    try:
        yield server
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()


@pytest.fixture
def encrypted_dns_server(tls_ca: TlsCa) -> Iterator[Callable[..., DnsServer]]:
    """``encrypted_dns_server("tls" | "https", days_left=90, silent=False,
    require_client_cert=False)``: the responder over DNS over TLS or DNS over
    HTTPS (``POST /dns-query``), with a certificate from ``tls_ca`` for
    localhost and 127.0.0.1."""
    with contextlib.ExitStack() as stack:

        def start(
            transport: str,
            days_left: float = 90,
            silent: bool = False,
            require_client_cert: bool = False,
        ) -> DnsServer:
            context = tls_ca.server_context(days_left)
            if require_client_cert:
                context.minimum_version = ssl.TLSVersion.TLSv1_3
                context.verify_mode = ssl.CERT_REQUIRED
                tls_ca.ca.configure_trust(context)
            return stack.enter_context(run_encrypted_dns_server(context, transport, silent))

        yield start


@pytest.fixture
def dns_server() -> Iterator[DnsServer]:
    """The authoritative responder for ``example.test`` on 127.0.0.1 (UDP and TCP)."""
    with run_dns_server() as server:
        yield server


@pytest.fixture
def dns_server_on_port_53() -> Iterator[DnsServer]:
    """The responder on port 53 of a random 127/8 address, as resolv.conf needs.

    Skipped when the process may not bind port 53 (it is privileged).
    """
    for _ in range(10):
        host = f"127.{random.randint(1, 254)}.{random.randint(1, 254)}.{random.randint(2, 254)}"
        try:
            with run_dns_server(host, 53) as server:
                yield server
                return
        except PermissionError:
            pytest.skip("binding port 53 needs privileges this test run does not have")
        except OSError:
            continue
    pytest.fail("no free 127/8 address with port 53 free")


@pytest.fixture
def silent_udp_port() -> Iterator[int]:
    """A loopback UDP port that is bound (so no ICMP unreachable) and never answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def _free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1 right now."""
    for _ in range(20):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = int(udp.getsockname()[1])
            with socket.socket() as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free port for UDP and TCP")


DNSMASQ_RECORDS = (
    "--address=/example.test/127.0.0.2",
    "--host-record=host.example.test,127.0.0.3,::3",
    "--mx-host=mail.test,mx.mail.test,10",
    "--txt-record=txt.example.test,hello dnsmasq",
    "--cname=alias.example.test,host.example.test",
    "--address=/gone.test/",
)


@pytest.fixture
def dnsmasq_server() -> Iterator[tuple[str, int]]:
    """Debian's dnsmasq on a loopback port, serving :data:`DNSMASQ_RECORDS`."""
    binary = shutil.which("dnsmasq") or next(
        (p for p in ("/usr/sbin/dnsmasq", "/sbin/dnsmasq") if os.path.exists(p)), None
    )
    if binary is None:
        pytest.skip("dnsmasq is not installed (apt-get install dnsmasq-base)")
    port = _free_port()
    command = [
        binary,
        "--no-daemon",
        "--conf-file=/dev/null",
        "--no-resolv",
        "--no-hosts",
        "--no-poll",
        "--pid-file=",
        "--listen-address=127.0.0.1",
        "--bind-interfaces",
        f"--port={port}",
        *DNSMASQ_RECORDS,
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_until_answering("127.0.0.1", port, process)
        yield "127.0.0.1", port
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        if process.stderr is not None:
            process.stderr.close()


def _wait_until_answering(host: str, port: int, process: subprocess.Popen[Any]) -> None:
    import dns.exception
    import dns.message
    import dns.query

    query = dns.message.make_query("host.example.test", "A")
    for _ in range(50):
        if process.poll() is not None:
            error = process.stderr.read().decode(errors="replace") if process.stderr else ""
            pytest.fail(f"dnsmasq exited with {process.returncode}: {error.strip()}")
        try:
            dns.query.udp(query, host, port=port, timeout=0.2)
            return
        except (dns.exception.Timeout, OSError):
            time.sleep(0.05)
    pytest.fail("dnsmasq did not answer within 10 s")
