"""The webhook reporter: POSTs results as JSON to a URL (a chat tool, an incident system).

It is an :class:`anyprobe.Notifier`: batching, retries, the state kept between
runs, the bounded queue and the secrets hidden in every message come from
there. ``mode`` says what is sent:

- ``batch`` (the default): one POST when the run ends, with the summary and
  every result;
- ``per_result``: one POST per result, as results arrive;
- ``on_change``: one POST per result whose status differs from the check's
  previous one. Within a run the previous status is the check's last result
  (``ok`` when it has none); with ``state_file`` it is kept across runs, so a
  cron job only notifies when something changed since the last run.

With ``window``, results of ``per_result`` and ``on_change`` arriving within
that many seconds go in one POST. Any result not delivered makes the reporter
fail at the end with one line (exit status 3), after every other reporter got
every result.
"""

from __future__ import annotations

import math
import re
import string
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

import anyprobe

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


class WebhookOptions(anyprobe.NotifierOptions):
    url_env: anyprobe.SecretEnv | None = Field(
        default=None, description="Environment variable holding the URL to POST to."
    )
    mode: Literal["batch", "per_result", "on_change"] = Field(
        default="batch",
        description="batch: one POST at the end; per_result: one per result; "
        "on_change: one per result whose status changed.",
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
    headers: dict[str, str] = Field(
        default_factory=dict, description="Extra request headers, e.g. {X-Source = 'anyprobe'}."
    )
    header_env: dict[str, anyprobe.SecretEnv] = Field(
        default_factory=dict,
        description="Secret headers: header name -> environment variable holding its value.",
    )
    bearer_token_env: anyprobe.SecretEnv | None = Field(
        default=None, description="Environment variable holding a bearer token."
    )
    username: str | None = Field(default=None, description="User name for basic authentication.")
    password_env: anyprobe.SecretEnv | None = Field(
        default=None, description="Environment variable holding the basic-authentication password."
    )

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

    @field_validator("header_env", mode="before")
    @classmethod
    def _read_secret_headers(cls, value: Any) -> Any:
        return anyprobe.SecretEnv.read_each(value, "header")

    @field_validator("url_env")
    @classmethod
    def _url_env_is_a_url(cls, value: anyprobe.SecretEnv | None) -> anyprobe.SecretEnv | None:
        if value is not None:
            try:
                anyprobe.Notifier.check_url(value.get_secret_value())
            except ValueError as exc:  # the message never shows the URL
                raise ValueError(f"environment variable {value.variable}: {exc}") from None
        return value

    @model_validator(mode="after")
    def _url_given(self) -> WebhookOptions:
        if self.url is None and self.url_env is None:
            raise ValueError("a URL is needed: url, url_env or -r webhook=URL")
        if self.url is not None and self.url_env is not None:
            raise ValueError("set url or url_env, not both")
        if self.password_env is not None and self.username is None:
            raise ValueError("password_env needs a username")
        if self.bearer_token_env is not None and self.username is not None:
            raise ValueError("set basic authentication or a bearer token, not both")
        if self.state_file is not None and self.mode != "on_change":
            raise ValueError("state_file only applies to mode = 'on_change'")
        if self.window and self.mode == "batch":
            raise ValueError("window does not apply to mode = 'batch' (one POST at the end)")
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


class WebhookReporter(anyprobe.Notifier[WebhookOptions]):
    """``-r webhook=https://hooks.example.com/...``: POST results as JSON."""

    name = "webhook"
    Options = WebhookOptions
    description = "POST results as JSON to a URL: batch, per result or on status change."
    error_type = WebhookError

    @property
    def window(self) -> float | None:
        return None if self.options.mode == "batch" else self.options.window

    def selects(self, change: anyprobe.StatusChange) -> bool:
        if change.alert is not None:  # an [[alert]]'s notice: a reminder repeats a status
            return True
        return change.changed if self.options.mode == "on_change" else True

    def url(self) -> str:
        if self.options.url_env is None:
            return super().url()
        return self.options.url_env.get_secret_value()  # checked with the options

    def headers(self) -> dict[str, str]:
        options = self.options
        headers = dict(options.headers)
        for header, secret in options.header_env.items():
            headers[header] = self._secret(secret)
        if options.bearer_token_env is not None:
            headers["Authorization"] = f"Bearer {self._secret(options.bearer_token_env)}"
        return headers

    def auth(self) -> tuple[str, str] | None:
        options = self.options
        if options.username is None:
            return None
        password = ""
        if options.password_env is not None:
            password = self._secret(options.password_env)
        return options.username, password

    def _secret(self, secret: anyprobe.SecretEnv) -> str:
        value = secret.get_secret_value()
        self.masker.add(value)
        return value

    def format(self, changes: list[anyprobe.StatusChange]) -> Any:
        mode = self.options.mode
        if mode == "batch":
            return self._batch_body([c.result for c in changes], self.ctx)
        bodies = [(c.result, c.previous.value if mode == "on_change" else None) for c in changes]
        if len(bodies) == 1:
            return self._result_body(*bodies[0])
        if self.options.template == "json":
            return {"results": [self._result_body(*body) for body in bodies]}
        return {self.options.text_key: "\n".join(self._line(*body) for body in bodies)}

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


@anyprobe.hookimpl
def anyprobe_register_reporters(register: Any) -> None:
    register(WebhookReporter)
