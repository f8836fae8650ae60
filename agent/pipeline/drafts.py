"""What the normalizer hands to the outbox, and what it asks its caller to do.

An :class:`EventDraft` is an event before the outbox gives it ``seq``, ``id`` and ``hall`` and seals
it into the chain (``protocols.sync.events.UnsealedEvent`` / ``seal``). It lives in its own module so
the outbox can import it without pulling in the normalizer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


def micros(wall: float) -> int:
    """``time.time()`` seconds → integer microseconds UTC, the unit of ``agent_time``/``device_time``.

    Times are not money: rounding a float here is fine (amounts never pass through floats)."""
    return round(wall * 1_000_000)


@dataclass(frozen=True, slots=True)
class EventDraft:
    """One event of the log, minus what the outbox assigns (seq, id, hall) and the hashes.

    ``data`` follows protocols/sync/data.py (no floats; ``amount`` int ≥ 0 with ``currency``) and
    protocols/sync/money.py (what each type contributes). Do not mutate it after handing it over.
    """

    device: str
    type: str
    device_time: int | None
    agent_time: int
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SnapshotRequest:
    """Returned by :meth:`Normalizer.tick`: please read this device's meters now.

    The caller (the agent's run loop) calls ``MachineCoordinator.read_meters(reason)``. For
    ``gaming_day_close`` the normalizer tags the next :class:`~agent.sas.facts.MetersSnapshot` of
    ``device`` with that reason and ``gaming_day`` (ISO date of the day being closed), whatever
    reason the coordinator gave it; ``settle`` asks for a snapshot that judges a settled window of
    a machine gone idle (``gaming_day`` empty).
    """

    device: str
    reason: str
    gaming_day: str = ""


__all__ = ["EventDraft", "SnapshotRequest", "micros"]
