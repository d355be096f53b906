"""Local targets for the benchmarks: Debian's nginx, dnsmasq and sshd on loopback.

Each starts in the foreground with its own configuration in a temporary
directory, on a free 127.0.0.1 port, and is stopped by its PID when the
``with`` block ends::

    with LocalTargets() as targets:
        print(targets.nginx_port, targets.dns_port, targets.sshd_port)

nginx serves plain HTTP and HTTPS (a certificate from a private CA made
with trustme, which the checkers are given as ``targets.ca_file``):

    /            200 "ok"        /missing     404
    /error       500             /redirect    301 to /
    /slow        200 after 3 s (a proxy_pass to a listener that answers late)
    /rdap/domain/example.test   an RDAP domain object (RFC 9083), expiring in 2036

dnsmasq answers ``www.example.test A 127.0.0.1`` and NXDOMAIN for
``missing.example.test``; sshd only shows its banner (no user can log in).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType

NGINX_CONF = """
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/nginx-error.log crit;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    keepalive_requests 100000;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        listen 127.0.0.1:{tls_port} ssl backlog=4096;
        ssl_certificate {dir}/server.pem;
        ssl_certificate_key {dir}/server.key;
        location = / {{ return 200 "ok\\n"; }}
        location = /error {{ return 500 "broken\\n"; }}
        location = /redirect {{ return 301 /; }}
        location = /slow {{ proxy_pass http://127.0.0.1:{slow_port}/; proxy_read_timeout 60s; }}
        location /check/ {{ return 200 "ok\\n"; }}
        location = /rdap/domain/example.test {{
            default_type application/rdap+json;
            return 200 '{rdap_domain}';
        }}
        location / {{ return 404 "missing\\n"; }}
    }}
}}
"""

SSHD_CONF = """
Port {port}
ListenAddress 127.0.0.1
HostKey {dir}/ssh_host_ed25519_key
PidFile {dir}/sshd.pid
AuthenticationMethods publickey
PubkeyAuthentication yes
AuthorizedKeysFile /dev/null
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
LogLevel ERROR
"""

#: What /rdap/domain/example.test answers: an RDAP domain object (RFC 9083).
RDAP_DOMAIN = {
    "objectClassName": "domain",
    "rdapConformance": ["rdap_level_0"],
    "ldhName": "EXAMPLE.TEST",
    "status": ["client transfer prohibited"],
    "events": [
        {"eventAction": "registration", "eventDate": "2001-02-03T04:05:06Z"},
        {"eventAction": "expiration", "eventDate": "2036-02-03T04:05:06Z"},
        {"eventAction": "last changed", "eventDate": "2026-02-03T04:05:06Z"},
    ],
    "notices": [{"title": "Terms of Use", "description": ["Service subject to Terms of Use."]}],
}
#: Seconds the /slow location takes to answer.
SLOW_SECONDS = 3.0


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port free for TCP and UDP on 127.0.0.1 right now."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, kind) as first:
            first.bind(("127.0.0.1", 0))
            port = int(first.getsockname()[1])
            other = socket.SOCK_DGRAM if kind == socket.SOCK_STREAM else socket.SOCK_STREAM
            with socket.socket(socket.AF_INET, other) as second:
                try:
                    second.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free loopback port")


def wait_for(port: int, process: subprocess.Popen[bytes], what: str, banner: bytes = b"") -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with status {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
                if not banner or conn.recv(len(banner)).startswith(banner):
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not answer on 127.0.0.1:{port}")


def wait_for_dns(port: int, process: subprocess.Popen[bytes]) -> None:
    import dns.exception
    import dns.message
    import dns.query

    query = dns.message.make_query("www.example.test", "A")
    for _ in range(100):
        if process.poll() is not None:
            raise RuntimeError(f"dnsmasq exited with status {process.returncode}")
        try:
            dns.query.udp(query, "127.0.0.1", port=port, timeout=0.2)
            return
        except (dns.exception.Timeout, OSError):
            time.sleep(0.05)
    raise RuntimeError("dnsmasq did not answer")


class SlowListener:
    """Accepts HTTP requests and answers each after ``SLOW_SECONDS`` (behind nginx's /slow)."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0), backlog=128)
        self.port = int(self.server.getsockname()[1])
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            conn.recv(65536)
            time.sleep(SLOW_SECONDS)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nslow\n")

    def close(self) -> None:
        self.server.close()


class LocalTargets:
    """nginx (HTTP, HTTPS), dnsmasq and sshd on loopback, for as long as the block lasts."""

    def __init__(self, *, nginx: bool = True, dnsmasq: bool = True, sshd: bool = True) -> None:
        self.wanted = {"nginx": nginx, "dnsmasq": dnsmasq, "sshd": sshd}
        self.processes: list[subprocess.Popen[bytes]] = []
        self._tmp = tempfile.TemporaryDirectory(prefix="anyprobe-targets-")
        self.dir = Path(self._tmp.name)
        self.nginx_port = self.tls_port = self.dns_port = self.sshd_port = 0
        self.ca_file = str(self.dir / "ca.pem")
        self.closed_port = free_port()
        self._slow: SlowListener | None = None
        self._blackhole: socket.socket | None = None
        self._fillers: list[socket.socket] = []
        self.blackhole_port = 0

    def __enter__(self) -> LocalTargets:
        try:
            if self.wanted["nginx"]:
                self._start_nginx()
            if self.wanted["dnsmasq"]:
                self._start_dnsmasq()
            if self.wanted["sshd"]:
                self._start_sshd()
            self._open_blackhole()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop every process this object started, by its PID."""
        for process in self.processes:
            if process.poll() is None:
                os.kill(process.pid, signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        self.processes.clear()
        if self._slow is not None:
            self._slow.close()
        for sock in [*self._fillers, *([self._blackhole] if self._blackhole else [])]:
            sock.close()
        self._tmp.cleanup()

    def _spawn(self, command: list[str]) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.processes.append(process)
        return process

    def _start_nginx(self) -> None:
        import trustme

        ca = trustme.CA()
        ca.cert_pem.write_to_path(self.ca_file)
        cert = ca.issue_cert("localhost", "127.0.0.1")
        cert.private_key_pem.write_to_path(str(self.dir / "server.key"))
        cert.cert_chain_pems[0].write_to_path(str(self.dir / "server.pem"))
        for extra in cert.cert_chain_pems[1:]:
            extra.write_to_path(str(self.dir / "server.pem"), append=True)
        self._slow = SlowListener()
        self.nginx_port, self.tls_port = free_port(), free_port()
        conf = self.dir / "nginx.conf"
        conf.write_text(
            NGINX_CONF.format(
                dir=self.dir, port=self.nginx_port, tls_port=self.tls_port,
                slow_port=self._slow.port, rdap_domain=json.dumps(RDAP_DOMAIN),
            )
        )  # fmt: skip
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        process = self._spawn([nginx, "-p", str(self.dir), "-c", str(conf), "-g", "daemon off;"])
        wait_for(self.nginx_port, process, "nginx")

    def _start_dnsmasq(self) -> None:
        self.dns_port = free_port(socket.SOCK_DGRAM)
        dnsmasq = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
        process = self._spawn(
            [
                dnsmasq, "--no-daemon", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
                "--no-poll", "--pid-file=", "--listen-address=127.0.0.1", "--bind-interfaces",
                f"--port={self.dns_port}", "--host-record=www.example.test,127.0.0.1",
                "--address=/missing.example.test/",
            ]
        )  # fmt: skip
        wait_for_dns(self.dns_port, process)

    def _start_sshd(self) -> None:
        key = self.dir / "ssh_host_ed25519_key"
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        self.sshd_port = free_port()
        conf = self.dir / "sshd_config"
        conf.write_text(SSHD_CONF.format(port=self.sshd_port, dir=self.dir))
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        sshd = shutil.which("sshd") or "/usr/sbin/sshd"
        process = self._spawn([sshd, "-D", "-e", "-f", str(conf)])
        wait_for(self.sshd_port, process, "sshd", banner=b"SSH-")
        self.sshd_host_key = (self.dir / "ssh_host_ed25519_key.pub").read_text().split()[1]

    def _open_blackhole(self) -> None:
        """A port whose connects hang: a listener with a full accept queue."""
        server = socket.socket()
        server.bind(("127.0.0.1", 0))
        server.listen(0)
        self._blackhole = server
        self.blackhole_port = int(server.getsockname()[1])
        for _ in range(64):
            client = socket.socket()
            client.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                client.connect(("127.0.0.1", self.blackhole_port))
            self._fillers.append(client)
            time.sleep(0.02)
            try:
                client.getpeername()
            except OSError:
                break


if __name__ == "__main__":
    with LocalTargets() as targets:
        print(vars(targets))
