"""A secret option read from the environment: :class:`SecretEnv`.

A probe (or reporter) option of type ``SecretEnv`` holds the *name* of an
environment variable; the variable is read when the options are validated,
before any check runs, and its value is reachable only through
:meth:`SecretEnv.get_secret_value`::

    class RedisOptions(anyprobe.ProbeOptions):
        password: anyprobe.SecretEnv | None = Field(
            None, description="Environment variable holding the AUTH password."
        )

    # checks.toml: password = "REDIS_PASSWORD"
    await conn.send(f"AUTH {options.password.get_secret_value()}\\r\\n")

The field is a secret for :mod:`anyprobe.masking` (its annotation is a
``SecretStr``): its value is masked in every summary, metric, trace and error
of the check, also where a server echoes it back. Dumped (``model_dump``,
JSON, ``repr``) it shows the variable's name only, so a dumped config loads
back to the same options.
"""

from __future__ import annotations

import os
import re
from typing import Any

from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler, SecretStr
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class SecretEnv(SecretStr):
    """A secret whose option value is the name of an environment variable.

    ``variable`` is the name; :meth:`get_secret_value` the value read when the
    options were validated. Validation fails with one line naming the
    variable when the name is not a variable name, or the variable is unset
    or empty. ``str()`` is ``***``; ``repr()`` shows the name.
    """

    __slots__ = ("variable",)

    def __init__(self, variable: str, value: str) -> None:
        super().__init__(value)
        self.variable = variable

    @classmethod
    def from_environment(
        cls, variable: str, environ: dict[str, str] | os._Environ[str] | None = None
    ) -> SecretEnv:
        """The secret held by environment variable ``variable`` (``environ``
        defaults to ``os.environ``); ValueError, naming it, when it cannot be."""
        if not isinstance(variable, str) or not _NAME.fullmatch(variable):
            # Never echoed: what is not a variable name may be the secret itself.
            raise ValueError(
                "must be the NAME of an environment variable (letters, digits and _, "
                "not starting with a digit), not the secret itself"
            )
        value = (os.environ if environ is None else environ).get(variable)
        if value is None:
            raise ValueError(f"environment variable {variable} is not set")
        if not value:
            raise ValueError(f"environment variable {variable} is empty")
        return cls(variable, value)

    @classmethod
    def read_each(cls, value: Any, what: str = "header") -> Any:
        """A dict of variable names (``header_env``) read into a dict of secrets;
        an error names the key: ``header X-Api-Key: environment variable API_KEY
        is not set``. For a ``mode="before"`` field validator of a
        ``dict[str, SecretEnv]`` field; anything else is returned as it is."""
        if not isinstance(value, dict):
            return value
        secrets = {}
        for key, variable in value.items():
            try:
                secrets[key] = cls._validate(variable)
            except ValueError as exc:
                raise ValueError(f"{what} {key}: {exc}") from None
        return secrets

    def __repr__(self) -> str:
        return f"SecretEnv({self.variable!r})"

    def __str__(self) -> str:
        return "***"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, SecretEnv)
            and other.variable == self.variable
            and other.get_secret_value() == self.get_secret_value()
        )

    def __hash__(self) -> int:
        return hash((self.variable, self.get_secret_value()))

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: type[Any], handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(
            cls._validate,
            serialization=core_schema.plain_serializer_function_ser_schema(
                lambda secret: secret.variable, when_used="always"
            ),
        )

    @classmethod
    def _validate(cls, value: Any) -> SecretEnv:
        if isinstance(value, SecretEnv):
            return value
        if not isinstance(value, str):
            raise ValueError(
                f"must be the name of an environment variable, not {type(value).__name__}"
            )
        return cls.from_environment(value)

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {
            "type": "string",
            "pattern": "^[A-Za-z_][A-Za-z0-9_]*$",
            "description": "The name of an environment variable holding the secret.",
        }
