"""anyprobe: check that things on a network answer as they should.

The public API lives here; everything else is private by convention.
"""

from __future__ import annotations

__version__ = "0.1.0"

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._api import Check, Prepared, Results, RunStream, check, check_sync, prepare, stream
    from ._connection import Connection, Expectation, show_bytes
    from ._demo import DemoCheck
    from ._errors import (
        AnyprobeError,
        CheckFailed,
        ConfigError,
        OptionsError,
        PluginError,
        ReporterError,
        TargetError,
        UsageError,
    )
    from ._inputs import escape_controls, find_control, host_problem
    from ._manager import PluginInfo, PluginManager, forget_discovered_plugins
    from ._model import (
        Attempt,
        ErrorInfo,
        Outcome,
        Result,
        RunSummary,
        Status,
        Target,
        TraceEvent,
    )
    from ._notify import AlertNotice, Notifier, NotifierError, NotifierOptions, StatusChange
    from ._option_defaults import lazy_model
    from ._options import AddressOptions, ProbeOptions, ReporterOptions
    from ._patterns import (
        OFF_LOOP_BYTES,
        Pattern,
        PatternError,
        PatternMatch,
        compile_pattern,
        off_loop,
    )
    from ._probe import (
        CheckContext,
        MissingDependency,
        Probe,
        check_regex,
        check_url_shape,
        require,
    )
    from ._reporter import OutputFile, ReportContext, Reporter, ResultStream
    from ._run import Run, RunInfo
    from ._secrets import SecretEnv
    from .bridge import AsyncioBridge, asyncio_bridge
    from .hookspecs import hookimpl, hookspec

# Imported on first use, so that `anyprobe --help` stays fast.
_EXPORTS = {
    "Check": "_api",
    "Prepared": "_api",
    "Results": "_api",
    "RunStream": "_api",
    "check": "_api",
    "check_sync": "_api",
    "prepare": "_api",
    "stream": "_api",
    "AsyncioBridge": "bridge",
    "asyncio_bridge": "bridge",
    "DemoCheck": "_demo",
    "AnyprobeError": "_errors",
    "CheckFailed": "_errors",
    "ConfigError": "_errors",
    "OptionsError": "_errors",
    "PluginError": "_errors",
    "ReporterError": "_errors",
    "TargetError": "_errors",
    "UsageError": "_errors",
    "hookimpl": "hookspecs",
    "hookspec": "hookspecs",
    "Attempt": "_model",
    "escape_controls": "_inputs",
    "find_control": "_inputs",
    "host_problem": "_inputs",
    "ErrorInfo": "_model",
    "Outcome": "_model",
    "Result": "_model",
    "RunSummary": "_model",
    "Status": "_model",
    "Target": "_model",
    "TraceEvent": "_model",
    "PluginInfo": "_manager",
    "PluginManager": "_manager",
    "forget_discovered_plugins": "_manager",
    "CheckContext": "_probe",
    "Connection": "_connection",
    "Expectation": "_connection",
    "show_bytes": "_connection",
    "Probe": "_probe",
    "ProbeOptions": "_options",
    "AddressOptions": "_options",
    "check_regex": "_probe",
    "check_url_shape": "_probe",
    "MissingDependency": "_probe",
    "require": "_probe",
    "lazy_model": "_option_defaults",
    "OFF_LOOP_BYTES": "_patterns",
    "Pattern": "_patterns",
    "PatternError": "_patterns",
    "PatternMatch": "_patterns",
    "compile_pattern": "_patterns",
    "off_loop": "_patterns",
    "OutputFile": "_reporter",
    "ReportContext": "_reporter",
    "Notifier": "_notify",
    "NotifierError": "_notify",
    "NotifierOptions": "_notify",
    "AlertNotice": "_notify",
    "StatusChange": "_notify",
    "Reporter": "_reporter",
    "ReporterOptions": "_options",
    "ResultStream": "_reporter",
    "Run": "_run",
    "RunInfo": "_run",
    "SecretEnv": "_secrets",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'anyprobe' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    # The public API and the public submodules imported so far, not this module's
    # helpers nor the private submodules (``_api``, ``_model``...) behind the API.
    modules = {
        n
        for n, v in globals().items()
        if not n.startswith("_")
        and getattr(v, "__package__", None) in (__name__, f"{__name__}.{n}")
    }
    return sorted({*__all__, *modules, *(n for n in globals() if n.startswith("__"))})


__all__ = [
    "OFF_LOOP_BYTES",
    "AddressOptions",
    "AlertNotice",
    "AnyprobeError",
    "AsyncioBridge",
    "Attempt",
    "Check",
    "CheckContext",
    "CheckFailed",
    "ConfigError",
    "Connection",
    "DemoCheck",
    "ErrorInfo",
    "Expectation",
    "MissingDependency",
    "Notifier",
    "NotifierError",
    "NotifierOptions",
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
    "SecretEnv",
    "Status",
    "StatusChange",
    "Target",
    "TargetError",
    "TraceEvent",
    "UsageError",
    "__version__",
    "asyncio_bridge",
    "check",
    "check_regex",
    "check_sync",
    "check_url_shape",
    "compile_pattern",
    "escape_controls",
    "find_control",
    "forget_discovered_plugins",
    "hookimpl",
    "hookspec",
    "host_problem",
    "lazy_model",
    "off_loop",
    "prepare",
    "require",
    "show_bytes",
    "stream",
]
