"""Prometheus' text exposition format (0.0.4), written fast for ``/probe``.

A ``/probe`` answer is a dozen gauges of one result: prometheus_client's
``generate_latest`` spends more time formatting them than anyprobe spends
building them. :class:`TextExposition` writes the same bytes for gauge and
untyped families with plain names (the ``# HELP``/``# TYPE`` lines of each
family made once), and hands any other registry to ``generate_latest`` whole.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from prometheus_client.registry import Collector

#: Gauge families as plain data: name, help text, and the samples' values by
#: their labels (sorted (name, value) pairs).
Gauges = list[tuple[str, str, dict[tuple[tuple[str, str], ...], float]]]

_PLAIN_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
_PLAIN_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")
_SIMPLE_TYPES = {"gauge": "gauge", "unknown": "untyped", "untyped": "untyped"}
#: Families whose header lines are kept (and labelled samples whose line up to
#: the value is); past it, they are made each time.
HEADER_LIMIT = 10_000


class _NotPlain(Exception):
    """A family the fast path does not write: generate_latest does."""


def _label_value(text: str) -> str:
    return text.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


class TextExposition:
    """``exposition(registry)``: the bytes ``generate_latest(registry)`` gives, sooner."""

    def __init__(self) -> None:
        self._headers: dict[tuple[str, str, str], str] = {}
        # A labelled sample's line up to its value, by its name and labels.
        self._prefixes: dict[tuple[str, tuple[tuple[str, str], ...]], str] = {}

    def __call__(self, registry: Collector) -> bytes:
        # The prometheus plugin's registries carry their gauges as plain data
        # too (anyprobe.plugins.prometheus.Gauges): written from it, no
        # Metric object is made at all.
        gauges: Gauges | None = getattr(registry, "anyprobe_gauges", None)
        try:
            if gauges is not None:
                return self._write_gauges(gauges).encode("utf-8")
            return self._write(registry).encode("utf-8")
        except _NotPlain:
            from prometheus_client import generate_latest

            data: bytes = generate_latest(registry)
            return data

    def _header(self, name: str, documentation: str, kind: str) -> str:
        key = (name, documentation, kind)
        header = self._headers.get(key)
        if header is None:
            if not _PLAIN_NAME.match(name):
                raise _NotPlain
            help_text = documentation.replace("\\", r"\\").replace("\n", r"\n")
            header = f"# HELP {name} {help_text}\n# TYPE {name} {kind}\n"
            if len(self._headers) < HEADER_LIMIT:
                self._headers[key] = header
        return header

    @staticmethod
    def _prefix(name: str, labels: dict[str, str]) -> str:
        if not all(_PLAIN_LABEL.match(key) for key in labels):
            raise _NotPlain
        pairs = ",".join(f'{key}="{_label_value(value)}"' for key, value in sorted(labels.items()))
        return f"{name}{{{pairs}}} "

    def _write_gauges(self, gauges: Gauges) -> str:
        from prometheus_client import utils

        go_float = cast("Callable[[float], str]", utils.floatToGoString)
        output: list[str] = []
        for name, documentation, values in gauges:
            output.append(self._header(name, documentation, "gauge"))
            for key, value in values.items():
                output.append(f"{self._sample_prefix(name, key)}{go_float(value)}\n")
        return "".join(output)

    def _sample_prefix(self, name: str, labels: tuple[tuple[str, str], ...]) -> str:
        """A sample's line up to its value (kept for labelled samples)."""
        if not labels:
            return f"{name} "
        prefix = self._prefixes.get((name, labels))
        if prefix is None:
            prefix = self._prefix(name, dict(labels))
            if len(self._prefixes) < HEADER_LIMIT:
                self._prefixes[name, labels] = prefix
        return prefix

    def _write(self, registry: Collector) -> str:
        from prometheus_client import utils

        # Go's formatting of a float (prometheus_client's, untyped there).
        go_float = cast("Callable[[float], str]", utils.floatToGoString)
        output: list[str] = []
        for family in registry.collect():
            kind = _SIMPLE_TYPES.get(family.type)
            if kind is None:
                raise _NotPlain
            name = family.name
            output.append(self._header(name, family.documentation, kind))
            for sample in family.samples:
                if sample.name != name or sample.timestamp is not None:
                    raise _NotPlain
                prefix = self._sample_prefix(name, tuple(sample.labels.items()))
                output.append(f"{prefix}{go_float(sample.value)}\n")
        return "".join(output)
