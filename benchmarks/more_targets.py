"""Local targets for the newer probes' rows of ``peers.py``, on loopback only.

- ``grpc``: grpcio's own server with its health servicer, in a process of its
  own: the server as a whole ("") SERVING, service ``down`` NOT_SERVING.
- ``chrony``: Debian's chronyd on an unprivileged UDP port (``local stratum 8``,
  ``-x``: it never touches the clock).
- ``ntp_off`` and ``ntp16``: NTP servers whose clock is 3 s ahead, and one
  at stratum 16 (unsynchronised, its clock right), answered by anyprobe's
  ``serve_ntp`` (the demo's scripted server).
- ``udp``: a UDP server that answers each datagram with ``PONG `` and the
  datagram; ``closed_udp``: a UDP port nobody listens on.
- ``ws``: a WebSocket echo server (wsproto, anyprobe's demo one); ``ws403``:
  one that refuses the upgrade with HTTP 403.

Every process is started here and stopped by its PID when the ``with`` block ends.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

from local_targets import free_port

GRPC_SERVER = """
from concurrent import futures
import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
servicer = health.HealthServicer()
servicer.set("", health_pb2.HealthCheckResponse.SERVING)
servicer.set("down", health_pb2.HealthCheckResponse.NOT_SERVING)
health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
port = server.add_insecure_port("127.0.0.1:0")
server.start()
print(port, flush=True)
server.wait_for_termination()
"""

SMALL_SERVERS = """
import json, socket
import anyio, anyio.abc
from anyprobe.plugins.ntp import serve_ntp
from anyprobe.plugins._demo_ws import _serve as serve_ws

async def udp_pong(sock):
    async for data, peer in sock:
        await sock.sendto(b"PONG " + data, *peer)

async def main():
    udp = [await anyio.create_udp_socket(family=socket.AF_INET, local_host="127.0.0.1")
           for _ in range(3)]
    ports = {name: s.extra(anyio.abc.SocketAttribute.local_port)
             for name, s in zip(("ntp_off", "ntp16", "udp"), udp)}
    async with anyio.create_task_group() as tg:
        tg.start_soon(serve_ntp, udp[0], 2, 3.0)
        tg.start_soon(serve_ntp, udp[1], 16)
        tg.start_soon(udp_pong, udp[2])
        for name, refuse in (("ws", False), ("ws403", True)):
            listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
            ports[name] = listener.extra(anyio.abc.SocketAttribute.local_port)
            async def handle(stream, refuse=refuse):
                await serve_ws(stream, refuse)
            tg.start_soon(listener.serve, handle)
        print(json.dumps(ports), flush=True)

anyio.run(main)
"""

CHRONY_CONF = """port {port}
bindaddress 127.0.0.1
local stratum 8
allow 127.0.0.1
cmdport 0
bindcmdaddress /
pidfile {dir}/chronyd.pid
"""


def ntp_answers(port: int) -> bool:
    """Whether an NTP server answers a client request on 127.0.0.1:``port``."""
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


class MoreTargets:
    """``with MoreTargets() as more: more.ports["grpc"]``."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="anyprobe-peers-"))
        self.processes: list[subprocess.Popen[str]] = []
        self.ports: dict[str, int] = {}

    def __enter__(self) -> MoreTargets:
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def _start(self) -> None:
        grpc = self._spawn([sys.executable, "-c", GRPC_SERVER])
        assert grpc.stdout is not None
        self.ports["grpc"] = int(grpc.stdout.readline())
        small = self._spawn([sys.executable, "-c", SMALL_SERVERS])
        assert small.stdout is not None
        self.ports.update(json.loads(small.stdout.readline()))
        self.ports["closed_udp"] = free_port(socket.SOCK_DGRAM)
        chronyd = shutil.which("chronyd") or "/usr/sbin/chronyd"
        if os.path.exists(chronyd):
            port = free_port(socket.SOCK_DGRAM)
            config = self.dir / "chrony.conf"
            config.write_text(CHRONY_CONF.format(port=port, dir=self.dir))
            user = ["-u", "root"] if os.geteuid() == 0 else ["-U"]
            process = self._spawn([chronyd, "-d", "-x", *user, "-f", str(config)], output=False)
            for _ in range(100):  # at most 10 s
                if process.poll() is not None:
                    raise RuntimeError(f"chronyd exited with status {process.returncode}")
                if ntp_answers(port):
                    break
                time.sleep(0.1)
            else:
                raise RuntimeError(f"chronyd did not answer on 127.0.0.1:{port}")
            self.ports["chrony"] = port

    def _spawn(self, command: list[str], output: bool = True) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE if output else subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.processes.append(process)
        return process

    def close(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                os.kill(process.pid, signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        shutil.rmtree(self.dir, ignore_errors=True)

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
