"""Defaults shared by the CLI, the config file and the API (kept import-free)."""

#: Seconds allowed per attempt of a check unless the user says otherwise.
DEFAULT_TIMEOUT = 10.0
