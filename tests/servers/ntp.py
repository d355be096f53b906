"""NTP servers on loopback: a scripted one in Python (any stratum, leap
indicator, kiss code, clock offset, replies with a wrong origin), and Debian's
chronyd on an unprivileged port when it is installed."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

__all__ = ["chronyd_server", "ntp_server"]

NTP_EPOCH = 2208988800
HEADER = struct.Struct("!BBbbII4sQQQQ")


def ntp_timestamp(unix: float) -> int:
    """Unix time as a 64-bit NTP timestamp (seconds since 1900, 32.32 fixed point)."""
    value = unix + NTP_EPOCH
    seconds = int(value)
    return ((seconds & 0xFFFFFFFF) << 32) | int((value - seconds) * (1 << 32))


@dataclass
class ScriptedNtpServer:
    """Answers client requests as these fields say; ``requests`` keeps each one."""

    port: int
    offset: float = 0.0
    stratum: int = 2
    leap: int = 0
    reference_id: bytes = b"\x7f\x00\x00\x01"
    #: With stratum 0: the kiss code sent as the reference id.
    kiss: str | None = None
    #: Replies sent before the true one, whose origin is not the request's.
    wrong_origin_replies: int = 0
    #: What those replies are: a kiss-o'-death with this code (a client that
    #: took one would say so), or, with None, replies like the true one.
    wrong_origin_kiss: str | None = "DENY"
    #: Answer nothing but replies with a wrong origin.
    only_wrong_origin: bool = False
    root_delay: float = 0.25
    root_dispersion: float = 0.5
    requests: list[bytes] = field(default_factory=list)

    def reply(self, request: bytes, received: float, origin_delta: int = 0) -> bytes:
        transmit = struct.unpack_from("!Q", request, 40)[0]
        kiss = self.wrong_origin_kiss if origin_delta else self.kiss
        stratum = 0 if kiss is not None else self.stratum
        refid = kiss.encode() if kiss is not None else self.reference_id
        return HEADER.pack(
            (self.leap << 6) | (4 << 3) | 4,
            stratum,
            6,
            -20,
            int(self.root_delay * 65536),
            int(self.root_dispersion * 65536),
            refid,
            ntp_timestamp(received + self.offset - 10),
            (transmit + origin_delta) & 0xFFFFFFFFFFFFFFFF,
            ntp_timestamp(received + self.offset),
            ntp_timestamp(time.time() + self.offset),
        )


def _serve(sock: socket.socket, server: ScriptedNtpServer, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            request, peer = sock.recvfrom(1024)
        except (TimeoutError, OSError):
            continue
        received = time.time()
        server.requests.append(request)
        if len(request) < 48:
            continue
        with contextlib.suppress(OSError):
            wrong = server.wrong_origin_replies if not server.only_wrong_origin else 3
            for index in range(wrong):
                sock.sendto(server.reply(request, received, origin_delta=index + 1), peer)
            if not server.only_wrong_origin:
                sock.sendto(server.reply(request, received), peer)


@pytest.fixture
def ntp_server() -> Iterator[ScriptedNtpServer]:
    """The scripted NTP server on 127.0.0.1; set its fields before checking."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.05)
    server = ScriptedNtpServer(sock.getsockname()[1])
    stop = threading.Event()
    thread = threading.Thread(target=_serve, args=(sock, server, stop), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        stop.set()
        thread.join(timeout=5)
        sock.close()


# -- chronyd ------------------------------------------------------------------------


def _chronyd() -> str | None:
    return shutil.which("chronyd") or next(
        (p for p in ("/usr/sbin/chronyd", "/sbin/chronyd") if os.path.exists(p)), None
    )


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers(port: int) -> bool:
    request = bytearray(48)
    request[0] = (4 << 3) | 3
    request[40:48] = os.urandom(8)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.2)
        try:
            sock.sendto(bytes(request), ("127.0.0.1", port))
            reply = sock.recv(1024)
        except OSError:
            return False
    return len(reply) >= 48 and reply[24:32] == request[40:48]


@pytest.fixture
def chronyd_server() -> Iterator[int]:
    """Debian's chronyd serving time on a loopback port (``local stratum 8``,
    ``-x``: it never touches the clock); yields the port."""
    binary = _chronyd()
    if binary is None:
        pytest.skip("chronyd is not installed (apt-get install chrony)")
    port = _free_udp_port()
    directory = tempfile.mkdtemp(prefix="anyprobe-chrony-")
    config = os.path.join(directory, "chrony.conf")
    with open(config, "w", encoding="utf-8") as file:
        file.write(
            f"port {port}\nbindaddress 127.0.0.1\nlocal stratum 8\nallow 127.0.0.1\n"
            f"cmdport 0\nbindcmdaddress /\npidfile {directory}/chronyd.pid\n"
        )
    # As root it would switch to the _chrony user; -U lets another user run it.
    user = ["-u", "root"] if os.geteuid() == 0 else ["-U"]
    command = [binary, "-d", "-x", *user, "-f", config]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        for _ in range(50):
            if process.poll() is not None:
                error = process.stderr.read().decode(errors="replace") if process.stderr else ""
                pytest.fail(f"chronyd exited with {process.returncode}: {error.strip()[-300:]}")
            if _answers(port):
                break
            time.sleep(0.05)
        else:
            pytest.fail("chronyd did not answer within 10 s")
        yield port
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        if process.stderr is not None:
            process.stderr.close()
        shutil.rmtree(directory, ignore_errors=True)
