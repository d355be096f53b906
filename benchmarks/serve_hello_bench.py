"""The ASGI servers' own ceiling: requests/s of a hello-world ASGI app.

    python benchmarks/serve_hello_bench.py [--duration 3] [--rounds 3]

Serves a fixed 6-byte answer from a bare ASGI app, on loopback, with each
server ``anyprobe serve`` could run on: hypercorn (asyncio, uvloop, trio),
uvicorn with httptools (asyncio, uvloop) and granian (its embedded server, on
asyncio and uvloop) when installed; hypercorn with every setting that could
touch a request's path set ("hypercorn-tuned"), and anyprobe's built-in server
(``--server builtin``: httptools' parser when installed, and "builtin-h11"
with h11's); drives each with ``wrk -t1 -c16``, the
order rotating each round, and prints the median requests/s. Each server runs
in a process of its own, started and stopped here by PID. Besides requests/s,
each server's CPU time per request, read from /proc.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time

HELLO_APP = """
async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", b"6")]})
    await send({"type": "http.response.body", "body": b"hello\\n"})
"""

RUNNERS = {
    "hypercorn": """
from hypercorn.config import Config
config = Config()
config.bind = [f"127.0.0.1:{port}"]
config.accesslog = None
if loop == "trio":
    import trio
    from hypercorn.trio import serve
    trio.run(serve, app, config)
else:
    import asyncio
    from hypercorn.asyncio import serve
    runner = __import__("uvloop").run if loop == "uvloop" else asyncio.run
    runner(serve(app, config))
""",
    "hypercorn-tuned": """
from hypercorn.config import Config
config = Config()
config.bind = [f"127.0.0.1:{port}"]
config.accesslog = None
config.errorlog = None
config.include_server_header = False
config.keep_alive_timeout = 75
config.h11_max_incomplete_size = 16 * 1024
config.alpn_protocols = ["http/1.1"]
if loop == "trio":
    import trio
    from hypercorn.trio import serve
    trio.run(serve, app, config)
else:
    import asyncio
    from hypercorn.asyncio import serve
    runner = __import__("uvloop").run if loop == "uvloop" else asyncio.run
    runner(serve(app, config))
""",
    "builtin": """
# anyprobe serve --server builtin: its server alone, on the same app.
import anyio, socket
from anyprobe import _serve_lean_parse
from anyprobe._serve_asgi import runner
from anyprobe._serve_security import ListenerSecurity
if parser:
    _serve_lean_parse.PARSER_PREFERENCE = (parser,)
sock = socket.create_server(("127.0.0.1", port), backlog=1024)

async def main():
    serve = runner("builtin")
    await serve(app, [sock], shutdown=anyio.Event(), grace=1.0, security=ListenerSecurity(None),
                web_config=None, abort=lambda: None)

backend = "asyncio" if loop == "uvloop" else loop
options = {"use_uvloop": True} if loop == "uvloop" else {}
anyio.run(main, backend=backend, backend_options=options)
""",
    "uvicorn": """
import uvicorn
uvicorn.run(app, host="127.0.0.1", port=port, loop=loop, http="httptools",
            access_log=False, log_level="warning")
""",
    "granian": """
import asyncio
from granian.constants import Interfaces
from granian.server.embed import Server
server = Server(app, address="127.0.0.1", port=port, interface=Interfaces.ASGI,
                log_enabled=False)
runner = __import__("uvloop").run if loop == "uvloop" else asyncio.run
runner(server.serve())
""",
}
LOOPS = {
    "hypercorn": ("asyncio", "uvloop", "trio"),
    "hypercorn-tuned": ("asyncio", "trio"),
    "builtin": ("asyncio", "uvloop", "trio"),
    "builtin-h11": ("asyncio", "trio"),
    "uvicorn": ("asyncio", "uvloop"),
    "granian": ("asyncio", "uvloop"),
}
START_LIMIT = 20.0


def free_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        port: int = sock.getsockname()[1]
        return port


def answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of process ``pid`` so far, every thread included."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rate(port: int, duration: float) -> float:
    out = subprocess.run(
        ["wrk", "-t1", "-c16", f"-d{duration:g}s", f"http://127.0.0.1:{port}/"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    return float(match.group(1)) if match else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed")
    processes: dict[str, tuple[subprocess.Popen[bytes], int]] = {}
    try:
        for server, loops in LOOPS.items():
            module = "anyprobe" if server.startswith("builtin") else server.partition("-")[0]
            if importlib.util.find_spec(module) is None:
                continue
            for loop in loops:
                needed = {"uvloop": "uvloop", "trio": "trio"}.get(loop)
                if needed and importlib.util.find_spec(needed) is None:
                    continue
                port = free_port()
                h11 = "h11" if server == "builtin-h11" else ""
                runner = RUNNERS[server.removesuffix("-h11")]
                code = f"{HELLO_APP}\nport = {port}\nloop = {loop!r}\nparser = {h11!r}\n{runner}"
                command = [sys.executable, "-c", code]
                process = subprocess.Popen(command, stderr=subprocess.DEVNULL)
                processes[f"{server} ({loop})"] = process, port
        deadline = time.monotonic() + START_LIMIT
        for name, (_, port) in processes.items():
            while not answers(port):
                if time.monotonic() > deadline:
                    raise SystemExit(f"{name} did not start within {START_LIMIT:g} s")
                time.sleep(0.1)
        rates: dict[str, list[float]] = {name: [] for name in processes}
        costs: dict[str, list[float]] = {name: [] for name in processes}
        names = list(processes)
        for round_number in range(args.rounds):
            shift = round_number % len(names)
            for name in names[shift:] + names[:shift]:
                process, port = processes[name]
                before = cpu_seconds(process.pid)
                rates[name].append(rate(port, args.duration))
                used = cpu_seconds(process.pid) - before
                costs[name].append(used / max(rates[name][-1] * args.duration, 1))
    finally:
        for process, _ in processes.values():
            process.send_signal(signal.SIGINT)
        for process, _ in processes.values():
            try:
                process.wait(START_LIMIT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    load = " ".join(f"{value:.2f}" for value in os.getloadavg())
    print(f"load average {load}; wrk -t1 -c16, {args.duration:g} s x {args.rounds} rounds")
    print("| server (loop) | requests/s (median) | range | CPU µs/request |")
    print("|---|---:|---:|---:|")
    for name, values in rates.items():
        cost = statistics.median(costs[name]) * 1e6
        print(
            f"| {name} | {statistics.median(values):,.0f} | "
            f"{min(values):,.0f}-{max(values):,.0f} | {cost:,.0f} |"
        )


if __name__ == "__main__":
    main()
