"""What every options model shares: one value where a list is expected is a
list of one, and ``true`` is not a number.

``--set expect_answers=127.0.0.1`` and ``expect_answers = "127.0.0.1"`` in a
config mean ``["127.0.0.1"]``, for every list option of every probe and
reporter, built-in or not: :class:`~anyprobe.ProbeOptions` and
:class:`~anyprobe.ReporterOptions` apply :func:`one_value_as_list` before
validation. They, and every table of a config file (:class:`SettingsModel`),
also apply :func:`numbers_not_bools`: ``retries = true`` is refused, naming
the field, where pydantic alone would read it as 1.
"""

from __future__ import annotations

import collections.abc
import functools
import types
import typing
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

_COLLECTIONS = (
    list,
    tuple,
    set,
    frozenset,
    collections.abc.Sequence,
    collections.abc.MutableSequence,
    collections.abc.Set,
    collections.abc.MutableSet,
)


def _is_collection(annotation: Any) -> bool:
    """A list, tuple or set type, or a union of them with None (``list[str] | None``)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _is_collection(typing.get_args(annotation)[0])
    if origin is typing.Union or origin is types.UnionType:
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        return bool(members) and all(_is_collection(a) for a in members)
    return (origin or annotation) in _COLLECTIONS


@functools.cache
def _list_fields(model: type[BaseModel]) -> frozenset[str]:
    """The names (and aliases) of ``model``'s fields that take a list, tuple or set."""
    names: set[str] = set()
    for name, info in model.model_fields.items():
        if _is_collection(info.annotation):
            names.add(name)
            if info.alias:
                names.add(info.alias)
    return frozenset(names)


def _is_number(annotation: Any) -> bool:
    """An int or float type, or a union of them with None (``float | None``)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _is_number(typing.get_args(annotation)[0])
    if origin is typing.Union or origin is types.UnionType:
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        return bool(members) and all(_is_number(a) for a in members)
    return annotation is int or annotation is float


@functools.cache
def _number_fields(model: type[BaseModel]) -> frozenset[str]:
    """The names (and aliases) of ``model``'s fields that take an int or a float."""
    names: set[str] = set()
    for name, info in model.model_fields.items():
        if _is_number(info.annotation):
            names.add(name)
            if info.alias:
                names.add(info.alias)
    return frozenset(names)


def numbers_not_bools(model: type[BaseModel], data: Any) -> Any:
    """``data`` with each ``true`` or ``false`` given to a number field turned
    into that text, which the field's validation then refuses by name."""
    if not isinstance(data, collections.abc.Mapping):
        return data
    fields = _number_fields(model)
    if not any(isinstance(data[key], bool) for key in fields.intersection(data)):
        return data
    return {
        key: ("true" if value else "false") if key in fields and isinstance(value, bool) else value
        for key, value in data.items()
    }


class SettingsModel(BaseModel):
    """Base of the models of a config file's tables (``[defaults]``,
    ``[[check]]``, ``[store]``...): a number field refuses ``true`` and ``false``."""

    @model_validator(mode="before")
    @classmethod
    def _no_bool_numbers(cls, data: Any) -> Any:
        return numbers_not_bools(cls, data)


def one_value_as_list(model: type[BaseModel], data: Any) -> Any:
    """``data`` with each single value given to a list field wrapped in a list of one."""
    if not isinstance(data, collections.abc.Mapping):
        return data
    fields = _list_fields(model)
    if not fields.intersection(data):
        return data
    return {
        key: [value]
        if key in fields
        and value is not None
        and not isinstance(value, list | tuple | set | frozenset | collections.abc.Mapping)
        else value
        for key, value in data.items()
    }


class ProbeOptions(BaseModel):
    """Base of every probe's options model; the fields here apply to every probe.

    Subclasses add their own fields, each with a default and a ``description``
    (shown by ``anyprobe plugins`` and in the config schema).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    warning_after: float | None = Field(
        default=None,
        gt=0,
        description="Seconds: a check that succeeds but takes longer is a warning.",
    )
    critical_after: float | None = Field(
        default=None,
        gt=0,
        description="Seconds: a check that succeeds but takes longer is critical.",
    )

    @model_validator(mode="before")
    @classmethod
    def _one_value_is_a_list_of_one(cls, data: Any) -> Any:
        # One rule for every probe's list options: `--set expect_answers=10.0.0.1`.
        return numbers_not_bools(cls, one_value_as_list(cls, data))

    @model_validator(mode="after")
    def _thresholds_in_order(self) -> ProbeOptions:
        if (
            self.warning_after is not None
            and self.critical_after is not None
            and self.warning_after > self.critical_after
        ):
            raise ValueError("warning_after must not be greater than critical_after")
        return self


class AddressOptions(ProbeOptions):
    """Options of a probe that connects to its target's host by name: a
    subclass of :class:`ProbeOptions` with ``ip_family`` and ``addresses``.

    A probe whose options derive from it, and which connects through
    ``ctx.connect()``, ``ctx.connect_socket()`` or ``ctx.resolve()``, checks
    every address of the host with ``addresses = "all"`` (the worst verdict)
    or ``"any"`` (the best): core resolves the name once and runs the check
    once per address, pinned to it (see ``docs/addresses.md``).
    """

    ip_family: Literal["any", "ipv4", "ipv6"] = Field(
        "any", description="Address family to connect over: any, ipv4 or ipv6."
    )
    addresses: Literal["first", "all", "any"] = Field(
        "first",
        description="Which addresses of the host to check: first (the first that accepts), "
        "all (each one; the worst verdict) or any (each one; ok when one passes).",
    )


class ReporterOptions(BaseModel):
    """Base of every reporter's options; ``path`` is where the output goes."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    path: str | None = Field(
        default=None,
        description="File to write; '-' or unset for standard output (-r NAME=PATH).",
    )

    @model_validator(mode="before")
    @classmethod
    def _one_value_is_a_list_of_one(cls, data: Any) -> Any:
        # The same rules as for probe options.
        return numbers_not_bools(cls, one_value_as_list(cls, data))
