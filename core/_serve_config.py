"""The config tables ``anyprobe serve`` owns: ``[module.NAME]`` and ``[serve]``.

::

    [module.http_2xx]       # a named option set for /probe?module=http_2xx
    probe = "http"
    timeout = 5
    expect_status = [200]

    [serve]
    allow_targets = ["*.example.com", "10.0.0.0/8"]
    interval = 60           # seconds between runs of a [[check]] without its own
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import ConfigDict, Field, ValidationError

from ._errors import ConfigError, OptionsError, did_you_mean
from ._manager import PluginManager
from ._options import SettingsModel
from ._serve_security import AllowList
from ._store_config import StoreTable, parse_store_table
from ._targets import options_error
from .masking import options_masker

if TYPE_CHECKING:
    from ._alerts import AlertRule
    from ._maintenance import Maintenance
    from ._model import Target
    from ._reporter import Reporter

DEFAULT_INTERVAL = 60.0

_CONTROL = re.compile(r"[\x00-\x20\x7f]")
#: Options naming where a probe connects (server_name, proxy, a URL...).
_HOST_FIELD = re.compile(r"host|server|proxy|url", re.IGNORECASE)

#: Modules every server has; a ``[module.NAME]`` table of the same name replaces one.
BUILTIN_MODULES: dict[str, dict[str, Any]] = {
    "http_2xx": {"probe": "http"},
    "http_post_2xx": {"probe": "http", "method": "POST"},
    "tcp_connect": {"probe": "tcp"},
    "tls_connect": {"probe": "tcp", "scheme": "tls"},
}


# -- config: [module.NAME] and [serve] -----------------------------------------


class ModuleSettings(SettingsModel):
    """The fields of a ``[module.NAME]`` table that are not the probe's options."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    probe: str = Field(description="The probe that runs: http, tcp, dns, ssh...")
    timeout: float | None = Field(
        None,
        gt=0,
        description="Seconds a probe may take; the scrape's timeout wins when smaller.",
    )
    scheme: str | None = Field(
        None,
        description="Scheme given to a target written without one (host:port); "
        "default the probe's first scheme.",
    )


MODULE_FIELDS = tuple(ModuleSettings.model_fields)


class ServeSettings(SettingsModel):
    """The ``[serve]`` table."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    allow_targets: list[str] = Field(
        default_factory=list,
        description="Hosts /probe may connect to: name patterns (*.example.com) and "
        "networks (10.0.0.0/8, 2001:db8::/32). Empty: any host.",
    )
    interval: float = Field(
        DEFAULT_INTERVAL, gt=0, description="Seconds between runs of a [[check]] without one."
    )
    title: str = Field("Status", description="The status page's title.")
    group_by: str | None = Field(
        None,
        description="The label whose value groups checks on the status page "
        '(group_by = "team"); checks without it share one group.',
    )
    connectivity: str | None = Field(
        None,
        min_length=1,
        description="A [[check]] telling whether the monitor itself is online: while it "
        "fails, no alert about the other checks is sent.",
    )


@dataclass(frozen=True)
class Module:
    """A validated module: the probe, its options, and the module's own settings."""

    name: str
    probe: str
    scheme: str
    timeout: float | None
    options: Any
    raw_options: Mapping[str, Any]

    def describe(self) -> str:
        """The module as TOML-like lines for the debug view, secrets masked by
        :mod:`anyprobe.masking`'s rule (secret fields, credential headers, URL
        passwords, and those values wherever else they appear)."""
        lines = [f"[module.{self.name}]", f'probe = "{self.probe}"', f'scheme = "{self.scheme}"']
        if self.timeout is not None:
            lines.append(f"timeout = {self.timeout:g}")
        dumped = self.options.model_dump(exclude_defaults=True)
        shown = options_masker(self.options).options(type(self.options), dumped)
        for key in sorted(shown):
            lines.append(f"{key} = {json.dumps(shown[key], default=str)}")
        return "\n".join(lines)


@dataclass
class ServeTables:
    """The validated ``[module.NAME]`` and ``[serve]`` tables of a config file."""

    modules: dict[str, Module]
    settings: ServeSettings = field(default_factory=lambda: ServeSettings.model_validate({}))
    allow: AllowList = field(default_factory=AllowList)
    #: The ``[store]`` table (anyprobe._store_config), None without one.
    store: StoreTable | None = None
    #: The ``[[alert]]`` tables (anyprobe._alerts).
    alerts: list[AlertRule] = field(default_factory=list)
    #: The ``[[maintenance]]`` tables (anyprobe._maintenance).
    maintenance: list[Maintenance] = field(default_factory=list)


def build_module(manager: PluginManager, name: str, raw: Mapping[str, Any]) -> Module:
    """Validate one module's table; raises OptionsError naming the field."""
    own = {k: v for k, v in raw.items() if k in MODULE_FIELDS}
    options = {k: v for k, v in raw.items() if k not in MODULE_FIELDS}
    try:
        settings = ModuleSettings.model_validate(own)
    except ValidationError as exc:
        raise options_error(exc, ModuleSettings, what=f"module {name}") from None
    probe = manager.probes.get(settings.probe)
    if probe is None:
        known = ", ".join(sorted(manager.probes)) or "none"
        hint = did_you_mean(settings.probe, manager.probes)
        raise OptionsError(
            f"unknown probe {settings.probe!r}{hint} (known: {known})", field="probe"
        )
    scheme = (settings.scheme or probe.schemes[0]).lower()
    if manager.probe_for_scheme(scheme) is not probe:
        raise OptionsError(
            f"scheme {scheme!r} is not one of probe {probe.name}'s ({', '.join(probe.schemes)})",
            field="scheme",
        )
    known_fields = probe.Options.model_fields
    for key in options:
        if key not in known_fields:
            hint = did_you_mean(key, [*known_fields, *MODULE_FIELDS])
            raise OptionsError(f"unknown option for probe {probe.name}{hint}", field=key)
    for key, value in options.items():
        if isinstance(value, str) and _HOST_FIELD.search(key) and _CONTROL.search(value):
            raise OptionsError("control characters or spaces are not allowed here", field=key)
    try:
        validated = probe.Options.model_validate(options)
    except ValidationError as exc:
        raise options_error(exc, probe.Options, what=f"probe {probe.name}") from None
    return Module(name, probe.name, scheme, settings.timeout, validated, dict(options))


def builtin_modules(manager: PluginManager) -> dict[str, Module]:
    """The built-in modules whose probe is installed."""
    modules = {}
    for name, raw in BUILTIN_MODULES.items():
        if raw["probe"] in manager.probes:
            modules[name] = build_module(manager, name, raw)
    return modules


def parse_serve_tables(
    document: Mapping[str, Any],
    manager: PluginManager,
    fail: Callable[..., ConfigError],
    targets: Sequence[Target] = (),
    reporters: Sequence[tuple[str, Reporter[Any]]] = (),
) -> ServeTables:
    """Validate the ``[module.NAME]`` and ``[serve]`` tables of a config document.

    ``fail(message, table=..., key=...)`` makes the ConfigError that names the
    file and line (config.py's helper).
    """
    modules = builtin_modules(manager)
    raw_modules = document.get("module", {})
    if not isinstance(raw_modules, dict):
        raise fail("[module] must hold tables: [module.NAME]", table="module")
    for name, raw in raw_modules.items():
        table = f"module.{name}"
        if not isinstance(raw, dict):
            raise fail(f"[module.{name}] must be a table", table=table)
        try:
            modules[name] = build_module(manager, name, raw)
        except OptionsError as exc:
            key = exc.field.split(".")[0] if exc.field else None
            raise fail(f"module {name}: {exc.message}", table=table, key=key) from None
    raw_settings = document.get("serve", {})
    if not isinstance(raw_settings, dict):
        raise fail("[serve] must be a table", table="serve")
    try:
        settings = ServeSettings.model_validate(raw_settings)
    except ValidationError as exc:
        error = options_error(exc, ServeSettings, what="[serve]")
        raise fail(error.message, table="serve", key=error.field) from None
    try:
        allow = AllowList(settings.allow_targets)
    except ValueError as exc:
        raise fail(str(exc), table="serve", key="allow_targets") from None
    from ._alerts_config import parse_alerts
    from ._maintenance import check_names_known, parse_maintenance

    if settings.connectivity is not None:
        check_names_known(
            [settings.connectivity],
            [t.name for t in targets],
            lambda message: fail(message, table="serve", key="connectivity"),
        )
    alerts = parse_alerts(document, fail, targets, reporters)
    maintenance = parse_maintenance(document, fail, targets)
    return ServeTables(
        modules,
        settings,
        allow,
        store=parse_store_table(document, fail),
        alerts=alerts,
        maintenance=maintenance,
    )
