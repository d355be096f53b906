"""Options a plugin's target or reporter gets without building (or importing) its model.

A cold start that checks one ``tcp://`` target with no options pays for
importing pydantic and building the probe's options model, more than the
check itself costs. A probe (or reporter) may therefore say, as plain values,
what its options are when none are set (``option_defaults``), and name its
model by module and attribute (:class:`lazy_model`) so that importing the
plugin does not import pydantic. Core then gives such a target a
:class:`DefaultOptions`: the default values as attributes, and the real model
instance, built on first need, for anything else. Nothing here imports
pydantic.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any


class lazy_model:  # a class attribute's value, named like property
    """A class attribute naming a pydantic model ``module:Name``, imported on first read::

        class RedisProbe(anyprobe.Probe["RedisOptions"]):
            Options = anyprobe.lazy_model("anyprobe_redis._options:RedisOptions")

    Reading ``RedisProbe.Options`` imports the module and returns the model;
    the plugin's own module can then be imported without pydantic.
    """

    __slots__ = ("_model", "path")

    def __init__(self, path: str) -> None:
        module, colon, name = path.partition(":")
        if not colon or not module or not name:
            raise ValueError(f"lazy_model({path!r}): expected 'module:Name'")
        self.path = path
        self._model: type[Any] | None = None

    def __get__(self, instance: object, owner: type | None = None) -> Any:
        if self._model is None:
            module, _, name = self.path.partition(":")
            self._model = getattr(importlib.import_module(module), name)
        return self._model


class DefaultOptions:
    """A plugin's default options: ``values`` read as attributes, without the model.

    Anything else (``model_dump()``, ``model_fields``, ``isinstance``,
    equality, ``repr``) is answered by ``plugin_type.Options()``, built (and
    pydantic imported) the first time it is needed, so code that treats the
    options as the model still works.
    """

    __slots__ = ("_built", "_plugin_type", "_values")

    def __init__(self, plugin_type: type, values: Mapping[str, Any]) -> None:
        object.__setattr__(self, "_plugin_type", plugin_type)
        object.__setattr__(self, "_values", values)
        object.__setattr__(self, "_built", None)

    def model(self) -> Any:
        """The real options model instance, built on first call."""
        built = object.__getattribute__(self, "_built")
        if built is None:
            built = object.__getattribute__(self, "_plugin_type").Options()
            object.__setattr__(self, "_built", built)
        return built

    def __getattr__(self, name: str) -> Any:
        values = object.__getattribute__(self, "_values")
        if name in values:
            return values[name]
        return getattr(self.model(), name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self.model(), name, value)  # the model says why it is frozen

    @property  # type: ignore[misc]
    def __class__(self) -> type:  # isinstance(options, TheModel) holds
        return type(self.model())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, DefaultOptions):
            other = other.model()
        return bool(self.model() == other)

    def __hash__(self) -> int:
        return hash(self.model())

    def __repr__(self) -> str:
        return repr(self.model())
