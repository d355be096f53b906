"""Every hook a plugin can implement, in one place.

A plugin is a module (or any object) with functions named like the hooks
below, marked with ``@anyprobe.hookimpl``. It is found through the entry-point
group ``anyprobe`` in its package's ``pyproject.toml``::

    [project.entry-points.anyprobe]
    redis = "anyprobe_redis"

or registered directly with :meth:`anyprobe.PluginManager.register` (embedding,
tests). anyprobe's own probes and reporters are plugins registered so, from
the list ``anyprobe._manager.BUILTIN_PLUGINS``.

Hooks are called through pluggy, with keyword arguments; an implementation
may accept only the arguments it needs. pluggy's markers apply:
``tryfirst``/``trylast`` order the calls (otherwise the plugin registered last
is called first), a ``wrapper=True`` (or ``hookwrapper=True``) implementation
runs once around the others, and a spec marked ``firstresult=True`` stops at
the first answer that is not ``None`` (:func:`anyprobe_metrics_registry` is
the one such hook here; the others return nothing). Each plugin's
implementation is called on its own: one that raises marks its plugin as
broken (``anyprobe plugins`` shows it) and never stops the other plugins.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from ._model import Result, RunSummary
    from ._run import RunInfo

__all__ = [
    "anyprobe_demo_services",
    "anyprobe_metrics_registry",
    "anyprobe_register_probes",
    "anyprobe_register_reporters",
    "anyprobe_run_finished",
    "anyprobe_run_started",
    "hookimpl",
    "hookspec",
]

hookspec = pluggy.HookspecMarker("anyprobe")
hookimpl = pluggy.HookimplMarker("anyprobe")


@hookspec
def anyprobe_register_probes(register: Callable[[type[Any]], None]) -> None:
    """Register probe types, by calling ``register(ProbeClass)`` once per probe.

    Called once, when the plugin manager first needs its probes. A probe class
    subclasses :class:`anyprobe.Probe` and sets ``name``, ``schemes`` and
    ``Options``. A scheme already taken by a plugin loaded earlier is refused
    and this plugin is marked broken, whatever the order of the calls.

    Example::

        @anyprobe.hookimpl
        def anyprobe_register_probes(register):
            register(RedisProbe)
    """


@hookspec
def anyprobe_register_reporters(register: Callable[[type[Any]], None]) -> None:
    """Register reporter types, by calling ``register(ReporterClass)`` once per reporter.

    Called once, when the plugin manager first needs its reporters. A reporter
    class subclasses :class:`anyprobe.Reporter` and sets ``name`` and
    ``Options``; ``-r NAME[=DEST]`` and ``[[reporter]] type = "NAME"`` select it.
    """


@hookspec
def anyprobe_demo_services(register: Callable[[Callable[..., Any]], None]) -> None:
    """Register services for ``anyprobe demo``, by calling ``register(factory)``.

    ``factory`` is an async context manager function (``@asynccontextmanager``)
    taking no arguments: it starts a service on loopback and yields a list of
    :class:`anyprobe.DemoCheck` (target URL, options, the verdict expected),
    then stops the service when the demo ends. It must not reach past loopback.
    """


@hookspec
def anyprobe_run_started(run: RunInfo) -> None:
    """Called once at the start of a run, before the first check starts.

    ``run`` describes the run (number of targets, concurrency, reporters). Do
    not block: this runs on the event loop.
    """


@hookspec
def anyprobe_run_finished(run: RunInfo, summary: RunSummary) -> None:
    """Called once at the end of a run, after every reporter has finished.

    ``summary`` counts the results by status and says whether the run was
    interrupted. Also called after Ctrl-C, with what was finished by then:
    ``summary.reporter_failures`` names the reporters that failed (or ran
    past ``reporter_timeout``), ``summary.reporters_stopped`` those a second
    signal stopped before they finished (their files left as they were), and
    ``summary.broken_plugins`` the plugins that could not be loaded.
    """


@hookspec(firstresult=True)
def anyprobe_metrics_registry(
    results: Sequence[Result], check_labels: bool
) -> CollectorRegistry | None:
    """Build the Prometheus metrics of ``results``, for ``anyprobe serve``.

    Return a new ``prometheus_client.CollectorRegistry`` holding the metrics
    of ``results`` (a sequence of :class:`anyprobe.Result`), or ``None`` to
    leave the answer to another plugin. ``firstresult``: the first registry
    returned is the answer and no other implementation is called.

    ``anyprobe serve`` calls it for each ``/probe`` answer (one result,
    ``check_labels`` false: as blackbox_exporter does, the scraper labels the
    series) and for each scrape of ``/metrics`` (the latest result of each
    scheduled check, ``check_labels`` true: every sample carries the labels
    ``name``, ``target``, ``probe`` and the check's own). It also calls it
    once with no results when it starts, and refuses to start when no plugin
    answers. It runs on the event loop: do not block.

    The built-in ``prometheus`` plugin answers with blackbox_exporter's metric
    names; a plugin marked ``@hookimpl(tryfirst=True)`` answers before it.

    Example::

        @anyprobe.hookimpl(tryfirst=True)
        def anyprobe_metrics_registry(results, check_labels):
            registry = CollectorRegistry()
            up = Gauge("up_by_anyprobe", "1 when ok", registry=registry)
            up.set(all(r.status is anyprobe.Status.OK for r in results))
            return registry
    """
