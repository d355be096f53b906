"""The JSON schema of the config file, built from the installed plugins' models."""

from __future__ import annotations

from typing import Any

from ._config import CheckSettings, RunDefaults
from ._manager import PluginManager


def config_schema(manager: PluginManager) -> dict[str, Any]:
    """A JSON schema (draft 2020-12) an editor can validate ``anyprobe.toml`` with."""
    defs: dict[str, Any] = {}
    check_variants = []
    check_base = CheckSettings.model_json_schema()
    defaults = RunDefaults.model_json_schema()
    default_props = dict(defaults["properties"])
    for name, probe in sorted(manager.probes.items()):
        options = probe.Options.model_json_schema(ref_template="#/$defs/{model}")
        defs.update(options.pop("$defs", {}))
        properties = {**options.get("properties", {}), **check_base["properties"]}
        schemes = "|".join(probe.schemes)
        properties["url"] = {**properties["url"], "pattern": f"^({schemes})://"}
        check_variants.append(
            {
                "title": f"check with probe {name}",
                "type": "object",
                "properties": properties,
                "required": ["url"],
                "additionalProperties": False,
            }
        )
        for key, value in options.get("properties", {}).items():
            default_props.setdefault(key, value)
    from ._serve_push import push_check_schema

    check_variants.append(push_check_schema())
    reporter_variants = []
    for name, reporter in sorted(manager.reporters.items()):
        options = reporter.Options.model_json_schema(ref_template="#/$defs/{model}")
        defs.update(options.pop("$defs", {}))
        properties = {
            "type": {"const": name},
            "name": {"type": "string", "description": "How an [[alert]]'s notify names it."},
            **options.get("properties", {}),
        }
        reporter_variants.append(
            {
                "title": f"reporter {name}",
                "type": "object",
                "properties": properties,
                "required": ["type"],
                "additionalProperties": False,
            }
        )
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "anyprobe config file",
        "type": "object",
        "properties": {
            "defaults": {
                "type": "object",
                "properties": default_props,
                "additionalProperties": False,
            },
            "check": {"type": "array", "items": {"anyOf": check_variants}},
            "reporter": {"type": "array", "items": {"anyOf": reporter_variants}},
            **_monitor_tables(),
        },
        "additionalProperties": False,
        "$defs": defs,
    }


def _monitor_tables() -> dict[str, Any]:
    """``[[alert]]`` and ``[[maintenance]]`` (anyprobe serve)."""
    from ._alerts_config import AlertSettings
    from ._maintenance import MaintenanceSettings

    tables = {}
    for key, model in (("alert", AlertSettings), ("maintenance", MaintenanceSettings)):
        schema = model.model_json_schema()
        schema["additionalProperties"] = False
        for name in ("reminder_every", "duration"):  # seconds, or "1h"
            if name in schema["properties"]:
                described = schema["properties"][name]
                schema["properties"][name] = {
                    "anyOf": [{"type": "number"}, {"type": "string"}, {"type": "null"}],
                    "description": described.get("description", ""),
                }
        tables[key] = {"type": "array", "items": schema}
    return tables
