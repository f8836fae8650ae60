"""Link statistics per machine: what a technician's link test reports, the benchmark prints and
``/metrics`` exposes.

Besides transmissions by outcome, three signs that a machine is *under-polled* (issue 12: money then
ends up carried by ``missed`` records and per-game detail is gone, so an operator must see it before
the reconciliation does):

* exception 70 — the EGM's exception queue overflowed and dropped its oldest events;
* a broken game sequence in the confirmed exceptions — a 7E while the previous game never ended
  (its 7F was lost) or a 7F with no game open (its 7E was lost). Counted here, from what the line
  confirmed, rather than in the normalizer: that is exact enough (the sequence the EGM delivered)
  and keeps the pipeline free of metrics;
* cadence misses — a general poll that went out more than one poll interval late, measured as the
  gap between the wire times of two consecutive general polls to the machine minus the interval
  (independent of how the coordinator schedules, and including the wait behind other machines on a
  shared line, which is what the EGM experiences).
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field

from .transaction import Outcome, TransactionResult

LATENCY_BUCKETS_MS: tuple[float, ...] = (1, 2, 5, 10, 20, 50, 100)
GAME_STARTED, GAME_ENDED, EXCEPTION_OVERFLOW = 0x7E, 0x7F, 0x70


@dataclass
class LinkStats:
    """Counts every transmission (a repeat is its own transmission) by outcome, plus latencies."""

    outcomes: Counter[str] = field(default_factory=Counter)
    quiet: int = 0                     # silent general polls in RTE mode (no event: not an error)
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=200_000))
    missed_polls: int = 0              # polls whose every attempt went unanswered
    retries: int = 0                   # repeats of the same poll after a garbled or missing reply
    exception_overflows: int = 0       # exception 70 confirmed: the EGM's queue dropped events
    lost_game_ends: int = 0            # a 7E while the previous game was still open: its 7F was lost
    lost_game_starts: int = 0          # a 7F with no game open: its 7E was lost
    cadence_misses: int = 0            # general polls more than one poll interval late
    worst_lateness: float = 0.0        # seconds, the latest general poll since start (0: never late)
    lateness: deque[float] = field(default_factory=lambda: deque(maxlen=4096))
    """Recent general polls' lateness in seconds (≤ 0: on time), for the benchmark's percentiles."""
    game_open: bool | None = None
    """Whether a game is open (7E seen, 7F not yet); None until the first 7E or 7F since start, so a
    game started before this process (its 7E read by the previous one) is not taken for a lost 7E."""

    def record(self, attempts: list[TransactionResult], quiet_ok: bool) -> None:
        self.retries += max(0, len(attempts) - 1)
        for res in attempts:
            if res.outcome is Outcome.TIMEOUT and quiet_ok:
                self.quiet += 1
                continue
            self.outcomes[res.outcome.value] += 1
            if res.latency is not None:
                self.latencies.append(res.latency)

    def exception(self, code: int) -> None:
        """A confirmed exception (legacy or RTE): count overflows and breaks in the 7E/7F sequence."""
        if code == EXCEPTION_OVERFLOW:
            self.exception_overflows += 1
        elif code == GAME_STARTED:
            if self.game_open:
                self.lost_game_ends += 1
            self.game_open = True
        elif code == GAME_ENDED:
            if self.game_open is False:
                self.lost_game_starts += 1
            self.game_open = False

    def cadence(self, lateness: float, interval: float) -> None:
        """One general poll that went out ``lateness`` seconds after it was due (negative: early)."""
        self.lateness.append(lateness)
        if lateness > interval:
            self.cadence_misses += 1
        if lateness > self.worst_lateness:
            self.worst_lateness = lateness

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
            "exception_overflows": self.exception_overflows, "lost_game_ends": self.lost_game_ends,
            "lost_game_starts": self.lost_game_starts, "cadence_misses": self.cadence_misses,
            "worst_lateness_ms": round(self.worst_lateness * 1000, 3),
            "latency_ms": {"p50": None if p50 is None else round(p50 * 1000, 3),
                           "p99": None if p99 is None else round(p99 * 1000, 3),
                           "histogram": dict(self.histogram())},
        }
