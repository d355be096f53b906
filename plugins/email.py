"""The email reporter: a message over SMTP for each alert (or status change).

TLS is on by default and verified: ``security = "starttls"`` (port 587, the
default) upgrades the connection with STARTTLS before anything else is said;
``"tls"`` (port 465) speaks TLS from the first byte; ``"none"`` sends in the
clear and refuses a password (a password only travels over TLS). The
password is read from ``password_env`` and never shown. Messages are sent by
the standard library's ``smtplib`` in a worker thread (it works on asyncio and
trio alike), each attempt bounded by ``timeout``. It is an
:class:`anyprobe.Notifier`: batching (``window``), retries, the bounded queue
and the failure line at the end come from there.
"""

from __future__ import annotations

import string
from typing import TYPE_CHECKING, Any, Literal

import anyio
from pydantic import ConfigDict, Field, field_validator, model_validator

import anyprobe
from anyprobe.plugins._alert_text import Incident, incident

if TYPE_CHECKING:
    import httpx

DEFAULT_PORTS = {"starttls": 587, "tls": 465, "none": 25}
#: Fields a subject may use, with a sample value (to validate the template).
SUBJECT_FIELDS = {
    "check": "api",
    "status": "critical",
    "STATUS": "CRITICAL",
    "summary": "HTTP 503 in 41 ms",
    "severity": "critical",
    "event": "firing",
    "EVENT": "FIRING",
    "alert": "pager",
    "since": "2026-11-24T10:00:00+00:00",
}
MAX_SUBJECT = 250


class EmailError(anyprobe.AnyprobeError):
    """The SMTP server could not be reached, or refused a message."""


class EmailOptions(anyprobe.NotifierOptions):
    model_config = ConfigDict(populate_by_name=True)

    host: str = Field(description="The SMTP server's host name.")
    port: int | None = Field(
        default=None, ge=1, le=65535, description="Default: 587 (starttls), 465 (tls), 25 (none)."
    )
    security: Literal["starttls", "tls", "none"] = Field(
        default="starttls",
        description="starttls: upgrade with STARTTLS; tls: TLS from the start; none: clear text.",
    )
    ca_file: str | None = Field(
        default=None, description="PEM file of the CAs to trust (default: the system's)."
    )
    username: str | None = Field(default=None, description="User name to log in with.")
    password_env: anyprobe.SecretEnv | None = Field(
        default=None, description="Environment variable holding the password."
    )
    sender: str = Field(
        alias="from", min_length=3, description="The From address (the key is from, or sender)."
    )
    to: list[str] = Field(min_length=1, description="The recipients.")
    subject: str = Field(
        default="[{EVENT}] {check}: {summary}",
        description="Subject template; fields: " + ", ".join(SUBJECT_FIELDS) + ".",
    )

    @field_validator("subject")
    @classmethod
    def _subject_renders(cls, value: str) -> str:
        try:
            for _text, name, spec, _conversion in string.Formatter().parse(value):
                if name is not None and (name not in SUBJECT_FIELDS or spec):
                    raise ValueError(
                        f"unknown field {{{name}}}" if spec == "" else "no format spec"
                    )
        except ValueError as exc:
            known = ", ".join(SUBJECT_FIELDS)
            raise ValueError(f"subject {value!r}: {exc}; its fields can be: {known}") from None
        return value

    @field_validator("host", "sender", "to")
    @classmethod
    def _one_line(cls, value: Any) -> Any:
        for item in value if isinstance(value, list) else [value]:
            if any(c in item for c in "\r\n\x00"):
                raise ValueError("must be one line")
        return value

    @model_validator(mode="after")
    def _url_given(self) -> EmailOptions:
        if self.url is not None:
            raise ValueError("an email reporter has no url: set host (and port)")
        if self.password_env is not None and self.username is None:
            raise ValueError("password_env needs a username")
        if self.password_env is not None and self.security == "none":
            raise ValueError('a password is only sent over TLS: security = "starttls" or "tls"')
        return self


class EmailReporter(anyprobe.Notifier[EmailOptions]):
    """``[[reporter]] type = "email"``: a message per alert, over SMTP."""

    name = "email"
    Options = EmailOptions
    description = "Email over SMTP (STARTTLS or TLS, verified) for each alert or status change."
    error_type = EmailError
    message_word = "email"
    destination = "host"

    @property
    def port(self) -> int:
        return self.options.port or DEFAULT_PORTS[self.options.security]

    def url(self) -> str:
        return f"smtp://{self.options.host}:{self.port}"

    def format(self, changes: list[anyprobe.StatusChange]) -> Any:
        told = [incident(change) for change in changes]
        if len(told) == 1:
            subject = self._subject(told[0])
        else:
            firing = sum(not t.resolved for t in told)
            subject = f"[anyprobe] {firing} firing, {len(told) - firing} resolved"
        blocks = ["\n".join(f"{k}: {v}" for k, v in t.details().items()) for t in told]
        body = "\n\n".join(blocks) + "\n\n-- \nsent by anyprobe\n"
        return {"subject": subject[:MAX_SUBJECT], "body": body}

    def _subject(self, told: Incident) -> str:
        fields = {
            "check": told.check,
            "status": told.status,
            "STATUS": told.status.upper(),
            "summary": told.summary,
            "severity": told.severity,
            "event": told.event,
            "EVENT": told.event.upper(),
            "alert": told.alert or "",
            "since": told.since,
        }
        text = self.options.subject.format(**fields)
        return " ".join(text.split())  # one line, whatever the summary holds

    async def send(self, message: Any) -> httpx.Response | None:
        await anyio.to_thread.run_sync(self._send_now, message)
        return None

    def _send_now(self, message: Any) -> None:
        """Send one message (in a worker thread); smtplib's errors are OSErrors,
        which the Notifier base tries again."""
        import smtplib
        import ssl
        from email.message import EmailMessage
        from email.utils import formatdate, make_msgid

        options = self.options
        mail = EmailMessage()
        mail["From"] = options.sender
        mail["To"] = ", ".join(options.to)
        mail["Subject"] = message["subject"]
        mail["Date"] = formatdate(localtime=False)
        mail["Message-ID"] = make_msgid(domain="anyprobe.invalid")
        mail.set_content(message["body"])
        context = ssl.create_default_context(cafile=options.ca_file)
        timeout = options.timeout
        client: smtplib.SMTP
        if options.security == "tls":
            client = smtplib.SMTP_SSL(options.host, self.port, timeout=timeout, context=context)
        else:
            client = smtplib.SMTP(options.host, self.port, timeout=timeout)
        with client:
            client.ehlo()
            if options.security == "starttls":
                client.starttls(context=context)
                client.ehlo()
            if options.username is not None:
                password = ""
                if options.password_env is not None:
                    password = options.password_env.get_secret_value()
                    self.masker.add(password)
                client.login(options.username, password)
            client.send_message(mail)


@anyprobe.hookimpl
def anyprobe_register_reporters(register: Any) -> None:
    register(EmailReporter)
