"""The ``anyprobe`` command line.

Every error about the user's input ends as one line on stderr and exit
status 3; a run's exit status is the worst result's (0 ok, 1 warning,
2 critical, 3 unknown or a failed reporter), 130 after SIGINT, 143 after SIGTERM.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any

import click

from ._backend import BACKENDS, require_backend
from ._backend import run as run_on
from ._cli_gc import hold_collector, leave_objects_to_exit, start_collecting
from ._cli_signals import Interrupted, Signals
from ._cli_streams import replace_closed_streams
from ._cli_version import VersionOption
from ._errors import AnyprobeError, OptionsError, UsageError

if TYPE_CHECKING:
    from ._manager import PluginManager
    from ._model import Result, RunSummary, Status, Target
    from ._reporter import Reporter
    from ._shard import Shard

from ._defaults import DEFAULT_TIMEOUT

# Only click and the small modules above are imported at start-up, so that
# `anyprobe --help` stays fast (signal too: its handlers go in at once); the
# rest (logging and json included) is imported where it is first needed.

EXIT_USAGE = 3
EXIT_SIGNAL = {"SIGINT": 130, "SIGTERM": 143}
#: A run with more targets than this shows a progress bar in a terminal.
PROGRESS_THRESHOLD = 50


class _State:
    """What the group's options leave for the subcommands."""

    def __init__(self, verbosity: int, autoload: bool) -> None:
        self.verbosity = verbosity
        self.autoload = autoload
        self._manager: PluginManager | None = None

    @property
    def manager(self) -> PluginManager:
        """A manager with every plugin loaded."""
        from ._manager import PluginManager

        if self._manager is None:
            self._manager = PluginManager()
            self._manager.load_entrypoints(autoload=self.autoload)
        return self._manager

    def manager_for(self, urls: Sequence[str], reports: Sequence[str]) -> PluginManager:
        """A manager with the plugins these targets and ``-r`` specs need: the
        others are imported only if something asks for them (an unknown scheme
        or reporter), so a ``tcp://`` check starts without HTTP, DNS or SSH."""
        from ._cli_reporters import report_name
        from ._manager import PluginManager

        if self._manager is None:
            self._manager = PluginManager()
            self._manager.load_entrypoints(
                autoload=self.autoload,
                schemes={url.partition(":")[0] for url in urls},
                reporters={report_name(spec) for spec in reports} if reports else {"table"},
            )
        return self._manager


class FiniteFloat(click.FloatRange):
    """A number of seconds: a float in range that is not NaN nor infinite
    (click's FloatRange lets ``nan`` and ``inf`` through)."""

    name = "finite float"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        import math

        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return number


def _echo_err(message: str) -> None:
    click.echo(f"anyprobe: {message}", err=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "-V",
    "--version",
    cls=VersionOption,
    is_flag=True,
    is_eager=True,
    expose_value=False,
    help="Show the version and exit; with -v also Python and the event loops available.",
)
@click.option("-v", "--verbose", count=True, help="More diagnostics on stderr (repeatable).")
@click.option("-q", "--quiet", is_flag=True, help="Only problems: no summary, no progress.")
@click.option(
    "--no-plugin-autoload",
    is_flag=True,
    help="Load only anyprobe's own plugins, not installed third-party ones.",
)
@click.pass_context
def cli(ctx: click.Context, verbose: int, quiet: bool, no_plugin_autoload: bool) -> None:
    """Check that things on a network answer as they should.

    \b
    anyprobe check tcp://db.example:5432 https://example.com/health
    anyprobe run checks.toml -r junit=report.xml
    """
    import logging

    logging.basicConfig(level=logging.WARNING, format="anyprobe: %(message)s", stream=sys.stderr)
    ctx.obj = _State(0, autoload=not no_plugin_autoload)
    _set_verbosity(ctx.obj, quiet=quiet, verbose=verbose)


def _set_verbosity(state: _State, *, quiet: bool = False, verbose: int = 0) -> None:
    """-q and -v, given before or after the command name."""
    import logging

    if quiet:
        state.verbosity = -1
    elif verbose:
        state.verbosity = max(state.verbosity, verbose)
    # -v and -vv are anyprobe's own diagnostics: libraries' debug logs (httpx logs
    # every URL it requests, a keyed webhook URL included) stay at warnings.
    level = state.verbosity
    logging.getLogger("anyprobe").setLevel(
        logging.DEBUG if level > 1 else logging.INFO if level == 1 else logging.WARNING
    )


def _verbosity_option(ctx: click.Context, param: click.Parameter, value: Any) -> None:
    state = ctx.find_object(_State)
    if state is not None and value:
        if param.name == "quiet":
            _set_verbosity(state, quiet=True)
        else:
            _set_verbosity(state, verbose=int(value))


def run_options(function: Callable[..., Any]) -> Callable[..., Any]:
    """The options ``check``, ``run`` and ``demo`` share."""
    options = [
        click.option(
            "--backend",
            type=click.Choice(BACKENDS),
            default="auto",
            show_default=True,
            help="The event loop: auto (asyncio on uvloop when installed), asyncio, uvloop, trio.",
        ),
        click.option(
            "-c", "--concurrency", type=click.IntRange(min=1), help="Checks at once [default: 100]."
        ),
        click.option("--per-host", type=click.IntRange(min=1), help="Checks at once per host."),
        click.option(
            "-t",
            "--timeout",
            type=FiniteFloat(min=0, min_open=True),
            help=f"Seconds per attempt [default: {DEFAULT_TIMEOUT:g}].",
        ),
        click.option("--retries", type=click.IntRange(0, 10), help="Attempts after a failure."),
        click.option(
            "-r",
            "--report",
            "reports",
            multiple=True,
            metavar="NAME[=DEST]",
            help="A reporter (repeatable) [default: table]: NAME, NAME=DEST (a file, '-' "
            "for stdout, a URL) or NAME:KEY=VALUE[,KEY=VALUE...] for its options "
            "(-r table:sort=status, -r junit:path=out.xml,suite_name=api).",
        ),
        click.option(
            "--reporter-timeout",
            type=FiniteFloat(min=0, min_open=True),
            help="Seconds reporters may take to finish after the last result; "
            "one still running then has failed [default: 120].",
        ),
        click.option(
            "--progress/--no-progress",
            default=None,
            help="A progress bar on stderr [default: on for long runs in a terminal].",
        ),
        click.option(
            "--explain",
            is_flag=True,
            help="Keep and print each check's trace: addresses, handshake, headers.",
        ),
        click.option(
            "-q",
            "--quiet",
            is_flag=True,
            expose_value=False,
            callback=_verbosity_option,
            help="Only problems: no summary, no progress.",
        ),
        click.option(
            "-v",
            "--verbose",
            count=True,
            expose_value=False,
            callback=_verbosity_option,
            help="More diagnostics on stderr (repeatable).",
        ),
    ]
    for option in reversed(options):
        function = option(function)
    return function


shard_option = click.option(
    "--shard",
    metavar="I/N",
    help="Check only shard I of N (0-based; Prometheus' hashmod of the target URL); "
    "auto/N reads JOB_COMPLETION_INDEX, NOMAD_ALLOC_INDEX or ANYPROBE_SHARD_INDEX.",
)


@cli.command()
@click.argument("targets", nargs=-1)
@click.option(
    "-i",
    "--input",
    "input_file",
    type=click.Path(dir_okay=False, allow_dash=True),
    help="Read targets from FILE, one per line ('-' for stdin).",
)
@click.option(
    "--set",
    "assignments",
    multiple=True,
    metavar="KEY=VALUE",
    help=(
        "A probe option for every target (repeatable), e.g. --set warning_after=0.5. "
        "VALUE is read as TOML (5, true, [200, 301]); a text option takes it as typed."
    ),
)
@run_options
@shard_option
@click.pass_obj
def check(
    state: _State,
    /,
    targets: tuple[str, ...],
    input_file: str | None,
    assignments: tuple[str, ...],
    **run_args: Any,
) -> int:
    """Check TARGET URLs: tcp://HOST:PORT, https://HOST/PATH, ..."""
    from ._targets import build_targets, parse_set

    urls: list[tuple[str, int | None]] = [(t, None) for t in targets]
    source = None
    if input_file:
        source = "<stdin>" if input_file == "-" else input_file
        urls += _read_targets_file(input_file)
    if not urls:
        raise click.UsageError("no targets: give TARGET arguments or -i FILE")
    options = parse_set(assignments)
    manager = state.manager_for([url for url, _ in urls], run_args["reports"])
    built = build_targets(
        manager,
        urls,
        options=options,
        timeout=run_args["timeout"] or DEFAULT_TIMEOUT,
        retries=run_args["retries"] or 0,
        source=source,
    )
    reporters = _reporters(manager, run_args["reports"], [], reads=input_file)
    return _execute(state, _shard(built, run_args["shard"]), reporters, run_args)


def _read_targets_file(path: str) -> list[tuple[str, int | None]]:
    from ._targets import read_target_file

    if path == "-":
        return read_target_file(sys.stdin.buffer, "<stdin>")
    try:
        with open(path, "rb") as f:
            return read_target_file(f, path)
    except OSError as exc:
        raise UsageError(f"cannot read targets: {exc.strerror or exc}", source=path) from None


@cli.command()
@click.argument("config", type=click.Path(dir_okay=False, allow_dash=True))
@run_options
@shard_option
@click.pass_obj
def run(state: _State, /, config: str, **run_args: Any) -> int:
    """Run the checks of a TOML CONFIG file ('-' reads it from stdin)."""
    from ._config import load_config

    overrides = {"timeout": run_args["timeout"], "retries": run_args["retries"]}
    loaded = load_config(config, state.manager, overrides=overrides, allow_stdin=True)
    reporters = _reporters(state.manager, run_args["reports"], loaded.reporters, reads=config)
    run_args["concurrency"] = run_args["concurrency"] or loaded.defaults.concurrency
    run_args["per_host"] = run_args["per_host"] or loaded.defaults.per_host
    run_args["reporter_timeout"] = run_args["reporter_timeout"] or loaded.defaults.reporter_timeout
    return _execute(state, _shard(loaded.targets, run_args["shard"]), reporters, run_args)


def _shard(targets: Sequence[Target], spec: str | None) -> Sequence[Target]:
    """The targets of shard ``--shard I/N`` (all of them without the option)."""
    if spec is None:
        return targets
    import logging

    shard = _parse_shard(spec)
    selected = shard.select(targets)
    logging.getLogger("anyprobe").info(
        "shard %s (run %s): %d of %d targets", shard, shard.run_id, len(selected), len(targets)
    )
    return selected


def _parse_shard(spec: str) -> Shard:
    """``--shard``'s value (run, check, serve), also put in the environment:
    reporters (pushgateway) and hooks read it there, even when this shard has
    no target at all."""
    from ._shard import INDEX_VARIABLES, RUN_ID_VARIABLE, parse_shard

    shard = parse_shard(spec)
    os.environ[INDEX_VARIABLES[-1]] = str(shard.index)
    os.environ[RUN_ID_VARIABLE] = shard.run_id
    return shard


@cli.command()
@run_options
@click.pass_obj
def demo(state: _State, /, **run_args: Any) -> int:
    """Check local services started for the occasion (works offline).

    Exits 0 when every row got the verdict the demo expects.
    """
    from ._cli_reporters import Collect
    from ._demo import compare, start_demo_services

    manager = state.manager
    reporters = _reporters(manager, run_args["reports"], [])
    collected: list[Result] = []
    reporters.append(("_collect", Collect(collected)))
    expected: dict[str, Status] = {}

    async def main() -> RunSummary:
        async with AsyncExitStack() as stack:
            targets, verdicts = await start_demo_services(manager, stack)
            expected.update(verdicts)
            if not targets:
                raise UsageError("no plugin offers demo services")
            return await _run_with_signals(state, targets, reporters, run_args)

    summary = _run_backend(main, run_args["backend"])
    code = _report_end(state, summary)
    if summary.interrupted:
        return code
    problems = compare(collected, expected)
    for problem in problems:
        _echo_err(f"demo: {problem}")
    if not problems and state.verbosity >= 0:
        _echo_err(f"demo: all {len(expected)} checks got the verdict they should")
    return 1 if problems else 0


@cli.command()
@click.argument("config", required=False, type=click.Path(dir_okay=False))
@click.option(
    "--listen",
    default="127.0.0.1:9115",
    show_default=True,
    metavar="HOST:PORT",
    help="Address to serve on; 0.0.0.0 or [::] exposes it (see allow_targets).",
)
@click.option(
    "--backend",
    type=click.Choice(BACKENDS),
    default="auto",
    show_default=True,
    help="The event loop: auto (asyncio on uvloop when installed), asyncio, uvloop, trio.",
)
@click.option(
    "-c",
    "--concurrency",
    type=click.IntRange(min=1),
    help="Probes at once, /probe and scheduled checks together [default: 100].",
)
@click.option(
    "--max-waiting",
    type=click.IntRange(min=0),
    help="/probe requests that may wait for a free slot; more get 503 [default: concurrency].",
)
@click.option(
    "--timeout-offset",
    type=FiniteFloat(min=0),
    default=0.5,
    show_default=True,
    help="Seconds taken off Prometheus' scrape timeout for the probe's timeout.",
)
@click.option(
    "--allow-target",
    "allow_targets",
    multiple=True,
    metavar="PATTERN",
    help="A host pattern (*.example.com) or network (10.0.0.0/8) /probe may connect to "
    "(repeatable; adds to [serve] allow_targets) [default: any].",
)
@click.option(
    "--grace",
    type=FiniteFloat(min=0),
    default=10.0,
    show_default=True,
    help="Seconds in-flight probes get to finish after SIGTERM.",
)
@click.option(
    "--web-config",
    type=click.Path(dir_okay=False),
    help="TOML file: the listener's TLS certificate, basic-auth users and public parts "
    "(docs: scale-out, monitor).",
)
@click.option(
    "--server",
    "server_name",
    type=click.Choice(("auto", "builtin", "hypercorn", "uvicorn")),
    default="auto",
    show_default=True,
    help="The HTTP server: auto (uvicorn on asyncio when installed, else builtin), "
    "builtin (anyprobe's own, asyncio or trio), hypercorn (asyncio or trio), uvicorn (asyncio).",
)
@click.option(
    "--shard",
    metavar="I/N",
    help="Run only shard I of N of the config's checks (hashmod of the target URL, "
    "push://NAME for push checks); auto/N as for run.",
)
@click.option(
    "--workers",
    default="1",
    show_default=True,
    metavar="N|auto",
    help="Processes answering /probe on the listening socket (auto: one a CPU); "
    "the first runs everything else (docs: serve).",
)
@click.option("--worker", "worker_spec", hidden=True)
@click.pass_obj
def serve(
    state: _State,
    /,
    config: str | None,
    shard: str | None,
    workers: str,
    worker_spec: str | None,
    **serve_args: Any,
) -> int:
    """Serve /probe for Prometheus, blackbox_exporter-style, and run CONFIG's checks.

    \b
    curl 'http://127.0.0.1:9115/probe?target=https://example.com&module=http_2xx'
    """
    from ._serve import main as serve_main

    start_collecting()
    if _signals is not None:
        _signals.uninstall()
    for info in state.manager.broken:
        _echo_err(f"warning: plugin {info.name} is broken: {info.error}")
    if worker_spec is not None:  # one of the processes of --workers N
        from ._serve_worker import worker_main

        return worker_main(state.manager, config, worker_spec, **serve_args)
    from ._serve_workers import parse_workers

    count = parse_workers(workers)
    replica = _parse_shard(shard) if shard is not None else None
    global_options = ["-q"] if state.verbosity < 0 else ["-v"] * state.verbosity
    if not state.autoload:
        global_options.append("--no-plugin-autoload")
    return serve_main(
        state.manager,
        config,
        announce=_echo_err,
        shard=replica,
        workers=count,
        global_options=global_options,
        **serve_args,
    )


@cli.command("push-token")
def push_token() -> int:
    """Print a fresh random token for a push check (256 bits, URL-safe).

    \b
    export BACKUP_PUSH_TOKEN=$(anyprobe push-token)
    """
    from ._serve_push import new_token

    click.echo(new_token())
    return 0


@cli.command()
@click.argument("names", nargs=-1, metavar="[NAME]...")
@click.option(
    "--config", "config_path", type=click.Path(dir_okay=False), help="The server's config file."
)
@click.option("--store", "store_url", metavar="URL", help="The store's URL instead of a config.")
@click.option("--since", default="7d", show_default=True, help="The period: 30m, 24h, 7d, 2w...")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def history(state: _State, /, names: tuple[str, ...], **history_args: Any) -> int:
    """Uptime, incidents and latency of anyprobe serve's checks, from its store.

    \b
    anyprobe history --config monitor.toml --since 24h
    """
    from ._cli_history import history_main

    return history_main(state.manager, names, echo=click.echo, **history_args)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def plugins(state: _State, as_json: bool) -> int:
    """List the installed plugins, their probes, reporters and options."""
    from ._cli_plugins import echo_plugins, plugin_entries

    entries = plugin_entries(state.manager)
    if as_json:
        import json

        click.echo(json.dumps(entries, indent=2, default=str))
    else:
        echo_plugins(entries)
    return 0


@cli.command()
@click.pass_obj
def schema(state: _State) -> int:
    """Print the JSON schema of the config file, every installed plugin included."""
    import json

    from ._schema import config_schema

    click.echo(json.dumps(config_schema(state.manager), indent=2))
    return 0


# -- running -----------------------------------------------------------------


def _reporters(
    manager: PluginManager,
    specs: Sequence[str],
    configured: list[tuple[str, Reporter[Any]]],
    reads: str | None = None,
) -> list[tuple[str, Reporter[Any]]]:
    """The run's reporters: the config's, then ``-r``'s (table by default).
    Every output path is checked here, before the first check runs; none may
    be ``reads``, the config or targets file the run reads."""
    from ._cli_reporters import check_outputs, parse_report
    from ._targets import make_reporter

    reporters = list(configured)
    shown_as = {id(reporter): f"reporter {name}" for name, reporter in configured}
    for spec in specs:
        name, options, shown = parse_report(manager, spec)
        try:
            reporters.append(make_reporter(manager, name, options))
        except OptionsError as exc:
            raise OptionsError(exc.message, source=f"--report {shown}", field=exc.field) from None
        shown_as[id(reporters[-1][1])] = f"--report {shown}"
    if not reporters:
        reporters.append(make_reporter(manager, "table", {}))
    check_outputs(reporters, shown_as)
    if reads not in (None, "-"):
        _refuse_writing_input(reporters, shown_as, reads)
    return reporters


def _refuse_writing_input(
    reporters: list[tuple[str, Reporter[Any]]], shown_as: dict[int, str], reads: str
) -> None:
    """A report written over the file the checks came from would destroy it."""
    try:
        read = os.stat(reads)
    except OSError:
        return
    for _, reporter in reporters:
        for path in reporter.outputs():
            try:
                same = path is not None and os.path.samestat(os.stat(path), read)
            except OSError:
                continue
            if same:
                where = shown_as.get(id(reporter), "a reporter")
                raise UsageError(f"{where}: {path} is the file the checks are read from")


def _execute(
    state: _State,
    targets: Sequence[Target],
    reporters: list[tuple[str, Reporter[Any]]],
    run_args: dict[str, Any],
) -> int:
    async def main() -> RunSummary:
        return await _run_with_signals(state, targets, reporters, run_args)

    from ._cli_reporters import any_stdout

    summary = _run_backend(main, run_args["backend"])
    outputs = [path for _, reporter in reporters for path in reporter.outputs()]
    if state.verbosity >= 0 and not summary.interrupted and not any_stdout(outputs):
        # Only files (or URLs) get the results: the terminal still gets one line.
        _echo_err(summary.describe())
    return _report_end(state, summary)


def _run_backend(main: Callable[[], Any], backend: str) -> RunSummary:
    require_backend(backend)
    start_collecting()
    if _signals is not None:
        # From here the run's own receiver handles signals; one that comes
        # before it opens is kept and replayed (see _run_with_signals).
        _signals.raising = False
    result: RunSummary = run_on(main, backend)
    return result


_signals: Signals | None = None


async def _run_with_signals(
    state: _State,
    targets: Sequence[Target],
    reporters: list[tuple[str, Reporter[Any]]],
    run_args: dict[str, Any],
) -> RunSummary:
    import signal

    import anyio
    from anyio.abc import TaskStatus

    from ._run import Run

    for info in state.manager.broken:
        _echo_err(f"warning: plugin {info.name} is broken: {info.error}")
    reporters = list(reporters)
    progress = run_args["progress"]
    if progress is None:
        progress = (
            state.verbosity >= 0 and len(targets) > PROGRESS_THRESHOLD and sys.stderr.isatty()
        )
    if progress:
        from ._cli_reporters import Progress

        reporters.append(("_progress", Progress()))
    if state.verbosity > 0:
        from ._cli_reporters import Diagnostics

        reporters.append(("_diagnostics", Diagnostics(state.verbosity)))
    timeout = run_args.get("reporter_timeout")
    run = Run(
        targets,
        state.manager,
        reporters,
        concurrency=run_args["concurrency"],
        per_host=run_args["per_host"],
        explain=run_args["explain"],
        verbosity=state.verbosity,
        **({"reporter_timeout": timeout} if timeout is not None else {}),
    )

    async def watch_signals(*, task_status: TaskStatus[None]) -> None:
        try:
            with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as received:
                # Signals that came while the run was being set up.
                for name in _signals.received if _signals is not None else ():
                    run.interrupt(name)
                task_status.started()
                # The first interrupts the run (what finished is still reported);
                # the next stop the reporters still writing (Run.interrupt).
                async for signum in received:
                    name = signal.Signals(signum).name
                    if _signals is not None:
                        _signals.received.append(name)
                    run.interrupt(name)
        finally:
            # asyncio puts the default handlers back: keep handling signals
            # until the process exits.
            if _signals is not None:
                _signals.install()

    await run.load_dependencies()
    async with anyio.create_task_group() as tg:
        await tg.start(watch_signals)
        summary = await run.execute()
        tg.cancel_scope.cancel()
    return summary


def _report_end(state: _State, summary: RunSummary) -> int:
    for failure in summary.reporter_failures:
        _echo_err(failure)
    if summary.interrupted:
        line = (
            f"interrupted by {summary.interrupted}: {summary.finished} results reported, "
            f"{summary.not_finished} not finished"
        )
        if summary.reporters_stopped:
            line += (
                f"; not written (stopped before they finished, files left as they were): "
                f"{', '.join(summary.reporters_stopped)}"
            )
        _echo_err(line)
        return EXIT_SIGNAL.get(summary.interrupted, 130)
    code = summary.worst.severity
    if summary.reporter_failures:
        code = max(code, EXIT_USAGE)
    return code


def main(argv: Sequence[str] | None = None, *, pending_signals: Sequence[str] = ()) -> None:
    """The console script: run the CLI and exit with its status.
    ``pending_signals`` came before it was called (``python -m anyprobe``)."""
    global _signals
    if argv is None:
        # The process's own command line, not a program or a test that calls
        # main(args) and goes on: see _cli_gc.
        hold_collector()
    replace_closed_streams()
    _signals = Signals()
    _signals.install()
    try:
        try:
            if pending_signals:
                _signals.received.extend(pending_signals)
                _signals.raising = False
                raise Interrupted(pending_signals[0])
            code = cli.main(args=argv, prog_name="anyprobe", standalone_mode=False)
        except click.exceptions.UsageError as exc:
            _echo_err(exc.format_message())
            code = EXIT_USAGE
        except click.exceptions.Abort:
            code = 130
        except click.ClickException as exc:
            _echo_err(exc.format_message())
            code = EXIT_USAGE
        except AnyprobeError as exc:
            _echo_err(f"error: {exc}")
            code = EXIT_USAGE
        except KeyboardInterrupt:
            _echo_err("interrupted")
            code = 130
        except OSError as exc:  # standard output full or closed (schema, plugins, --help)
            _echo_err(f"error: cannot write standard output: {exc.strerror or exc}")
            code = EXIT_USAGE
    except Interrupted as stop:
        _signals.raising = False
        _echo_err(f"interrupted by {stop.name} before any check ran: nothing reported")
        code = EXIT_SIGNAL.get(stop.name, 130)
    # Everything is reported: from here a signal ends the process as usual,
    # even one stuck at exit behind a thread a plugin left blocked.
    _signals.uninstall()
    if argv is None:
        leave_objects_to_exit()
    sys.exit(code if isinstance(code, int) else 0)
