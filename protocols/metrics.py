"""Prometheus text exposition format, version 0.0.4: metric families in, the scrape body out. Sans-IO.

Why our own and not ``prometheus_client``: agent and central need counters, gauges and histograms
with labels rendered to one text format, nothing else. Most of what they expose is read at scrape
time from state that already exists (the outbox's chain state, a coordinator's link statistics, the
store's halls), which is what the families here are made for; ``prometheus_client`` would bring a
process-global registry (awkward when tests run several agents in one process), its own
multiprocess machinery and thread locks we do not need in asyncio code, and one more package to
pin on every hall's mini-PC. The format is small and stable; this module is tested byte for byte
against it (tests/test_metrics_format.py).

The rules implemented (https://prometheus.io/docs/instrumenting/exposition_formats/):

* ``# HELP name text`` with ``\\`` and newline escaped; ``# TYPE name counter|gauge|histogram``;
  every sample of a family directly after its HELP and TYPE lines, each family once.
* Label values escape ``\\``, ``"`` and newline; metric names match ``[a-zA-Z_:][a-zA-Z0-9_:]*``,
  label names ``[a-zA-Z_][a-zA-Z0-9_]*`` (not ``__``-prefixed, never ``le`` on a histogram).
* Values: integers as integers, floats as Go's ParseFloat reads them, ``+Inf``, ``-Inf``, ``NaN``.
* A histogram is cumulative ``name_bucket{le="…"}`` lines ending with ``le="+Inf"`` (equal to
  ``name_count``), then ``name_sum`` and ``name_count``.
* Counters are named ``…_total`` (the convention; checked).

Two ways to fill a family: the live instruments (:class:`Counter`, :class:`Gauge`,
:class:`Histogram`; cheap to update on a hot path, one dict operation) and plain
:class:`Family` objects a collector builds at scrape time from state it reads. A
:class:`Registry` holds both and renders them in registration order.
"""

from __future__ import annotations

import bisect
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"

Kind = Literal["counter", "gauge", "histogram"]
Number = int | float
LabelValues = tuple[str, ...]

METRIC_NAME_RE: Final = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
LABEL_NAME_RE: Final = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")

_INF_LE: Final = 'le="+Inf"'
DEFAULT_BUCKETS: Final[tuple[float, ...]] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class MetricsError(ValueError):
    """A name, label set or value the exposition format cannot carry (a programming error)."""


def escape_label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def format_value(value: Number) -> str:
    """A sample value as the format wants it; ``bool`` is refused (say 0 or 1 on purpose)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise MetricsError(f"a sample value must be int or float, not {type(value).__name__}")
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)


def _check_name(name: str) -> None:
    if not METRIC_NAME_RE.match(name):
        raise MetricsError(f"invalid metric name {name!r}")


def _check_labels(names: Sequence[str], kind: Kind) -> None:
    for label in names:
        if not LABEL_NAME_RE.match(label) or label.startswith("__"):
            raise MetricsError(f"invalid label name {label!r}")
        if kind == "histogram" and label == "le":
            raise MetricsError("a histogram may not have a label named 'le'")
    if len(set(names)) != len(names):
        raise MetricsError(f"duplicate label names in {tuple(names)}")


def _labels(names: Sequence[str], values: Sequence[str], extra: str = "") -> str:
    parts = [f'{n}="{escape_label_value(v)}"' for n, v in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


@dataclass(slots=True)
class HistogramValue:
    """One labelled histogram: per-bucket (non-cumulative) counts, the +Inf overflow, sum and count."""

    counts: list[int]
    total: float = 0.0
    count: int = 0


@dataclass(slots=True)
class Family:
    """One metric family as rendered: name, help, type, label names, and samples by label values.

    ``samples`` maps label values (in ``labels`` order) to a number, or to a
    :class:`HistogramValue` for a histogram (whose ``buckets`` are the upper bounds, +Inf implied).
    """

    name: str
    help: str
    kind: Kind
    labels: tuple[str, ...] = ()
    samples: dict[LabelValues, Number | HistogramValue] = field(default_factory=dict)
    buckets: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        _check_name(self.name)
        _check_labels(self.labels, self.kind)
        if self.kind == "counter" and not self.name.endswith("_total"):
            raise MetricsError(f"counter {self.name!r} must end in _total")
        if self.kind == "histogram":
            if not self.buckets or list(self.buckets) != sorted(set(self.buckets)) or math.isinf(self.buckets[-1]):
                raise MetricsError(f"histogram {self.name!r}: buckets must be finite, distinct and increasing")

    def add(self, value: Number, *labels: str) -> None:
        """Set the sample for ``labels`` (a collector filling the family at scrape time)."""
        if len(labels) != len(self.labels):
            raise MetricsError(f"{self.name}: expected labels {self.labels}, got {labels}")
        format_value(value)
        self.samples[tuple(labels)] = value

    def render(self) -> str:
        out = [f"# HELP {self.name} {escape_help(self.help)}", f"# TYPE {self.name} {self.kind}"]
        for values in sorted(self.samples):
            sample = self.samples[values]
            if isinstance(sample, HistogramValue):
                cumulative = 0
                for bound, n in zip(self.buckets, sample.counts, strict=False):
                    cumulative += n
                    le = f'le="{format_value(float(bound))}"'
                    out.append(f"{self.name}_bucket{_labels(self.labels, values, le)} {cumulative}")
                out.append(f"{self.name}_bucket{_labels(self.labels, values, _INF_LE)} {sample.count}")
                out.append(f"{self.name}_sum{_labels(self.labels, values)} {format_value(float(sample.total))}")
                out.append(f"{self.name}_count{_labels(self.labels, values)} {sample.count}")
            else:
                out.append(f"{self.name}{_labels(self.labels, values)} {format_value(sample)}")
        return "\n".join(out) + "\n"


class _Instrument:
    def __init__(self, name: str, help: str, labels: Sequence[str], kind: Kind,
                 buckets: tuple[float, ...] = ()) -> None:
        self.family = Family(name, help, kind, tuple(labels), buckets=buckets)

    @property
    def name(self) -> str:
        return self.family.name

    def _key(self, labels: Sequence[str]) -> LabelValues:
        if len(labels) != len(self.family.labels):
            raise MetricsError(f"{self.family.name}: expected labels {self.family.labels}, got {tuple(labels)}")
        return tuple(labels)

    def collect(self) -> Family:
        return self.family


class Counter(_Instrument):
    """A monotonically increasing count per label set: ``requests.inc("GET", "200")``."""

    def __init__(self, name: str, help: str, labels: Sequence[str] = ()) -> None:
        super().__init__(name, help, labels, "counter")

    def inc(self, *labels: str, amount: Number = 1) -> None:
        if amount < 0:
            raise MetricsError(f"{self.family.name}: a counter only goes up")
        key = self._key(labels)
        samples = self.family.samples
        current = samples.get(key, 0)
        assert not isinstance(current, HistogramValue)
        samples[key] = current + amount

    def value(self, *labels: str) -> Number:
        sample = self.family.samples.get(self._key(labels), 0)
        assert not isinstance(sample, HistogramValue)
        return sample


class Gauge(_Instrument):
    """A value that goes up and down per label set."""

    def __init__(self, name: str, help: str, labels: Sequence[str] = ()) -> None:
        super().__init__(name, help, labels, "gauge")

    def set(self, value: Number, *labels: str) -> None:
        format_value(value)
        self.family.samples[self._key(labels)] = value


class Histogram(_Instrument):
    """Observations counted into fixed buckets per label set (upper bounds inclusive: ``v <= le``)."""

    def __init__(self, name: str, help: str, labels: Sequence[str] = (),
                 buckets: Sequence[float] = DEFAULT_BUCKETS) -> None:
        super().__init__(name, help, labels, "histogram", tuple(float(b) for b in buckets))

    def observe(self, value: float, *labels: str, count: int = 1) -> None:
        """Record ``value`` (``count`` times, for callers that aggregate identical observations)."""
        if math.isnan(value) or count < 1:
            raise MetricsError(f"{self.family.name}: cannot observe {value!r} x{count}")
        key = self._key(labels)
        sample = self.family.samples.get(key)
        if sample is None:
            sample = self.family.samples[key] = HistogramValue([0] * len(self.family.buckets))
        assert isinstance(sample, HistogramValue)
        index = bisect.bisect_left(self.family.buckets, value)
        if index < len(sample.counts):
            sample.counts[index] += count
        sample.total += value * count
        sample.count += count


Collector = Callable[[], Iterable[Family]]


class Registry:
    """What one ``/metrics`` endpoint serves: instruments and scrape-time collectors, in order."""

    def __init__(self) -> None:
        self._sources: list[_Instrument | Collector] = []

    def add(self, source: _Instrument | Collector) -> None:
        self._sources.append(source)

    def counter(self, name: str, help: str, labels: Sequence[str] = ()) -> Counter:
        metric = Counter(name, help, labels)
        self.add(metric)
        return metric

    def gauge(self, name: str, help: str, labels: Sequence[str] = ()) -> Gauge:
        metric = Gauge(name, help, labels)
        self.add(metric)
        return metric

    def histogram(self, name: str, help: str, labels: Sequence[str] = (),
                  buckets: Sequence[float] = DEFAULT_BUCKETS) -> Histogram:
        metric = Histogram(name, help, labels, buckets)
        self.add(metric)
        return metric

    def families(self) -> list[Family]:
        out: list[Family] = []
        for source in self._sources:
            if isinstance(source, _Instrument):
                out.append(source.collect())
            else:
                out.extend(source())
        return out

    def render(self, extra: Iterable[Family] = ()) -> str:
        """The scrape body: every family of the registry, then ``extra`` (e.g. read asynchronously)."""
        return render([*self.families(), *extra])


def render(families: Iterable[Family]) -> str:
    """Families to exposition text; a name twice is an error (the format allows each family once)."""
    seen: set[str] = set()
    parts = []
    for family in families:
        if family.name in seen:
            raise MetricsError(f"metric family {family.name!r} rendered twice")
        seen.add(family.name)
        parts.append(family.render())
    return "".join(parts)


__all__ = ["CONTENT_TYPE", "DEFAULT_BUCKETS", "Counter", "Family", "Gauge", "Histogram", "HistogramValue",
           "MetricsError", "Registry", "escape_help", "escape_label_value", "format_value", "render"]
