"""Commands central sent to halls' machines, and where each stands.

The records and the repository's interface are backend-neutral: each backend implements
:class:`CommandRepository` with its own SQL (SQLite in :mod:`central.store`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol, runtime_checkable

COMMAND_STATUSES: Final = ("pending", "sent", "applied", "failed", "expired")
"""Statuses of a command central sent (design.md, ``GET /commands/{id}``)."""


FINAL_COMMAND_STATUSES: Final = frozenset({"applied", "failed", "expired"})


COMMAND_TRANSITIONS: Final[dict[str, frozenset[str]]] = {
    "pending": frozenset({"pending", "sent", "applied", "failed", "expired"}),
    "sent": frozenset({"applied", "failed", "expired"}),
}
"""The only status changes :meth:`update_command` makes; a final status never changes.

``pending → sent`` after the broker's PUBACK; ``pending → failed`` when it could not be published;
``sent → applied|failed|expired`` from the hall's result; any non-final → ``expired`` past
``expires_at``. ``pending → applied|failed`` also covers a result that arrives before central recorded
the PUBACK (the agent can answer faster than central's bookkeeping). ``pending → pending`` changes
only the detail (a publish whose outcome central does not know)."""


@dataclass(frozen=True, slots=True)
class CommandRecord:
    """A command central issued to a hall, and where it stands."""

    id: str
    hall: str
    device: str | None
    action: str
    game: str | None
    params: dict[str, Any]
    issued_at: int
    expires_at: int
    status: str
    detail: str
    created_by: str | None
    created_at: int
    updated_at: int

    @property
    def final(self) -> bool:
        return self.status in FINAL_COMMAND_STATUSES


def command_transition_allowed(old: str, new: str) -> bool:
    """True when :data:`COMMAND_TRANSITIONS` lets a command in ``old`` move to ``new``."""
    return new in COMMAND_TRANSITIONS.get(old, frozenset())


@runtime_checkable
class CommandRepository(Protocol):
    """Stores commands and moves them through :data:`COMMAND_TRANSITIONS`."""

    async def add_command(self, record: CommandRecord) -> None:
        """Store a new command (its id must be new) and its ``command`` integration-log row, in one transaction."""
        ...

    async def command(self, command_id: str) -> CommandRecord | None:
        """The command with ``command_id``, or None."""
        ...

    async def update_command(self, command_id: str, status: str, detail: str, at: int) -> bool:
        """Move a command to ``status`` if :data:`COMMAND_TRANSITIONS` allows it; False (nothing changed) if not.

        In one transaction: read the current status (locked against concurrent writers), refuse an
        unknown id or a change the table does not allow (a final status never changes), else set
        ``status``/``detail``/``updated_at = at`` and append a ``command`` integration-log row.
        """
        ...

    async def commands(self, *, hall: str | None = None, status: str | None = None, limit: int = 100,
                       halls: Sequence[str] | None = None) -> list[CommandRecord]:
        """Commands, newest first; ``halls`` restricts to a scope."""
        ...

    async def command_counts(self) -> dict[str, int]:
        """How many commands are in each status (statuses with none are absent)."""
        ...
