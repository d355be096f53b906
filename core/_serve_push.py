"""Push checks: cron jobs, backups and batch work that tell ``anyprobe serve``
they ran, instead of being probed.

::

    [[check]]
    name = "backup"
    push = true
    interval = "1d"                  # how often the job runs (seconds, or 30s, 5m, 2h, 1d, 1w)
    grace = "1h"                     # how late it may be (default 60 s)
    token_env = "BACKUP_PUSH_TOKEN"  # the variable holding its token (anyprobe push-token)

The job calls ``GET`` or ``POST /push/TOKEN``, with ``status=ok|warning|critical``,
``msg=`` and ``duration=`` (seconds) if it likes, in the query string or (POST)
a form or JSON body. Each push becomes a :class:`~anyprobe.Result` of probe
``push`` for target ``push://NAME`` and takes the path of every scheduled
result (:meth:`ProbeServer.record`). When nothing arrives within interval plus
grace, a watchdog records a critical result, then another each interval while
the silence lasts.

The token is the credential of its route: random, 128 bits or more, compared
in constant time, held as a :class:`~anyprobe.SecretEnv`; it is never logged,
nor put in a result, a metric or an error. The last arrival and the last
lateness are kept in the history store (``server.store``) when there is one,
so a restart neither declares a check late at once nor forgets one, and, with
``--shard``, the replica that owns a check sees the pushes another received.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import parse_qsl, quote

import anyio
from pydantic import ConfigDict, Field, ValidationError, field_validator

from ._errors import ConfigError, did_you_mean
from ._inputs import escape_controls
from ._model import Result, Status, Target
from ._options import SettingsModel
from ._secrets import SecretEnv

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

    from ._config import Config
    from ._serve_server import ProbeServer

log = logging.getLogger("anyprobe.serve")

#: Seconds a push check may be late when its table sets no ``grace``.
DEFAULT_PUSH_GRACE = 60.0
#: The least entropy a token may have, in bits.
TOKEN_BITS = 128
#: The largest POST body read from a job; a larger one is answered 413.
MAX_PUSH_BODY = 64 * 1024
#: The longest ``msg`` kept; the rest is cut off.
MAX_MESSAGE = 1000
#: Seconds a watchdog waits on the store before deciding on what it knows.
STORE_WAIT = 5.0
#: Seconds between two looks in the shared store for pushes another replica received.
SHARD_POLL = 15.0
#: The statuses a job may push.
PUSH_STATUSES = {"ok": Status.OK, "warning": Status.WARNING, "critical": Status.CRITICAL}

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)?\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_TOKEN = re.compile(r"^[A-Za-z0-9_.~-]+$")


def parse_duration(value: Any, *, zero: bool = False) -> float:
    """Seconds from a number or a string like ``90``, ``30s``, ``5m``, ``2h``,
    ``1d``, ``1w``; ValueError otherwise (negative, not finite, or 0 unless ``zero``)."""
    if isinstance(value, bool):
        raise ValueError("expected seconds or a duration like 30s, 5m, 2h, 1d")
    if isinstance(value, (int, float)):
        seconds = float(value) if abs(value) < 1e300 else math.inf
    elif isinstance(value, str) and (m := _DURATION.match(value)):
        seconds = float(m.group(1)) * _UNITS[m.group(2) or "s"]
    else:
        raise ValueError("expected seconds or a duration like 30s, 5m, 2h, 1d")
    if not math.isfinite(seconds) or seconds < 0 or (seconds == 0 and not zero):
        raise ValueError("must be 0 seconds or more" if zero else "must be more than 0 seconds")
    return seconds


def format_duration(seconds: float) -> str:
    """``86400`` as ``1d``, ``90`` as ``90s``, ``0.3`` as ``0.3s``: the largest
    unit that divides the duration whole."""
    if seconds == 0:
        return "0s"
    for unit in ("w", "d", "h", "m"):
        size = _UNITS[unit]
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def token_bits(token: str) -> float:
    """How many bits of entropy ``token`` can hold at most: its length times the
    bits of the smallest alphabet it is written in (digits, hex, URL-safe)."""
    if token.isdigit():
        per_character = math.log2(10)
    elif re.fullmatch(r"[0-9a-f]+|[0-9A-F]+", token):
        per_character = 4.0
    else:
        per_character = 6.0
    if len(set(token)) < 8:  # "aaaa...": long, but guessable
        per_character = min(per_character, math.log2(max(len(set(token)), 2)))
    return len(token) * per_character


def new_token() -> str:
    """A fresh token: 256 random bits, URL-safe (``anyprobe push-token``)."""
    import secrets

    return secrets.token_urlsafe(32)


def _token_digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


def push_url(name: str) -> str:
    """The target a push check's results carry: ``push://NAME`` (NAME
    percent-encoded); also the key ``--shard`` hashes."""
    return "push://" + quote(name, safe="")


# -- config ------------------------------------------------------------------------


class PushSettings(SettingsModel):
    """The fields of a ``[[check]]`` with ``push = true``."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, defer_build=True)

    push: Literal[True] = Field(description="The job pushes its results to /push/TOKEN.")
    name: str = Field(min_length=1, description="The check's name (a push check has no URL).")
    interval: float = Field(description="How often the job runs: seconds, or 30s, 5m, 2h, 1d.")
    grace: float = Field(
        DEFAULT_PUSH_GRACE, description="How late a push may arrive: seconds, or 30s, 5m, 2h."
    )
    token_env: SecretEnv = Field(
        description="Environment variable holding the token (anyprobe push-token makes one)."
    )
    labels: dict[str, str] = Field(default_factory=dict, description="Added to the defaults.")

    @field_validator("interval", mode="before")
    @classmethod
    def _interval(cls, value: Any) -> float:
        return parse_duration(value)

    @field_validator("grace", mode="before")
    @classmethod
    def _grace(cls, value: Any) -> float:
        return parse_duration(value, zero=True)

    @field_validator("token_env")
    @classmethod
    def _strong(cls, value: SecretEnv) -> SecretEnv:
        token = value.get_secret_value()
        # Never echoed: the messages name the variable and the rule only.
        if not _TOKEN.match(token):
            raise ValueError(
                f"the token in {value.variable} must be URL-safe (letters, digits, - _ . ~): "
                "make one with anyprobe push-token"
            )
        bits = token_bits(token)
        if bits < TOKEN_BITS:
            raise ValueError(
                f"the token in {value.variable} is too short or too regular "
                f"({len(token)} characters, about {bits:.0f} bits; at least {TOKEN_BITS} "
                "are needed, e.g. 22 random URL-safe characters): make one with "
                "anyprobe push-token"
            )
        return value


#: The keys of a push check's table.
PUSH_FIELDS = tuple(PushSettings.model_fields)


@dataclass(frozen=True)
class PushCheck:
    """A validated push check. ``target`` is what its results are recorded for."""

    name: str
    interval: float
    grace: float
    labels: Mapping[str, str]
    target: Target
    token: SecretEnv = field(repr=False)
    digest: bytes = field(repr=False)

    @property
    def window(self) -> str:
        """``INTERVAL + GRACE`` as people write them: ``1d + 1h``."""
        return f"{format_duration(self.interval)} + {format_duration(self.grace)}"


def is_push_check(raw: Any) -> bool:
    """Whether a ``[[check]]`` table is a push check's (it has a ``push`` key)."""
    return isinstance(raw, dict) and "push" in raw


def parse_push_check(
    raw: Mapping[str, Any],
    default_labels: Mapping[str, str],
    fail: Callable[..., ConfigError],
) -> PushCheck:
    """Validate a push check's table; ``fail(message, key=...)`` makes the
    ConfigError naming the file, line, check and field."""
    from ._targets import options_error

    if "url" in raw:
        raise fail(
            "a push check has no url: its job calls /push/TOKEN (leave out url or push)",
            key="url",
        )
    for key in raw:
        if key not in PUSH_FIELDS:
            hint = did_you_mean(key, PUSH_FIELDS)
            raise fail(f"unknown field for a push check{hint}", key=key)
    try:
        settings = PushSettings.model_validate(dict(raw))
    except ValidationError as exc:
        error = options_error(exc, PushSettings, what="a push check")
        raise fail(error.message, key=error.field) from None
    url = push_url(settings.name)
    labels = {**default_labels, **settings.labels}
    target = Target(
        name=settings.name,
        url=url,
        display_url=url,
        probe="push",
        host="",
        port=None,
        options=None,
        labels=labels,
    )
    token = settings.token_env
    return PushCheck(
        settings.name,
        settings.interval,
        settings.grace,
        labels,
        target,
        token,
        _token_digest(token.get_secret_value()),
    )


def refuse_shared_tokens(checks: list[PushCheck], fail: Callable[[int, str], ConfigError]) -> None:
    """Two push checks with one token cannot be told apart: ``fail(index, message)``."""
    seen: dict[bytes, str] = {}
    for index, check in enumerate(checks):
        if check.digest in seen:
            raise fail(
                index,
                f"push check {seen[check.digest]!r} has the same token as {check.token.variable}: "
                "give each push check its own",
            )
        seen[check.digest] = check.name


def push_check_schema() -> dict[str, Any]:
    """The JSON schema of a push check's table, for ``anyprobe schema``."""
    duration = {
        "anyOf": [
            {"type": "number", "exclusiveMinimum": 0},
            {"type": "string", "pattern": _DURATION.pattern},
        ]
    }
    schema = PushSettings.model_json_schema()
    properties = dict(schema["properties"])
    properties["interval"] = {**duration, "description": properties["interval"]["description"]}
    properties["grace"] = {**duration, "description": properties["grace"]["description"]}
    return {
        "title": "push check",
        "type": "object",
        "properties": properties,
        "required": ["push", "name", "interval", "token_env"],
        "additionalProperties": False,
    }


# -- what the server keeps ----------------------------------------------------------


def _arrival_key(name: str) -> str:
    return f"push:{name}:arrival"


def _late_key(name: str) -> str:
    return f"push:{name}:late"


def _when(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")


class PushMonitor:
    """The push checks' state in one server: the last arrival and lateness of
    each (which outlive a config reload), their watchdogs, their metrics."""

    def __init__(self, server: ProbeServer) -> None:
        from prometheus_client import Gauge

        self.server = server
        self.started = time.time()
        self.arrivals: dict[str, float] = {}
        self.late: dict[str, float] = {}
        self._loaded: set[str] = set()
        self._wake: dict[str, anyio.Event] = {}
        self._unsaved: dict[str, Any] = {}
        self._saving = anyio.Event()
        #: Seconds between two looks in a shared store (with --shard) for pushes
        #: another replica received.
        self.shard_poll = SHARD_POLL
        registry = server.metrics.registry
        self.last_seen = Gauge(
            "anyprobe_push_last_received_timestamp_seconds",
            "When each push check was last pushed to, as a Unix timestamp.",
            ["check"],
            registry=registry,
        )
        self.deadline = Gauge(
            "anyprobe_push_deadline_timestamp_seconds",
            "When each push check this server watches is late unless pushed to.",
            ["check"],
            registry=registry,
        )

    @property
    def checks(self) -> list[PushCheck]:
        return self.server.config.push_checks

    def find(self, token: str) -> PushCheck | None:
        """The push check of ``token``, compared with every configured token in
        constant time (no early exit: the answer takes as long either way)."""
        digest = _token_digest(token)
        found = None
        for check in self.checks:
            if hmac.compare_digest(digest, check.digest):
                found = check
        return found

    async def receive(
        self, check: PushCheck, status: Status, message: str, duration: float
    ) -> None:
        """Record one push of ``check``."""
        now = time.time()
        summary = message or f"push received ({status.value})"
        result = self._result(check, status, summary, now, duration)
        self._arrived(check.name, now, status, summary)
        await self.server.record(check.target, result)

    @staticmethod
    def _result(
        check: PushCheck, status: Status, summary: str, at: float, duration: float
    ) -> Result:
        """A push check's result, finished at ``at`` (a Unix timestamp)."""
        return Result(
            name=check.name,
            target=check.target.url,
            probe="push",
            status=status,
            summary=summary,
            started=datetime.fromtimestamp(at - duration, UTC),
            duration=duration,
            attempts=1,
            phases={},
            metrics={},
            error=None,
            labels=check.labels,
        )

    def _arrived(self, name: str, at: float, status: Status, summary: str) -> None:
        self.arrivals[name] = at
        self.last_seen.labels(name).set(at)
        # The status and summary too: with --shard, the owner's alerts need them.
        self._save(_arrival_key(name), {"at": at, "status": status.value, "summary": summary})
        wake = self._wake.get(name)
        if wake is not None:
            wake.set()

    def _save(self, key: str, value: Any) -> None:
        """Keep ``value`` in the store soon, by the writer task: a push never
        waits on the database."""
        if getattr(self.server, "store", None) is not None:
            self._unsaved[key] = value
            self._saving.set()

    async def run(self, config: Config, stop: anyio.Event) -> None:
        """The watchdogs of the push checks this server owns, and the writer of
        their state, until ``stop``; then what is unsaved gets a bounded time."""
        names = {check.name for check in config.push_checks}
        for gone in set(self.arrivals) - names:
            del self.arrivals[gone]
            self.last_seen.remove(gone)
        self.deadline.clear()  # each watchdog sets its own again
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._write)
            for check in config.push_checks:
                if self.server.owns(check.target.url):
                    tg.start_soon(self._watch, check)
            await stop.wait()
            tg.cancel_scope.cancel()
        with anyio.move_on_after(STORE_WAIT):
            await self._flush()

    async def _write(self) -> None:
        while True:
            await self._saving.wait()
            self._saving = anyio.Event()
            await self._flush()

    async def _flush(self) -> None:
        store = getattr(self.server, "store", None)
        while self._unsaved and store is not None:
            key, value = next(iter(self._unsaved.items()))
            try:
                await store.put_state(key, value)
            except Exception as exc:
                log.warning("push state not saved, retrying: %s", type(exc).__name__)
                await anyio.sleep(1.0)
                continue
            if self._unsaved.get(key) == value:
                del self._unsaved[key]

    async def _stored(self, key: str) -> float | None:
        """A timestamp the store keeps under ``key`` (None when absent or unreadable)."""
        value = await self._stored_value(key)
        if isinstance(value, dict):
            value = value.get("at")
        return float(value) if isinstance(value, (int, float)) else None

    async def _stored_value(self, key: str) -> Any:
        """The JSON value the store keeps under ``key`` (None when absent or unreadable)."""
        store = getattr(self.server, "store", None)
        if store is None:
            return None
        value = None
        with anyio.move_on_after(STORE_WAIT):
            try:
                value = await store.get_state(key)
            except Exception as exc:
                log.warning("push state not read: %s", type(exc).__name__)
        return value

    async def _load(self, name: str) -> None:
        """What the store knows of ``name`` from before this process, once."""
        if name in self._loaded:
            return
        self._loaded.add(name)
        arrival = await self._stored(_arrival_key(name))
        if arrival is not None and arrival > self.arrivals.get(name, -math.inf):
            self.arrivals[name] = arrival
            self.last_seen.labels(name).set(arrival)
        late = await self._stored(_late_key(name))
        if late is not None and late > self.late.get(name, -math.inf):
            self.late[name] = late

    def due(self, check: PushCheck) -> float:
        """When ``check`` is late next, as a Unix timestamp."""
        last = self.arrivals.get(check.name)
        deadline = (self.started if last is None else last) + check.interval + check.grace
        late = self.late.get(check.name)
        if late is not None and late >= deadline:
            # Already late for this period: again one interval later.
            deadline = late + check.interval
        return deadline

    async def _watch(self, check: PushCheck) -> None:
        name = check.name
        await self._load(name)
        # With --shard, a push may reach another replica: the owner looks in
        # the shared store every SHARD_POLL seconds, so that its alerts see
        # that push (an alert is the owner's alone) soon, not at the deadline.
        poll = self.shard_poll if self.server.shard is not None else math.inf
        while True:
            wake = self._wake[name] = anyio.Event()
            deadline = self.due(check)
            self.deadline.labels(name).set(deadline)
            with anyio.move_on_after(max(0.0, min(deadline - time.time(), poll))):
                await wake.wait()
                continue  # pushed to: a new deadline
            if await self._pushed_elsewhere(check) or time.time() < deadline:
                continue
            await self._record_late(check)

    async def _pushed_elsewhere(self, check: PushCheck) -> bool:
        """Whether another replica received a push of ``check`` (a shared
        store) since this one last knew; that push then goes to the alerts."""
        name = check.name
        value = await self._stored_value(_arrival_key(name))
        if not isinstance(value, dict) or not isinstance(value.get("at"), (int, float)):
            return False
        arrival = float(value["at"])
        if arrival <= self.arrivals.get(name, -math.inf):
            return False
        self.arrivals[name] = arrival
        self.last_seen.labels(name).set(arrival)
        try:
            status = Status(value.get("status"))
        except ValueError:
            status = Status.OK
        summary = str(value.get("summary") or f"push received ({status.value})")
        result = self._result(check, status, summary, arrival, 0.0)
        await self.server.alerts.observe(check.target, result)
        return True

    async def _record_late(self, check: PushCheck) -> None:
        now = time.time()
        last = self.arrivals.get(check.name)
        if last is not None:
            since = f"last at {_when(last)}"
        else:
            since = f"none since {_when(self.started)}"
        summary = f"no push within {check.window} ({since})"
        result = self._result(check, Status.CRITICAL, summary, now, 0.0)
        self.late[check.name] = now
        self._save(_late_key(check.name), now)
        await self.server.record(check.target, result)


# -- the route ------------------------------------------------------------------------


class _BadPush(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _parse_push(check: PushCheck, values: Mapping[str, Any]) -> tuple[Status, str, float]:
    """The status, message and duration a job pushed; _BadPush (400) otherwise."""
    status_text = values.get("status", "ok")
    if not isinstance(status_text, str) or status_text.strip().lower() not in PUSH_STATUSES:
        raise _BadPush(400, "status must be one of: ok, warning, critical")
    status = PUSH_STATUSES[status_text.strip().lower()]
    duration = 0.0
    raw_duration = values.get("duration")
    if raw_duration not in (None, ""):
        try:
            duration = float(raw_duration) if not isinstance(raw_duration, bool) else -1.0
        except (TypeError, ValueError):
            duration = -1.0
        if not math.isfinite(duration) or duration < 0:
            raise _BadPush(400, "duration must be a number of seconds, 0 or more")
    message = values.get("msg", "")
    if not isinstance(message, str):
        raise _BadPush(400, "msg must be text")
    token = check.token.get_secret_value()
    message = escape_controls(message.replace(token, "***")[:MAX_MESSAGE])
    return status, message, duration


async def _body_values(request: Request) -> dict[str, Any]:
    """A POST's form or JSON object (other bodies are ignored), read up to
    :data:`MAX_PUSH_BODY` bytes; _BadPush otherwise."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_PUSH_BODY:
            raise _BadPush(413, f"body larger than {MAX_PUSH_BODY} bytes")
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if not body.strip():
        return {}
    if kind == "application/json":
        try:
            values = json.loads(body)
        except ValueError:
            raise _BadPush(400, "body is not JSON") from None
        if not isinstance(values, dict):
            raise _BadPush(400, "body must be a JSON object")
        return values
    if kind == "application/x-www-form-urlencoded":
        return dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    return {}


def push_routes(server: ProbeServer) -> list[Any]:
    """``GET`` and ``POST /push/TOKEN``, answered from ``server.push``."""
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    monitor = server.push

    async def push(request: Request) -> Response:
        check = monitor.find(request.path_params["token"])
        if check is None:
            # Starlette's own 404: nothing says which tokens exist.
            return PlainTextResponse("Not Found", status_code=404)
        values: dict[str, Any] = dict(request.query_params)
        try:
            if request.method == "POST":
                values.update(await _body_values(request))
            status, message, duration = _parse_push(check, values)
        except _BadPush as bad:
            return PlainTextResponse(bad.message + "\n", status_code=bad.status)
        await monitor.receive(check, status, message, duration)
        return PlainTextResponse("OK\n")

    return [Route("/push/{token}", push, methods=["GET", "POST"])]
