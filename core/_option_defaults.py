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

#: The defaults of the options every TLS-speaking socket probe shares
#: (ProbeOptions, AddressOptions, TlsOptions), for its ``option_defaults``;
#: tests/test_cold_start.py compares them with the models'.
SOCKET_TLS_DEFAULTS: Mapping[str, Any] = {
    "warning_after": None,
    "critical_after": None,
    "ip_family": "any",
    "addresses": "first",
    "verify": True,
    "ca_file": None,
    "client_cert": None,
    "client_key": None,
    "server_name": None,
    "cert_expiry_warning_days": 21,
    "cert_expiry_critical_days": 7,
    "tls_min_version": None,
    "tls_max_version": None,
}


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

    ``values`` holds every field's default and, for a plugin whose code reads
    more of its options than fields, the rest under the same names: the value
    of a computed attribute (a property, a private attribute the model sets in
    ``model_post_init``) and, for a method, a callable taking no argument
    (``options.secret_values()`` calls ``values["secret_values"]()``), each
    computed from the defaults as the model computes it. They are the
    instance's own attributes, read as fast as a model's.

    Anything else (``model_dump()``, ``model_fields``, ``isinstance``,
    equality, ``repr``) is answered by ``plugin_type.Options()``, built (and
    pydantic imported) the first time it is needed, so code that treats the
    options as the model still works.
    """

    def __init__(self, plugin_type: type, values: Mapping[str, Any]) -> None:
        own = object.__getattribute__(self, "__dict__")
        own.update(values)
        # Mangled names: a plugin's option may be called anything else.
        own["_DefaultOptions__plugin_type"] = plugin_type
        own["_DefaultOptions__built"] = None

    def __getattr__(self, name: str) -> Any:
        # Only for what is not in values: the model answers (or says it has no such name).
        if name.startswith("_DefaultOptions__"):
            raise AttributeError(name)
        return getattr(built_model(self), name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(built_model(self), name, value)  # the model says why it is frozen

    def __delattr__(self, name: str) -> None:
        delattr(built_model(self), name)

    @property  # type: ignore[misc]
    def __class__(self) -> type:  # isinstance(options, TheModel) holds
        return type(built_model(self))

    def __eq__(self, other: object) -> bool:
        if type(other) is DefaultOptions:
            other = built_model(other)
        return bool(built_model(self) == other)

    def __hash__(self) -> int:
        return hash(built_model(self))

    def __repr__(self) -> str:
        return repr(built_model(self))


def built_model(options: DefaultOptions) -> Any:
    """The real options model instance behind ``options``, built on first call."""
    own = object.__getattribute__(options, "__dict__")
    built = own["_DefaultOptions__built"]
    if built is None:
        built = own["_DefaultOptions__built"] = own["_DefaultOptions__plugin_type"].Options()
    return built
