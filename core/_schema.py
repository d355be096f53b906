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
        properties = {"type": {"const": name}, **options.get("properties", {})}
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
        },
        "additionalProperties": False,
        "$defs": defs,
    }
