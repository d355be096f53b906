"""A pytest plugin for people who write anyprobe plugins.

It is active wherever anyprobe is installed (``pytest11`` entry point) and
offers these fixtures:

- ``anyprobe_plugins``: override it in your ``conftest.py`` to name the plugins
  under test: entry-point names (loaded as an installed package's would be) or
  plugin modules. Default: none.
- ``anyprobe_manager``: a fresh :class:`~anyprobe.PluginManager` with
  anyprobe's own plugins and those of ``anyprobe_plugins``; no other installed
  plugin.
- ``anyprobe_run``: ``await anyprobe_run(targets, reporters=[...], options={...})``
  runs the targets through the real scheduler and result stream and returns a
  :class:`RunRecord`: the results a reporter received, in order, and the summary.
- ``anyprobe_check``: ``await anyprobe_check(url, options={...})``, one result.
- ``anyprobe_line_server``: starts a TCP server of text lines on loopback.
- ``anyprobe_http_server``: starts a small HTTP/1.1 server (or HTTPS) on loopback,
  anyprobe's own, the one ``anyprobe demo`` answers with.

The servers run on anyio in a thread of their own, so they serve async tests
on either backend and synchronous tests (a CLI in a subprocess) alike;
:func:`running` runs one outside the fixtures. For
testing a reporter without any probe, :func:`make_result` builds results and
:func:`feed_reporter` passes them to a reporter through the real result stream.

Async tests run on every backend the ``anyio_backend`` fixture names; pin
asyncio and trio in your ``conftest.py`` as the plugin author guide shows.
"""

from __future__ import annotations

import contextlib
import datetime
import inspect
import json
import os
import ssl
import subprocess
import sys
import threading
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import anyio
import anyio.abc
import anyio.from_thread
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream

from ._http_server import Request as RawRequest
from ._http_server import response_head, serve_http
from ._manager import PluginManager
from ._model import ErrorInfo, Result, RunSummary, Status, Target
from ._reporter import ReportContext, Reporter, ReporterOptions, ResultStream

if TYPE_CHECKING:
    from ._api import ReporterSpec

__all__ = [
    "BACKENDS",
    "CLOSE",
    "Collector",
    "HttpReply",
    "HttpRequest",
    "HttpServer",
    "LineServer",
    "RunRecord",
    "feed_reporter",
    "make_result",
    "run_checks",
    "run_cli",
    "running",
]

T = TypeVar("T")
_S = TypeVar("_S", bound="_TcpServer")

#: The backends every async test of a plugin should run on.
BACKENDS = ("asyncio", "trio")

#: Returned by a line handler: close the connection without a reply.
CLOSE: Literal["<close>"] = "<close>"

#: The longest line (bytes) a test server reads, and most lines per connection.
MAX_LINE = 65536
MAX_LINES_PER_CONNECTION = 10_000


# -- running checks and reporters ----------------------------------------------


class Collector(Reporter[ReporterOptions]):
    """A reporter that keeps what it receives: every result in order, then the summary."""

    name = "anyprobe-testing-collector"
    description = "Keeps results for a test."

    def __init__(self) -> None:
        super().__init__(ReporterOptions())
        self.results: list[Result] = []
        self.summary: RunSummary | None = None

    async def report(self, results: ResultStream, ctx: ReportContext) -> None:
        async for result in results:
            self.results.append(result)
        self.summary = ctx.summary


@dataclass(frozen=True)
class RunRecord:
    """What a run delivered: ``results`` as a reporter received them, and the summary.

    ``record["name"]`` is the result named ``name`` (by default a target's name
    is its URL); ``record.result`` is the only result of a one-target run.
    """

    results: list[Result]
    summary: RunSummary

    def __getitem__(self, name: str) -> Result:
        for result in self.results:
            if result.name == name:
                return result
        names = ", ".join(repr(r.name) for r in self.results)
        raise KeyError(f"no result named {name!r} (results: {names})")

    @property
    def result(self) -> Result:
        if len(self.results) != 1:
            raise AssertionError(f"expected exactly one result, got {len(self.results)}")
        return self.results[0]

    @property
    def statuses(self) -> dict[str, Status]:
        """Each result's status by name."""
        return {r.name: r.status for r in self.results}


def _raise_reporter_failures(summary: RunSummary) -> None:
    if summary.reporter_failures:
        raise AssertionError("; ".join(summary.reporter_failures))


async def run_checks(
    manager: PluginManager,
    targets: Iterable[str | Target],
    *,
    reporters: Iterable[ReporterSpec] = (),
    options: Mapping[str, Any] | None = None,
    labels: Mapping[str, str] | None = None,
    timeout: float = 5.0,  # noqa: ASYNC109 - each check's, as in anyprobe.check()
    retries: int = 0,
    concurrency: int | None = None,
    per_host: int | None = None,
    explain: bool = False,
    allow_reporter_failures: bool = False,
) -> RunRecord:
    """Run ``targets`` as ``anyprobe check`` would, with ``reporters`` fed too.

    ``reporters`` take the same forms as in :func:`anyprobe.check`: reporter
    instances, names (``"tap"``) or ``(name, options)`` pairs
    (``("tap", {"path": str(tmp_path / "out.tap")})``).
    Every target and option is validated first, as in a real run (a bad one
    raises :class:`~anyprobe.UsageError`). A reporter that fails makes this
    raise ``AssertionError`` unless ``allow_reporter_failures``; the record's
    ``summary.reporter_failures`` then says what happened.
    """
    from ._api import prepare, resolve_reporters
    from ._run import Run

    _, built = prepare(
        targets, manager=manager, options=options, labels=labels, timeout=timeout, retries=retries
    )
    collector = Collector()
    run = Run(
        built,
        manager,
        [*resolve_reporters(manager, reporters), ("_collector", collector)],
        concurrency=concurrency,
        per_host=per_host,
        explain=explain,
    )
    summary = await run.execute()
    if not allow_reporter_failures:
        _raise_reporter_failures(summary)
    return RunRecord(collector.results, summary)


def make_result(
    name: str = "check",
    status: Status | str = Status.OK,
    summary: str | None = None,
    *,
    target: str | None = None,
    probe: str = "test",
    duration: float = 0.01,
    attempts: int = 1,
    phases: Mapping[str, float] | None = None,
    metrics: Mapping[str, Any] | None = None,
    error: ErrorInfo | None = None,
    labels: Mapping[str, str] | None = None,
    started: datetime.datetime | None = None,
) -> Result:
    """A :class:`~anyprobe.Result` for feeding a reporter, with plausible defaults.

    >>> make_result("db", "critical", "connection refused").status
    <Status.CRITICAL: 'critical'>
    """
    status = Status(status)
    if error is None and status in (Status.CRITICAL, Status.UNKNOWN):
        error = ErrorInfo("CheckFailed", summary or status.value, None)
    return Result(
        name=name,
        target=target or name,
        probe=probe,
        status=status,
        summary=summary if summary is not None else status.value,
        started=started or datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC),
        duration=duration,
        attempts=attempts,
        phases=dict(phases or {}),
        metrics=dict(metrics or {}),
        error=error,
        labels=dict(labels or {}),
    )


async def feed_reporter(
    reporter: Reporter[Any],
    results: Iterable[Result],
    *,
    total: int | None = None,
    interrupted: str | None = None,
    explain: bool = False,
    verbosity: int = 0,
    allow_failure: bool = False,
) -> RunSummary:
    """Pass ``results`` to ``reporter`` through the real result stream; return the summary.

    The summary counts ``results``; ``total`` larger than their number and
    ``interrupted="SIGINT"`` describe a run stopped half-way. A reporter that
    raises makes this raise ``AssertionError`` (unless ``allow_failure``).
    """
    from ._fanout import Fanout

    items = list(results)
    total = len(items) if total is None else total
    ctx = ReportContext(total=total, explain=explain, verbosity=verbosity, color=False)
    fanout = Fanout([(reporter.name, reporter)], ctx)
    counts: dict[Status, int] = {}
    async with anyio.create_task_group() as tg:
        fanout.start(tg)
        for result in items:
            counts[result.status] = counts.get(result.status, 0) + 1
            await fanout.send(result)
        summary = RunSummary(
            total=total,
            counts=counts,
            not_finished=total - len(items),
            duration=sum(r.duration for r in items),
            interrupted=interrupted,
        )
        fanout.close(summary)
    summary = RunSummary(
        total=summary.total,
        counts=summary.counts,
        not_finished=summary.not_finished,
        duration=summary.duration,
        interrupted=summary.interrupted,
        reporter_failures=tuple(fanout.failures),
    )
    if not allow_failure:
        _raise_reporter_failures(summary)
    return summary


def run_cli(
    *args: str,
    input: str | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """Run the real ``anyprobe`` command (``python -m anyprobe ARGS``) in a subprocess.

    Installed plugins are discovered as a user's shell would find them;
    ``ANYPROBE_LOAD_PLUGINS`` from the test's environment is dropped unless
    ``env`` sets it.
    """
    full_env = {k: v for k, v in os.environ.items() if k != "ANYPROBE_LOAD_PLUGINS"}
    full_env.update(env or {})
    full_env.setdefault("COLUMNS", "200")
    return subprocess.run(
        [sys.executable, "-m", "anyprobe", *args],
        input=input,
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        check=False,
    )


# -- loopback servers ------------------------------------------------------------


class _Portal:
    """An anyio event loop in a thread of its own, where test servers run."""

    def __init__(self, backend: str) -> None:
        self._stack = contextlib.ExitStack()
        self._portal = self._stack.enter_context(anyio.from_thread.start_blocking_portal(backend))

    def call_from_any_thread(self, func: Callable[[anyio.from_thread.BlockingPortal], T]) -> T:
        """``func(portal)``, from a helper thread: a portal refuses calls made from
        inside a running event loop (the factories are called from async tests)."""
        outcome: list[Any] = []

        def target() -> None:
            try:
                outcome.append((True, func(self._portal)))
            except BaseException as exc:
                outcome.append((False, exc))

        thread = threading.Thread(target=target, name="anyprobe-testing-start")
        thread.start()
        thread.join()
        ok, value = outcome[0]
        if not ok:
            raise value
        return value  # type: ignore[no-any-return]

    def call_soon_at_close(self, callback: Callable[[], Any]) -> None:
        self._stack.callback(callback)

    def close(self) -> None:
        self._stack.close()


#: Seconds :meth:`_TcpServer.idle` waits for connections to end.
IDLE_TIMEOUT = 5.0


class _TcpServer:
    """A loopback listener serving ``_handle`` from a portal until the test ends."""

    host = "127.0.0.1"

    def __init__(self) -> None:
        self.port = 0
        self.connections = 0
        #: Connections that have ended (the client hung up or the server closed).
        self.closed = 0
        self.errors: list[BaseException] = []
        self._future: Any = None

    def _start(self, portal: _Portal) -> None:
        self._future, self.port = portal.call_from_any_thread(lambda p: p.start_task(self._serve))
        portal.call_soon_at_close(self._stop)

    async def _serve(self, *, task_status: anyio.abc.TaskStatus[int]) -> None:
        listener = await anyio.create_tcp_listener(local_host=self.host, local_port=0)
        async with listener:
            task_status.started(int(listener.extra(anyio.abc.SocketAttribute.local_port)))
            await listener.serve(self._connection)

    async def _connection(self, stream: anyio.abc.SocketStream) -> None:
        self.connections += 1
        try:
            async with stream:
                # A client that hangs up or sends garbage ends its own connection,
                # nothing else (a handler's own errors are kept by _call).
                with contextlib.suppress(Exception):
                    await self._handle(stream, BufferedByteReceiveStream(stream))
        finally:
            self.closed += 1

    async def idle(self) -> None:
        """Wait, in the test's own event loop, until every connection the server
        accepted has ended: a check returns as soon as it has its verdict, and
        the server may still be reading what the client sent last (``QUIT``).
        Fails after :data:`IDLE_TIMEOUT` seconds."""
        with anyio.fail_after(IDLE_TIMEOUT):
            # The server runs in another thread's event loop: an Event of the
            # test's loop cannot be set from there, so poll.
            while self.closed < self.connections:  # noqa: ASYNC110
                await anyio.sleep(0.005)

    async def _handle(
        self, stream: anyio.abc.SocketStream, reader: BufferedByteReceiveStream
    ) -> None:
        raise NotImplementedError

    async def _call(self, handler: Callable[..., Any], *args: Any) -> Any:
        """Call a test's handler; what it raises is kept and fails the test at teardown."""
        try:
            value = handler(*args)
            if inspect.isawaitable(value):
                value = await value
            return value
        except anyio.get_cancelled_exc_class():
            raise
        except Exception as exc:
            self.errors.append(exc)
            raise _HandlerFailed from exc

    def _stop(self) -> None:
        if self._future is not None:
            self._future.cancel()


class _HandlerFailed(OSError):
    """Ends a connection whose handler raised (the error is kept on the server)."""


LineReply = str | Sequence[str] | None
LineHandler = Callable[[str], LineReply | Awaitable[LineReply]]


class LineServer(_TcpServer):
    """A TCP server of text lines on 127.0.0.1, started by ``anyprobe_line_server``.

    On each connection it sends ``greeting`` (if any), then reads lines (``\\n``
    or ``\\r\\n``) and answers each with what ``replies`` gives for it: a
    string, several strings, ``None`` (no reply: the client waits), or
    :data:`CLOSE` (hang up; also after some lines: ``["STAT a 1", CLOSE]``).
    ``replies`` is a mapping from line to reply (a line missing from it gets
    no reply) or a function, possibly async, of the line.
    Each reply line is sent with ``newline`` appended. ``received`` lists every
    line read, from every connection.
    """

    def __init__(
        self,
        replies: Mapping[str, LineReply] | LineHandler | None = None,
        *,
        greeting: str | None = None,
        newline: str = "\r\n",
        encoding: str = "utf-8",
    ) -> None:
        super().__init__()
        self.replies = replies
        self.greeting = greeting
        self.newline = newline
        self.encoding = encoding
        self.received: list[str] = []

    def url(self, scheme: str, path: str = "") -> str:
        """``scheme://127.0.0.1:PORT`` followed by ``path``."""
        return f"{scheme}://{self.host}:{self.port}{path}"

    async def _reply_for(self, line: str) -> LineReply:
        replies = self.replies
        if replies is None:
            return None
        if isinstance(replies, Mapping):
            return replies.get(line)
        reply: LineReply = await self._call(replies, line)
        return reply

    async def _send(self, stream: anyio.abc.SocketStream, text: str) -> None:
        await stream.send((text + self.newline).encode(self.encoding))

    async def _handle(
        self, stream: anyio.abc.SocketStream, reader: BufferedByteReceiveStream
    ) -> None:
        if self.greeting is not None:
            await self._send(stream, self.greeting)
        for _ in range(MAX_LINES_PER_CONNECTION):
            raw = await reader.receive_until(b"\n", MAX_LINE)
            line = raw.rstrip(b"\r").decode(self.encoding, "replace")
            self.received.append(line)
            reply = await self._reply_for(line)
            if reply is None:
                continue
            for text in [reply] if isinstance(reply, str) else reply:
                if text == CLOSE:
                    return
                await self._send(stream, text)


@dataclass(frozen=True)
class HttpRequest:
    """One request the test HTTP server received.

    ``headers`` has lower-case names; ``raw_headers`` keeps every header line,
    in order, with its name as the client sent it.
    """

    method: str
    path: str
    query: str
    headers: Mapping[str, str]
    body: bytes
    raw_headers: tuple[tuple[str, str], ...] = ()

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    @property
    def target(self) -> str:
        """The path with its query, as in the request line."""
        return f"{self.path}?{self.query}" if self.query else self.path

    def json(self) -> Any:
        """The body, parsed as JSON."""
        return json.loads(self.body)


@dataclass(frozen=True)
class HttpReply:
    """What the test HTTP server answers; ``body`` text is sent as UTF-8.

    ``content_type=None`` sends no Content-Type header.
    """

    status: int = 200
    body: str | bytes = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    content_type: str | None = "text/plain; charset=utf-8"


HttpRoute = HttpReply | Callable[[HttpRequest], HttpReply | Awaitable[HttpReply]]

#: Seconds :meth:`HttpServer.wait_sent` waits by default.
SENT_TIMEOUT = 10.0


class HttpServer(_TcpServer):
    """A small HTTP/1.1 server on loopback, started by ``anyprobe_http_server``.

    ``routes`` maps a path (without the query) to an :class:`HttpReply` or to
    a function, possibly async, of the :class:`HttpRequest`; other paths get
    ``default`` (in the same forms), or 404 without it. One request per
    connection (``Connection: close``). ``requests`` lists every request
    received, ``sent`` every request whose whole reply has been written (see
    :meth:`wait_sent`). ``host`` is the loopback address it listens on
    (``"127.0.0.2"``, ``"::1"``); with ``ssl_context`` it speaks HTTPS.
    It is anyprobe's own HTTP/1.1 server, the one ``anyprobe demo`` answers with.
    """

    def __init__(
        self,
        routes: Mapping[str, HttpRoute] | None = None,
        *,
        default: HttpRoute | None = None,
        host: str = "127.0.0.1",
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__()
        self.routes = dict(routes or {})
        self.default = default
        self.host = host
        self.ssl_context = ssl_context
        self.requests: list[HttpRequest] = []
        self.sent: list[HttpRequest] = []
        self._sent_changed = threading.Condition()

    def url(self, path: str = "/") -> str:
        """``http://127.0.0.1:PORT`` (``https``, ``[::1]`` as fits) followed by ``path``."""
        scheme = "https" if self.ssl_context is not None else "http"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}{path}"

    def wait_sent(self, path: str, timeout: float = SENT_TIMEOUT) -> bool:
        """Block until a whole reply to a request for ``path`` has been written
        (at once if one was already); False after ``timeout`` seconds.

        It blocks its thread: from an async test, call it through
        ``anyio.to_thread.run_sync``.
        """
        with self._sent_changed:
            return self._sent_changed.wait_for(
                lambda: any(r.path == path for r in self.sent), timeout
            )

    async def _serve(self, *, task_status: anyio.abc.TaskStatus[int]) -> None:
        async with serve_http(
            self._answer, ssl_context=self.ssl_context, host=self.host, on_connection=self._count
        ) as port:
            task_status.started(port)
            await anyio.sleep_forever()

    def _count(self, opened: bool) -> None:
        if opened:
            self.connections += 1
        else:
            self.closed += 1

    async def _answer(self, raw: RawRequest, stream: anyio.abc.ByteStream) -> None:
        request = HttpRequest(
            raw.method, raw.path, raw.query, raw.headers, raw.body, raw.raw_headers
        )
        self.requests.append(request)
        route = self.routes.get(request.path, self.default)
        if route is None:
            reply = HttpReply(404, "not found")
        elif isinstance(route, HttpReply):
            reply = route
        else:
            reply = await self._call(route, request)
        try:
            head, payload = _encode_reply(reply)
        except Exception as exc:  # not an HttpReply, a header that is not latin-1...
            self.errors.append(exc)
            raise _HandlerFailed from exc
        await stream.send(head + (b"" if request.method == "HEAD" else payload))
        with self._sent_changed:
            self.sent.append(request)
            self._sent_changed.notify_all()


def _encode_reply(reply: HttpReply) -> tuple[bytes, bytes]:
    """The head and the body of ``reply``."""
    payload = reply.body.encode() if isinstance(reply.body, str) else bytes(reply.body)
    fields = {} if reply.content_type is None else {"Content-Type": reply.content_type}
    fields.update(reply.headers)
    fields["Content-Length"] = str(len(payload))
    return response_head(reply.status, fields.items(), len(payload)), payload


@contextlib.contextmanager
def running(server: _S, *, backend: str = "asyncio") -> Iterator[_S]:
    """Run a :class:`LineServer` or :class:`HttpServer` until the block ends,
    outside the fixtures (in a thread with an event loop of its own).

    ``with running(HttpServer(host="127.0.0.2")) as other: ...``; an exception a
    handler raised fails the block with ``AssertionError``.
    """
    portal = _Portal(backend)
    try:
        server._start(portal)
        yield server
    finally:
        portal.close()
    if server.errors:
        first = server.errors[0]
        raise AssertionError(f"a test server's handler raised {type(first).__name__}: {first}")


# -- fixtures --------------------------------------------------------------------


@pytest.fixture
def anyprobe_plugins() -> Sequence[object]:
    """The plugins under test; override it in your conftest.py.

    Entry-point names (``"memcached"``) are loaded from the installed
    packages, which proves the package declares them; modules (or any object
    with hook implementations) are registered directly.
    """
    return ()


@pytest.fixture
def anyprobe_manager(anyprobe_plugins: Sequence[object]) -> PluginManager:
    """A plugin manager of its own for each test: anyprobe's plugins and yours.

    Fails the test if one of your plugins is missing or broken (its hook
    raised, a scheme is taken), with the reason.
    """
    manager = PluginManager()
    names = [p for p in anyprobe_plugins if isinstance(p, str)]
    manager.load_entrypoints(autoload=bool(names), only=names)
    for plugin in anyprobe_plugins:
        if not isinstance(plugin, str):
            manager.register(plugin)
    loaded = {info.name for info in manager.plugins}
    missing = [name for name in names if name not in loaded]
    if missing:
        pytest.fail(
            f"no entry point named {', '.join(missing)} in the group 'anyprobe': "
            "is your package installed (pip install -e .) and its "
            "[project.entry-points.anyprobe] table right?"
        )
    for info in manager.broken:
        pytest.fail(f"plugin {info.name} is broken: {info.error}")
    return manager


@pytest.fixture
def anyprobe_run(anyprobe_manager: PluginManager) -> Callable[..., Awaitable[RunRecord]]:
    """``await anyprobe_run(targets, **kwargs)``: :func:`run_checks` with this test's manager."""

    async def run(targets: Iterable[str | Target], **kwargs: Any) -> RunRecord:
        return await run_checks(anyprobe_manager, targets, **kwargs)

    return run


@pytest.fixture
def anyprobe_check(anyprobe_manager: PluginManager) -> Callable[..., Awaitable[Result]]:
    """``await anyprobe_check(url, options={...}, timeout=...)``: the one result."""

    async def check(target: str | Target, **kwargs: Any) -> Result:
        record = await run_checks(anyprobe_manager, [target], **kwargs)
        return record.result

    return check


def _portal_backend(request: pytest.FixtureRequest) -> str:
    if "anyio_backend" in request.fixturenames:
        backend = request.getfixturevalue("anyio_backend")
        return str(backend if isinstance(backend, str) else backend[0])
    return "asyncio"


@pytest.fixture
def _anyprobe_portal(request: pytest.FixtureRequest) -> Iterator[_Portal]:
    portal = _Portal(_portal_backend(request))
    try:
        yield portal
    finally:
        portal.close()


def _fail_on_handler_errors(servers: list[_TcpServer]) -> None:
    errors = [exc for server in servers for exc in server.errors]
    if errors:
        first = errors[0]
        pytest.fail(
            f"a test server's handler raised {type(first).__name__}: {first}"
            + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else "")
        )


@pytest.fixture
def anyprobe_line_server(_anyprobe_portal: _Portal) -> Iterator[Callable[..., LineServer]]:
    """Start :class:`LineServer`\\ s: ``server = anyprobe_line_server({"PING": "PONG"})``.

    Takes the arguments of :class:`LineServer`; each call starts one more
    server, and every one stops when the test ends.
    """
    servers: list[_TcpServer] = []

    def start(
        replies: Mapping[str, LineReply] | LineHandler | None = None, **kwargs: Any
    ) -> LineServer:
        server = LineServer(replies, **kwargs)
        server._start(_anyprobe_portal)
        servers.append(server)
        return server

    yield start
    _fail_on_handler_errors(servers)


@pytest.fixture
def anyprobe_http_server(_anyprobe_portal: _Portal) -> Iterator[Callable[..., HttpServer]]:
    """Start :class:`HttpServer`\\ s: ``anyprobe_http_server({"/up": HttpReply(200, "UP")})``.

    Takes the arguments of :class:`HttpServer`; each call starts one more
    server, and every one stops when the test ends.
    """
    servers: list[_TcpServer] = []

    def start(routes: Mapping[str, HttpRoute] | None = None, **kwargs: Any) -> HttpServer:
        server = HttpServer(routes, **kwargs)
        server._start(_anyprobe_portal)
        servers.append(server)
        return server

    yield start
    _fail_on_handler_errors(servers)
