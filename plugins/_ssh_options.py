"""The options of the SSH probe (``ssh://`` checks), validated before the run.

The password and the key's passphrase come from environment variables
(:class:`anyprobe.SecretEnv`), read and checked with the options.
"""

from __future__ import annotations

import difflib
import os
import re

from pydantic import Field, field_validator, model_validator

import anyprobe
from anyprobe.net import IpFamily

__all__ = ["SshOptions", "expand_path", "host_key_algorithms"]

_FINGERPRINT = re.compile(r"^SHA256:[A-Za-z0-9+/]{43}=?$")


class SshOptions(anyprobe.AddressOptions):
    ip_family: IpFamily = Field(
        "any", description="Address family to connect over: any, ipv4 or ipv6."
    )
    expect_version: str | None = Field(
        None,
        description="Regular expression (RE2 syntax) the server's version line must match "
        "(searched in e.g. 'SSH-2.0-OpenSSH_9.2p1 Debian-2').",
    )
    key_file: str | None = Field(
        None, description="Private key file to log in with (public key authentication)."
    )
    key_passphrase_env: anyprobe.SecretEnv | None = Field(
        None, description="Name of the environment variable holding key_file's passphrase."
    )
    agent: bool = Field(
        False,
        description="Log in with the keys of the SSH agent (SSH_AUTH_SOCK), and the "
        "default keys in ~/.ssh as ssh does.",
    )
    password_env: anyprobe.SecretEnv | None = Field(
        None,
        description="Name of the environment variable holding the password to log in "
        "with (the password itself never appears in options or output).",
    )
    command: str | None = Field(
        None, description="Command to run once logged in (needs credentials)."
    )
    expect_exit_status: int = Field(
        0, ge=0, le=255, description="Exit status the command must end with."
    )
    expect_output: str | None = Field(
        None,
        description="Regular expression (RE2 syntax) the command's standard output must match "
        "(searched in its first max_output_bytes bytes).",
    )
    max_output_bytes: int = Field(
        65536,
        gt=0,
        description="Bytes of the command's output kept for expect_output; the rest "
        "is read and discarded.",
    )
    known_hosts: str | None = Field(
        None,
        description="known_hosts file to verify the host key against "
        "(default: ~/.ssh/known_hosts).",
    )
    host_key_fingerprint: str | None = Field(
        None,
        description="Expected host key fingerprint, 'SHA256:...' as ssh-keygen -l "
        "prints it; replaces known_hosts.",
    )
    host_key_algorithms: list[str] | None = Field(
        None,
        description="Host key algorithms to offer, in order of preference "
        "(e.g. ['ssh-ed25519']); useful with host_key_fingerprint.",
    )
    verify_host_key: bool = Field(
        True,
        description="Verify the server's host key. false accepts any key and says so "
        "in the result; never use it where the answer matters.",
    )

    @field_validator("expect_version", "expect_output")
    @classmethod
    def _valid_regex(cls, value: str | None) -> str | None:
        return anyprobe.check_regex(value)

    @field_validator("host_key_fingerprint")
    @classmethod
    def _valid_fingerprint(cls, value: str | None) -> str | None:
        if value is not None and not _FINGERPRINT.match(value):
            raise ValueError("must look like 'SHA256:' followed by 43 base64 characters")
        return value

    @field_validator("host_key_algorithms")
    @classmethod
    def _known_algorithms(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        if not value:
            raise ValueError("host_key_algorithms needs at least one algorithm")
        known = host_key_algorithms()
        if known is not None:
            for name in value:
                if name not in known:
                    close = difflib.get_close_matches(name, known, n=1)
                    hint = f" (did you mean '{close[0]}'?)" if close else ""
                    raise ValueError(f"unknown host key algorithm {name!r}{hint}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> SshOptions:
        if self.command is not None and not self.authenticates:
            raise ValueError("command needs credentials: key_file, agent or password_env")
        if self.expect_output is not None and self.command is None:
            raise ValueError("expect_output needs a command")
        if self.key_passphrase_env is not None and self.key_file is None:
            raise ValueError("key_passphrase_env needs key_file")
        if not self.verify_host_key and (
            self.known_hosts is not None or self.host_key_fingerprint is not None
        ):
            raise ValueError(
                "verify_host_key = false contradicts known_hosts / host_key_fingerprint"
            )
        if self.known_hosts is not None and self.host_key_fingerprint is not None:
            raise ValueError("give known_hosts or host_key_fingerprint, not both")
        # Files are looked at last, so that a contradiction is named first.
        for option in ("key_file", "known_hosts"):
            path = getattr(self, option)
            if path is not None and not os.path.isfile(expand_path(path)):
                reason = "is not a file" if os.path.exists(expand_path(path)) else "does not exist"
                raise ValueError(f"{option} {path} {reason}")
        return self

    @property
    def authenticates(self) -> bool:
        return self.key_file is not None or self.agent or self.password_env is not None


def host_key_algorithms() -> list[str] | None:
    """The host key algorithms asyncssh knows, or None without asyncssh (the
    missing package is reported on its own)."""
    try:
        from asyncssh.public_key import (
            get_certificate_algs,
            get_public_key_algs,
            get_x509_certificate_algs,
        )
    except ImportError:
        return None
    algorithms = get_x509_certificate_algs() + get_certificate_algs() + get_public_key_algs()
    return [name.decode("ascii") for name in algorithms]


def expand_path(path: str) -> str:
    return os.path.expanduser(path)  # no I/O: a string operation on $HOME
