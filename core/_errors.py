"""anyprobe's exceptions: one hierarchy under :class:`AnyprobeError`.

Errors about the user's input (:class:`UsageError` and its subclasses) carry
where the problem is (argument, file, line, check, field) and render as one
line; the CLI prints that line and exits with status 3.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the CLI imports this module at start-up: keep it light
    from ._model import Outcome, Status


class AnyprobeError(Exception):
    """Base class of every exception anyprobe raises on purpose."""


class UsageError(AnyprobeError):
    """Bad input from the user: a target, an option, a config file, a flag.

    ``str(error)`` is the one line shown to the user, prefixed by where:
    ``checks.toml:12: check 'api': field 'expect_status': ...``, with control
    characters escaped (:func:`~anyprobe._inputs.escape_controls`).
    """

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        line: int | None = None,
        check: str | None = None,
        field: str | None = None,
    ) -> None:
        self.message = message
        self.source = source
        self.line = line
        self.check = check
        self.field = field
        super().__init__(self.render())

    def render(self) -> str:
        where = []
        if self.source:
            where.append(f"{self.source}:{self.line}" if self.line else self.source)
        if self.check:
            where.append(f"check {self.check}")
        if self.field:
            where.append(f"field '{self.field}'")
        from ._inputs import escape_controls

        # Targets, names and values come from the user (or a server): a
        # terminal must show them, never act on them.
        return escape_controls(": ".join([*where, self.message]))

    def located(
        self,
        *,
        source: str | None = None,
        line: int | None = None,
        check: str | None = None,
    ) -> UsageError:
        """A copy of this error with the missing location parts filled in."""
        return type(self)(
            self.message,
            source=self.source or source,
            line=self.line or line,
            check=self.check or check,
            field=self.field,
        )


class TargetError(UsageError):
    """A target URL that cannot be checked: unknown scheme, missing port, bad host."""


class OptionsError(UsageError):
    """A probe or reporter option with a wrong name, type or value."""


class ConfigError(UsageError):
    """A config file that cannot be read or does not validate."""


class PluginError(AnyprobeError):
    """A plugin that failed to load, or whose hook raised."""


class ReporterError(AnyprobeError):
    """A reporter failed during a run: raised once the run has ended, when the
    call asked for it (``raise_on_reporter_failure=True``). ``results`` holds
    what the run gave the caller (an ``anyprobe.Results`` from ``check()``,
    None from ``stream()``), ``summary`` the run's :class:`~anyprobe.RunSummary`."""

    def __init__(self, message: str, *, summary: object = None, results: object = None) -> None:
        super().__init__(message)
        self.summary = summary
        self.results = results


class CheckFailed(AnyprobeError):
    """Raised by a probe to end its check with a verdict, usually critical.

    Core turns it into an :class:`~anyprobe.Outcome` and records the phase the
    check was in. It saves a probe from threading an outcome out of nested code::

        except ConnectionRefusedError as exc:
            raise CheckFailed("connection refused", error=exc) from None
    """

    def __init__(
        self,
        summary: str,
        *,
        status: Status | None = None,
        error: BaseException | None = None,
        metrics: dict[str, object] | None = None,
    ) -> None:
        from ._model import Status

        super().__init__(summary)
        self.summary = summary
        self.status = status or Status.CRITICAL
        self.error = error
        self.metrics = dict(metrics or {})

    def to_outcome(self, phase: str | None) -> Outcome:
        from ._model import ErrorInfo, Outcome

        error = self.error or self
        info = ErrorInfo(type(error).__name__, str(error) or self.summary, phase)
        return Outcome(self.status, self.summary, metrics=self.metrics, error=info)


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest choice, or an empty string."""
    import difflib

    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""
