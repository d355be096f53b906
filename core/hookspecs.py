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
the first answer that is not ``None`` (no hook here is, yet: none returns
anything). Each plugin's implementation is called on its own: one that raises
marks its plugin as broken (``anyprobe plugins`` shows it) and never stops
the other plugins.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from ._model import RunSummary
    from ._run import RunInfo

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
