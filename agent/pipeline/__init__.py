"""The agent's event pipeline: SAS facts in, event drafts out (the outbox seals and ships them).

* :mod:`.drafts` — :class:`EventDraft` (what the outbox turns into an ``UnsealedEvent``) and
  :class:`SnapshotRequest` (what :meth:`Normalizer.tick` asks the caller to do);
* :mod:`.normalizer` — :class:`Normalizer`, pure and synchronous: ``feed(fact) -> list[EventDraft]``;
* :mod:`.ledger` — per-device reconciliation of reported money against the meters (``missed``);
* :mod:`.device_state` — the small per-device state the normalizer keeps;
* :mod:`.checkpoint` — that state as versioned JSON, committed with the events (crash safety).
"""

from .drafts import EventDraft, SnapshotRequest
from .normalizer import Normalizer

__all__ = ["EventDraft", "Normalizer", "SnapshotRequest"]
