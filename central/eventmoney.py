"""An event's money as the reports' *events* side counts it, and the ``missed`` records of the agent:
the shared rule (:func:`protocols.sync.money.contribution`) as the reconciliation and the store both use
it, in a module that imports nothing of central (so the store does not import the reconciliation).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from protocols.sync.money import ZERO, Contribution, contribution
from protocols.sync.vocabulary import counts_in_events, is_missed


@dataclass(frozen=True, slots=True)
class MissedRecord:
    """An ``integration``/``missed`` event: what the meters showed that events did not."""

    seq: int
    meters_time: int | None
    amounts: Contribution



def missed_from_event(seq: int, data: Mapping[str, Any]) -> MissedRecord | None:
    """A :class:`MissedRecord` from an ``integration`` event of kind ``missed`` (else None)."""
    if not is_missed("integration", data):
        return None
    try:
        amounts = contribution("integration", dict(data))
    except ValueError:
        return None  # counted as zero by the rollups too (and logged at ingest)
    when = data.get("meters_time")
    return MissedRecord(seq, when if type(when) is int else None, amounts)


def event_money(event_type: str, data: Mapping[str, Any]) -> Contribution:
    """An event's money for the *events* side: the shared rule, without ``missed`` records (they are
    the reconciliation's own column) and zero for what the rule refuses (as the rollups count it)."""
    if not counts_in_events(event_type, data):
        return ZERO
    try:
        return contribution(event_type, dict(data))
    except ValueError:
        return ZERO
