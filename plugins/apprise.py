"""The apprise reporter: notifications to the 100+ services Apprise knows.

Apprise (an optional extra: ``pip install 'anyprobe[apprise]'``) takes
service URLs such as ``tgram://TOKEN/CHAT``, ``slack://...``, ``mailto://...``;
they hold their credentials, so they are read from ``urls_env`` (one
environment variable, URLs separated by spaces, commas or new lines) and
never shown. Apprise sends in a worker thread (it works on asyncio and trio
alike). It is an :class:`anyprobe.Notifier`: batching (``window``), retries,
the bounded queue and the failure line at the end come from there.
"""

from __future__ import annotations

import importlib.util
import re
from typing import TYPE_CHECKING, Any

import anyio
from pydantic import Field, model_validator

import anyprobe
from anyprobe.plugins._alert_text import incident

if TYPE_CHECKING:
    import httpx

INSTALL = "pip install 'anyprobe[apprise]'"
_SEPARATORS = re.compile(r"[\s,]+")
#: Apprise's notification types by event and status.
_TYPES = {"resolved": "success", "critical": "failure", "unknown": "failure", "warning": "warning"}


class AppriseError(anyprobe.AnyprobeError):
    """Apprise could not deliver a notification."""


class AppriseOptions(anyprobe.NotifierOptions):
    urls_env: anyprobe.SecretEnv = Field(
        description="Environment variable holding the Apprise URLs (spaces or commas between)."
    )
    title: str = Field(default="anyprobe", max_length=200, description="Title of every message.")

    @model_validator(mode="after")
    def _url_given(self) -> AppriseOptions:
        if self.url is not None:
            raise ValueError("the apprise reporter's destinations are urls_env's, not url")
        if not installed():
            raise ValueError(f"the apprise reporter needs the apprise package: {INSTALL}")
        return self


def installed() -> bool:
    """Whether the apprise package can be imported (without importing it)."""
    try:
        return importlib.util.find_spec("apprise") is not None
    except ValueError:  # sys.modules["apprise"] is None: import blocked
        return False


class AppriseReporter(anyprobe.Notifier[AppriseOptions]):
    """``[[reporter]] type = "apprise"``: Telegram, Slack, Teams, ntfy, Matrix..."""

    name = "apprise"
    Options = AppriseOptions
    description = "Apprise (optional extra): Telegram, Teams, ntfy, Matrix and 100+ services."
    error_type = AppriseError
    message_word = "notification"
    destination = "urls_env"

    def urls(self) -> list[str]:
        text = self.options.urls_env.get_secret_value()
        return [url for url in _SEPARATORS.split(text) if url]

    def url(self) -> str:
        for url in self.urls():
            self.masker.add(url)
            self.masker.add_url(url)
        return "apprise://" + self.options.urls_env.variable

    def format(self, changes: list[anyprobe.StatusChange]) -> Any:
        told = [incident(change) for change in changes]
        worst = "success" if all(t.resolved for t in told) else "info"
        for t in told:
            if not t.resolved:
                kind = _TYPES.get(t.status, "info")
                worst = kind if kind == "failure" or worst != "failure" else worst
        lines = []
        for t in told:
            line = t.headline
            if t.alert is not None:
                line += f" (alert {t.alert}, {t.severity}, since {t.since})"
            lines.append(line)
        return {"title": self.options.title, "body": "\n".join(lines), "type": worst}

    async def send(self, message: Any) -> httpx.Response | None:
        delivered = await anyio.to_thread.run_sync(self._send_now, message)
        if not delivered:
            raise OSError("apprise could not deliver to every URL (its log says why)")
        return None

    def _send_now(self, message: Any) -> bool:
        try:
            import apprise
        except ImportError:
            raise AppriseError(
                f"the apprise reporter needs the apprise package: {INSTALL}"
            ) from None
        sender = apprise.Apprise()
        for url in self.urls():
            if not sender.add(url):
                raise AppriseError("apprise does not know one of the URLs of urls_env")
        return bool(
            sender.notify(body=message["body"], title=message["title"], notify_type=message["type"])
        )


@anyprobe.hookimpl
def anyprobe_register_reporters(register: Any) -> None:
    register(AppriseReporter)
