"""The one storage interface central uses, and the plain records that cross it.

Methods are coarse-grained on purpose: each is one unit of work (usually one transaction), so a
PostgreSQL backend can implement it with its own locking (``SELECT … FOR UPDATE``) and SQL dialect
without the callers knowing. Nothing here exposes a connection, a cursor or an SQLite feature.

The interface is ``async`` because a networked backend (PostgreSQL) is naturally async and because
central's ingest and HTTP API run on one event loop; the SQLite backend runs its blocking work on
threads it owns (see :mod:`central.store.sqlite`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal, Protocol, runtime_checkable

from protocols.sync import Event

LOG_KINDS: Final = ("duplicate", "rejected", "format_error", "missed", "resend", "connection", "command", "manual")
"""Kinds of integration-log rows (design.md, ``GET /integration-log``)."""

ROLES: Final = ("admin", "operator", "technician", "viewer", "regulator")
"""API key roles (design.md, HTTP section)."""

GROUP_BY: Final = ("device", "game", "hall", "day")
"""GGR report groupings available now; ``provider`` arrives with the game catalog."""

COMMAND_STATUSES: Final = ("pending", "sent", "applied", "failed", "expired")
"""Statuses of a command central sent (design.md, ``GET /commands/{id}``)."""

FINAL_COMMAND_STATUSES: Final = frozenset({"applied", "failed", "expired"})

COMMAND_TRANSITIONS: Final[dict[str, frozenset[str]]] = {
    "pending": frozenset({"pending", "sent", "applied", "failed", "expired"}),
    "sent": frozenset({"applied", "failed", "expired"}),
}
"""The only status changes :meth:`Store.update_command` makes; a final status never changes.

``pending → sent`` after the broker's PUBACK; ``pending → failed`` when it could not be published;
``sent → applied|failed|expired`` from the hall's result; any non-final → ``expired`` past
``expires_at``. ``pending → applied|failed`` also covers a result that arrives before central recorded
the PUBACK (the agent can answer faster than central's bookkeeping). ``pending → pending`` changes
only the detail (a publish whose outcome central does not know)."""

LogKind = Literal["duplicate", "rejected", "format_error", "missed", "resend", "connection", "command", "manual"]
IngestStatus = Literal["stored", "duplicate", "gap", "conflict"]


class StoreError(Exception):
    """Base of the errors a store raises for a request it refuses (not for bugs or I/O failures)."""


class BackendUnavailable(StoreError):
    """The DB URL names a backend this build does not have (yet)."""


class HallKeyConflict(StoreError):
    """``add_hall`` with a different key for an existing hall, without ``replace``."""


@dataclass(frozen=True, slots=True)
class HallRecord:
    """A registered hall, the contiguous prefix of its chain that central holds, and its agent's presence.

    ``online``/``session``/``status_at`` are the last accepted MQTT status of the hall's agent (see
    :meth:`Store.set_presence`); all None until one arrives.
    """

    id: str
    public_key_pem: str
    added_at: int
    last_seq: int
    last_hash: str
    online: bool | None = None
    session: int | None = None
    status_at: int | None = None


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One integration-log row. ``hall``/``device`` are None when unknown (e.g. an unparsable topic)."""

    kind: LogKind
    detail: str
    time: int
    hall: str | None = None
    device: str | None = None


@dataclass(frozen=True, slots=True)
class IngestResult:
    """What :meth:`Store.ingest_events` did, decided inside its transaction.

    * ``stored``: the new events (``stored`` of them; ``skipped`` already held) are committed with
      their rollups; ``last_seq``/``last_hash`` are the new contiguous end.
    * ``duplicate``: every event was already held with the same hashes; nothing changed.
    * ``gap``: the batch starts after ``last_seq + 1``; nothing changed.
    * ``conflict``: the batch disagrees with a stored hash at ``conflict_seq`` (a forked or forged
      chain); nothing changed.

    ``money_errors`` lists (seq, reason) of stored events whose money could not be counted by the
    shared rule (e.g. a transfer without a direction): they are stored, counted as zero, and must be
    logged so the difference is visible, never silent.
    """

    status: IngestStatus
    last_seq: int
    last_hash: str
    stored: int = 0
    skipped: int = 0
    conflict_seq: int | None = None
    money_errors: tuple[tuple[int, str], ...] = field(default_factory=tuple)


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


@dataclass(frozen=True, slots=True)
class ApiKeyRecord:
    """An API key as stored: never the key itself, only its id and the SHA-256 of its secret."""

    id: str
    role: str
    secret_hash: str
    halls: tuple[str, ...] | None
    """Halls the key may see; None means every hall."""
    created_at: int


@dataclass(frozen=True, slots=True)
class GgrRow:
    """One row of the GGR report; ``hall`` is set when the grouping is per device (device IDs are per hall)."""

    key: str
    bets: int
    wins: int
    rounds: int
    cash_in: int
    cash_out: int
    hall: str | None = None

    @property
    def ggr(self) -> int:
        return self.bets - self.wins

    def as_dict(self) -> dict[str, Any]:
        row: dict[str, Any] = {"key": self.key, "bets": self.bets, "wins": self.wins, "ggr": self.ggr,
                               "rounds": self.rounds, "cash_in": self.cash_in, "cash_out": self.cash_out}
        if self.hall is not None:
            row["hall"] = self.hall
        return row


@dataclass(frozen=True, slots=True)
class DeviceRecord:
    """A device as seen in its hall's events (there is no device registry yet)."""

    id: str
    hall: str
    kind: str
    online: bool | None
    enabled: bool
    first_seen: int
    last_seen: int
    last_seq: int


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
class Store(Protocol):
    """Everything central persists. One instance per process; safe to call from one event loop."""

    async def close(self) -> None:
        """Finish pending work and release the backend's resources."""

    # halls -------------------------------------------------------------------------------------
    async def add_hall(self, hall: str, public_key_pem: str, *, now: int, replace: bool = False) -> str:
        """Register a hall: returns ``added``, ``unchanged`` or ``replaced``.

        A different key for an existing hall raises :class:`HallKeyConflict` unless ``replace``; a
        replacement is written to the integration log as ``manual`` in the same transaction.
        """

    async def get_hall(self, hall: str) -> HallRecord | None:
        """The hall's record and chain state, or None if it is not registered."""

    async def halls(self) -> list[HallRecord]:
        """Every registered hall, by id."""

    async def set_presence(self, hall: str, *, online: bool, session: int, at: int) -> bool:
        """Record the hall agent's MQTT status; False (nothing changed) when it is stale or the hall unknown.

        The agent's ``session`` counts its connections, and its last will (the offline status the
        broker publishes when the connection drops) is built at connect time. So, in one transaction:

        * an unregistered hall → False;
        * no status stored yet, or a newer ``session`` → accepted;
        * an older ``session`` → False (a stale will arriving after a reconnect must not mark the
          hall offline);
        * the same ``session``: an online status older (``at``) than the stored one → False; an
          offline status is accepted whatever its ``at`` while the stored one is online (the will
          carries the connect time, older than the online status of the same connection), and
          offline ends the session: later statuses of that session → False.
        """

    # ingest ------------------------------------------------------------------------------------
    async def ingest_events(self, hall: str, events: Sequence[Event], *, central_time: int) -> IngestResult:
        """Store a verified, contiguous run of one hall's chain, idempotently, with its rollups.

        In one transaction: read the hall's chain state (locked against concurrent writers), decide
        duplicate / gap / conflict / new tail, insert the new events (unique ``(hall, seq)``), add
        their money to the rollups and update devices and the chain state, commit. The caller has
        verified the signature and the chain links inside ``events``.
        """

    async def log(self, entries: Sequence[LogEntry]) -> None:
        """Append integration-log rows (one transaction)."""

    # API keys ----------------------------------------------------------------------------------
    async def add_api_key(self, record: ApiKeyRecord) -> None:
        """Store a new API key record (its id must be new)."""

    async def api_key(self, key_id: str) -> ApiKeyRecord | None:
        """The record for ``key_id`` (O(1) lookup by the id prefix of a presented key)."""

    # reports -----------------------------------------------------------------------------------
    async def ggr(self, group_by: str, *, day_from: dt.date | None = None, day_to: dt.date | None = None,
                  hall: str | None = None, halls: Sequence[str] | None = None) -> list[GgrRow]:
        """GGR from the rollups, grouped by ``device``/``game``/``hall``/``day``; days inclusive.

        ``halls`` restricts to a scope (an API key's halls); ``hall`` filters to one hall.
        """

    async def events(self, *, hall: str | None = None, device: str | None = None, type: str | None = None,
                     time_from: int | None = None, time_to: int | None = None, after_seq: int | None = None,
                     limit: int = 100, halls: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """Stored events in wire form (plus ``central_time``), ordered by (hall, seq).

        ``time_from``/``time_to`` bound ``agent_time`` as [from, to); ``after_seq`` pages within a hall.
        """

    async def integration_log(self, *, hall: str | None = None, kind: str | None = None, limit: int = 100,
                              halls: Sequence[str] | None = None) -> list[LogEntry]:
        """Newest first."""

    async def devices(self, *, hall: str | None = None, halls: Sequence[str] | None = None) -> list[DeviceRecord]:
        """Devices by (hall, id)."""

    # commands ----------------------------------------------------------------------------------
    async def add_command(self, record: CommandRecord) -> None:
        """Store a new command (its id must be new) and its ``command`` integration-log row, in one transaction."""

    async def command(self, command_id: str) -> CommandRecord | None:
        """The command with ``command_id``, or None."""

    async def update_command(self, command_id: str, status: str, detail: str, at: int) -> bool:
        """Move a command to ``status`` if :data:`COMMAND_TRANSITIONS` allows it; False (nothing changed) if not.

        In one transaction: read the current status (locked against concurrent writers), refuse an
        unknown id or a change the table does not allow (a final status never changes), else set
        ``status``/``detail``/``updated_at = at`` and append a ``command`` integration-log row.
        """

    async def commands(self, *, hall: str | None = None, status: str | None = None, limit: int = 100,
                       halls: Sequence[str] | None = None) -> list[CommandRecord]:
        """Commands, newest first; ``halls`` restricts to a scope."""

    # audit ---------------------------------------------------------------------------------------
    async def add_audit(self, entry: AuditEntry) -> int:
        """Append one audit entry; returns its id. Audit entries are never changed or deleted."""
        ...

    async def audit(self, *, actor: str | None = None, action: str | None = None, time_from: int | None = None,
                    time_to: int | None = None, after_id: int | None = None, limit: int = 100) -> list[AuditEntry]:
        """Audit entries oldest first, filtered; ``after_id`` pages (entries with a larger id)."""
        ...
