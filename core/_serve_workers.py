"""``anyprobe serve --workers N``: ``/probe`` answered by N processes, one
event loop each, on one address and port.

The parent binds the socket (so ``--listen 127.0.0.1:0`` and the announced
address work as with one process) and starts N-1 workers, spawned as
``python -m anyprobe serve ... --worker SPEC`` (not forked: the loop and the
plugin manager are not copied). Each gets a listening socket of its own on
the same address and port (SO_REUSEPORT: the parent's and its workers'
sockets form one group) and the kernel spreads new connections over them
by a hash of their addresses; a worker that exits takes its socket (and the
connections not yet accepted on it) with it, and new connections go to the
others until it is started again.
Each worker loads the same config and ``--web-config`` and checks every
request itself with the same code (TLS, basic auth, allow-lists).

- A worker answers ``/probe`` and ``/-/healthy`` itself and passes every other
  request (``/metrics``, ``/-/reload``, ``/push``, the status page...) to the
  parent's app over a Unix socket (:class:`ForwardToParent`, the request as
  it came, credentials included), so that whatever holds state exists once.
- Each worker keeps a control connection to the parent (a socket pair): the
  parent asks through it for the worker's counters at ``/metrics`` time and
  has it reload; the worker stops when it closes (the parent died, even by
  SIGKILL).
- The parent forwards SIGTERM and SIGINT to the workers (same grace), reloads
  them after itself, and starts a worker again when one exits.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
from collections.abc import Awaitable, Callable, Iterable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import ByteStream, Process, TaskStatus
from anyio.streams.buffered import BufferedByteReceiveStream

from ._errors import ConfigError, UsageError

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric
    from prometheus_client.registry import CollectorRegistry


log = logging.getLogger("anyprobe.serve")
#: Connections each listening socket holds before the process accepts them.
LISTEN_BACKLOG = 1024

#: The server metric families a parent adds its workers' samples to.
SUMMED = frozenset(
    {
        "anyprobe_probes",
        "anyprobe_probe_duration_seconds",
        "anyprobe_probe_errors",
        "anyprobe_probe_requests_rejected",
        "anyprobe_probes_in_flight",
        "anyprobe_probes_waiting",
    }
)
#: Of those, the ones that say "now": a worker gone takes its share with it.
GAUGES = frozenset({"anyprobe_probes_in_flight", "anyprobe_probes_waiting"})
#: Seconds a worker gets to send its counters for /metrics (its last ones count past it).
METRICS_WAIT = 2.0
#: Seconds a worker gets to reload its config.
RELOAD_WAIT = 60.0
#: Seconds before a worker that exited is started again.
RESTART_DELAY = 1.0
#: Seconds past the grace (and the second signal's wait) before a worker is killed.
STOP_MARGIN = 10.0
#: The most one frame of the parent-worker protocols may hold.
FRAME_LIMIT = 64 * 1024 * 1024

_LENGTH = struct.Struct(">I")


def parse_workers(text: str) -> int:
    """``--workers``: a number of processes, 1 or more, or ``auto`` (one a CPU
    this process may run on); UsageError otherwise."""
    if text.strip().lower() == "auto":
        try:
            return max(1, len(os.sched_getaffinity(0)))
        except AttributeError:  # not Linux
            return max(1, os.cpu_count() or 1)
    try:
        count = int(text)
    except ValueError:
        count = 0
    if count < 1:
        raise UsageError(f"--workers {text!r}: expected a number of processes, 1 or more, or auto")
    return count


# -- framing: a kind byte, a length, the payload ----------------------------------


async def send_frame(stream: ByteStream, kind: bytes, payload: bytes = b"") -> None:
    await stream.send(kind + _LENGTH.pack(len(payload)) + payload)


async def receive_frame(reader: BufferedByteReceiveStream) -> tuple[bytes, bytes] | None:
    """The next frame, or None when the other side closed (or broke the protocol)."""
    try:
        head = await reader.receive_exactly(1 + _LENGTH.size)
        (length,) = _LENGTH.unpack(head[1:])
        if length > FRAME_LIMIT:
            return None
        payload = await reader.receive_exactly(length) if length else b""
    except (anyio.EndOfStream, anyio.IncompleteRead, anyio.BrokenResourceError):
        return None
    except anyio.ClosedResourceError:
        return None
    return head[:1], payload


# -- the worker's side -------------------------------------------------------------


@dataclass(frozen=True)
class WorkerSpec:
    """What ``--worker`` tells a worker: its control connection's and the listening
    socket's file descriptors, its number and the parent's Unix socket."""

    control_fd: int
    listen_fd: int
    index: int
    parent_socket: str

    def __str__(self) -> str:
        return f"{self.control_fd}:{self.listen_fd}:{self.index}:{self.parent_socket}"

    @classmethod
    def parse(cls, text: str) -> WorkerSpec:
        try:
            control, listen, index, path = text.split(":", 3)
            return cls(int(control), int(listen), int(index), path)
        except ValueError:
            raise UsageError(
                f"--worker {text!r}: set by anyprobe serve --workers for its workers"
            ) from None


_PLAIN = b"text/plain; charset=utf-8"


async def _plain_answer(send: Callable[..., Awaitable[None]], status: int, text: str) -> None:
    body = text.encode() + b"\n"
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", _PLAIN), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


class ForwardToParent:
    """The ASGI app of a worker for every request but ``/probe`` and
    ``/-/healthy``: the request, as it came, to the parent's app over its Unix
    socket, and the parent's answer back (its checks apply: basic auth...)."""

    def __init__(self, path: str) -> None:
        self.path = path

    async def __call__(
        self, scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]
    ) -> None:
        try:
            stream = await anyio.connect_unix(self.path)
        except OSError:
            await _plain_answer(send, 503, "The main anyprobe serve process is not answering")
            return
        head = {
            "method": scope["method"],
            "scheme": scope.get("scheme", "http"),
            "http_version": scope.get("http_version", "1.1"),
            "path": scope["path"],
            "raw_path": (scope.get("raw_path") or scope["path"].encode()).decode("latin-1"),
            "query_string": scope.get("query_string", b"").decode("latin-1"),
            "root_path": scope.get("root_path", ""),
            "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in scope["headers"]],
            "client": list(scope["client"]) if scope.get("client") else None,
            "server": list(scope["server"]) if scope.get("server") else None,
        }
        started = False
        async with stream, anyio.create_task_group() as tg:
            reader = BufferedByteReceiveStream(stream)
            await send_frame(stream, b"R", json.dumps(head).encode())

            async def upload() -> None:
                # The parent may answer (and close) before it reads the body.
                with suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                    await upload_body()

            async def upload_body() -> None:
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        tg.cancel_scope.cancel()  # closing the connection tells the parent
                        return
                    body = message.get("body", b"")
                    if body:
                        await send_frame(stream, b"B", body)
                    if not message.get("more_body", False):
                        await send_frame(stream, b"E")
                        return

            tg.start_soon(upload)
            while (frame := await receive_frame(reader)) is not None:
                kind, payload = frame
                if kind == b"S":
                    start = json.loads(payload)
                    headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in start[1]]
                    await send(
                        {"type": "http.response.start", "status": start[0], "headers": headers}
                    )
                    started = True
                elif kind == b"B" and started:
                    await send({"type": "http.response.body", "body": payload, "more_body": True})
                elif kind == b"E" and started:
                    await send({"type": "http.response.body", "body": b""})
                    break
            tg.cancel_scope.cancel()
        if not started:
            await _plain_answer(send, 502, "The main anyprobe serve process gave no answer")


def metrics_snapshot(registry: CollectorRegistry) -> list[list[Any]]:
    """The samples of a worker's :data:`SUMMED` families, for its parent."""
    samples: list[list[Any]] = []
    for family in registry.collect():
        if family.name in SUMMED:
            for sample in family.samples:
                if not sample.name.endswith("_created"):
                    samples.append([family.name, sample.name, sample.labels, sample.value])
    return samples


async def answer_parent(stream: ByteStream, server: Any) -> None:
    """A worker's end of the control connection: its counters and reloads for
    the parent; when the parent is gone, the worker stops as on SIGTERM."""
    reader = BufferedByteReceiveStream(stream)
    while (frame := await receive_frame(reader)) is not None:
        kind, number = frame
        if kind == b"M":
            snapshot = metrics_snapshot(server.metrics.registry)
            await send_frame(stream, b"M", number + b"\n" + json.dumps(snapshot).encode())
        elif kind == b"R":
            try:
                await server.reload()
            except (ConfigError, UsageError) as exc:
                await send_frame(stream, b"X", number + b"\n" + str(exc).encode())
            except Exception as exc:  # a reload's failure is the parent's to report
                error = f"{type(exc).__name__}: {exc}"
                await send_frame(stream, b"X", number + b"\n" + error.encode())
            else:
                await send_frame(stream, b"R", number + b"\n")
    log.info("the parent process is gone: stopping")
    os.kill(os.getpid(), signal.SIGTERM)


# -- the parent's side -------------------------------------------------------------


@dataclass
class _Worker:
    index: int
    process: Process
    control: ByteStream
    reader: BufferedByteReceiveStream
    lock: anyio.Lock = field(default_factory=anyio.Lock)
    snapshot: list[list[Any]] = field(default_factory=list)
    running: bool = True
    asked: int = 0

    async def ask(self, kind: bytes, wait: float) -> tuple[bytes, bytes] | None:
        """One question on the control connection and its answer (None: no
        answer in time, or the worker is gone). Each question carries a number
        its answer repeats: an answer that came too late is skipped."""
        async with self.lock:
            if not self.running:
                return None
            self.asked += 1
            number = str(self.asked).encode()
            with anyio.move_on_after(wait):
                try:
                    await send_frame(self.control, kind, number)
                except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                    return None
                while (frame := await receive_frame(self.reader)) is not None:
                    answered, _, body = frame[1].partition(b"\n")
                    if answered == number:
                        return frame[0], body
            return None


def sibling_socket(family: int, address: Any) -> socket.socket:
    """A listening socket on the parent's address and port, in its
    SO_REUSEPORT group: the kernel spreads new connections over the group's
    sockets by their addresses' hash, where one shared socket would give a
    burst of connections to whichever process accepts first."""
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
        sock.listen(LISTEN_BACKLOG)
    except OSError:
        sock.close()
        raise
    return sock


class Workers:
    """The parent's workers: started, answered, reloaded, counted and stopped.

    :meth:`run` (in :func:`anyprobe._serve.serve`'s task group) starts them and
    serves their forwarded requests with the parent's app until :meth:`stop`
    and their exit.
    """

    def __init__(
        self,
        count: int,
        command: Sequence[str],
        config_path: str | None,
        listening: socket.socket,
        *,
        grace: float,
    ) -> None:
        #: Worker processes beside the parent (``--workers`` less one).
        self.count = count
        #: A worker's command line, but its ``--worker`` and config arguments.
        self.command = list(command)
        self.config = ["--", config_path] if config_path is not None else []
        # Where each worker's own listening socket is bound (SO_REUSEPORT).
        self.family = listening.family
        self.address = listening.getsockname()
        self.grace = grace
        self.directory = tempfile.mkdtemp(prefix="anyprobe-serve-")
        self.path = str(Path(self.directory) / "parent.sock")
        self.workers: dict[int, _Worker] = {}
        self.restarts = 0
        # The counts of workers gone, kept so that the sums never go down.
        self.retired: dict[tuple[str, str, tuple[tuple[str, str], ...]], float] = {}
        self.stopping = False
        self._stopped = anyio.Event()
        self._signals: list[int] = []
        # What each worker's keeper waits in: given a deadline by stop().
        self._scopes_for_stop: set[anyio.CancelScope] = set()

    # -- life ------------------------------------------------------------------

    async def run(self, app: Callable[..., Awaitable[None]]) -> None:
        """Start the workers and serve their forwarded requests with ``app``;
        return once :meth:`stop` was called and every worker has exited."""
        try:
            listener = await anyio.create_unix_listener(self.path)
            async with listener, anyio.create_task_group() as tg:
                tg.start_soon(listener.serve, lambda stream: self._answer(app, stream))
                async with anyio.create_task_group() as keeping:
                    for index in range(1, self.count + 1):
                        await keeping.start(self._keep, index)
                tg.cancel_scope.cancel()
        finally:
            with suppress(OSError):
                os.unlink(self.path)
            with suppress(OSError):
                os.rmdir(self.directory)

    async def _spawn(self, index: int) -> _Worker:
        parent_end, child_end = socket.socketpair()
        listening = sibling_socket(self.family, self.address)
        spec = WorkerSpec(child_end.fileno(), listening.fileno(), index, self.path)
        command = [*self.command, "--worker", str(spec), *self.config]
        try:
            process = await anyio.open_process(
                command,
                stdin=subprocess.DEVNULL,
                stdout=None,
                stderr=None,
                pass_fds=(child_end.fileno(), listening.fileno()),
                # Ctrl-C signals the whole process group: a worker gets its
                # signals from the parent only, each once.
                start_new_session=True,
            )
        finally:
            # The worker's alone: when it exits its socket closes, and the
            # kernel sends new connections to the other processes' sockets.
            listening.close()
            child_end.close()
        stream = await anyio.abc.UNIXSocketStream.from_socket(parent_end)
        worker = _Worker(index, process, stream, BufferedByteReceiveStream(stream))
        self.workers[index] = worker
        log.info("worker %d started (PID %d)", index, process.pid)
        for signum in self._signals:  # a signal that came while it started
            with suppress(ProcessLookupError):
                process.send_signal(signal.Signals(signum))
        return worker

    async def _keep(self, index: int, *, task_status: TaskStatus[None]) -> None:
        """Worker ``index``: start it, start it again when it exits, stop it with the parent."""
        worker = await self._spawn(index)
        task_status.started()
        while True:
            with anyio.CancelScope() as waiting:
                if self.stopping:
                    waiting.deadline = anyio.current_time() + self._stop_wait()
                self._scopes_for_stop.add(waiting)
                try:
                    code = await worker.process.wait()
                finally:
                    self._scopes_for_stop.discard(waiting)
            if waiting.cancelled_caught:
                if not self.stopping:
                    continue
                # Still running past the grace and its margin: killed.
                log.warning("worker %d (PID %d) did not stop: killed", index, worker.process.pid)
                with suppress(ProcessLookupError):
                    worker.process.kill()
                code = await worker.process.wait()
            self._retire(worker)
            await worker.control.aclose()
            if self.stopping:
                return
            self.restarts += 1
            log.warning(
                "worker %d (PID %d) exited with status %s: starting another",
                index,
                worker.process.pid,
                code,
            )
            with anyio.move_on_after(RESTART_DELAY):
                await self._stopped.wait()
            if self.stopping:
                return
            worker = await self._spawn(index)

    def _stop_wait(self) -> float:
        from ._serve_server import ABORT_WAIT

        return self.grace + ABORT_WAIT + STOP_MARGIN

    def _retire(self, worker: _Worker) -> None:
        worker.running = False
        for family, name, labels, value in worker.snapshot:
            if family not in GAUGES:
                key = (family, name, _label_key(labels))
                self.retired[key] = self.retired.get(key, 0.0) + value
        worker.snapshot = []
        if self.workers.get(worker.index) is worker:
            del self.workers[worker.index]

    def stop(self, signum: int | None = None) -> None:
        """Stop the workers: SIGTERM or SIGINT at the parent is sent to each
        (a second one cancels their probes under way, as in the parent); none
        is started again, and one still running past the grace and a margin is
        killed. Without a signal (the parent's serving ended): SIGTERM, unless
        they were signalled already."""
        first = not self.stopping
        if signum is None:
            if not first:
                return
            signum = signal.SIGTERM
        self.stopping = True
        self._stopped.set()
        self._signals.append(signum)
        for worker in list(self.workers.values()):
            if worker.process.returncode is None:
                with suppress(ProcessLookupError):
                    worker.process.send_signal(signal.Signals(signum))
        if first:
            deadline = anyio.current_time() + self._stop_wait()
            for scope in self._scopes_for_stop:
                scope.deadline = min(scope.deadline, deadline)

    # -- what the parent asks ----------------------------------------------------

    async def reload(self) -> None:
        """Reload every worker's config (after the parent's); UsageError naming
        each worker that kept its running config, and why."""
        failures: list[str] = []

        async def one(worker: _Worker) -> None:
            answer = await worker.ask(b"R", RELOAD_WAIT)
            if answer is None:
                failures.append(f"worker {worker.index} (PID {worker.process.pid}) did not answer")
            elif answer[0] != b"R":
                message = answer[1].decode(errors="replace")
                failures.append(f"worker {worker.index} (PID {worker.process.pid}): {message}")

        async with anyio.create_task_group() as tg:
            for worker in list(self.workers.values()):
                tg.start_soon(one, worker)
        if failures:
            failures.sort()
            raise UsageError(
                "the parent reloaded, but not every worker (each keeps its running config): "
                + "; ".join(failures)
            )

    async def refresh(self) -> None:
        """Ask every worker for its counters now, for /metrics (a worker that
        does not answer within :data:`METRICS_WAIT` counts with its last ones)."""

        async def one(worker: _Worker) -> None:
            answer = await worker.ask(b"M", METRICS_WAIT)
            if answer is not None and answer[0] == b"M":
                with suppress(ValueError):
                    worker.snapshot = json.loads(answer[1])

        async with anyio.create_task_group() as tg:
            for worker in list(self.workers.values()):
                tg.start_soon(one, worker)

    def merged(self, registry: CollectorRegistry) -> MergedMetrics:
        """The parent's ``registry`` with every worker's :data:`SUMMED` samples added."""
        extra: dict[tuple[str, str, tuple[tuple[str, str], ...]], float] = dict(self.retired)
        per_process: dict[str, float] = {}
        for worker in sorted(self.workers.values(), key=lambda w: w.index):
            probes = 0.0
            for family, name, labels, value in worker.snapshot:
                key = (family, name, _label_key(labels))
                extra[key] = extra.get(key, 0.0) + value
                if name == "anyprobe_probes_total":
                    probes += value
            per_process[str(worker.index)] = probes
        return MergedMetrics(registry, extra, per_process, len(self.workers), self.restarts)

    # -- forwarded requests -------------------------------------------------------

    async def _answer(self, app: Callable[..., Awaitable[None]], stream: ByteStream) -> None:
        """One request a worker forwarded: served by the parent's ``app``."""
        async with stream:
            reader = BufferedByteReceiveStream(stream)
            frame = await receive_frame(reader)
            if frame is None or frame[0] != b"R":
                return
            try:
                head = json.loads(frame[1])
                scope = _scope(head)
            except (ValueError, KeyError, TypeError):
                return
            body_done = False

            async def receive() -> dict[str, Any]:
                nonlocal body_done
                if not body_done:
                    got = await receive_frame(reader)
                    if got is not None and got[0] == b"B":
                        return {"type": "http.request", "body": got[1], "more_body": True}
                    body_done = True
                    if got is not None and got[0] == b"E":
                        return {"type": "http.request", "body": b"", "more_body": False}
                    return {"type": "http.disconnect"}
                await receive_frame(reader)  # until the worker closes: its client left
                return {"type": "http.disconnect"}

            async def send(message: dict[str, Any]) -> None:
                if message["type"] == "http.response.start":
                    headers = [
                        [k.decode("latin-1"), v.decode("latin-1")]
                        for k, v in message.get("headers", [])
                    ]
                    start = [message["status"], headers]
                    await send_frame(stream, b"S", json.dumps(start).encode())
                elif message["type"] == "http.response.body":
                    body = message.get("body", b"")
                    if body:
                        await send_frame(stream, b"B", body)
                    if not message.get("more_body", False):
                        await send_frame(stream, b"E")

            with suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                await app(scope, receive, send)


def _label_key(labels: dict[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(labels.items()))


def _scope(head: dict[str, Any]) -> dict[str, Any]:
    """The ASGI scope of a forwarded request, as the worker's server made it."""
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": str(head["http_version"]),
        "method": str(head["method"]),
        "scheme": str(head["scheme"]),
        "path": str(head["path"]),
        "raw_path": str(head["raw_path"]).encode("latin-1"),
        "query_string": str(head["query_string"]).encode("latin-1"),
        "root_path": str(head["root_path"]),
        "headers": [
            (str(k).encode("latin-1"), str(v).encode("latin-1")) for k, v in head["headers"]
        ],
        "client": tuple(head["client"]) if head["client"] else None,
        "server": tuple(head["server"]) if head["server"] else None,
        "extensions": {},
        "state": {},
    }


class MergedMetrics:
    """A registry's families, the workers' samples added to the :data:`SUMMED`
    ones, and three families about the workers themselves."""

    def __init__(
        self,
        registry: CollectorRegistry,
        extra: dict[tuple[str, str, tuple[tuple[str, str], ...]], float],
        per_process: dict[str, float],
        running: int,
        restarts: int,
    ) -> None:
        self.registry = registry
        self.extra = extra
        self.per_process = per_process
        self.running = running
        self.restarts = restarts

    def collect(self) -> Iterable[Metric]:
        from prometheus_client.metrics_core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            Metric,
        )

        by_family: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
        for (family_name, name, labels), value in self.extra.items():
            by_family.setdefault(family_name, {})[name, labels] = value
        parent_probes = 0.0
        for family in self.registry.collect():
            if family.name == "anyprobe_probes":
                parent_probes = sum(
                    s.value for s in family.samples if s.name == "anyprobe_probes_total"
                )
            adding = by_family.get(family.name)
            if not adding:
                yield family
                continue
            merged = Metric(family.name, family.documentation, family.type, family.unit)
            for sample in family.samples:
                key = (sample.name, _label_key(sample.labels))
                merged.add_sample(sample.name, sample.labels, sample.value + adding.pop(key, 0.0))
            for (name, labels), value in adding.items():
                merged.add_sample(name, dict(labels), value)
            yield merged
        processes = GaugeMetricFamily(
            "anyprobe_serve_worker_probes",
            "Probes run for /probe by each process of serve --workers since it started "
            "(worker 0 is the parent; counted at this scrape).",
            labels=["worker"],
        )
        processes.add_metric(["0"], parent_probes)
        for index, probes in self.per_process.items():
            processes.add_metric([index], probes)
        yield processes
        yield GaugeMetricFamily(
            "anyprobe_serve_workers",
            "Worker processes of serve --workers running beside the parent.",
            value=self.running,
        )
        yield CounterMetricFamily(
            "anyprobe_serve_worker_restarts",
            "Worker processes of serve --workers started again after they exited.",
            value=self.restarts,
        )


def worker_command(
    *,
    global_options: Sequence[str],
    backend: str,
    server_name: str,
    concurrency: int | None,
    max_waiting: int | None,
    timeout_offset: float,
    allow_targets: Sequence[str],
    grace: float,
    web_config: str | None,
) -> list[str]:
    """A worker's command line, but its ``--worker`` and config arguments
    (:class:`Workers` adds them)."""
    command = [sys.executable, "-m", "anyprobe", *global_options, "serve"]
    command += ["--backend", backend, "--server", server_name]
    command += ["--timeout-offset", repr(timeout_offset), "--grace", repr(grace)]
    if concurrency is not None:
        command += ["--concurrency", str(concurrency)]
    if max_waiting is not None:
        command += ["--max-waiting", str(max_waiting)]
    for pattern in allow_targets:
        command += ["--allow-target", pattern]
    if web_config is not None:
        command += ["--web-config", web_config]
    return command
