"""The HTTP probe's options: the model, its validators, and the secrets it names.

Secrets come from the options (``password``, ``bearer_token``) or from
environment variables (``password_env``, ``bearer_token_env``, ``header_env``:
:class:`anyprobe.SecretEnv`), read and checked when the options are
validated, before the run.

A target that sets no option gets no model: the probe's ``option_defaults``
(:data:`~anyprobe.plugins._http_defaults.HTTP_DEFAULTS`) stand in for
``HttpOptions()``, with what the model computes worked out by the same
functions (``compile_assertions``, ``reads_body``, ``secret_values``).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from pydantic import Field, PrivateAttr, SecretStr, field_validator, model_validator

import anyprobe
from anyprobe.net import IpFamily
from anyprobe.tls import TlsOptions

from ._headers import (
    TOKEN,
    check_headers,
    check_secret_header,
    check_secret_headers,
    header_value_ok,
)
from ._http_defaults import USER_AGENT, compile_assertions, reads_body, secret_values
from ._http_defaults import auth_header as auth_header  # where it was defined before

_STATUS_CLASS = re.compile(r"^[1-5]xx$")


class HttpOptions(TlsOptions, anyprobe.AddressOptions):
    """Options of the HTTP probe (the TLS ones are shared with the TCP/TLS probe)."""

    method: str = Field("GET", description="Request method: GET, HEAD, POST...")
    headers: dict[str, str] = Field(
        default_factory=dict, description="Request headers, e.g. {Accept = 'application/json'}."
    )
    header_env: dict[str, anyprobe.SecretEnv] = Field(
        default_factory=dict,
        description="Secret request headers: header name -> environment variable holding "
        "its value, e.g. {X-Api-Key = 'API_KEY'}. Never shown in any output.",
    )
    body: str | None = Field(None, description="Request body, sent as it is (UTF-8).")
    json_body: Any = Field(
        None,
        description="Request body as JSON (sets Content-Type: application/json).",
    )
    follow_redirects: bool = Field(True, description="Follow 3xx redirects.")
    keep_credentials_on_redirect: bool = Field(
        False,
        description="Send credential headers (Authorization, Cookie, header_env, API-key "
        "headers...) again after a redirect to another origin (scheme, host or port). "
        "Off: they are dropped, as browsers and httpx do.",
    )
    max_redirects: int = Field(
        10, ge=0, le=100, description="Most redirects to follow before the check fails."
    )
    http2: bool = Field(False, description="Offer HTTP/2 in ALPN (https only); the server decides.")
    ip_family: IpFamily = Field(
        "any", description="Address family to connect over: any, ipv4 or ipv6."
    )
    proxy: str | None = Field(
        None,
        description="HTTP proxy URL, http://[user:password@]host:port; https targets "
        "go through a CONNECT tunnel.",
    )
    username: str | None = Field(None, description="User name for basic authentication.")
    password: SecretStr | None = Field(
        None, description="Password for basic authentication (prefer password_env)."
    )
    password_env: anyprobe.SecretEnv | None = Field(
        None, description="Environment variable holding the basic-authentication password."
    )
    bearer_token: SecretStr | None = Field(
        None, description="Bearer token for the Authorization header (prefer bearer_token_env)."
    )
    bearer_token_env: anyprobe.SecretEnv | None = Field(
        None, description="Environment variable holding the bearer token."
    )
    expect_status: list[int | str] = Field(
        default_factory=lambda: list[int | str](["2xx"]),
        description="Accepted status codes and classes, e.g. [200, '3xx'].",
    )
    body_contains: list[str] = Field(
        default_factory=list, description="Strings the body must contain (all of them)."
    )
    body_matches: list[str] = Field(
        default_factory=list,
        description="Regular expressions (RE2 syntax) the body must match (all of them).",
    )
    body_not_matches: list[str] = Field(
        default_factory=list,
        description="Regular expressions (RE2 syntax) the body must not match (none of them).",
    )
    json_assertions: list[str] = Field(
        default_factory=list,
        description="JMESPath expressions on the JSON body that must be true, "
        "e.g. \"status == 'UP'\".",
    )
    expect_headers: dict[str, str] = Field(
        default_factory=dict,
        description="Response headers that must be present and match a regular "
        "expression (RE2 syntax), e.g. {Content-Type = 'json'}.",
    )
    max_body_bytes: int = Field(
        10 * 1024 * 1024,
        gt=0,
        description="Bytes of body read at most; a longer body is critical "
        "(it is never read whole into memory).",
    )
    user_agent: str = Field(USER_AGENT, description="The User-Agent header.")
    reuse_connections: bool = Field(
        False,
        description="Keep HTTP/1.1 connections open and reuse them for later checks of the "
        "same host, port and TLS options. A reused check measures no resolve, connect or "
        "TLS phase and sees no new handshake; the first check on a connection does. "
        "Not for HTTP/2 or a proxy.",
    )

    _body_patterns: tuple[anyprobe.Pattern, ...] = PrivateAttr(default=())
    _body_antipatterns: tuple[anyprobe.Pattern, ...] = PrivateAttr(default=())
    _header_patterns: tuple[tuple[str, anyprobe.Pattern], ...] = PrivateAttr(default=())
    _json_expressions: tuple[tuple[str, Any], ...] = PrivateAttr(default=())

    @field_validator(
        "expect_status",
        "body_contains",
        "body_matches",
        "body_not_matches",
        "json_assertions",
        mode="before",
    )
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str | int) and not isinstance(value, bool) else value

    @field_validator("body_matches", "body_not_matches")
    @classmethod
    def _valid_regexes(cls, value: list[str]) -> list[str]:
        for pattern in value:
            anyprobe.check_regex(pattern)
        return value

    @field_validator("method")
    @classmethod
    def _method_is_token(cls, value: str) -> str:
        if not TOKEN.match(value):
            raise ValueError(f"{value!r} is not an HTTP method")
        return value.upper()

    @field_validator("headers", "expect_headers")
    @classmethod
    def _header_names(cls, value: dict[str, str]) -> dict[str, str]:
        return check_headers(value)

    @field_validator("header_env", mode="before")
    @classmethod
    def _read_secret_headers(cls, value: Any) -> Any:
        return anyprobe.SecretEnv.read_each(value, "header")

    @field_validator("header_env")
    @classmethod
    def _secret_headers(cls, value: dict[str, anyprobe.SecretEnv]) -> dict[str, anyprobe.SecretEnv]:
        return check_secret_headers(value)

    @field_validator("expect_headers")
    @classmethod
    def _header_regexes(cls, value: dict[str, str]) -> dict[str, str]:
        for name, pattern in value.items():
            try:
                anyprobe.check_regex(pattern)
            except ValueError as exc:
                raise ValueError(f"header {name}: {exc}") from None
        return value

    @field_validator("user_agent")
    @classmethod
    def _user_agent_is_a_header_value(cls, value: str) -> str:
        if not header_value_ok(value):
            raise ValueError("control characters are not allowed in user_agent")
        return value

    @field_validator("bearer_token")
    @classmethod
    def _token_is_a_header_value(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not header_value_ok(value.get_secret_value()):
            raise ValueError("control characters are not allowed in bearer_token")
        token = None if value is None else value.get_secret_value()
        if token is not None and (not token or token.strip() != token):
            raise ValueError("bearer_token is empty or starts or ends with a space")
        return value

    @field_validator("expect_status")
    @classmethod
    def _status_codes(cls, value: list[int | str]) -> list[int | str]:
        checked: list[int | str] = []
        for item in value:
            if isinstance(item, str) and item.isdigit():
                item = int(item)
            if isinstance(item, int) and not isinstance(item, bool) and 100 <= item <= 599:
                checked.append(item)
            elif isinstance(item, str) and _STATUS_CLASS.match(item.lower()):
                checked.append(item.lower())
            else:
                raise ValueError(f"{item!r} is not a status code (100-599) or class like '2xx'")
        if not checked:
            raise ValueError("expect_status needs at least one code or class")
        return checked

    @field_validator("proxy")
    @classmethod
    def _proxy_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            url = urlsplit(value)
            url.port  # noqa: B018 - raises ValueError for a bad port
        except ValueError as exc:
            raise ValueError(f"bad proxy URL: {exc}") from None
        if url.scheme != "http" or not url.hostname:
            raise ValueError("proxy must be an http://host:port URL")
        return value

    @field_validator("password_env")
    @classmethod
    def _password_is_a_header_value(
        cls, value: anyprobe.SecretEnv | None
    ) -> anyprobe.SecretEnv | None:
        return None if value is None else check_secret_header(value)

    @field_validator("bearer_token_env")
    @classmethod
    def _token_env_is_a_header_value(
        cls, value: anyprobe.SecretEnv | None
    ) -> anyprobe.SecretEnv | None:
        if value is None:
            return None
        check_secret_header(value)
        token = value.get_secret_value()
        if token.strip() != token:
            raise ValueError(f"environment variable {value.variable} starts or ends with a space")
        return value

    @model_validator(mode="after")
    def _http_options_consistent(self) -> HttpOptions:
        if self.body is not None and self.json_body is not None:
            raise ValueError("set body or json_body, not both")
        if self.password is not None and self.password_env is not None:
            raise ValueError("set password or password_env, not both")
        if self.bearer_token is not None and self.bearer_token_env is not None:
            raise ValueError("set bearer_token or bearer_token_env, not both")
        basic = self.username is not None or self.password or self.password_env is not None
        if basic and (self.bearer_token is not None or self.bearer_token_env is not None):
            raise ValueError("set basic authentication or a bearer token, not both")
        if (self.password is not None or self.password_env is not None) and self.username is None:
            raise ValueError("a password needs a username")
        if self.proxy is not None and self.addresses != "first":
            raise ValueError(
                f"addresses = {self.addresses!r} cannot go through a proxy "
                "(the proxy resolves the name)"
            )
        if self.json_body is not None:
            import json

            try:
                # JSON has no NaN nor Infinity: json.dumps would write them anyway.
                json.dumps(self.json_body, allow_nan=False)
            except (TypeError, ValueError, RecursionError) as exc:
                raise ValueError(f"json_body is not JSON-serialisable: {exc}") from None
        return self

    def model_post_init(self, context: Any, /) -> None:
        # The same functions work out a target's default options (HTTP_DEFAULTS).
        (
            self._body_patterns,
            self._body_antipatterns,
            self._header_patterns,
            self._json_expressions,
        ) = compile_assertions(self)

    @property
    def needs_body(self) -> bool:
        """True when an assertion reads the body (else it is only counted)."""
        return reads_body(self)

    def secret_values(self) -> list[str]:
        """Every secret this check may send, to redact from any text shown."""
        return secret_values(self)
