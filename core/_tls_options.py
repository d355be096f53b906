"""The options every TLS-speaking probe shares: :class:`TlsOptions`.

A pydantic model, apart from :mod:`anyprobe.tls` so that a check that sets
no option needs no pydantic to use the TLS helpers (see
:class:`anyprobe.lazy_model`). ``anyprobe.tls.TlsOptions`` is this class,
imported the first time it is asked for.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationInfo, field_validator, model_validator

from ._options import ProbeOptions
from .tls import TLS_VERSIONS, pem_file_problem

__all__ = ["TlsOptions"]

_HOSTNAME = re.compile(
    r"^(?=.{1,253}\.?$)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
    r"(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*\.?$"
)


class TlsOptions(ProbeOptions):
    """Options shared by every probe that speaks TLS (HTTPS, ``tls://``...).

    A probe's options model inherits them::

        class HttpOptions(TlsOptions):
            method: str = "GET"
    """

    verify: bool = Field(
        True,
        description="Verify the server's certificate chain and name. Turn off only for "
        "a server whose certificate you cannot trust otherwise; expiry is still reported.",
    )
    ca_file: Path | None = Field(
        None,
        description="PEM file of CA certificates to trust instead of the system's.",
    )
    client_cert: Path | None = Field(
        None,
        description="PEM file with the client certificate (and its key, unless client_key "
        "is set) for servers that require one.",
    )
    client_key: Path | None = Field(
        None, description="PEM file with the client certificate's private key."
    )
    server_name: str | None = Field(
        None,
        description="Name sent as SNI and checked against the certificate, instead of "
        "the URL's host (HTTP also sends it as Host).",
    )
    cert_expiry_warning_days: float = Field(
        21,
        ge=0,
        description="Warning when the server's (leaf) certificate expires in fewer days.",
    )
    cert_expiry_critical_days: float = Field(
        7,
        ge=0,
        description="Critical when the server's (leaf) certificate expires in fewer days.",
    )
    tls_min_version: str | None = Field(
        None,
        description='Oldest TLS version the client offers: "1.0", "1.1", "1.2" or "1.3" '
        "(default: Python's, TLS 1.2).",
    )
    tls_max_version: str | None = Field(
        None,
        description='Newest TLS version the client offers: "1.0", "1.1", "1.2" or "1.3" '
        '(default: the newest OpenSSL has). With "1.0" or "1.1", OpenSSL\'s security '
        "level is lowered so the client can offer them (to check that a server refuses them).",
    )

    @field_validator("server_name")
    @classmethod
    def _server_name_is_a_host(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            ipaddress.ip_address(value)
        except ValueError:
            if not _HOSTNAME.match(value):
                raise ValueError(f"{value!r} is not a host name") from None
        return value

    @field_validator("tls_min_version", "tls_max_version", mode="before")
    @classmethod
    def _tls_version(cls, value: Any) -> Any:
        if value is None:
            return None
        # A TOML value (``--set tls_min_version=1.2``) arrives as a float.
        text = value if isinstance(value, str) else repr(value)
        if isinstance(value, bool) or text not in TLS_VERSIONS:
            raise ValueError(f"{value!r} is not a TLS version (one of 1.0, 1.1, 1.2, 1.3)")
        return text

    @field_validator("ca_file", "client_cert", "client_key")
    @classmethod
    def _pem_file(cls, value: Any, info: ValidationInfo) -> Any:
        if value is not None:
            pem_file_problem(value, key=info.field_name == "client_key")
        return value

    @model_validator(mode="after")
    def _tls_options_consistent(self) -> TlsOptions:
        if self.cert_expiry_critical_days > self.cert_expiry_warning_days:
            raise ValueError(
                "cert_expiry_critical_days must not be greater than cert_expiry_warning_days"
            )
        if self.client_key is not None and self.client_cert is None:
            raise ValueError("client_key needs client_cert")
        low, high = self.tls_min_version, self.tls_max_version
        if low is not None and high is not None and TLS_VERSIONS[low] > TLS_VERSIONS[high]:
            raise ValueError(f"tls_min_version {low} must not be newer than tls_max_version {high}")
        return self
