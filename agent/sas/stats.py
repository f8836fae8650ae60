"""Link statistics per machine: what a technician's link test reports and the benchmark prints."""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field

from .transaction import Outcome, TransactionResult

LATENCY_BUCKETS_MS: tuple[float, ...] = (1, 2, 5, 10, 20, 50, 100)


@dataclass
class LinkStats:
    """Counts every transmission (a repeat is its own transmission) by outcome, plus latencies."""

    outcomes: Counter[str] = field(default_factory=Counter)
    quiet: int = 0                     # silent general polls in RTE mode (no event: not an error)
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=200_000))
    missed_polls: int = 0              # polls whose every attempt went unanswered
    retries: int = 0                   # repeats of the same poll after a garbled or missing reply

    def record(self, attempts: list[TransactionResult], quiet_ok: bool) -> None:
        self.retries += max(0, len(attempts) - 1)
        for res in attempts:
            if res.outcome is Outcome.TIMEOUT and quiet_ok:
                self.quiet += 1
                continue
            self.outcomes[res.outcome.value] += 1
            if res.latency is not None:
                self.latencies.append(res.latency)

    @property
    def transmissions(self) -> int:
        return sum(self.outcomes.values()) + self.quiet

    @property
    def answered(self) -> int:
        return self.outcomes["reply"] + self.outcomes["busy"] + self.outcomes["nack"]

    def percentile(self, p: float) -> float | None:
        """Latency percentile in seconds (``p`` in 0..100), None without samples."""
        if not self.latencies:
            return None
        data = sorted(self.latencies)
        index = min(len(data) - 1, max(0, round(p / 100 * (len(data) - 1))))
        return data[index]

    def histogram(self) -> list[tuple[str, int]]:
        """(label, count) per latency bucket, in milliseconds."""
        counts = [0] * (len(LATENCY_BUCKETS_MS) + 1)
        for lat in self.latencies:
            ms = lat * 1000
            for i, edge in enumerate(LATENCY_BUCKETS_MS):
                if ms <= edge:
                    counts[i] += 1
                    break
            else:
                counts[-1] += 1
        labels = [f"≤{edge:g} ms" for edge in LATENCY_BUCKETS_MS] + [f">{LATENCY_BUCKETS_MS[-1]:g} ms"]
        return list(zip(labels, counts, strict=True))

    def as_dict(self) -> dict[str, object]:
        p50, p99 = self.percentile(50), self.percentile(99)
        return {
            "transmissions": self.transmissions, "answered": self.answered, "quiet": self.quiet,
            "timeouts": self.outcomes["timeout"], "garbled": self.outcomes["garbled"],
            "nacks": self.outcomes["nack"], "busy": self.outcomes["busy"], "chirps": self.outcomes["chirp"],
            "retries": self.retries, "missed_polls": self.missed_polls,
            "latency_ms": {"p50": None if p50 is None else round(p50 * 1000, 3),
                           "p99": None if p99 is None else round(p99 * 1000, 3),
                           "histogram": dict(self.histogram())},
        }
