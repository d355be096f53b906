"""One rule for keeping secrets out of every output.

A value is secret when it comes from a field declared secret (a pydantic
``SecretStr``, or a field whose ``json_schema_extra`` holds ``secret: true``),
when it is the value of a credential header (:func:`is_credential_header`), or
when it is the password of a URL. The same values are hidden wherever they
show up again: in text a server sent back (a page that reflects the request's
headers, a ``Set-Cookie``), in summaries, metrics, traces and debug pages,
raw, percent-encoded or in base64 (as Basic authentication sends them)::

    masker = Masker()
    masker.add_header("Authorization", "Bearer s3cret-token")
    masker.text("echo: Bearer s3cret-token")     # 'echo: Bearer ***'
    mask_url_password("http://u:pw@host/")       # 'http://u:***@host/'
    redact_url("https://h/T0/key", path=False)   # 'https://h'
"""

from __future__ import annotations

import base64
import functools
import json
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, quote_plus, unquote, urlsplit

if TYPE_CHECKING:
    from ._model import Outcome
    from ._probe import CheckContext

__all__ = [
    "CREDENTIAL_HEADERS",
    "MASK",
    "MIN_SECRET_LENGTH",
    "REQUEST_HEADER_FIELDS",
    "Masker",
    "is_credential_header",
    "is_secret_field",
    "mask_context",
    "mask_outcome",
    "mask_url_password",
    "masked_check",
    "options_masker",
]

MASK = "***"

#: Request and response headers whose values are credentials.
CREDENTIAL_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
        "x-api-key",
        "api-key",
        "apikey",
        "x-api-token",
        "x-auth-token",
        "x-access-token",
        "x-amz-security-token",
        "x-goog-api-key",
        "x-vault-token",
        "private-token",
        "x-csrf-token",
        "x-xsrf-token",
        "ocp-apim-subscription-key",
    }
)
#: A header whose name holds one of these words is treated as a credential too.
_CREDENTIAL_WORDS = ("token", "secret", "password", "auth", "key", "cookie", "session")

#: Option fields holding request headers (name -> value) by convention.
REQUEST_HEADER_FIELDS = frozenset({"headers", "metadata"})

#: Secrets shorter than this are not searched for in text (too many false hits).
MIN_SECRET_LENGTH = 3

# scheme://user:password@ anywhere in a text.
_URL_USERINFO = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^\s/:@]*):(?P<pw>[^\s/@]*)@")


_PERCENT = re.compile(r"%([0-9A-F])([0-9A-F])")


def _form_pattern(form: str) -> str:
    """A regular expression for one form of a secret: literal, except that
    percent-escapes match in either case (``%2F`` and ``%2f``)."""
    escaped = re.escape(form)
    return _PERCENT.sub(lambda m: "%" + _either_case(m[1]) + _either_case(m[2]), escaped)


#: How many first characters of a secret, right before a clip's ``...``, are
#: taken for the secret cut short; at most _CUT_LONGEST are matched.
_CUT_PREFIX = 4
_CUT_LONGEST = 96


def _prefix_pattern(form: str) -> str:
    """A regular expression for the first characters of ``form`` (at least
    :data:`_CUT_PREFIX`) followed by the ``...`` of a clipped quote."""
    head = re.escape(form[:_CUT_PREFIX])
    rest = ""
    for char in reversed(form[_CUT_PREFIX:_CUT_LONGEST]):
        rest = f"(?:{re.escape(char)}{rest})?"
    return f"{head}{rest}(?=['\"]?\\.\\.\\.)"


def _either_case(char: str) -> str:
    return f"[{char}{char.lower()}]" if char.isalpha() else char


@functools.lru_cache(maxsize=1024)
def is_credential_header(name: str) -> bool:
    """Whether header ``name`` carries a credential (case-insensitive)."""
    lower = name.lower()
    return lower in CREDENTIAL_HEADERS or any(word in lower for word in _CREDENTIAL_WORDS)


def mask_url_password(text: str) -> str:
    """``text`` with the password of every ``scheme://user:password@`` in it masked."""
    if "@" not in text:
        return text
    return _URL_USERINFO.sub(lambda m: f"{m['head']}:{MASK}@", text)


def redact_url(url: str, *, path: bool = True) -> str:
    """``url`` as it may be shown: the password of its userinfo replaced by
    ``***``; with ``path=False`` only its scheme, host and port (the path and
    query of a chat webhook's URL are its key, and the user goes too)::

        redact_url("https://u:pw@h/x?y=1")              # 'https://u:***@h/x?y=1'
        redact_url("https://u:pw@h:8443/T0/key", path=False)   # 'https://h:8443'
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    authority, slash, tail = rest.partition("/")
    if not path:
        authority = authority.split("?", 1)[0].split("#", 1)[0]
        return f"{scheme}://{authority.rpartition('@')[2]}"
    userinfo, at, hostport = authority.rpartition("@")
    if not at:
        return url
    user, colon, _password = userinfo.partition(":")
    redacted = f"{user}:{MASK}" if colon else user
    return f"{scheme}://{redacted}@{hostport}{slash}{tail}"


def is_secret_field(model: Any, name: str) -> bool:
    """Whether field ``name`` of pydantic model class ``model`` is declared secret."""
    field = getattr(model, "model_fields", {}).get(name)
    if field is None:
        return False
    extra = field.json_schema_extra
    if isinstance(extra, Mapping) and extra.get("secret"):
        return True
    return "Secret" in str(field.annotation)


class Masker:
    """The secrets of one check (or one page), and the rule that hides them."""

    __slots__ = ("_pattern", "_secrets")

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        for secret in secrets:
            self.add(secret)

    def __bool__(self) -> bool:
        return bool(self._secrets)

    def update(self, other: Masker) -> None:
        """Hide every secret ``other`` hides, from now on (a copy: ``other``
        does not change). For a check's masker filled from one worked out
        once, instead of adding the same secrets again at every check."""
        new = other._secrets - self._secrets
        if new:
            self._secrets |= new
            self._pattern = None

    def add(self, secret: str) -> None:
        """Hide ``secret``, and its percent-encoded and base64 forms, from now on."""
        if len(secret) < MIN_SECRET_LENGTH:
            return
        forms = {secret, unquote(secret)}
        # Percent-encoded as a path (``/`` kept), a query value (``+`` for a
        # space) or a component: the hex digits match in either case.
        forms |= {quote(secret, safe=""), quote(secret), quote_plus(secret)}
        # Inside a JSON string: ``\"``, ``\\``, ``\uXXXX`` and the ``\/`` some
        # encoders write.
        escaped = json.dumps(secret)[1:-1]
        forms |= {
            escaped,
            escaped.replace("/", "\\/"),
            json.dumps(secret, ensure_ascii=False)[1:-1],
        }
        encoded = base64.b64encode(secret.encode()).decode("ascii")
        forms |= {encoded, encoded.rstrip("=")}
        forms |= {base64.urlsafe_b64encode(secret.encode()).decode("ascii").rstrip("=")}
        new = {f for f in forms if len(f) >= MIN_SECRET_LENGTH} - self._secrets
        if new:
            self._secrets |= new
            self._pattern = None

    def add_basic(self, username: str, password: str) -> None:
        """Hide a Basic-authentication password and the ``user:password`` token."""
        self.add(password)
        token = f"{username}:{password}"
        if password:
            self.add(token)

    def add_header(self, name: str, value: str) -> None:
        """Remember a header sent or received: a credential header's value is secret
        (whole, without its scheme word, and decoded when it is Basic)."""
        if not is_credential_header(name):
            return
        self.add(value)
        scheme, space, credential = value.strip().partition(" ")
        if space:
            self.add(credential.strip())
            if scheme.lower() == "basic":
                try:
                    decoded = base64.b64decode(credential.strip(), validate=True).decode()
                except ValueError:
                    decoded = ""
                if ":" in decoded:
                    self.add_basic(*decoded.split(":", 1))
        if name.lower() in ("cookie", "set-cookie"):
            cookies = value.split(";") if name.lower() == "cookie" else value.split(";")[:1]
            for cookie in cookies:
                self.add(cookie.strip().partition("=")[2])

    def add_url(self, url: str) -> None:
        """Hide the password of ``url``'s userinfo, if any."""
        if "@" not in url:
            return
        try:
            password = urlsplit(url).password
        except ValueError:
            return
        if password:
            self.add(password)

    def add_bytes(self, data: bytes) -> None:
        """Hide bytes a check sends (the TCP probe's ``send``): as text, as
        they are quoted in a summary (``'AUTH x\\r\\n'``), and in base64."""
        if len(data) < MIN_SECRET_LENGTH:
            return
        self.add(data.decode("utf-8", errors="replace"))
        self.add(data.decode("latin-1"))
        self.add(repr(data)[2:-1])
        encoded = base64.b64encode(data).decode("ascii")
        for form in (encoded, encoded.rstrip("=")):
            if form not in self._secrets:
                self._secrets.add(form)
                self._pattern = None

    def _compiled(self) -> re.Pattern[str]:
        if self._pattern is None:
            ordered = sorted(self._secrets, key=len, reverse=True)
            whole = [_form_pattern(s) for s in ordered]
            # A form cut short where a summary clips a quote (``'AUTH x...``):
            # its first characters, right before the ellipsis.
            cut = [_prefix_pattern(s) for s in ordered if len(s) > _CUT_PREFIX]
            self._pattern = re.compile("|".join([*whole, *cut]))
        return self._pattern

    def text(self, value: str) -> str:
        """``value`` with every secret and every URL password masked."""
        if self._secrets:
            value = self._compiled().sub(MASK, value)
        return mask_url_password(value)

    def excerpt(self, value: str, start: int, end: int) -> str:
        """``value[start:end]`` as it may be shown: a secret that overlaps the
        excerpt is masked whole, also when the excerpt holds only part of it
        (a pattern that matched the first characters of a token)."""
        if not self._secrets:
            return mask_url_password(value[start:end])
        pieces: list[str] = []
        cursor = start
        for found in self._compiled().finditer(value):
            if found.end() <= start:
                continue
            if found.start() >= end:
                break
            if found.start() > cursor:
                pieces.append(value[cursor : found.start()])
            pieces.append(MASK)
            cursor = max(cursor, found.end())
        if cursor < end:
            pieces.append(value[cursor:end])
        return mask_url_password("".join(pieces))

    def header(self, name: str, value: str) -> str:
        """A header's value as shown: a credential header's is masked whole."""
        if is_credential_header(name):
            return MASK
        return self.text(value)

    def value(self, data: Any) -> Any:
        """``data`` (text, or dicts, lists and tuples of it) with secrets masked."""
        if isinstance(data, str):
            return self.text(data)
        if isinstance(data, Mapping):
            return {key: self.value(item) for key, item in data.items()}
        if isinstance(data, list | tuple):
            return type(data)(self.value(item) for item in data)
        return data

    def options(self, model: Any, dumped: Mapping[str, Any]) -> dict[str, Any]:
        """An options model's dumped fields as they may be shown: secret fields,
        credential headers and URL passwords masked, then every known secret."""
        shown: dict[str, Any] = {}
        for key, item in dumped.items():
            if is_secret_field(type(model) if not isinstance(model, type) else model, key):
                shown[key] = MASK
            elif isinstance(item, Mapping) and key in REQUEST_HEADER_FIELDS:
                shown[key] = {
                    name: MASK if is_credential_header(str(name)) else value
                    for name, value in item.items()
                }
            else:
                shown[key] = item
        return dict(self.value(shown))


def options_masker(options: Any) -> Masker:
    """A masker knowing every secret an options model holds: its secret fields,
    the values of its credential headers, the passwords of its URLs."""
    masker = Masker()
    model: type = type(options)
    secret, headers, texts = _field_kinds(model)
    for name in secret:
        value: Any = getattr(options, name, None)
        # A secret field, or a dict of them (``header_env: dict[str, SecretEnv]``).
        for item in value.values() if isinstance(value, Mapping) else (value,):
            raw = item.get_secret_value() if hasattr(item, "get_secret_value") else item
            if isinstance(raw, str):
                masker.add(raw)
    for name in headers:
        value = getattr(options, name, None)
        if isinstance(value, Mapping):
            for header, text in value.items():
                if isinstance(text, str):
                    masker.add_header(str(header), text)
    for name in texts:
        value = getattr(options, name, None)
        if isinstance(value, str) and "://" in value:
            masker.add_url(value)
    return masker


@functools.lru_cache(maxsize=256)
def _field_kinds(model: type) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """An options model's secret fields, request-header fields and text fields
    (worked out once per model: this runs for every check)."""
    secret: list[str] = []
    headers: list[str] = []
    texts: list[str] = []
    for name, field in getattr(model, "model_fields", {}).items():
        if is_secret_field(model, name):
            secret.append(name)
        elif name in REQUEST_HEADER_FIELDS:
            headers.append(name)
        elif "str" in str(field.annotation):
            texts.append(name)
    return tuple(secret), tuple(headers), tuple(texts)


def mask_outcome(outcome: Outcome, masker: Masker) -> Outcome:
    """``outcome`` with every secret masked in its summary, metrics, details and error."""
    import dataclasses

    outcome.summary = masker.text(outcome.summary)
    outcome.metrics = masker.value(outcome.metrics)
    outcome.details = masker.value(outcome.details)
    if outcome.error is not None:
        outcome.error = dataclasses.replace(
            outcome.error, message=masker.text(outcome.error.message)
        )
    return outcome


def mask_context(ctx: CheckContext, masker: Masker) -> None:
    """Mask what a check left in its context: the trace and the metrics so far."""
    import dataclasses

    for index, event in enumerate(ctx.trace_events):
        masked = masker.text(event.message)
        if masked != event.message:
            ctx.trace_events[index] = dataclasses.replace(event, message=masked)
    for key, value in list(ctx.metrics.items()):
        if isinstance(value, str):
            ctx.metrics[key] = masker.text(value)


async def masked_check(
    check: Callable[[], Awaitable[Outcome]], ctx: CheckContext, masker: Masker
) -> Outcome:
    """``await check()`` with its outcome, trace and metrics masked by ``masker``.

    A :class:`~anyprobe.CheckFailed` becomes its outcome first (with the
    phase it was raised in), so that its summary is masked too. A probe's
    ``check`` ends with it::

        return await masked_check(lambda: self._check(target, options, ctx), ctx, masker)
    """
    from ._errors import CheckFailed

    if not masker:
        return await check()
    try:
        outcome = await check()
    except CheckFailed as failed:
        outcome = failed.to_outcome(ctx.current_phase)
    finally:
        mask_context(ctx, masker)
    return mask_outcome(outcome, masker)
