"""The agent's event pipeline: facts in, event drafts out (the outbox seals and ships them).

* :mod:`.drafts` — :class:`EventDraft` (what the outbox turns into an ``UnsealedEvent``) and
  :class:`SnapshotRequest` (what a normalizer's ``tick`` asks the caller to do), shared by every
  device family's normalizer (:class:`agent.family.FamilyNormalizer`).

Each family's normalizer lives in its folder: the SAS one in :mod:`agent.sas.normalizer` (with its
meter ledger, device state and checkpoints: :mod:`agent.sas.ledger`, :mod:`agent.sas.device_state`,
:mod:`agent.sas.checkpoint`), the Modbus one in :mod:`agent.modbus.terminal`. ``Normalizer`` is still
importable from here (the SAS one, as before issue 15).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .drafts import EventDraft, SnapshotRequest

if TYPE_CHECKING:
    from ..sas.normalizer import Normalizer


def __getattr__(name: str) -> Any:
    if name == "Normalizer":  # imported on use: agent.sas.normalizer imports this package's drafts
        from ..sas.normalizer import Normalizer
        return Normalizer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["EventDraft", "Normalizer", "SnapshotRequest"]
