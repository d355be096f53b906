"""anyprobe: check that things on a network answer as they should.

The public API lives here; everything else is private by convention.
"""

from __future__ import annotations

__version__ = "0.1.0"

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .api import Check, Prepared, Results, RunStream, check, check_sync, prepare, stream
    from .bridge import AsyncioBridge, asyncio_bridge
    from .demo import DemoCheck
    from .errors import (
        AnyprobeError,
        CheckFailed,
        ConfigError,
        OptionsError,
        PluginError,
        ReporterError,
        TargetError,
        UsageError,
    )
    from .hookspecs import hookimpl, hookspec
    from .inputs import escape_controls
    from .manager import PluginInfo, PluginManager, forget_discovered_plugins
    from .model import (
        Attempt,
        ErrorInfo,
        Outcome,
        Result,
        RunSummary,
        Status,
        Target,
        TraceEvent,
    )
    from .patterns import (
        OFF_LOOP_BYTES,
        Pattern,
        PatternError,
        PatternMatch,
        compile_pattern,
        off_loop,
    )
    from .probe import CheckContext, MissingDependency, Probe, ProbeOptions, check_regex, require
    from .reporter import OutputFile, ReportContext, Reporter, ReporterOptions, ResultStream
    from .run import Run, RunInfo

# Imported on first use, so that `anyprobe --help` stays fast.
_EXPORTS = {
    "Check": "api",
    "Prepared": "api",
    "Results": "api",
    "RunStream": "api",
    "check": "api",
    "check_sync": "api",
    "prepare": "api",
    "stream": "api",
    "AsyncioBridge": "bridge",
    "asyncio_bridge": "bridge",
    "DemoCheck": "demo",
    "AnyprobeError": "errors",
    "CheckFailed": "errors",
    "ConfigError": "errors",
    "OptionsError": "errors",
    "PluginError": "errors",
    "ReporterError": "errors",
    "TargetError": "errors",
    "UsageError": "errors",
    "hookimpl": "hookspecs",
    "hookspec": "hookspecs",
    "Attempt": "model",
    "escape_controls": "inputs",
    "ErrorInfo": "model",
    "Outcome": "model",
    "Result": "model",
    "RunSummary": "model",
    "Status": "model",
    "Target": "model",
    "TraceEvent": "model",
    "PluginInfo": "manager",
    "PluginManager": "manager",
    "forget_discovered_plugins": "manager",
    "CheckContext": "probe",
    "Probe": "probe",
    "ProbeOptions": "probe",
    "check_regex": "probe",
    "MissingDependency": "probe",
    "require": "probe",
    "OFF_LOOP_BYTES": "patterns",
    "Pattern": "patterns",
    "PatternError": "patterns",
    "PatternMatch": "patterns",
    "compile_pattern": "patterns",
    "off_loop": "patterns",
    "OutputFile": "reporter",
    "ReportContext": "reporter",
    "Reporter": "reporter",
    "ReporterOptions": "reporter",
    "ResultStream": "reporter",
    "Run": "run",
    "RunInfo": "run",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'anyprobe' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    # The public API and the submodules imported so far, not this module's helpers.
    modules = {n for n, v in globals().items() if getattr(v, "__package__", None) == __name__}
    return sorted({*__all__, *modules, *(n for n in globals() if n.startswith("__"))})


__all__ = [
    "OFF_LOOP_BYTES",
    "AnyprobeError",
    "AsyncioBridge",
    "Attempt",
    "Check",
    "CheckContext",
    "CheckFailed",
    "ConfigError",
    "DemoCheck",
    "ErrorInfo",
    "MissingDependency",
    "OptionsError",
    "Outcome",
    "OutputFile",
    "Pattern",
    "PatternError",
    "PatternMatch",
    "PluginError",
    "PluginInfo",
    "PluginManager",
    "Prepared",
    "Probe",
    "ProbeOptions",
    "ReportContext",
    "Reporter",
    "ReporterError",
    "ReporterOptions",
    "Result",
    "ResultStream",
    "Results",
    "Run",
    "RunInfo",
    "RunStream",
    "RunSummary",
    "Status",
    "Target",
    "TargetError",
    "TraceEvent",
    "UsageError",
    "__version__",
    "asyncio_bridge",
    "check",
    "check_regex",
    "check_sync",
    "compile_pattern",
    "escape_controls",
    "forget_discovered_plugins",
    "hookimpl",
    "hookspec",
    "off_loop",
    "prepare",
    "require",
    "stream",
]
