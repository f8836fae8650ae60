"""The audit trail: every change made through the API or the CLI, append-only.

The records and the repository's interface are backend-neutral: each backend implements
:class:`AuditRepository` with its own SQL (SQLite in :mod:`central.store`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One change made through the API or the CLI: who, when, what, and the state before and after.

    ``actor`` is the API key id, or ``cli:<user>`` for the command line; ``action`` names the change
    (``command.create``, ``catalog.game.update``, ``hall.add``…); ``target`` what it changed
    (``hall/A/device/egm-001``); ``before``/``after`` are JSON-able snapshots (None when the thing did
    not exist before / no longer exists after). ``id`` is assigned by the store.
    """

    time: int
    actor: str
    action: str
    target: str
    before: Any = None
    after: Any = None
    id: int | None = None


@runtime_checkable
class AuditRepository(Protocol):
    """Appends and reads audit entries (never changed or deleted)."""

    async def add_audit(self, entry: AuditEntry) -> int:
        """Append one audit entry; returns its id. Audit entries are never changed or deleted."""
        ...

    async def audit(self, *, actor: str | None = None, action: str | None = None, time_from: int | None = None,
                    time_to: int | None = None, after_id: int | None = None, limit: int = 100,
                    halls: Sequence[str] | None = None) -> list[AuditEntry]:
        """Audit entries oldest first, filtered; ``after_id`` pages (entries with a larger id).

        ``halls`` restricts to entries whose target is ``hall/<H>`` or under ``hall/<H>/`` for H in
        ``halls`` (the scope rule of :mod:`central.audit`)."""
        ...
