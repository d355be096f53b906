"""The ``[store]`` table: where ``anyprobe serve`` keeps its checks' history.

::

    [store]
    url = "sqlite:anyprobe.db"        # beside the config file; or sqlite:///abs/path.db,
                                      # postgresql://anyprobe@db:5432/anyprobe, or "none"
    password_env = "ANYPROBE_DB_PASSWORD"   # PostgreSQL's password, from the environment
    retention_days = 30               # raw results, then hourly rollups
    rollup_days = 400
    buffer = 100000                   # results held while the store is down
    batch = 1000                      # results written per transaction

A config with scheduled ``[[check]]``\\s and no ``[store]`` keeps its history
in a SQLite file beside it (``NAME.db`` next to ``NAME.toml``); ``url = "none"``
keeps none.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ConfigDict, Field, ValidationError, model_validator

from ._errors import ConfigError, UsageError
from ._options import SettingsModel
from ._store import DEFAULT_RETENTION_DAYS, DEFAULT_ROLLUP_DAYS
from .masking import redact_url

if TYPE_CHECKING:
    from ._config import Config
    from ._store_sql import SqlStore

__all__ = ["StoreSettings", "StoreTable", "configured_store", "parse_store_table"]

#: ``url`` values that turn the history off.
NO_STORE = ("none", "off")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class StoreSettings(SettingsModel):
    """The ``[store]`` table."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    url: str | None = Field(
        None,
        description="sqlite:///abs/path.db, sqlite:relative.db (beside the config file), "
        'postgresql://user@host:5432/db, or "none" for no history. Default: NAME.db '
        "beside NAME.toml when the config has scheduled checks.",
    )
    password_env: str | None = Field(
        None, description="Environment variable holding the PostgreSQL password."
    )
    retention_days: float = Field(
        DEFAULT_RETENTION_DAYS, gt=0, description="Days every raw result is kept."
    )
    rollup_days: float = Field(
        DEFAULT_ROLLUP_DAYS, gt=0, description="Days the hourly rollups and incidents are kept."
    )
    buffer: int = Field(
        100_000, gt=0, description="Results held in memory while the store is down or slow."
    )
    batch: int = Field(1000, gt=0, le=100_000, description="Most results written per transaction.")
    flush_interval: float = Field(
        1.0, gt=0, le=60, description="Seconds between two writes of the buffered results."
    )

    @model_validator(mode="after")
    def _rollups_outlive_results(self) -> StoreSettings:
        if self.rollup_days < self.retention_days:
            raise ValueError(
                f"rollup_days ({self.rollup_days:g}) must be at least "
                f"retention_days ({self.retention_days:g})"
            )
        return self


@dataclass(frozen=True)
class StoreTable:
    """A validated ``[store]`` table; ``url`` None: the default, ``"none"``: no history."""

    settings: StoreSettings
    password: str | None = None

    @property
    def enabled(self) -> bool:
        url = self.settings.url
        return url is None or url.strip().lower() not in NO_STORE


def parse_store_table(
    document: Mapping[str, Any], fail: Callable[..., ConfigError]
) -> StoreTable | None:
    """Validate the ``[store]`` table of a config document (None without one).

    ``fail(message, table=..., key=...)`` makes the ConfigError that names
    the file and line.
    """
    if "store" not in document:
        return None
    raw = document["store"]
    if not isinstance(raw, dict):
        raise fail("[store] must be a table", table="store")
    try:
        settings = StoreSettings.model_validate(raw)
    except ValidationError as exc:
        from ._targets import options_error

        error = options_error(exc, StoreSettings, what="[store]")
        key = error.field.split(".")[0] if error.field else "rollup_days"
        raise fail(f"[store] {error.message}", table="store", key=key) from None
    password = None
    if settings.password_env is not None:
        name = settings.password_env
        if not _ENV_NAME.match(name):
            raise fail(
                f"[store] {name!r} is not an environment variable's name",
                table="store",
                key="password_env",
            )
        password = os.environ.get(name)
        if password is None:
            raise fail(
                f"[store] environment variable {name} (the store's password) is not set",
                table="store",
                key="password_env",
            )
    table = StoreTable(settings, password)
    url = settings.url
    if url is not None and table.enabled:
        from ._store_backends import connector_for

        try:
            connector_for(url, Path("."), password=password)
        except ValueError as exc:
            raise fail(f"[store] {exc}", table="store", key="url") from None
        except UsageError as exc:
            raise fail(f"[store] {exc.message}", table="store", key="url") from None
        if password is not None and not url.lower().startswith("postgres"):
            raise fail(
                "[store] password_env applies to a postgresql:// store",
                table="store",
                key="password_env",
            )
    return table


def default_url(config_path: str) -> str:
    """The default store of the config at ``config_path``: ``NAME.db`` beside ``NAME.toml``."""
    return f"sqlite:{Path(config_path).stem}.db"


def configured_store(config: Config, table: StoreTable | None) -> SqlStore | None:
    """The store a server's ``config`` asks for, not yet connected: its
    ``[store]``, or by default a SQLite file beside a config with scheduled
    checks; None for ``url = "none"`` and a server with neither."""
    from ._store_backends import open_store

    path = config.path
    if table is None:
        if not config.targets or path.startswith("<"):
            return None
        table = StoreTable(StoreSettings.model_validate({}))
    if not table.enabled:
        return None
    if table.settings.url is None and path.startswith("<"):
        return None
    url = table.settings.url or default_url(path)
    base_dir = Path(path).resolve().parent if not path.startswith("<") else Path.cwd()
    try:
        return open_store(
            url,
            base_dir,
            password=table.password,
            retention_days=table.settings.retention_days,
            rollup_days=table.settings.rollup_days,
        )
    except ValueError as exc:  # checked when the config was parsed
        raise ConfigError(f"[store] {exc}", source=path, field="url") from None


def describe(url: str) -> str:
    """A store URL as it may be shown (no password)."""
    return redact_url(url)
