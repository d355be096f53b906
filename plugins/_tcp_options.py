"""The TCP probe's options (:class:`TcpOptions`), apart from the probe so that a
check that sets none imports no pydantic (see :class:`anyprobe.lazy_model`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

import anyprobe
from anyprobe import host_problem
from anyprobe.net import IpFamily
from anyprobe.plugins.tcp import unescape
from anyprobe.tls import TlsOptions

__all__ = ["TcpOptions"]


class TcpOptions(TlsOptions, anyprobe.AddressOptions):
    ip_family: IpFamily = Field(
        "any", description="Address family to connect over: any, ipv4 or ipv6."
    )
    send: str | None = Field(
        None,
        description=r"Bytes to send once connected (after TLS), with escapes \r \n \t \0 "
        r"\e \\ \xHH. Never shown in results.",
        json_schema_extra={"secret": True},
    )
    expect: str | None = Field(
        None,
        description="Text (same escapes) that must appear in what the server sends, "
        "read until it does, the connection closes or max_bytes arrive.",
    )
    expect_regex: str | None = Field(
        None,
        description="Regular expression (RE2 syntax, on bytes, multi-line: ^ matches at "
        "each line) that what the server sends must match; instead of expect.",
    )
    expect_timeout: float | None = Field(
        None,
        gt=0,
        description="Seconds to wait for the expected reply; default: until the check's "
        "timeout. A reply that does not come in time is critical.",
    )
    max_bytes: int = Field(
        4096, ge=1, le=16 * 1024 * 1024, description="Most bytes read looking for expect."
    )
    quit: str | None = Field(
        None, description="Bytes (same escapes) to send before closing, e.g. QUIT\\r\\n."
    )
    starttls: Literal["smtp", "imap", "pop3"] | None = Field(
        None,
        description="On tcp://, upgrade to TLS with the protocol's STARTTLS command "
        "(SMTP on 25/587, IMAP on 143, POP3 on 110), then check the certificate.",
    )
    helo_name: str = Field(
        "localhost", description="Name sent in SMTP's EHLO when starttls = smtp."
    )

    @field_validator("send", "expect", "quit")
    @classmethod
    def _valid_escapes(cls, value: str | None) -> str | None:
        if value is not None:
            unescape(value)
        return value

    @field_validator("expect_regex")
    @classmethod
    def _valid_regex(cls, value: str | None) -> str | None:
        return anyprobe.check_regex(value, binary=True, multiline=True)

    @field_validator("helo_name")
    @classmethod
    def _helo_name_is_a_host(cls, value: str) -> str:
        # Sent in the EHLO line: a CR or LF would start another SMTP command.
        if value.startswith("[") and value.endswith("]"):
            problem = None if _is_address(value[1:-1]) else f"{value} is not an address"
        else:
            problem = host_problem(value)
        if problem is not None:
            raise ValueError(
                f"must be a host name or an address literal like [192.0.2.1] ({problem})"
            )
        return value

    @model_validator(mode="after")
    def _one_expectation(self) -> TcpOptions:
        if self.expect is not None and self.expect_regex is not None:
            raise ValueError("set expect or expect_regex, not both")
        if self.expect == "":
            raise ValueError("expect must not be empty")
        if self.expect_timeout is not None and self.expect is None and self.expect_regex is None:
            raise ValueError("expect_timeout needs expect or expect_regex")
        return self


def _is_address(text: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(text.removeprefix("IPv6:"))
    except ValueError:
        return False
    return True
