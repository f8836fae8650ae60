"""What central derives from a verified run of events *before* it takes the write lock.

Why a separate step: the database writer is the one serial resource of ingest, and in this process
it shares the GIL with decoding and verification. Everything that needs only the events (the row
values of the ``events`` table, the canonical JSON of each ``data``, the rollup and device effects,
the ``missed`` records) is computed here, on the thread that verified the batch, while the writer
is still busy with the previous one. The writer is then left with the chain check against stored
state and a few multi-row statements (see :func:`central.store.sqlhelpers.insert_rows`).

Backend-neutral: the rows are plain column values in :data:`EVENT_COLUMNS` order, which any SQL
backend can bind.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, cast

import msgspec

from protocols.sync import Event
from protocols.sync.gamingday import UTC_MIDNIGHT, DayRule
from protocols.sync.vocabulary import is_missed

from .rollup import BatchEffects, effects

EVENT_COLUMNS: Final = ("hall", "seq", "id", "device", "type", "agent_time", "device_time", "central_time",
                        "prev_hash", "hash", "data")
"""The ``events`` columns in the order :attr:`StagedEvents.rows` holds their values."""

WIDTH: Final = len(EVENT_COLUMNS)

_DATA_ENCODER = msgspec.json.Encoder(order="sorted")  # protocols.sync.canonical's encoding, without its error mapping:
# these events were decoded from canonical JSON and verified, so they always re-encode


@dataclass(frozen=True, slots=True)
class MissedRecord:
    """An agent's ``integration``/``missed`` event: meters moved more than its events said."""

    seq: int
    device: str
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class StagedEvents:
    """A verified, contiguous run of one hall's events and everything storing it needs.

    Built from the rows alone, so it can come from another process (central.verify_pool) without the
    decoded events: ``load_events`` gives them when the rare overlapping batch needs its tail's effects
    recomputed.
    """

    hall: str
    central_time: int
    rows: list[Any]
    """Flat column values, :data:`WIDTH` per event, in seq order."""
    effects: BatchEffects
    missed: tuple[MissedRecord, ...]
    load_events: Callable[[], Sequence[Event]]

    @property
    def count(self) -> int:
        return len(self.rows) // WIDTH

    @property
    def first_seq(self) -> int:
        return cast("int", self.rows[1])

    @property
    def last_seq(self) -> int:
        return cast("int", self.rows[-WIDTH + 1])

    @property
    def first_prev_hash(self) -> str:
        return cast("str", self.rows[8])

    @property
    def first_agent_time(self) -> int:
        return cast("int", self.rows[5])

    def hash_at(self, index: int) -> str:
        """The hash of the ``index``-th event of the run (negative counts from the end)."""
        return cast("str", self.rows[(index % self.count) * WIDTH + 9])

    def tail(self, start: int) -> StagedEvents:
        """The run from its ``start``-th event on (a batch that overlaps what is stored keeps only its new
        tail); the effects are recomputed for exactly those events."""
        if start == 0:
            return self
        events = self.load_events()[start:]
        return StagedEvents(self.hall, self.central_time, self.rows[start * WIDTH:],
                            effects(self.hall, events, self.effects.rule),
                            tuple(m for m in self.missed if m.seq >= events[0].seq), lambda: events)

    def under(self, rule: DayRule) -> StagedEvents:
        """The same run with its day-keyed effects computed by ``rule`` (the hall's settings changed
        between staging and storing: rare, so recomputing from the events is fine)."""
        if rule == self.effects.rule:
            return self
        events = self.load_events()
        count = self.count
        events = events[len(events) - count:]   # a tail keeps only its own events
        return StagedEvents(self.hall, self.central_time, self.rows, effects(self.hall, events, rule), self.missed,
                            lambda: events)


def stage_events(hall: str, events: Sequence[Event], central_time: int,
                 rule: DayRule = UTC_MIDNIGHT) -> StagedEvents:
    """Rows, effects and missed records of ``events`` (non-empty, verified, all of ``hall``); the
    effects' days and hours by the hall's day ``rule``."""
    if not events:
        raise ValueError("stage_events needs at least one event")
    rows: list[Any] = []
    extend = rows.extend
    encode = _DATA_ENCODER.encode
    missed = []
    for e in events:
        extend((hall, e.seq, e.id, e.device, e.type, e.agent_time, e.device_time, central_time, e.prev_hash, e.hash,
                encode(e.data).decode()))
        if is_missed(e.type, e.data):
            missed.append(MissedRecord(e.seq, e.device, e.data))
    return StagedEvents(hall, central_time, rows, effects(hall, events, rule), tuple(missed), lambda: events)
