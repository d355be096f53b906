"""What a probe is, and what core offers it while it checks a target.

A probe is a class with a ``name``, the URL ``schemes`` it handles, an
``Options`` model (pydantic, a subclass of :class:`ProbeOptions`) and one async
method, ``check(target, options, ctx)``, that returns an :class:`Outcome`::

    class EchoProbe(anyprobe.Probe[EchoOptions]):
        name = "echo"
        schemes = ("echo",)
        Options = EchoOptions

        async def check(self, target, options, ctx):
            with ctx.phase("connect"):
                stream = await anyio.connect_tcp(target.host, target.port)
            ...
            return anyprobe.Outcome.ok("echoed 5 bytes")

Core times the attempt, enforces the timeout, applies ``warning_after`` /
``critical_after``, retries, and turns an exception into an ``unknown`` result.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from types import ModuleType
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar
from urllib.parse import SplitResult

from ._errors import TargetError, UsageError
from ._model import Outcome, Target, TraceEvent
from ._option_defaults import lazy_model
from .masking import Masker

if TYPE_CHECKING:
    import socket
    from contextlib import AbstractAsyncContextManager

    from ._connection import Connection
    from ._options import ProbeOptions
    from .net import IpFamily
    from .tls import TlsOptions

T = TypeVar("T")


OptionsT = TypeVar("OptionsT", bound="ProbeOptions")


def check_regex(
    pattern: str | None, *, binary: bool = False, multiline: bool = False
) -> str | None:
    """For an options model's ``field_validator``: ``pattern`` if RE2 compiles it.

    User patterns run on RE2, a linear-time engine (see
    :func:`~anyprobe.compile_pattern`, which takes the same ``binary`` and
    ``multiline`` arguments). What RE2 refuses (a syntax error, a
    backreference, lookaround, too large a program) becomes a ValueError that
    says why, which options validation turns into one clear line naming the
    check and the field::

        @field_validator("expect_output")
        @classmethod
        def _valid_regex(cls, value: str | None) -> str | None:
            return anyprobe.check_regex(value)
    """
    if pattern is not None:
        from ._patterns import compile_pattern

        compile_pattern(pattern, binary=binary, multiline=multiline)
    return pattern


def check_url_shape(
    url: SplitResult,
    text: str,
    *,
    path: bool = False,
    query: bool = False,
    fragment: bool = False,
    user: bool = True,
    password: bool = False,
) -> None:
    """For :meth:`Probe.validate_url`: raise :class:`~anyprobe.TargetError`
    when ``url`` has a part this probe does not take.

    By default a path (other than ``/``), a query, a fragment and a password
    are refused, each with one line naming the target and the part; a user
    name is allowed (``user=False`` refuses it). A password belongs in an
    option (:class:`~anyprobe.SecretEnv`), not in a URL that shows up in
    shell history and process lists::

        def validate_url(self, url, text):
            anyprobe.check_url_shape(url, text)       # redis://HOST[:PORT] only
            return super().validate_url(url, text)    # host, port or default port
    """
    scheme = url.scheme
    if not path and url.path not in ("", "/"):
        raise TargetError(f"{text}: a path ({url.path}) is not taken by {scheme}:// URLs")
    if not query and url.query:
        raise TargetError(f"{text}: a query (?{url.query}) is not taken by {scheme}:// URLs")
    if not fragment and url.fragment:
        raise TargetError(f"{text}: a fragment (#{url.fragment}) is not taken by {scheme}:// URLs")
    if not password and url.password is not None:
        raise TargetError(
            f"{text}: a password in a {scheme}:// URL is not taken (set it in an option "
            "that names an environment variable)"
        )
    if not user and url.username:
        raise TargetError(f"{text}: a user name is not taken by {scheme}:// URLs")


class MissingDependency(UsageError):
    """A package that some checks of a run need is not installed.

    Raised before the run, by :func:`require` in a probe's
    :meth:`Probe.load_dependencies`; the message says what to install.
    """


def require(module: str, *, needed_for: str, install: str) -> ModuleType:
    """Import ``module``, or raise :class:`MissingDependency` saying what to install.

    For :meth:`Probe.load_dependencies`::

        anyprobe.require("h2", needed_for="http2 = true", install="anyprobe[http2]")

    fails, when h2 is missing, with ``http2 = true needs h2 (No module named
    'h2'): pip install 'anyprobe[http2]'``.
    """
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependency(
            f"{needed_for} needs {module} ({exc}): pip install '{install}'"
        ) from None


def import_dependencies(targets: Sequence[Target], probes: Mapping[str, Probe[Any]]) -> None:
    """Call each probe's :meth:`Probe.load_dependencies` once, with every target
    it will check, here and now; raise :class:`MissingDependency` when one is
    missing. For code outside an event loop; inside one, await
    :func:`load_dependencies`."""
    targets_by_probe: dict[str, list[Target]] = {}
    for target in targets:
        probe = probes[target.probe]
        if type(probe).load_dependencies is not Probe.load_dependencies:
            targets_by_probe.setdefault(target.probe, []).append(target)
    for name, checked in targets_by_probe.items():
        try:
            probes[name].load_dependencies(checked)
        except MissingDependency:
            raise
        except ImportError as exc:
            raise MissingDependency(f"probe {name} cannot import what it needs: {exc}") from None


async def load_dependencies(targets: Sequence[Target], probes: Mapping[str, Probe[Any]]) -> None:
    """:func:`import_dependencies` in a worker thread. Run once before the
    first check, so that no check's clock runs while a module is imported on
    the event loop."""
    from ._patterns import OFF_LOOP_BYTES, off_loop

    if any(
        type(probes[target.probe]).load_dependencies is not Probe.load_dependencies
        for target in targets
    ):
        # off_loop's thread ends with the call (anyio's would idle on, and on
        # asyncio keep the process alive if an import hung).
        await off_loop(import_dependencies, targets, probes, work=OFF_LOOP_BYTES + 1)


@functools.cache
def _connection() -> ModuleType:
    """``anyprobe._connection``, imported when a check first needs it (it
    imports ssl and anyio, which ``anyprobe --help`` does without) and kept:
    an import statement run on every check costs more than resolving an IP
    address does."""
    from . import _connection

    return _connection


class CheckContext:
    """What core gives a probe for one attempt of one check.

    - ``timeout`` and ``deadline`` (on ``anyio.current_time()``'s clock): the
      attempt is cancelled at the deadline; use :meth:`remaining` for a
      library's own timeout argument.
    - ``phase(name)``: time a phase; a failure or timeout inside it is reported
      as happening in that phase.
    - ``trace(message)``: a line of the ``--explain`` trace (cheap when off).
    - ``shared(key, factory)``: an object built once per run and shared by
      every check (an SSL context, a resolver).
    - ``metrics``: a dict a probe may fill as it goes; it is merged into the
      outcome's metrics even when the check fails half-way.
    - ``run_sync(func, *args)``: run a blocking call in a thread that the
      deadline abandons, so the verdict comes at the deadline.
    """

    __slots__ = (
        "_resources",
        "_started",
        "attempt",
        "current_phase",
        "deadline",
        "explain",
        "masker",
        "metrics",
        "phases",
        "pinned",
        "timeout",
        "trace_events",
    )

    def __init__(
        self,
        *,
        timeout: float,
        deadline: float,
        attempt: int = 1,
        explain: bool = False,
        resources: dict[Any, Any] | None = None,
        masker: Masker | None = None,
    ) -> None:
        self.timeout = timeout
        self.deadline = deadline
        self.attempt = attempt
        self.explain = explain
        self.phases: dict[str, float] = {}
        self.metrics: dict[str, Any] = {}
        self.current_phase: str | None = None
        self.trace_events: list[TraceEvent] = []
        #: ``(host, address)`` while core checks one address of ``host``
        #: (``addresses = "all"`` or ``"any"``): see :meth:`pinned_address`.
        self.pinned: tuple[str, str] | None = None
        self._resources = resources if resources is not None else {}
        self._started = time.perf_counter()
        #: The secrets of this check (its options' secret fields, and what
        #: :meth:`hide` adds): masked in the trace as it is written, and in
        #: the outcome, metrics and error by core once the check returns.
        self.masker = masker if masker is not None else Masker()

    def hide(self, secret: str | bytes) -> None:
        """Mask ``secret`` (text, or bytes the check sends) in everything this
        check shows from now on: trace, summary, metrics, error. Secret option
        fields (:class:`~anyprobe.SecretEnv`, ``SecretStr``) are hidden already."""
        if isinstance(secret, str):
            self.masker.add(secret)
        else:
            self.masker.add_bytes(secret)

    def remaining(self) -> float:
        """Seconds left before this attempt is cancelled (never negative)."""
        import anyio

        return max(0.0, self.deadline - anyio.current_time())

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Time the enclosed block as phase ``name`` (added up if entered twice)."""
        outer = self.current_phase
        self.current_phase = name
        start = time.perf_counter()
        try:
            yield
        finally:
            self.phases[name] = self.phases.get(name, 0.0) + time.perf_counter() - start
        # Only a phase that ended normally hands back to the outer one, so that
        # an exception keeps pointing at the phase it happened in.
        self.current_phase = outer

    def connect(
        self,
        host: str,
        port: int,
        *,
        ip_family: IpFamily = "any",
        tls: TlsOptions | None = None,
        server_name: str | None = None,
        alpn: Sequence[str] = (),
    ) -> AbstractAsyncContextManager[Connection]:
        """Open a TCP connection (TLS with ``tls``) for the check; use it as
        ``async with ctx.connect(target.host, target.port) as conn:``.

        Resolves ``host`` (phase ``resolve``, ``ip_family`` honoured), connects
        to the first address that accepts (phase ``connect``), and with
        ``tls`` does the handshake (phase ``tls``), verified as the
        :class:`~anyprobe.tls.TlsOptions` say, with SNI ``server_name`` (default:
        ``tls.server_name``, else ``host``) and ``alpn``; ``conn.tls`` is then
        the certificate and protocol it showed. Every name and address passes
        the address policy in force (``anyprobe serve``'s ``allow_targets``).
        A failure raises :class:`~anyprobe.CheckFailed` with the standard
        summary (``connection refused``, ``cannot resolve ...``, ``certificate
        has expired ...``), its ``error.phase`` the phase it happened in. The
        connection is closed when the block ends. See
        :class:`~anyprobe.Connection` for reading and writing.
        """
        opened: AbstractAsyncContextManager[Connection] = _connection().open_connection(
            self, host, port, ip_family=ip_family, tls=tls, server_name=server_name, alpn=alpn
        )
        return opened

    def connect_socket(
        self, host: str, port: int, *, ip_family: IpFamily = "any"
    ) -> AbstractAsyncContextManager[socket.socket]:
        """A connected TCP socket for a library that wants its own socket
        (asyncssh, a C client); use it as ``async with ctx.connect_socket(host,
        port) as sock:``.

        Resolves and connects as :meth:`connect` does (phases ``resolve`` and
        ``connect``, ``ip_family``, every address tried in order, the address
        policy, the trace, the standard summaries), and yields the socket
        before any stream wraps it: non-blocking, nothing read from it yet,
        ``sock.getpeername()[0]`` the address connected to. The socket is
        closed when the block ends: hand the library ``sock.dup()`` (it closes
        its copy; the connection ends once both are closed), or take the file
        descriptor with ``sock.detach()`` (closing it is then yours). A
        library on another event loop (:mod:`anyprobe.bridge`) must be the
        only one to wait on its copy.
        """
        opened: AbstractAsyncContextManager[socket.socket] = _connection().open_socket(
            self, host, port, ip_family=ip_family
        )
        return opened

    async def resolve(self, host: str, port: int, ip_family: IpFamily = "any") -> list[str]:
        """The addresses of ``host`` (:func:`anyprobe.net.resolve`), timed as
        phase ``resolve`` and traced: for a probe whose library connects by
        itself (only the pinned address, see :meth:`pinned_address`, when
        core checks each address of the target's host). Pass the library an
        address from the list, not ``host``, so that what was checked against
        the address policy is what is connected to."""
        addresses: list[str] = await _connection().resolve_in_phase(self, host, port, ip_family)
        return addresses

    def pinned_address(self, host: str) -> str | None:
        """The one address this check connects to for ``host``, or None.

        With ``addresses = "all"`` or ``"any"`` (:class:`~anyprobe.AddressOptions`)
        core runs the check once per address of the target's host, each run
        pinned to one address: :meth:`resolve`, :meth:`connect` and
        :meth:`connect_socket` then give that address for the target's host
        without asking the resolver again. A probe that keeps connections
        across checks (a pool) puts this in the pool's key, so that a check
        pinned to one address never takes a connection to another."""
        pinned = self.pinned
        if pinned is not None and host.lower() == pinned[0]:
            return pinned[1]
        return None

    def record_phase(self, name: str, seconds: float) -> None:
        """Record a phase measured elsewhere (a library's own timing events)."""
        self.phases[name] = self.phases.get(name, 0.0) + seconds

    def trace(self, message: str) -> None:
        """Add ``message`` to the ``--explain`` trace; nothing happens when it is off."""
        if self.explain:
            if self.masker:
                message = self.masker.text(message)
            self.trace_events.append(TraceEvent(time.perf_counter() - self._started, message))

    async def run_sync(self, func: Callable[..., T], *args: Any) -> T:
        """``func(*args)`` in a thread of its own; the deadline abandons it.

        Use it for a blocking library call inside ``check``. When the attempt
        is cancelled (its deadline, Ctrl-C), the check stops waiting at once
        and the call finishes in the background; its result is dropped. The
        thread is a daemon, so an abandoned call does not keep the process
        alive either. (``anyio.to_thread.run_sync`` without
        ``abandon_on_cancel=True`` would hold the check, and the run, until
        the call returns.)::

            answer = await ctx.run_sync(blocking_client.query, name)
        """
        import contextlib
        import threading

        import anyio.from_thread
        import anyio.lowlevel

        token = anyio.lowlevel.current_token()
        done = anyio.Event()
        outcome: list[tuple[bool, Any]] = []

        def work() -> None:
            try:
                outcome.append((True, func(*args)))
            except BaseException as exc:  # handed to the check, raised there
                outcome.append((False, exc))
            # When the run has ended meanwhile, nobody waits for the answer.
            with contextlib.suppress(Exception):
                anyio.from_thread.run_sync(done.set, token=token)

        threading.Thread(target=work, name="anyprobe-run-sync", daemon=True).start()
        await done.wait()
        returned, value = outcome[0]
        if not returned:
            raise value
        return value  # type: ignore[no-any-return]

    def shared(self, key: Any, factory: Callable[[], T]) -> T:
        """The run-wide object stored under ``key``, built by ``factory`` the first time."""
        try:
            return self._resources[key]  # type: ignore[no-any-return]
        except KeyError:
            value = self._resources[key] = factory()
            return value


class Probe(Generic[OptionsT]):
    """Base class of probes. Subclasses set ``name``, ``schemes``, ``Options``.

    ``default_ports`` maps a scheme to the port used when the URL has none; a
    scheme missing from it requires a port in the URL. Override
    :meth:`validate_url` for other rules; it runs before any check starts.
    """

    name: ClassVar[str]
    schemes: ClassVar[tuple[str, ...]]
    Options: ClassVar[type[ProbeOptions]] = lazy_model("anyprobe._options:ProbeOptions")  # type: ignore[assignment]
    #: Optional: the options of a target that sets none, as plain values (every
    #: field of ``Options`` with its default). Given, core checks such a target
    #: without validating its options, so a run that sets none need not import
    #: pydantic (see :class:`~anyprobe.lazy_model`). Must equal the model's defaults.
    option_defaults: ClassVar[Mapping[str, Any] | None] = None
    default_ports: ClassVar[Mapping[str, int]] = {}
    description: ClassVar[str] = ""

    def validate_url(self, url: SplitResult, text: str) -> tuple[str, int | None]:
        """Check ``url`` and return the ``(host, port)`` the check will use.

        ``url`` is the target split by :func:`urllib.parse.urlsplit`;
        ``text`` is the URL as it may be shown (a password masked): start
        every error with it (core adds it when an error does not). Called for every target before
        any check starts; raise :class:`~anyprobe.TargetError` (or
        ``ValueError``) for a URL this probe cannot check: core makes it one
        line naming the target (exit status 3). ``port`` may be None for a
        probe that needs none (a file probe). The returned host is
        lower-cased and becomes ``target.host``; the port ``target.port``.

        This default wants a host, and a port or a ``default_ports`` entry for
        the scheme; it allows anything else in the URL. An override adds its
        own rules and usually ends with ``return super().validate_url(url,
        text)``; :func:`~anyprobe.check_url_shape` refuses a path, a query or
        a password in one call.
        """
        host = url.hostname or ""
        if not host:
            raise TargetError(f"{text}: no host in the URL")
        return host, port_or_default(self, url.scheme, url.port, text)

    def load_dependencies(self, targets: Sequence[Target]) -> None:
        """Import every module :meth:`check` needs to check ``targets``.

        Core calls it once per probe used in a run, before the first check
        starts, in a worker thread, with every target the probe will check
        (their ``options`` and URL may decide what is needed: HTTP/2, TLS).
        An import inside ``check`` would run on the event loop, inside the
        first check's timeout, while every other check waits; here it costs no
        check anything. Import with :func:`~anyprobe.require`,
        which turns a missing optional package into one line saying what to
        install (the run then does not start)::

            def load_dependencies(self, targets):
                anyprobe.require("redis", needed_for="redis:// checks",
                                 install="anyprobe-redis")

        The default imports nothing. It must not do I/O or start anything:
        only imports.
        """

    async def check(self, target: Target, options: OptionsT, ctx: CheckContext) -> Outcome:
        """Check ``target`` once and return the outcome. See the module docstring."""
        raise NotImplementedError


def port_or_default(probe: Probe[Any], scheme: str, port: int | None, text: str) -> int:
    """The port :meth:`Probe.validate_url` gives for a URL with ``scheme`` and
    ``port`` (None when it names none): TargetError for port 0, and for no
    port where the probe has no default for the scheme. (Shared with target
    validation, which reads the port of a plain URL without ``urlsplit``.)"""
    if port == 0:
        raise TargetError(f"{text}: port 0 cannot be checked")
    if port is None:
        port = probe.default_ports.get(scheme)
        if port is None:
            raise TargetError(f"{text}: no port in the URL ({scheme}://HOST:PORT)")
    return port
