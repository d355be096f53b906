"""Notifiers: reporters that send messages (a chat, an incident tool, a webhook).

A notifier is a reporter whose author writes only how a batch of changes
becomes a message (and, optionally, how a message is sent); the base does the
rest, as the built-in ``webhook`` reporter uses it::

    class ChatNotifier(anyprobe.Notifier[anyprobe.NotifierOptions]):
        name = "chat"
        Options = anyprobe.NotifierOptions

        def format(self, changes):
            return {"text": "\\n".join(f"{c.result.name}: {c.result.status.value}"
                                       for c in changes)}

What the base does:

- **which results**: by default only changes, a result whose status differs
  from the check's previous one (its last result in this run; ``ok`` when it
  has none); with ``state_file`` the last status *notified* is kept between
  runs, so a cron job notifies only what changed since the last run;
- **batching**: changes arriving within ``window`` seconds of the first one go
  in one message; the rest of a window is not waited for when the run ends
  (or when ``anyprobe serve`` reloads its config, which ends the stream);
- **never slowing the checks**: changes wait in a bounded queue
  (``queue_size``) that a separate task empties; when it is full they are
  dropped, counted and reported once;
- **retries**: a message that got no answer, a 5xx, 408, 425 or 429 is sent
  again ``retries`` times after ``backoff`` seconds, doubled each time, or
  after what ``Retry-After`` asks, at most :data:`MAX_BACKOFF`; after
  :data:`DOWN_AFTER` messages in a row failed the destination counts as down
  and is left alone for :data:`DOWN_PAUSE` seconds;
- **failure**: anything not delivered makes the reporter fail when the run
  ends, with one line; the checks and the other reporters never wait for it;
- **secrets**: the URL, its query, password and path (when it is long enough
  to be a key, :data:`MIN_KEY_PATH`), credential headers and every value
  added to ``Notifier.masker`` are masked in every message, log line (httpx's
  own included) and error (one rule: :class:`anyprobe.masking.Masker`);
  errors show the URL as scheme, host and port only.
"""

from __future__ import annotations

import contextvars
import email.utils
import json
import logging
import math
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar
from urllib.parse import urlsplit

import anyio
from pydantic import Field, field_validator, model_validator

from ._errors import AnyprobeError
from ._model import Result, Status
from ._reporter import OutputFile, ReportContext, Reporter, ReporterOptions, ResultStream
from .masking import Masker, redact_url

if TYPE_CHECKING:
    import httpx

log = logging.getLogger("anyprobe.notify")

#: Messages failing in a row after which the destination counts as down.
DOWN_AFTER = 3
#: Seconds a destination that is down is left alone before one more try.
DOWN_PAUSE = 60.0
#: Longest wait between two attempts of one message, in seconds (``Retry-After`` included).
MAX_BACKOFF = 30.0
#: Status codes worth another attempt besides 5xx; any other 4xx is final.
RETRY_STATUSES = frozenset({408, 425, 429})
#: Most changes in one message; a larger burst is sent in several.
MAX_CHANGES = 100
#: A URL path this long or longer is taken for a key and masked wherever it shows.
MIN_KEY_PATH = 8

#: The masker of the notifier sending right now, for httpx's own log records.
_SENDING: contextvars.ContextVar[Masker | None] = contextvars.ContextVar(
    "anyprobe_notifier_masker", default=None
)


class _MaskHttpxRecords(logging.Filter):
    """httpx logs each request's whole URL (``HTTP Request: POST https://...``):
    while a notifier sends, its secrets are masked in those records. Outside a
    notifier's send the filter changes nothing."""

    def filter(self, record: logging.LogRecord) -> bool:
        masker = _SENDING.get()
        if masker is not None:
            record.msg = masker.text(record.getMessage())
            record.args = None
        return True


def _mask_httpx_logs() -> None:
    logger = logging.getLogger("httpx")
    if not any(isinstance(f, _MaskHttpxRecords) for f in logger.filters):
        logger.addFilter(_MaskHttpxRecords())


class NotifierError(AnyprobeError):
    """A notifier could not deliver its messages, or is set up wrong."""


class NotifierOptions(ReporterOptions):
    """Options every notifier has; ``-r NAME=URL`` sets ``url``."""

    url: str | None = Field(
        default=None, description="The http:// or https:// URL to POST to (-r NAME=URL)."
    )
    path: str | None = Field(
        default=None, description="Not used: a notifier writes no file (its URL is url)."
    )
    window: float = Field(
        default=0.0,
        ge=0,
        le=3600,
        description="Seconds to gather changes into one message after the first (0: one each).",
    )
    state_file: str | None = Field(
        default=None,
        description="JSON file keeping each check's last notified status between runs.",
    )
    timeout: float = Field(default=10.0, gt=0, le=300, description="Seconds per POST attempt.")
    retries: int = Field(
        default=3, ge=0, le=10, description="Attempts after a failed POST (5xx, 429, no answer)."
    )
    backoff: float = Field(
        default=0.5,
        ge=0,
        le=MAX_BACKOFF,
        description="Seconds before the first retry; doubled at each retry.",
    )
    queue_size: int = Field(
        default=1000,
        ge=1,
        description="Changes waiting to be sent at most; more are dropped and counted.",
    )

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None:
            _check_url(value)
        return value

    @field_validator("path")
    @classmethod
    def _no_file(cls, value: str | None) -> str | None:
        if value is not None:
            raise ValueError("a notifier writes no file: give its URL as url (-r NAME=URL)")
        return value

    @model_validator(mode="after")
    def _url_given(self) -> NotifierOptions:
        if self.url is None:
            raise ValueError("a URL is needed: url, or -r NAME=URL")
        return self


NotifierOptionsT = TypeVar("NotifierOptionsT", bound=NotifierOptions)


def _check_url(url: str) -> None:
    """Raise ``ValueError`` unless ``url`` is ``http(s)://HOST...``; the message
    never holds the URL (its path is often a key)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - a bad port raises here
    except ValueError:
        raise ValueError("not a URL (expected http:// or https://HOST/...)") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("the URL must be http:// or https://HOST/...")


@dataclass(frozen=True, slots=True)
class AlertNotice:
    """What an ``[[alert]]`` of ``anyprobe serve`` says about one check.

    ``event`` is ``firing`` (the check failed ``failure_threshold`` times in a
    row), ``reminder`` (still failing, ``reminder_every`` later) or
    ``resolved``; ``since`` is when the check started failing (ISO 8601 UTC);
    ``key`` identifies the alert and check together (a dedup key, an alias).
    The result that carries it holds it in ``result.details["alert"]``.
    """

    alert: str
    check: str
    event: str
    severity: str
    since: str
    failures: int = 0

    @property
    def key(self) -> str:
        return f"anyprobe/{self.alert}/{self.check}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "alert": self.alert,
            "check": self.check,
            "event": self.event,
            "severity": self.severity,
            "since": self.since,
            "failures": self.failures,
        }

    @classmethod
    def from_result(cls, result: Result) -> AlertNotice | None:
        """The notice ``result`` carries, or None for a plain result."""
        raw = result.details.get("alert") if result.details else None
        if not isinstance(raw, Mapping):
            return None
        return cls(
            alert=str(raw.get("alert", "")),
            check=str(raw.get("check", result.name)),
            event=str(raw.get("event", "firing")),
            severity=str(raw.get("severity", "")),
            since=str(raw.get("since", "")),
            failures=int(raw.get("failures", 0)),
        )


@dataclass(frozen=True, slots=True)
class StatusChange:
    """A result to notify, with the status its check had before.

    ``previous`` is the check's last status in this run, or the last one
    notified in an earlier run (with ``state_file``); ``ok`` when it has none.
    ``alert`` is the :class:`AlertNotice` when an ``[[alert]]`` sent it.
    """

    result: Result
    previous: Status

    @property
    def changed(self) -> bool:
        return self.result.status is not self.previous

    @property
    def alert(self) -> AlertNotice | None:
        return AlertNotice.from_result(self.result)


@dataclass
class _Delivery:
    """Counts of one run's messages, for the line at the end."""

    sent: int = 0
    failed: int = 0
    dropped: int = 0
    skipped: int = 0
    failing_in_a_row: int = 0
    down_since: float | None = None
    last_error: str = ""
    notified: dict[str, str] = field(default_factory=dict)


class Notifier(Reporter[NotifierOptionsT]):
    """Base of reporters that send a message per change (or per batch of changes).

    A subclass sets ``name``, ``Options`` (a :class:`NotifierOptions` subclass)
    and writes :meth:`format`; it may override :meth:`send` (the default POSTs
    the message as JSON to the URL), :meth:`selects` (which results are sent),
    :meth:`headers` and :meth:`auth`. While :meth:`report` runs, ``self.ctx``
    is the run's :class:`~anyprobe.ReportContext`, ``self.http`` an
    ``httpx.AsyncClient`` and ``self.masker`` the secrets to hide.
    """

    destination: ClassVar[str] = "url"
    #: The word for one message in the line a failed run ends with.
    message_word: ClassVar[str] = "POST"
    #: The exception a failed run ends with (one line, through the reporter's failure).
    error_type: ClassVar[type[Exception]] = NotifierError

    ctx: ReportContext
    http: httpx.AsyncClient
    target_url: str

    def __init__(self, options: NotifierOptionsT) -> None:
        super().__init__(options)
        self.masker = Masker()
        #: Called after each message with (delivered, last error): ``anyprobe
        #: serve`` counts failures on /metrics and shows them on its page.
        self.on_delivery: Callable[[bool, str], None] | None = None

    # -- what a subclass writes ---------------------------------------------------

    def format(self, changes: list[StatusChange]) -> Any:
        """The message for ``changes`` (one or more, in arrival order): what
        :meth:`send` sends, by default a JSON-able value; None sends nothing."""
        raise NotImplementedError

    async def send(self, message: Any) -> httpx.Response | None:
        """Send one message; return the HTTP response (a 5xx, 408, 425 or 429 is
        tried again, another error status is final) or None when it was
        delivered. An ``httpx.HTTPError`` or ``OSError`` (no answer) is tried
        again. ``self.target_url`` is where it goes."""
        return await self.http.post(self.target_url, json=message)

    def selects(self, change: StatusChange) -> bool:
        """Whether ``change`` is notified: by default a status change, and
        every notice of an ``[[alert]]`` (a reminder repeats a status)."""
        return change.changed or change.alert is not None

    def url(self) -> str:
        """Where messages go: ``options.url``; read once, when the run starts."""
        url = self.options.url
        if url is None:
            raise self.error_type("a URL is needed")
        return url

    def headers(self) -> dict[str, str]:
        """Request headers of every message (credential ones are masked when shown)."""
        return {}

    def auth(self) -> tuple[str, str] | None:
        """Basic authentication (user, password) of every message, or None."""
        return None

    @property
    def window(self) -> float | None:
        """Seconds a message gathers changes; None: one message when the run ends."""
        return self.options.window

    @staticmethod
    def check_url(url: str) -> None:
        """Raise ``ValueError`` unless ``url`` is ``http(s)://HOST...`` (for a URL
        read at run time, from the environment); the message never shows the URL."""
        _check_url(url)

    # -- the base ----------------------------------------------------------------

    def outputs(self) -> list[str | None]:
        return [self.options.state_file] if self.options.state_file else []

    async def report(self, results: ResultStream, ctx: ReportContext) -> None:
        self.ctx = ctx
        url = self.target_url = self.url()
        self._hide_url(url)
        _mask_httpx_logs()
        headers = self.headers()
        for header, value in headers.items():
            self.masker.add_header(header, value)
        auth = self.auth()
        if auth is not None:
            self.masker.add_basic(*auth)
        previous = await self._load_state() if self.options.state_file else {}
        delivery = _Delivery(notified=dict(previous))
        timeout = self.options.timeout
        self.http = await anyio.to_thread.run_sync(lambda: _make_client(timeout, headers, auth))
        async with self.http:
            if self.window is None:
                changes = [c async for c in self._changes(results, previous)]
                await self._deliver(changes, delivery, always=True)
            else:
                await self._stream(results, previous, delivery)
        if self.options.state_file:
            await self._save_state(delivery.notified)
        self._finish(delivery)

    def _hide_url(self, url: str) -> None:
        # The path and query of a chat webhook's URL are its key. A short path
        # ("/hook") is no key, and masking it would garble messages that name it.
        parts = urlsplit(url)
        self.masker.add(url)
        self.masker.add_url(url)
        if len(parts.path) >= MIN_KEY_PATH:
            self.masker.add(parts.path)
        if len(parts.query) > 1:
            self.masker.add(parts.query)

    async def _changes(
        self, results: ResultStream, previous: Mapping[str, str]
    ) -> AsyncIterator[StatusChange]:
        last = dict(previous)
        async for result in results:
            before = Status(last.get(result.name, Status.OK.value))
            last[result.name] = result.status.value
            change = StatusChange(result, before)
            if self.selects(change):
                yield change

    async def _stream(
        self, results: ResultStream, previous: Mapping[str, str], delivery: _Delivery
    ) -> None:
        """Queue changes for a separate task to send, never waiting for it."""
        send, receive = anyio.create_memory_object_stream[StatusChange](self.options.queue_size)
        window = self.window or 0.0

        async def send_queued() -> None:
            async with receive:
                while True:
                    try:
                        batch = [await receive.receive()]
                    except anyio.EndOfStream:
                        return
                    ended = False
                    with anyio.move_on_after(window):
                        while window and len(batch) < MAX_CHANGES:
                            try:
                                batch.append(await receive.receive())
                            except anyio.EndOfStream:
                                ended = True  # the run ended: send now
                                break
                    await self._deliver(batch, delivery)
                    if ended:
                        return

        async with anyio.create_task_group() as tg:
            tg.start_soon(send_queued)
            async with send:
                async for change in self._changes(results, previous):
                    try:
                        send.send_nowait(change)
                    except anyio.WouldBlock:
                        delivery.dropped += 1

    async def _deliver(
        self, changes: list[StatusChange], delivery: _Delivery, *, always: bool = False
    ) -> None:
        """Format and send one message, retrying; failures are counted, never raised."""
        if not changes and not always:
            return
        if delivery.down_since is not None:
            if anyio.current_time() - delivery.down_since < DOWN_PAUSE:
                delivery.skipped += 1
                self._delivered(False, f"down after {DOWN_AFTER} failures in a row")
                return
            delivery.down_since = None  # one more try
        try:
            message = self.format(changes)
        except Exception as exc:
            delivery.failed += 1
            delivery.last_error = f"format: {type(exc).__name__}: {exc}"
            self._delivered(False, delivery.last_error)
            return
        if message is None:
            return
        if len(changes) > MAX_CHANGES:  # a whole run's batch: masked off the event loop
            message = await anyio.to_thread.run_sync(self.masker.value, message)
        else:
            message = self.masker.value(message)
        if await self._attempts(message, delivery):
            delivery.sent += 1
            delivery.failing_in_a_row = 0
            for change in changes:
                delivery.notified[change.result.name] = change.result.status.value
            self._delivered(True, "")
            return
        delivery.failed += 1
        self._delivered(False, delivery.last_error)
        delivery.failing_in_a_row += 1
        if delivery.failing_in_a_row >= DOWN_AFTER:
            delivery.down_since = anyio.current_time()

    def _delivered(self, ok: bool, error: str) -> None:
        if self.on_delivery is not None:
            self.on_delivery(ok, " ".join(self.masker.text(error).split()))

    async def _attempts(self, message: Any, delivery: _Delivery) -> bool:
        import httpx

        options = self.options
        wait = options.backoff
        for attempt in range(options.retries + 1):
            sending = _SENDING.set(self.masker)
            try:
                response = await self.send(message)
                if response is None or response.is_success:
                    return True
                delivery.last_error = f"HTTP {response.status_code} {response.reason_phrase}"
                if response.status_code < 500 and response.status_code not in RETRY_STATUSES:
                    return False
                asked = retry_after(response.headers.get("Retry-After"))
            except (httpx.HTTPError, OSError) as exc:
                delivery.last_error = f"{type(exc).__name__}: {exc}"
                asked = None
            except Exception as exc:
                delivery.last_error = f"{type(exc).__name__}: {exc}"
                return False
            finally:
                _SENDING.reset(sending)
            delivery.last_error = delivery.last_error.strip().rstrip(":")
            if attempt < options.retries:
                pause = wait if asked is None else asked
                await anyio.sleep(min(pause, MAX_BACKOFF))
                wait *= 2
        return False

    def _finish(self, delivery: _Delivery) -> None:
        # Scheme, host and port: the path and query of a chat webhook are its key.
        shown = redact_url(self.target_url, path=False)
        if delivery.dropped:
            log.warning(
                "%s %s: %d result%s dropped: more than queue_size=%d were waiting to be posted",
                self.name,
                shown,
                delivery.dropped,
                "" if delivery.dropped == 1 else "s",
                self.options.queue_size,
            )
        undelivered = delivery.failed + delivery.skipped
        if not undelivered:
            return
        total = delivery.sent + undelivered
        word = self.message_word + ("s" if total != 1 else "")
        message = f"{undelivered} of {total} {word} to {shown} failed"
        if delivery.skipped or delivery.down_since is not None:
            message += f" (down after {DOWN_AFTER} failures in a row)"
        if delivery.last_error:
            message += f"; last error: {delivery.last_error}"
        if delivery.dropped:
            message += f"; {delivery.dropped} more dropped (queue full)"
        raise self.error_type(" ".join(self.masker.text(message).split()))

    # -- state between runs -----------------------------------------------------

    async def _load_state(self) -> dict[str, str]:
        path = self.options.state_file
        assert path is not None
        try:
            text = await anyio.Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise self.error_type(f"cannot read state_file {path}: {exc.strerror or exc}") from None
        try:
            document = json.loads(text)
            checks = document["checks"]
            valid = {s.value for s in Status}
            return {str(k): v for k, v in checks.items() if v in valid}
        except (ValueError, KeyError, TypeError, AttributeError):
            log.warning("%s: state_file %s is not a state file; starting afresh", self.name, path)
            return {}

    async def _save_state(self, notified: Mapping[str, str]) -> None:
        path = self.options.state_file
        text = json.dumps({"version": 1, "checks": dict(notified)}, indent=1, sort_keys=True)
        async with await OutputFile.open(path, atomic=True) as out:
            await out.write(text + "\n")


def retry_after(value: str | None) -> float | None:
    """Seconds a ``Retry-After`` header asks to wait (a number or an HTTP date), or None."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        import datetime

        if when.tzinfo is None:
            return None
        seconds = (when - datetime.datetime.now(datetime.UTC)).total_seconds()
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def _make_client(
    timeout: float, headers: dict[str, str], auth: tuple[str, str] | None
) -> httpx.AsyncClient:
    import httpx

    from . import __version__

    headers = {"User-Agent": f"anyprobe/{__version__}", **headers}
    return httpx.AsyncClient(timeout=timeout, headers=headers, auth=auth, follow_redirects=False)
