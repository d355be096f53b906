"""The ``[[alert]]`` tables of ``anyprobe serve``'s config (see :mod:`anyprobe._alerts`).

A failure is a ``critical`` or ``unknown`` result; ``on = "warning"`` counts
``warning`` results as failures too. ``notify`` names ``[[reporter]]`` tables
by their ``name`` (or their ``type`` when they have none); without it an alert
notifies every notifier of the config.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import ConfigDict, Field, ValidationError, field_validator

from ._errors import ConfigError, did_you_mean
from ._maintenance import Selector, check_names_known, parse_duration
from ._model import Status, Target
from ._notify import Notifier
from ._options import SettingsModel
from ._reporter import Reporter


class AlertSettings(SettingsModel):
    """An ``[[alert]]`` table."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    name: str | None = Field(None, min_length=1, description="Default: alert-N (its position).")
    checks: list[str] = Field(default_factory=list, description="Checks it covers, by name.")
    labels: dict[str, str] = Field(
        default_factory=dict, description="Checks it covers, by labels (all must match)."
    )
    failure_threshold: int = Field(
        3, ge=1, le=1000, description="Results failing in a row before it fires."
    )
    success_threshold: int = Field(
        2, ge=1, le=1000, description="Ok results in a row before it resolves."
    )
    reminder_every: float | None = Field(
        None, description="Notify again this often while it fires: seconds or '1h'."
    )
    send_resolved: bool = Field(True, description="Notify when it resolves.")
    severity: str = Field(
        "critical", min_length=1, max_length=40, description="critical, warning, info..."
    )
    on: Literal["critical", "warning"] = Field(
        "critical",
        description="critical: critical and unknown results are failures; "
        "warning: warning results too.",
    )
    notify: list[str] | None = Field(
        None, description="[[reporter]] tables (by name) it notifies; default: every notifier."
    )

    @field_validator("reminder_every", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float | None:
        return None if value is None else parse_duration(value)


@dataclass(frozen=True)
class AlertRule:
    """A validated ``[[alert]]``; ``notify`` holds ``(index, name)`` of its reporters."""

    name: str
    selector: Selector
    failure_threshold: int = 3
    success_threshold: int = 2
    reminder_every: float | None = None
    send_resolved: bool = True
    severity: str = "critical"
    failing: frozenset[Status] = frozenset({Status.CRITICAL, Status.UNKNOWN})
    notify: tuple[tuple[int, str], ...] = ()


def reporter_names(document: Mapping[str, Any]) -> list[str]:
    """The name of each ``[[reporter]]``: its ``name``, or its ``type``."""
    raw = document.get("reporter", [])
    names = []
    for table in raw if isinstance(raw, list) else []:
        if isinstance(table, dict):
            names.append(str(table.get("name") or table.get("type") or ""))
    return names


def parse_alerts(
    document: Mapping[str, Any],
    fail: Callable[..., ConfigError],
    targets: Sequence[Target],
    reporters: Sequence[tuple[str, Reporter[Any]]] = (),
) -> list[AlertRule]:
    """The ``[[alert]]`` tables of a config document; ConfigError names the
    file, line, table and key of the first mistake."""
    raw_tables = document.get("alert", [])
    if not isinstance(raw_tables, list):
        raise fail("alert must be an array of tables: [[alert]]", table="alert")
    names = reporter_names(document)
    check_names = [t.name for t in targets]
    notifiers = [
        (i, n)
        for i, n in enumerate(names)
        if i < len(reporters) and isinstance(reporters[i][1], Notifier)
    ]
    rules: list[AlertRule] = []
    seen: set[str] = set()
    for index, raw in enumerate(raw_tables):
        if not isinstance(raw, dict):
            raise fail("each [[alert]] must be a table", table="alert", index=index)
        try:
            settings = AlertSettings.model_validate(raw)
        except ValidationError as exc:
            from ._targets import options_error

            error = options_error(exc, AlertSettings, what="[[alert]]")
            key = error.field.split(".")[0] if error.field else None
            raise fail(error.message, table="alert", index=index, key=key) from None

        def here(message: str, key: str, index: int = index) -> ConfigError:
            return fail(message, table="alert", index=index, key=key)

        name = settings.name or f"alert-{index + 1}"
        if name in seen:
            raise here(f"two [[alert]] tables are named {name!r}", "name")
        seen.add(name)
        check_names_known(settings.checks, check_names, lambda m: here(m, "checks"))
        if settings.notify is None:
            notify = tuple(notifiers)
        else:
            chosen = []
            for wanted in settings.notify:
                matching = [i for i, n in enumerate(names) if n == wanted]
                if not matching:
                    hint = did_you_mean(wanted, names)
                    raise here(
                        f"no [[reporter]] is named {wanted!r}{hint} "
                        "(a reporter's name is its name, or its type)",
                        "notify",
                    )
                if len(matching) > 1:
                    raise here(
                        f"{len(matching)} [[reporter]] tables are named {wanted!r}: "
                        'give each a name = "..."',
                        "notify",
                    )
                chosen.append((matching[0], wanted))
            notify = tuple(chosen)
        failing = {Status.CRITICAL, Status.UNKNOWN}
        if settings.on == "warning":
            failing.add(Status.WARNING)
        rules.append(
            AlertRule(
                name=name,
                selector=Selector(tuple(settings.checks), dict(settings.labels)),
                failure_threshold=settings.failure_threshold,
                success_threshold=settings.success_threshold,
                reminder_every=settings.reminder_every,
                send_resolved=settings.send_resolved,
                severity=settings.severity,
                failing=frozenset(failing),
                notify=notify,
            )
        )
    return rules
