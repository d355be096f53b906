"""The Prometheus reporter: the text exposition format, for node_exporter's textfile collector.

Metric names follow blackbox_exporter's where the meaning is the same, so its
dashboards and alerts work unchanged: ``probe_success``,
``probe_duration_seconds``, ``probe_dns_lookup_time_seconds``,
``probe_http_status_code``, ``probe_ssl_earliest_cert_expiry`` and the
per-phase ``probe_<probe>_duration_seconds{phase=...}`` (``probe_http_...``,
``probe_dns_...``). anyprobe adds ``anyprobe_status`` (0 ok, 1 warning,
2 critical, 3 unknown), ``anyprobe_attempts`` and, for a whole run, when and
how it ended. Every per-check sample carries the labels ``name``, ``target``,
``probe`` and the check's own labels. A check of every address of its host
(``addresses = "all"`` or ``"any"``) adds ``probe_success``,
``probe_duration_seconds`` and ``anyprobe_status`` once more per address,
with an ``address`` label.

:func:`build_registry` turns results into a ``prometheus_client`` registry;
anything that serves metrics (a scrape endpoint) can reuse it. This plugin
also implements the ``anyprobe_metrics_registry`` hook with it, which is how
``anyprobe serve`` builds its ``/probe`` and ``/metrics`` answers.
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import anyprobe

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from prometheus_client.metrics_core import Metric

    from anyprobe._exposition import Gauges

#: Labels every per-check sample has; a check label with one of these names
#: (or ``phase``) is exported as ``label_<name>``.
BASE_LABELS = ("name", "target", "probe")
_RESERVED = frozenset((*BASE_LABELS, "phase", "status", "address"))

#: anyprobe phase names that blackbox_exporter calls differently.
PHASE_NAMES = {"first_byte": "processing"}

_INVALID_LABEL_CHARS = re.compile(r"[^a-zA-Z0-9_]")
_SECONDS_PER_DAY = 86400.0


class PrometheusReporter(anyprobe.Reporter[anyprobe.ReporterOptions]):
    """``-r prometheus=/var/lib/node_exporter/textfile/anyprobe.prom``."""

    name = "prometheus"
    description = (
        "Prometheus text format (blackbox_exporter's metric names), written atomically at the end."
    )

    async def report(self, results: anyprobe.ResultStream, ctx: anyprobe.ReportContext) -> None:
        collected = [result async for result in results]
        text = exposition(collected, ctx.summary)
        async with await anyprobe.OutputFile.open(self.options.path, atomic=True) as out:
            await out.write(text)


def exposition(
    results: Sequence[anyprobe.Result], summary: anyprobe.RunSummary | None = None
) -> str:
    """The text exposition of ``results`` (and of the run, given its ``summary``)."""
    from prometheus_client import generate_latest

    return generate_latest(build_registry(results, summary)).decode("utf-8")


def build_registry(
    results: Iterable[anyprobe.Result],
    summary: anyprobe.RunSummary | None = None,
    *,
    now: float | None = None,
    check_labels: bool = True,
) -> CollectorRegistry:
    """A new registry holding the metrics of ``results``.

    With ``summary``, the run's own metrics are added too
    (``anyprobe_run_*``; ``now`` is the run's end time, default the current time).
    ``check_labels=False`` leaves out the per-check labels (``name``,
    ``target``, ``probe`` and the check's own), as blackbox_exporter's
    ``/probe`` does for its one target: the scraper labels the series.
    The registry is a snapshot: build a new one for newer results.
    """
    registry = _snapshot_registry_class()(auto_describe=False)
    results = list(results)
    gauges = _gauges(results, check_labels=check_labels)
    extra = []
    if summary is not None:
        extra = list(_run_families(summary, time.time() if now is None else now))
    registry.register(_Snapshot(gauges, extra))
    # The families as plain data, for a writer that skips the Metric objects
    # (anyprobe._exposition, which serve uses): the same families, the same order.
    registry.anyprobe_gauges = None if extra else gauges
    built: CollectorRegistry = registry
    return built


@functools.cache
def _snapshot_registry_class() -> type[Any]:
    """A CollectorRegistry whose ``anyprobe_gauges`` (its families as plain
    data, :data:`anyprobe._exposition.Gauges`) is dropped as soon as a
    collector is registered or unregistered after build_registry: a writer
    never skips what a caller added to it. (Made at the first call, so that
    prometheus_client is imported only when metrics are.)"""
    from prometheus_client import CollectorRegistry

    class SnapshotRegistry(CollectorRegistry):
        anyprobe_gauges: Gauges | None = None

        def register(self, collector: Any) -> None:
            self.anyprobe_gauges = None
            super().register(collector)

        def unregister(self, collector: Any) -> None:
            self.anyprobe_gauges = None
            super().unregister(collector)

    return SnapshotRegistry


class _Snapshot:
    """A collector that hands out metric families built beforehand: the gauges
    as Metric objects (made at the first collect()), then ``extra``."""

    def __init__(self, gauges: Gauges, extra: list[Metric]) -> None:
        self._gauges = gauges
        self._families: list[Metric] | None = None
        self._extra = extra

    def collect(self) -> Iterator[Metric]:
        if self._families is None:
            from prometheus_client.metrics_core import Metric

            self._families = []
            for name, documentation, values in self._gauges:
                family = Metric(name, documentation, "gauge")
                for key, value in values.items():
                    family.add_sample(name, dict(key), value)
                self._families.append(family)
            self._families += self._extra
        return iter(self._families)


def label_name(key: str) -> str:
    """``key`` as a valid Prometheus label name (``env-name`` -> ``env_name``)."""
    name = _INVALID_LABEL_CHARS.sub("_", key) or "_"
    if name[0].isdigit():
        name = f"_{name}"
    if name.startswith("__"):
        # Names starting with __ are reserved for Prometheus itself.
        name = f"label{name}"
    if name in _RESERVED:
        name = f"label_{name}"
    return name


def _check_labels(result: anyprobe.Result) -> dict[str, str]:
    labels = {"name": result.name, "target": result.target, "probe": result.probe}
    for key in sorted(result.labels):
        # Two keys that sanitise to the same name: the first (sorted) wins.
        labels.setdefault(label_name(key), str(result.labels[key]))
    return labels


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _leaf_certificate(result: anyprobe.Result) -> dict[str, str] | None:
    """blackbox_exporter's ``probe_ssl_last_chain_info`` labels for the leaf
    certificate in ``details.tls``, if the check saw one."""
    tls = result.details.get("tls")
    certificates = tls.get("certificates") if isinstance(tls, dict) else None
    if not certificates or not isinstance(certificates[0], dict):
        return None
    leaf = certificates[0]
    fingerprint = leaf.get("fingerprint_sha256")
    if not fingerprint:
        return None
    return {
        "fingerprint_sha256": str(fingerprint),
        "subject": str(leaf.get("subject", "")),
        "issuer": str(leaf.get("issuer", "")),
        "subjectalternative": ",".join(str(name) for name in leaf.get("sans", ())),
    }


_SEVERITY = {status.value: status.severity for status in anyprobe.Status}


def _per_address(
    result: anyprobe.Result, labels: dict[str, str]
) -> Iterator[tuple[str, dict[str, str], float]]:
    """``probe_success``, ``anyprobe_status`` and ``probe_duration_seconds``
    once more for each address a check with ``addresses = "all"`` or
    ``"any"`` checked (``details["addresses"]``), with an ``address`` label."""
    entries = result.details.get("addresses")
    if not isinstance(entries, list):
        return
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("address"), str):
            continue
        per_address = {**labels, "address": entry["address"]}
        severity = _SEVERITY.get(str(entry.get("status")), 3)
        yield "probe_success", per_address, 1.0 if severity <= 1 else 0.0
        yield "anyprobe_status", per_address, float(severity)
        seconds = _number(entry.get("duration"))
        if seconds is not None:
            yield "probe_duration_seconds", per_address, seconds


#: The per-check gauges, in the order they are written: name and help text.
_GAUGES = {
    "probe_success": "Whether the check succeeded (ok or warning).",
    "probe_duration_seconds": "How long the check took: from its first attempt's start to "
    "its verdict, retries and the backoff between them included.",
    "anyprobe_status": "The check's status: 0 ok, 1 warning, 2 critical, 3 unknown.",
    "anyprobe_attempts": "Attempts the check made.",
    "probe_dns_lookup_time_seconds": "Time taken to resolve the target's name.",
    "probe_http_status_code": "The HTTP response's status code.",
    "probe_ssl_earliest_cert_expiry": "When the earliest certificate presented expires, "
    "as a Unix timestamp.",
    "probe_ssl_last_chain_info": "The server's leaf certificate: its SHA-256 fingerprint, "
    "subject, issuer and subject alternative names (as labels; the value is 1).",
}


def _gauges(results: list[anyprobe.Result], *, check_labels: bool = True) -> Gauges:
    """Every per-check family of ``results`` that has a sample."""
    # Family name -> {sorted labels: value}. Checks may carry different
    # labels: each sample has its own set, which the exposition format allows.
    # Two checks with the same labels (one URL given twice) would be a
    # duplicate series, which makes node_exporter reject the whole file: the
    # later result wins.
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    phase_help: dict[str, str] = {}

    def add(family: str, labels: dict[str, str], value: float) -> None:
        key = tuple(sorted(labels.items())) if labels else ()
        per_family = samples.get(family)
        if per_family is None:
            per_family = samples[family] = {}
        per_family[key] = value

    for result in results:
        labels = _check_labels(result) if check_labels else {}
        severity = result.status.severity
        add("probe_success", labels, 1.0 if severity <= 1 else 0.0)
        add("probe_duration_seconds", labels, result.duration)
        add("anyprobe_status", labels, float(severity))
        add("anyprobe_attempts", labels, float(result.attempts))
        phases = result.phases
        if "resolve" in phases:
            add("probe_dns_lookup_time_seconds", labels, phases["resolve"])
        metrics = result.metrics
        code = _number(metrics.get("http_status"))
        if code is not None:
            add("probe_http_status_code", labels, code)
        days = _number(metrics.get("cert_expiry_days"))
        if days is not None:
            expiry = result.started.timestamp() + days * _SECONDS_PER_DAY
            add("probe_ssl_earliest_cert_expiry", labels, expiry)
        if result.details:
            leaf = _leaf_certificate(result)
            if leaf is not None:
                add("probe_ssl_last_chain_info", {**labels, **leaf}, 1.0)
            for series, per_address, value in _per_address(result, labels):
                add(series, per_address, value)
        if phases:
            metric = _PHASE_METRICS.get(result.probe) or _phase_metric(result.probe)
            phase_help.setdefault(metric, f"Duration of the {result.probe} check by phase.")
            for phase, seconds in phases.items():
                add(metric, {**labels, "phase": PHASE_NAMES.get(phase, phase)}, seconds)
        expires = _number(metrics.get("domain_expiry_timestamp"))
        if expires is not None:
            # When the domain registration an rdap check read expires, for
            # alerts written as on probe_ssl_earliest_cert_expiry.
            add(_DOMAIN_EXPIRY, labels, expires)

    return [
        (name, documentation, values)
        for name, documentation in (*_GAUGES.items(), *phase_help.items(), _DOMAIN_EXPIRY_HELP)
        if (values := samples.get(name))
    ]


#: ``probe_<probe>_duration_seconds`` by probe name (a few: one per probe plugin).
_PHASE_METRICS: dict[str, str] = {}


def _phase_metric(probe: str) -> str:
    metric = f"probe_{label_name(probe).lower()}_duration_seconds"
    if len(_PHASE_METRICS) < 1000:
        _PHASE_METRICS[probe] = metric
    return metric


_DOMAIN_EXPIRY = "probe_domain_expiry_timestamp_seconds"
_DOMAIN_EXPIRY_HELP = (
    _DOMAIN_EXPIRY,
    "When the domain's registration expires, as a Unix timestamp.",
)


def _run_families(summary: anyprobe.RunSummary, now: float) -> Iterator[Metric]:
    from prometheus_client.core import GaugeMetricFamily

    checks = GaugeMetricFamily(
        "anyprobe_run_checks", "Checks of the last run by status.", labels=["status"]
    )
    for state in anyprobe.Status:
        checks.add_metric([state.value], float(summary.counts.get(state, 0)))
    yield checks
    yield GaugeMetricFamily(
        "anyprobe_run_not_finished",
        "Checks of the last run that never finished.",
        value=float(summary.not_finished),
    )
    yield GaugeMetricFamily(
        "anyprobe_run_duration_seconds", "How long the last run took.", value=summary.duration
    )
    yield GaugeMetricFamily(
        "anyprobe_run_timestamp_seconds",
        "When the last run ended, as a Unix timestamp.",
        value=now,
    )
    yield GaugeMetricFamily(
        "anyprobe_run_interrupted",
        "1 when the last run was interrupted (SIGINT, SIGTERM) before every check finished.",
        value=1.0 if summary.interrupted else 0.0,
    )


@anyprobe.hookimpl
def anyprobe_register_reporters(register: Any) -> None:
    register(PrometheusReporter)


@anyprobe.hookimpl
def anyprobe_metrics_registry(
    results: Sequence[anyprobe.Result], check_labels: bool
) -> CollectorRegistry:
    return build_registry(results, check_labels=check_labels)
