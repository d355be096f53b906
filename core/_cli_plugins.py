"""``anyprobe plugins``: the installed plugins, their probes, reporters and options."""

from __future__ import annotations

from typing import Any

import click

from ._manager import PluginManager, describe_options


def plugin_entries(manager: PluginManager) -> list[dict[str, Any]]:
    """Each plugin as ``anyprobe plugins --json`` prints it."""
    entries = []
    for info in manager.plugins:
        entry: dict[str, Any] = {
            "name": info.name,
            "package": info.package,
            "version": info.version,
            "module": info.module,
            "status": "broken" if info.broken else "ok",
            "error": info.error,
            "probes": [],
            "reporters": [],
        }
        for probe_name in info.probes:
            probe = manager.probes[probe_name]
            entry["probes"].append(
                {
                    "name": probe_name,
                    "schemes": list(probe.schemes),
                    "description": probe.description,
                    "options": describe_options(probe.Options),
                }
            )
        for reporter_name in info.reporters:
            reporter = manager.reporters[reporter_name]
            entry["reporters"].append(
                {
                    "name": reporter_name,
                    "description": reporter.description,
                    "options": describe_options(reporter.Options),
                }
            )
        entries.append(entry)
    return entries


def echo_plugins(entries: list[dict[str, Any]]) -> None:
    """The entries as lines for a person."""
    for entry in entries:
        where = f"{entry['package'] or 'registered'} {entry['version'] or ''}".strip()
        click.echo(
            f"{entry['name']} ({where}){'  BROKEN: ' + entry['error'] if entry['error'] else ''}"
        )
        for probe in entry["probes"]:
            schemes = ", ".join(f"{s}://" for s in probe["schemes"])
            click.echo(f"  probe {probe['name']}: {schemes}  {probe['description']}")
            _echo_options(probe["options"])
        for reporter in entry["reporters"]:
            click.echo(f"  reporter {reporter['name']}: {reporter['description']}")
            _echo_options(reporter["options"])


def _echo_options(options: list[dict[str, Any]]) -> None:
    for option in options:
        default = "required" if option["required"] else f"default {option['default']!r}"
        click.echo(f"      {option['name']} ({option['type']}, {default}): {option['description']}")
