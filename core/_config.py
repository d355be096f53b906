"""The TOML config file: ``[defaults]``, ``[[check]]``, ``[[reporter]]``.

The whole file is validated before anything runs; the first problem becomes a
:class:`~anyprobe.ConfigError` naming the file, the line, the check and the
field. ``[defaults]`` holds run settings (``timeout``, ``retries``,
``concurrency``, ``per_host``, ``labels``) and default probe options, which
apply to every check whose probe has them.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

from pydantic import ConfigDict, Field, ValidationError

from ._defaults import DEFAULT_TIMEOUT
from ._errors import ConfigError, OptionsError, TargetError, UsageError, did_you_mean
from ._inputs import TomlLimitError, loads_toml
from ._manager import PluginManager
from ._model import Target
from ._options import SettingsModel
from ._reporter import Reporter
from ._targets import (
    CHECK_FIELDS,
    TargetFactory,
    options_error,
    split_url,
)
from ._targets import make_reporter as make_reporter  # its former home: still importable here

if TYPE_CHECKING:
    from ._serve_config import ServeTables
    from ._serve_push import PushCheck

TOP_LEVEL = ("defaults", "check", "reporter", "module", "serve", "store", "alert", "maintenance")
_TABLE_SHAPES = {
    "defaults": "[defaults]",
    "module": "[module.NAME]",
    "serve": "[serve]",
    "store": "[store]",
}
RUN_SETTINGS = ("timeout", "retries", "concurrency", "per_host", "labels", "reporter_timeout")
#: The largest config file read.
MAX_CONFIG_BYTES = 64 * 2**20


class RunDefaults(SettingsModel):
    """The run settings of ``[defaults]`` (probe options there are checked per probe)."""

    # Built on first use: `anyprobe check` imports this module but reads no config.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, defer_build=True)

    timeout: float = Field(DEFAULT_TIMEOUT, gt=0, description="Seconds allowed per attempt.")
    retries: int = Field(0, ge=0, le=10, description="Attempts after the first, on failure.")
    concurrency: int | None = Field(None, gt=0, description="Checks running at once.")
    per_host: int | None = Field(None, gt=0, description="Checks running at once per host.")
    labels: dict[str, str] = Field(default_factory=dict, description="Labels of every check.")
    reporter_timeout: float | None = Field(
        None, gt=0, description="Seconds reporters may take to finish after the last result."
    )


class CheckSettings(SettingsModel):
    """The fields of a ``[[check]]`` that core handles (the rest are probe options)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, defer_build=True)

    url: str = Field(description="The target URL; its scheme picks the probe.")
    name: str | None = Field(None, min_length=1, description="Defaults to the URL.")
    timeout: float | None = Field(None, gt=0, description="Overrides the default timeout.")
    retries: int | None = Field(None, ge=0, le=10, description="Overrides the default retries.")
    labels: dict[str, str] = Field(default_factory=dict, description="Added to the defaults.")
    interval: float | None = Field(
        None, gt=0, description="Seconds between two runs of the check under anyprobe serve."
    )


#: Check fields that only ``anyprobe serve`` uses, next to core's CHECK_FIELDS.
SERVE_CHECK_FIELDS = ("interval",)


@dataclass
class Config:
    """A validated config file, ready to run."""

    path: str
    targets: list[Target]
    reporters: list[tuple[str, Reporter[Any]]]
    defaults: RunDefaults
    probe_defaults: dict[str, Any] = field(default_factory=dict)
    #: Check name -> its ``interval``, for the checks that set one.
    intervals: dict[str, float] = field(default_factory=dict)
    #: The ``[module.NAME]`` and ``[serve]`` tables (see anyprobe._serve_config), or None.
    serve: ServeTables | None = None
    #: The ``[[check]]`` tables with ``push = true`` (see anyprobe._serve_push):
    #: served by ``anyprobe serve``, never run, so not in ``targets``.
    push_checks: list[PushCheck] = field(default_factory=list)

    @property
    def all_targets(self) -> list[Target]:
        """Every check's target, scheduled ones first, then each push check's
        (``push://NAME``, probe ``push``): what a monitor shows, keeps and alerts on."""
        return [*self.targets, *(check.target for check in self.push_checks)]


class _Lines:
    """Where things are in the file: tomllib gives no positions, so scan for them."""

    header = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.\"' -]+?)\s*\]\]?")
    key = re.compile(r"^\s*([A-Za-z0-9_\-]+|\"[^\"]*\")\s*=")

    def __init__(self, text: str) -> None:
        self.tables: dict[tuple[str, int], tuple[int, dict[str, int]]] = {}
        counts: dict[str, int] = {}
        current: dict[str, int] | None = None
        for number, line in enumerate(text.splitlines(), start=1):
            m = self.header.match(line)
            if m:
                name = m.group(2).strip()
                index = counts.get(name, 0)
                counts[name] = index + 1
                current = {}
                self.tables[(name, index)] = (number, current)
                continue
            m = self.key.match(line)
            if m and current is not None:
                current.setdefault(m.group(1).strip('"'), number)

    def line(self, table: str, index: int = 0, key: str | None = None) -> int | None:
        entry = self.tables.get((table, index))
        if entry is None:
            return None
        header_line, keys = entry
        return keys.get(key, header_line) if key else header_line


def load_config(
    path: str,
    manager: PluginManager,
    *,
    overrides: Mapping[str, Any] | None = None,
    require_checks: bool = True,
    allow_stdin: bool = False,
) -> Config:
    """Read and validate the config file at ``path``.

    ``overrides`` (from CLI flags: ``timeout``, ``retries``...) replace the
    ``[defaults]``; a check's own ``timeout``/``retries`` still win. With
    ``allow_stdin``, ``path`` ``-`` reads the config from stdin (named
    ``<stdin>`` in errors).
    """
    from_stdin = allow_stdin and path == "-"
    source = "<stdin>" if from_stdin else path
    try:
        if from_stdin:
            data = sys.stdin.buffer.read(MAX_CONFIG_BYTES + 1)
        else:
            with open(path, "rb") as f:
                data = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read config: {exc.strerror or exc}", source=source) from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"larger than {MAX_CONFIG_BYTES // 2**20} MiB", source=source)
    import tomllib

    try:
        text = data.decode("utf-8").removeprefix("\ufeff")
        document = loads_toml(text)
    except UnicodeDecodeError:
        raise ConfigError("not UTF-8 text", source=source) from None
    except tomllib.TOMLDecodeError as exc:
        line = _toml_error_line(str(exc))
        raise ConfigError(f"invalid TOML: {exc}", source=source, line=line) from None
    except TomlLimitError as exc:
        raise ConfigError(f"invalid TOML: {exc}", source=source) from None
    path = source
    lines = _Lines(text)
    return parse_config(
        document,
        manager,
        path=path,
        lines=lines,
        overrides=overrides,
        require_checks=require_checks,
    )


def _toml_error_line(message: str) -> int | None:
    m = re.search(r"line (\d+)", message)
    return int(m.group(1)) if m else None


def parse_config(
    document: Mapping[str, Any],
    manager: PluginManager,
    *,
    path: str = "<config>",
    lines: _Lines | None = None,
    overrides: Mapping[str, Any] | None = None,
    require_checks: bool = True,
) -> Config:
    """Validate an already-parsed config document (see :func:`load_config`).

    ``require_checks=False`` accepts a file without ``[[check]]`` (a server's).
    """
    parser = _Parser(document, manager, path, lines or _Lines(""))
    parser.check_top_level()
    defaults, probe_defaults = parser.defaults(overrides)
    checks = _array(document, "check", path)
    if not checks and require_checks:
        raise ConfigError("no [[check]] tables: nothing to check", source=path)
    factory = TargetFactory(manager)
    targets: list[Target] = []
    names: dict[str, int] = {}
    intervals: dict[str, float] = {}
    push_checks, push_indexes = parser.push_checks(checks, defaults)
    for index, raw in enumerate(checks):
        if index in push_indexes:
            name, named = push_indexes[index], True
        else:
            target, settings = parser.check(index, raw, factory, defaults, probe_defaults)
            name, named = target.name, settings.name is not None
            if settings.interval is not None:
                intervals[target.name] = settings.interval
            targets.append(target)
        if name in names:
            raise parser.fail(
                f"duplicate check name (first used by check #{names[name] + 1})",
                table="check",
                index=index,
                key="name" if named else "url",
                check=_check_label(index, raw),
            )
        names[name] = index
    if push_checks and not targets and require_checks:
        raise ConfigError(
            "only push checks: nothing to run (anyprobe serve watches them)", source=path
        )
    parser.refuse_unused_defaults(probe_defaults)
    reporters = parser.reporters()
    serve = None
    if any(table in document for table in ("module", "serve", "store", "alert", "maintenance")):
        from ._serve_config import parse_serve_tables

        every = [*targets, *(check.target for check in push_checks)]
        serve = parse_serve_tables(document, manager, parser.fail, every, reporters)
    config = Config(path, targets, reporters, defaults, probe_defaults, intervals, serve)
    config.push_checks = push_checks
    return config


def _check_label(index: int, raw: Mapping[str, Any]) -> str:
    """How errors name a check: its name, or its position (``#3``)."""
    name = raw.get("name")
    return repr(name) if isinstance(name, str) else f"#{index + 1}"


class _Parser:
    """The parts of :func:`parse_config`, sharing the document and how to name a place in it."""

    def __init__(
        self, document: Mapping[str, Any], manager: PluginManager, path: str, lines: _Lines
    ) -> None:
        self.document = document
        self.manager = manager
        self.path = path
        self.lines = lines
        #: The ``[defaults]`` probe options some check's probe has.
        self.used_defaults: set[str] = set()

    def fail(
        self,
        message: str,
        *,
        table: str,
        index: int = 0,
        key: str | None = None,
        check: str | None = None,
    ) -> ConfigError:
        """The error for ``key`` of the ``index``-th ``table``, naming file and line."""
        line = self.lines.line(table, index, key)
        return ConfigError(message, source=self.path, line=line, check=check, field=key)

    def check_top_level(self) -> None:
        for key in self.document:
            if key not in TOP_LEVEL:
                raise ConfigError(
                    f"unknown table [{key}]{did_you_mean(key, TOP_LEVEL)} (expected one of: "
                    + ", ".join(_TABLE_SHAPES.get(t, f"[[{t}]]") for t in TOP_LEVEL)
                    + ")",
                    source=self.path,
                    line=self.lines.line(key),
                )

    def defaults(self, overrides: Mapping[str, Any] | None) -> tuple[RunDefaults, dict[str, Any]]:
        """``[defaults]``: the run settings (with the CLI's overrides) and the probe options."""
        raw_defaults = _table(self.document, "defaults", self.path)
        run_part = {k: v for k, v in raw_defaults.items() if k in RUN_SETTINGS}
        probe_defaults = {k: v for k, v in raw_defaults.items() if k not in RUN_SETTINGS}
        given = {k: v for k, v in (overrides or {}).items() if v is not None}
        # The file's own values are validated even where a CLI flag replaces them.
        for values in (run_part, {**run_part, **given}):
            try:
                defaults = RunDefaults.model_validate(values)
            except ValidationError as exc:
                error = options_error(exc, RunDefaults, what="[defaults]")
                raise self.fail(error.message, table="defaults", key=error.field) from None
        return defaults, probe_defaults

    def check(
        self,
        index: int,
        raw: Any,
        factory: TargetFactory,
        defaults: RunDefaults,
        probe_defaults: Mapping[str, Any],
    ) -> tuple[Target, CheckSettings]:
        """One ``[[check]]`` table as a target, with the settings core reads from it."""
        if not isinstance(raw, dict):
            raise self.fail("each [[check]] must be a table", table="check", index=index)
        label = _check_label(index, raw)
        url = raw.get("url")
        if not isinstance(url, str):
            raise self.fail(
                'a check needs url = "SCHEME://..."',
                table="check",
                index=index,
                key="url" if "url" in raw else None,
                check=label,
            )
        try:
            probe = self.manager.probe_for_scheme(split_url(url).scheme)
        except TargetError as exc:
            raise self.fail(
                exc.message, table="check", index=index, key="url", check=label
            ) from None
        own = (*CHECK_FIELDS, *SERVE_CHECK_FIELDS)
        probe_part = {k: v for k, v in raw.items() if k not in own}
        try:
            settings = CheckSettings.model_validate({k: v for k, v in raw.items() if k in own})
        except ValidationError as exc:
            error = options_error(exc, CheckSettings, what="a check")
            raise self.fail(
                error.message, table="check", index=index, key=error.field, check=label
            ) from None
        if probe is not None:
            known = probe.Options.model_fields
            for key in probe_part:
                if key not in known:
                    hint = did_you_mean(key, [*known, *CHECK_FIELDS])
                    raise self.fail(
                        f"unknown option for probe {probe.name}{hint}",
                        table="check",
                        index=index,
                        key=key,
                        check=label,
                    )
            defaults_here = {k: v for k, v in probe_defaults.items() if k in known}
            self.used_defaults.update(defaults_here)
            probe_part = {**defaults_here, **probe_part}
        try:
            target = factory.build(
                url,
                name=settings.name or None,
                options=probe_part,
                labels={**defaults.labels, **settings.labels},
                timeout=settings.timeout or defaults.timeout,
                retries=settings.retries if settings.retries is not None else defaults.retries,
            )
        except (TargetError, OptionsError) as exc:
            field_name = exc.field.split(".")[0] if exc.field else None
            if isinstance(exc, TargetError):
                field_name = "url"
            raise self.fail(
                exc.message, table="check", index=index, key=field_name, check=label
            ) from None
        return target, settings

    def push_checks(
        self, checks: list[Any], defaults: RunDefaults
    ) -> tuple[list[PushCheck], dict[int, str]]:
        """The push checks among ``checks``, and the name of each by its index."""
        from ._serve_push import is_push_check, parse_push_check, refuse_shared_tokens

        found: list[PushCheck] = []
        indexes: dict[int, str] = {}
        for index, raw in enumerate(checks):
            if not is_push_check(raw):
                continue
            fail = partial(self.fail, table="check", index=index, check=_check_label(index, raw))
            check = parse_push_check(raw, defaults.labels, fail)
            found.append(check)
            indexes[index] = check.name
        positions = list(indexes)
        refuse_shared_tokens(
            found,
            lambda i, message: self.fail(
                message,
                table="check",
                index=positions[i],
                key="token_env",
                check=_check_label(positions[i], checks[positions[i]]),
            ),
        )
        return found, indexes

    def refuse_unused_defaults(self, probe_defaults: Mapping[str, Any]) -> None:
        """A probe option in ``[defaults]`` that no check's probe has is a mistake."""
        for key in probe_defaults:
            if key not in self.used_defaults:
                probes = self.manager.probes.values()
                known_everywhere = {f for p in probes for f in p.Options.model_fields}
                hint = did_you_mean(key, [*known_everywhere, *RUN_SETTINGS])
                raise self.fail(
                    f"unknown default: no check's probe has this option{hint}",
                    table="defaults",
                    key=key,
                )

    def reporters(self) -> list[tuple[str, Reporter[Any]]]:
        """The ``[[reporter]]`` tables, each an instance of its reporter."""
        reporters = []
        for index, raw in enumerate(_array(self.document, "reporter", self.path)):
            if not isinstance(raw, dict) or not isinstance(raw.get("type"), str):
                raise self.fail('a reporter needs type = "NAME"', table="reporter", index=index)
            # name: how an [[alert]]'s notify names it (anyprobe serve).
            options = {k: v for k, v in raw.items() if k not in ("type", "name")}
            try:
                reporters.append(make_reporter(self.manager, raw["type"], options))
            except UsageError as exc:
                field_name = exc.field.split(".")[0] if exc.field else "type"
                raise self.fail(
                    exc.message, table="reporter", index=index, key=field_name
                ) from None
        return reporters


def _table(document: Mapping[str, Any], key: str, path: str) -> dict[str, Any]:
    value = document.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"[{key}] must be a table", source=path)
    return value


def _array(document: Mapping[str, Any], key: str, path: str) -> list[Any]:
    value = document.get(key, [])
    if not isinstance(value, list):
        raise ConfigError(f"{key} must be an array of tables: [[{key}]]", source=path)
    return value
