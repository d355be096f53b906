"""The webhook reporter: POSTs results as JSON to a URL (a chat tool, an incident system).

``mode`` says what is sent:

- ``batch`` (the default): one POST when the run ends, with the summary and
  every result;
- ``per_result``: one POST per result, as results arrive;
- ``on_change``: one POST per result whose status differs from the check's
  previous one. Within a run the previous status is the check's last result
  (``ok`` when it has none); with ``state_file`` it is kept across runs, so a
  cron job only notifies when something changed since the last run.

The webhook never slows the checks: results wait in a bounded queue that a
separate task empties; when the queue is full, results are dropped, counted and
reported once at the end. A POST that fails is retried with exponential
backoff; after three deliveries in a row fail, the webhook is taken as down and
the rest of the run is not sent. Any result not delivered makes the reporter
fail at the end with one line (exit status 3), after every other reporter got
every result. Secrets (tokens, passwords, the URL's path and query, which
often hold a key) never appear in a message.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

import anyio
from pydantic import Field, field_validator, model_validator

import anyprobe

if TYPE_CHECKING:
    import httpx

log = logging.getLogger("anyprobe.webhook")

#: Deliveries failing in a row after which the webhook counts as down.
DOWN_AFTER = 3
#: Longest wait between two attempts of one delivery, in seconds.
MAX_BACKOFF = 30.0
#: Status codes worth another attempt; any other 4xx is final.
RETRY_STATUSES = frozenset({408, 425, 429})

STATUS_WORDS = {s: s.value.upper() for s in anyprobe.Status}


class _Lenient(dict[str, Any]):
    """Labels or metrics for a template: a missing key renders as ''."""

    def __missing__(self, key: str) -> str:
        return ""


#: Fields a text template may use, with a sample value (to validate templates).
TEMPLATE_FIELDS: dict[str, Any] = {
    "name": "api",
    "target": "https://api.example.com/health",
    "probe": "http",
    "status": "critical",
    "STATUS": "CRITICAL",
    "previous_status": "ok",
    "summary": "HTTP 503 in 41 ms",
    "duration": 0.041,
    "duration_ms": 41.0,
    "attempts": 1,
    "started": "2026-11-24T10:00:00+00:00",
    "error": "HTTPStatusError",
    "labels": _Lenient(),
    "metrics": _Lenient(),
}


class WebhookError(anyprobe.AnyprobeError):
    """The webhook could not be reached, or refused what it was sent."""


class WebhookOptions(anyprobe.ReporterOptions):
    url: str | None = Field(
        default=None,
        description="The URL to POST to (or the DEST of -r webhook=URL); "
        "prefer url_env when the URL holds a key.",
    )
    url_env: str | None = Field(
        default=None, description="Environment variable holding the URL to POST to."
    )
    mode: Literal["batch", "per_result", "on_change"] = Field(
        default="batch",
        description="batch: one POST at the end; per_result: one per result; "
        "on_change: one per result whose status changed.",
    )
    state_file: str | None = Field(
        default=None,
        description="on_change: JSON file keeping each check's last notified status between runs.",
    )
    template: str = Field(
        default="json",
        description='Body: json (the result records), slack ({"text": ...} for Slack, '
        "Mattermost, Rocket.Chat...) or a format string for the text, e.g. "
        "'{STATUS} {name}: {summary}'.",
    )
    text_key: str = Field(
        default="text",
        min_length=1,
        description="Key of the text in a slack or format-string body ('content' for Discord).",
    )
    timeout: float = Field(default=10.0, gt=0, description="Seconds per POST attempt.")
    retries: int = Field(
        default=3, ge=0, le=10, description="Attempts after a failed POST (5xx, 429, no answer)."
    )
    backoff: float = Field(
        default=0.5, ge=0, description="Seconds before the first retry; doubled at each retry."
    )
    queue_size: int = Field(
        default=1000,
        ge=1,
        description="Results waiting to be POSTed at most; more are dropped and counted.",
    )
    headers: dict[str, str] = Field(
        default_factory=dict, description="Extra request headers, e.g. {X-Source = 'anyprobe'}."
    )
    header_env: dict[str, str] = Field(
        default_factory=dict,
        description="Secret headers: header name -> environment variable holding its value.",
    )
    bearer_token_env: str | None = Field(
        default=None, description="Environment variable holding a bearer token."
    )
    username: str | None = Field(default=None, description="User name for basic authentication.")
    password_env: str | None = Field(
        default=None, description="Environment variable holding the basic-authentication password."
    )

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None:
            _check_url(value)
        return value

    @field_validator("template")
    @classmethod
    def _template_renders(cls, value: str) -> str:
        if value not in ("json", "slack"):
            _check_template_specs(value)
            try:
                value.format(**TEMPLATE_FIELDS)
            except (KeyError, IndexError, AttributeError, ValueError) as exc:
                known = ", ".join(TEMPLATE_FIELDS)
                raise ValueError(
                    f"template {value!r} cannot be rendered ({type(exc).__name__}: {exc}); "
                    f"its fields can be: {known}"
                ) from None
        return value

    @field_validator("header_env")
    @classmethod
    def _env_names(cls, value: dict[str, str]) -> dict[str, str]:
        for header, variable in value.items():
            if not variable:
                raise ValueError(f"header {header}: the environment variable name is empty")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> WebhookOptions:
        if self.url is None and self.url_env is None and self.path in (None, "-"):
            raise ValueError("a URL is needed: url, url_env or -r webhook=URL")
        if self.url is None and self.url_env is None and self.path:
            _check_url(self.path)
        if self.url is not None and self.url_env is not None:
            raise ValueError("set url or url_env, not both")
        if self.password_env is not None and self.username is None:
            raise ValueError("password_env needs a username")
        if self.bearer_token_env is not None and self.username is not None:
            raise ValueError("set basic authentication or a bearer token, not both")
        if self.state_file is not None and self.mode != "on_change":
            raise ValueError("state_file only applies to mode = 'on_change'")
        return self


#: The widest field (and the largest precision) a text template may ask for.
MAX_TEMPLATE_WIDTH = 1000
_SPEC_NUMBER = re.compile(r"\d+")
#: A template field: a name, or ``labels[KEY]`` / ``metrics[KEY]``; never an
#: attribute (``{labels.__class__}`` would reach the interpreter's internals).
_FIELD_NAME = re.compile(r"\w+(?:\[[^\]]*\])?")


def _check_template_specs(template: str) -> None:
    """Refuse format specs that would allocate without bound (``{name:>99999999999}``)
    or that take their width from a field (``{name:{summary}}``)."""
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(f"template {template!r} cannot be rendered ({exc})") from None
    for _text, field_name, spec, _conversion in parts:
        if field_name is not None and not _FIELD_NAME.fullmatch(field_name):
            raise ValueError(
                f"template field {{{field_name}}}: only a field name or labels[KEY], "
                "metrics[KEY] (no attribute, no nested index)"
            )
        if field_name is None or not spec:
            continue
        if "{" in spec or "}" in spec:
            raise ValueError(f"template field {{{field_name}}}: a format spec cannot hold a field")
        for number in _SPEC_NUMBER.findall(spec):
            if len(number) > 4 or int(number) > MAX_TEMPLATE_WIDTH:
                raise ValueError(
                    f"template field {{{field_name}}}: width or precision {number[:12]} "
                    f"is over {MAX_TEMPLATE_WIDTH}"
                )


def _check_url(url: str) -> None:
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise ValueError(f"not a URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("the webhook URL must be http:// or https://HOST/...")


def where(url: str) -> str:
    """The part of ``url`` safe to show: scheme, host and port, never path or query."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}"


@dataclass
class _Delivery:
    """Counts of one reporter's POSTs, for the message at the end."""

    posted: int = 0
    failed: int = 0
    dropped: int = 0
    skipped: int = 0
    failing_in_a_row: int = 0
    last_error: str = ""
    notified: dict[str, str] = field(default_factory=dict)

    @property
    def down(self) -> bool:
        return self.failing_in_a_row >= DOWN_AFTER


@dataclass
class _Item:
    body: Any
    name: str | None = None
    status: str | None = None


class WebhookReporter(anyprobe.Reporter[WebhookOptions]):
    """``-r webhook=https://hooks.example.com/...``: POST results as JSON."""

    name = "webhook"
    Options = WebhookOptions
    description = "POST results as JSON to a URL: batch, per result or on status change."

    def outputs(self) -> list[str | None]:
        return [self.options.state_file] if self.options.state_file else []

    async def report(self, results: anyprobe.ResultStream, ctx: anyprobe.ReportContext) -> None:
        options = self.options
        url = self._url()
        parts = urlsplit(url)
        # The path and query of a chat webhook's URL are its key.
        secrets = [url, *(p for p in (parts.path, parts.query) if len(p) > 1)]
        headers = dict(options.headers)
        for header, variable in options.header_env.items():
            headers[header] = secrets_append(secrets, _env(variable, f"header {header}"))
        auth: tuple[str, str] | None = None
        if options.bearer_token_env:
            token = secrets_append(secrets, _env(options.bearer_token_env, "bearer_token_env"))
            headers["Authorization"] = f"Bearer {token}"
        if options.username is not None:
            password = ""
            if options.password_env:
                password = secrets_append(secrets, _env(options.password_env, "password_env"))
            auth = (options.username, password)
        previous = await self._load_state() if options.state_file else {}
        delivery = _Delivery(notified=dict(previous))

        client = await anyio.to_thread.run_sync(lambda: _make_client(options, headers, auth))
        async with client:
            if options.mode == "batch":
                records = [result async for result in results]
                await self._deliver(client, url, _Item(self._batch_body(records, ctx)), delivery)
            else:
                await self._stream(client, url, results, previous, delivery)
        if options.state_file:
            await self._save_state(delivery.notified)
        self._finish(url, delivery, secrets)

    def _url(self) -> str:
        options = self.options
        if options.url_env:
            url = _env(options.url_env, "url_env")
            try:
                _check_url(url)
            except ValueError as exc:
                raise WebhookError(f"${options.url_env}: {exc}") from None
            return url
        given = options.url or options.path
        assert given is not None  # the options' validator made sure
        return given

    async def _stream(
        self,
        client: httpx.AsyncClient,
        url: str,
        results: anyprobe.ResultStream,
        previous: Mapping[str, str],
        delivery: _Delivery,
    ) -> None:
        """Queue results for a separate task to POST, never waiting for it."""
        options = self.options
        send, receive = anyio.create_memory_object_stream[_Item](options.queue_size)
        last = dict(previous)

        async def post_queued() -> None:
            async with receive:
                async for item in receive:
                    await self._deliver(client, url, item, delivery)

        async with anyio.create_task_group() as tg:
            tg.start_soon(post_queued)
            async with send:
                async for result in results:
                    status = result.status.value
                    before = last.get(result.name, anyprobe.Status.OK.value)
                    last[result.name] = status
                    if options.mode == "on_change" and status == before:
                        continue
                    body = self._result_body(
                        result, before if options.mode == "on_change" else None
                    )
                    try:
                        send.send_nowait(_Item(body, result.name, status))
                    except anyio.WouldBlock:
                        delivery.dropped += 1

    async def _deliver(
        self, client: httpx.AsyncClient, url: str, item: _Item, delivery: _Delivery
    ) -> None:
        """POST ``item``, retrying; failures are counted, never raised."""
        import httpx

        if delivery.down:
            delivery.skipped += 1
            return
        options = self.options
        for attempt in range(options.retries + 1):
            if attempt:
                await anyio.sleep(min(options.backoff * 2 ** (attempt - 1), MAX_BACKOFF))
            try:
                response = await client.post(url, json=item.body)
            except httpx.HTTPError as exc:
                delivery.last_error = f"{type(exc).__name__}: {exc}".rstrip(": ")
                continue
            if response.is_success:
                delivery.posted += 1
                delivery.failing_in_a_row = 0
                if item.name is not None and item.status is not None:
                    delivery.notified[item.name] = item.status
                return
            delivery.last_error = f"HTTP {response.status_code} {response.reason_phrase}".strip()
            if response.status_code < 500 and response.status_code not in RETRY_STATUSES:
                break
        delivery.failed += 1
        delivery.failing_in_a_row += 1

    def _finish(self, url: str, delivery: _Delivery, secrets: list[str]) -> None:
        safe = where(url)
        options = self.options
        if delivery.dropped:
            log.warning(
                "webhook %s: %d result%s dropped: more than queue_size=%d were waiting "
                "to be posted",
                safe,
                delivery.dropped,
                "" if delivery.dropped == 1 else "s",
                options.queue_size,
            )
        undelivered = delivery.failed + delivery.skipped
        if not undelivered:
            return
        total = delivery.posted + undelivered
        message = f"{undelivered} of {total} POST{'s' if total != 1 else ''} to {safe} failed"
        if delivery.down:
            message += f" (down after {DOWN_AFTER} failures in a row)"
        if delivery.last_error:
            message += f"; last error: {_redact(delivery.last_error, secrets)}"
        if delivery.dropped:
            message += f"; {delivery.dropped} more dropped (queue full)"
        raise WebhookError(message)

    # -- bodies ---------------------------------------------------------------

    def _result_body(self, result: anyprobe.Result, previous: str | None) -> Any:
        template = self.options.template
        if template == "json":
            record = result.as_dict()
            if self.options.mode == "on_change":
                record["previous_status"] = previous
            return record
        return {self.options.text_key: self._line(result, previous)}

    def _batch_body(self, results: list[anyprobe.Result], ctx: anyprobe.ReportContext) -> Any:
        summary = ctx.summary
        if self.options.template == "json":
            body: dict[str, Any] = {"results": [r.as_dict() for r in results]}
            if summary is not None:
                body["summary"] = {
                    "text": summary.describe(),
                    "worst": summary.worst.value,
                    "total": summary.total,
                    "counts": {s.value: summary.counts.get(s, 0) for s in anyprobe.Status},
                    "not_finished": summary.not_finished,
                    "duration": summary.duration,
                    "interrupted": summary.interrupted,
                }
            return body
        # Chat tools: the summary, then only what needs a look.
        worst = anyprobe.Status.worst(r.status for r in results)
        head = summary.describe() if summary else f"{len(results)} checks"
        lines = [f"{STATUS_WORDS[worst]}: {head}"]
        lines += [self._line(r, None) for r in results if r.status is not anyprobe.Status.OK]
        return {self.options.text_key: "\n".join(lines)}

    def _line(self, result: anyprobe.Result, previous: str | None) -> str:
        template = self.options.template
        if template in ("json", "slack"):
            template = "{STATUS} {name}: {summary}"
            if previous is not None:
                template += " (was {previous_status})"
        duration = result.duration if math.isfinite(result.duration) else 0.0
        return string.Formatter().vformat(
            template,
            (),
            {
                "name": result.name,
                "target": result.target,
                "probe": result.probe,
                "status": result.status.value,
                "STATUS": STATUS_WORDS[result.status],
                "previous_status": previous or "",
                "summary": result.summary,
                "duration": duration,
                "duration_ms": duration * 1000,
                "attempts": result.attempts,
                "started": result.started.isoformat(),
                "error": result.error.type if result.error else "",
                "labels": _Lenient(result.labels),
                "metrics": _Lenient(result.metrics),
            },
        )

    # -- state between runs -----------------------------------------------------

    async def _load_state(self) -> dict[str, str]:
        path = self.options.state_file
        assert path is not None
        try:
            text = await anyio.Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise WebhookError(f"cannot read state_file {path}: {exc.strerror or exc}") from None
        try:
            document = json.loads(text)
            checks = document["checks"]
            valid = {s.value for s in anyprobe.Status}
            return {str(k): v for k, v in checks.items() if v in valid}
        except (ValueError, KeyError, TypeError, AttributeError):
            log.warning("webhook: state_file %s is not a state file; starting afresh", path)
            return {}

    async def _save_state(self, notified: Mapping[str, str]) -> None:
        path = self.options.state_file
        text = json.dumps({"version": 1, "checks": dict(notified)}, indent=1, sort_keys=True)
        async with await anyprobe.OutputFile.open(path, atomic=True) as out:
            await out.write(text + "\n")


def secrets_append(secrets: list[str], value: str) -> str:
    """Remember ``value`` as a secret to keep out of messages; return it."""
    if value:
        secrets.append(value)
    return value


def _env(variable: str, what: str) -> str:
    value = os.environ.get(variable)
    if value is None:
        raise WebhookError(f"{what}: environment variable {variable} is not set")
    return value


def _redact(text: str, secrets: list[str]) -> str:
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
    return " ".join(text.split())


def _make_client(
    options: WebhookOptions, headers: dict[str, str], auth: tuple[str, str] | None
) -> httpx.AsyncClient:
    import httpx

    headers = {"User-Agent": f"anyprobe/{anyprobe.__version__}", **headers}
    return httpx.AsyncClient(
        timeout=options.timeout, headers=headers, auth=auth, follow_redirects=False
    )


@anyprobe.hookimpl
def anyprobe_register_reporters(register: Any) -> None:
    register(WebhookReporter)
