"""What the HTTP probe reads of its options, worked out without pydantic.

:class:`~anyprobe.plugins._http_options.HttpOptions` computes more than its
fields: compiled patterns (in ``model_post_init``), ``needs_body`` and
``secret_values()``. The functions here compute them, for the model and for
a target that sets no option alike: such a target gets
:data:`HTTP_DEFAULTS` (see :class:`anyprobe.lazy_model`), the fields'
defaults and those answers worked out from them, so a check with no option
imports no pydantic. ``tests/test_cold_start.py`` compares every entry with
the model's own answer.
"""

from __future__ import annotations

import base64
import functools
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import SplitResult, unquote

import anyprobe
from anyprobe._option_defaults import SOCKET_TLS_DEFAULTS

if TYPE_CHECKING:
    from ._http_options import HttpOptions

__all__ = [
    "HTTP_DEFAULTS",
    "auth_header",
    "compile_assertions",
    "needs_h11",
    "reads_body",
    "secret_values",
]

#: The default User-Agent header.
USER_AGENT = "anyprobe/" + anyprobe.__version__


class Assertions(NamedTuple):
    """The options' patterns and JSON assertions, compiled once per options object."""

    body_patterns: tuple[anyprobe.Pattern, ...]
    body_antipatterns: tuple[anyprobe.Pattern, ...]
    header_patterns: tuple[tuple[str, anyprobe.Pattern], ...]
    json_expressions: tuple[tuple[str, Any], ...]


def compile_assertions(options: Any) -> Assertions:
    """``body_matches``, ``body_not_matches``, ``expect_headers`` and
    ``json_assertions`` of ``options``, compiled (they were validated: they
    compile; a JSON assertion that does not raises ValueError)."""
    compile_pattern = anyprobe.compile_pattern
    return Assertions(
        tuple(compile_pattern(p) for p in options.body_matches),
        tuple(compile_pattern(p) for p in options.body_not_matches),
        tuple((name.lower(), compile_pattern(p)) for name, p in options.expect_headers.items()),
        _json_expressions(options.json_assertions) if options.json_assertions else (),
    )


def _json_expressions(texts: list[str]) -> tuple[tuple[str, Any], ...]:
    import jmespath  # type: ignore[import-untyped]
    from jmespath.exceptions import JMESPathError  # type: ignore[import-untyped]

    compiled = []
    for text in texts:
        try:
            compiled.append((text, jmespath.compile(text)))
        except RecursionError:
            raise ValueError(
                f"json_assertions: bad JSON assertion {text[:40]!r}...: nested too deep"
            ) from None
        except JMESPathError as exc:
            reason = str(exc).splitlines()[0].removesuffix(", for expression:")
            raise ValueError(f"json_assertions: bad JSON assertion {text!r}: {reason}") from None
    return tuple(compiled)


def reads_body(options: Any) -> bool:
    """True when an assertion of ``options`` reads the body (else it is only counted)."""
    return bool(
        options.body_contains
        or options.body_matches
        or options.body_not_matches
        or options.json_assertions
    )


def secret_values(options: Any) -> list[str]:
    """Every secret a check with ``options`` may send, to redact from any text shown."""
    secrets = [
        *options.header_env.values(),
        options.password,
        options.password_env,
        options.bearer_token,
        options.bearer_token_env,
    ]
    values = [s.get_secret_value() for s in secrets if s is not None]
    return [v for v in values if len(v) >= 3]


def auth_header(options: HttpOptions, url: SplitResult) -> str | None:
    """The Authorization value: a bearer token, basic authentication from the
    options or from the URL's userinfo; None without credentials."""
    if options.bearer_token is not None:
        return "Bearer " + options.bearer_token.get_secret_value()
    if options.bearer_token_env is not None:
        return "Bearer " + options.bearer_token_env.get_secret_value()
    username = options.username
    password = ""
    if options.password is not None:
        password = options.password.get_secret_value()
    elif options.password_env is not None:
        password = options.password_env.get_secret_value()
    if username is None and url.username is not None:
        username, password = unquote(url.username), unquote(url.password or "")
    if username is None:
        return None
    token = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
    return "Basic " + token


def needs_h11(options: Any) -> bool:
    """Whether checks with ``options`` may need h11 beside httptools: for the
    CONNECT to a proxy, or to write a request out of the ordinary (headers or
    a User-Agent of the options' own: httptools' path leaves any header it
    does not take as it is to h11's writer, which refuses it in its words)."""
    return bool(
        options.proxy or options.headers or options.header_env or options.user_agent != USER_AGENT
    )


#: HttpOptions() as plain values, field by field.
HTTP_FIELD_DEFAULTS: dict[str, Any] = {
    **SOCKET_TLS_DEFAULTS,
    "method": "GET",
    "headers": {},
    "header_env": {},
    "body": None,
    "json_body": None,
    "follow_redirects": True,
    "keep_credentials_on_redirect": False,
    "max_redirects": 10,
    "http2": False,
    "proxy": None,
    "username": None,
    "password": None,
    "password_env": None,
    "bearer_token": None,
    "bearer_token_env": None,
    "expect_status": ["2xx"],
    "body_contains": [],
    "body_matches": [],
    "body_not_matches": [],
    "json_assertions": [],
    "expect_headers": {},
    "max_body_bytes": 10 * 1024 * 1024,
    "user_agent": USER_AGENT,
    "reuse_connections": False,
}


def _defaults() -> dict[str, Any]:
    """The fields' defaults and what the model computes from them, by the same functions."""
    fields = SimpleNamespace(**HTTP_FIELD_DEFAULTS)
    assertions = compile_assertions(fields)
    return {
        **HTTP_FIELD_DEFAULTS,
        "_body_patterns": assertions.body_patterns,
        "_body_antipatterns": assertions.body_antipatterns,
        "_header_patterns": assertions.header_patterns,
        "_json_expressions": assertions.json_expressions,
        "needs_body": reads_body(fields),
        "secret_values": functools.partial(secret_values, fields),
    }


#: The options of a target that sets none (the HTTP probe's ``option_defaults``).
HTTP_DEFAULTS = _defaults()
