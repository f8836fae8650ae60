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
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal, Protocol, runtime_checkable

from central.catalog import CatalogGame, Placement, Provider, RuleRecord
from protocols.sync import Event
from protocols.sync.gamingday import DEFAULT_START, DEFAULT_ZONE, DayRule, day_rule
from protocols.sync.money import Contribution  # monitoring and reconciliation (issue 04)

from .staging import MissedRecord, StagedEvents

LOG_KINDS: Final = ("duplicate", "rejected", "format_error", "missed", "resend", "connection", "command", "manual")
"""Kinds of integration-log rows (design.md, ``GET /integration-log``)."""

ROLES: Final = ("admin", "operator", "technician", "viewer", "regulator")
"""API key roles (design.md, HTTP section)."""

GROUP_BY: Final = ("device", "game", "hall", "day", "network")
"""GGR groupings of the store; ``network`` is one row (key ``network``) over every hall in scope.
``provider`` is built over ``game`` by the catalog (central/api/provider_reports.py)."""

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


class CatalogConflict(StoreError):
    """A catalog change that names what the catalog lacks (a game of an unknown provider, a placement of
    an unknown game); nothing was changed."""


@dataclass(frozen=True, slots=True)
class RollupCell:
    """The rollups of one (hall, device, game) summed over a period (the game catalog's reports)."""

    hall: str
    device: str
    game: str
    bets: int
    wins: int
    rounds: int
    cash_in: int
    cash_out: int


@dataclass(frozen=True, slots=True)
class HourRow:
    """One local clock hour of a hall's (or a device's) gaming day."""

    hall: str
    day: str
    hour: int
    """UTC microseconds at which the local hour began."""
    bets: int
    wins: int
    rounds: int
    cash_in: int
    cash_out: int
    device: str | None = None

    @property
    def ggr(self) -> int:
        return self.bets - self.wins


HALL_STATES: Final = ("active", "disabled", "removed")


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
    timezone: str = DEFAULT_ZONE
    gaming_day_start: str = DEFAULT_START
    settings_version: int = 0
    """Bumped by every change of the hall's settings (the standing data's version)."""
    state: str = "active"
    """``active``; ``disabled`` (``halls disable``: its messages are refused, nothing stored or acked, so
    its agent keeps them until ``halls enable``); ``removed`` (``halls remove``: its key no longer works,
    its stored data stays in every report). See :data:`HALL_STATES`."""

    @property
    def day_rule(self) -> DayRule:
        """The hall's gaming day (:mod:`protocols.sync.gamingday`): every report and rollup uses it."""
        return day_rule(self.timezone, self.gaming_day_start)


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
    missed: tuple[MissedRecord, ...] = ()
    """The hall's ``missed`` records among the newly stored events (for the integration log)."""


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
    name: str | None = None
    """Whose key it is ("Anna, cashier lead"), shown in the audit log and the dashboard; None for keys
    created before names existed."""
    expires_at: int | None = None
    """µs UTC after which the key is refused; None: it does not expire."""
    revoked_at: int | None = None
    """µs UTC the key was revoked; a revoked key is refused at once, its record kept for the audit log."""

    def state(self, now: int) -> str:
        """``active``, ``expired`` or ``revoked`` as of ``now``."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and now >= self.expires_at:
            return "expired"
        return "active"


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


# export (issue 04): the halls' signed batch headers and the rows of a regulatory export --------------
@dataclass(frozen=True, slots=True)
class SignedHeader:
    """A batch header exactly as its hall signed it: kept so an export can carry the hall's signature.

    ``header`` is the canonical JSON of :class:`protocols.sync.BatchHeader`; ``sig`` the Ed25519
    signature (hex) over ``hallsync/v1/batch`` LF ``header``; ``public_key_pem`` the hall key it was
    checked with (the hall's key may be replaced later; old signatures still verify with this one).
    """

    hall: str
    first_seq: int
    last_seq: int
    header: str
    sig: str
    public_key_pem: str = ""
    """Filled in by the store from the hall's registered key when the batch is stored."""


@dataclass(frozen=True, slots=True)
class ExportRange:
    """One hall's part of an export: the contiguous seqs ``first_seq..last_seq`` (None: no events)."""

    hall: str
    first_seq: int | None
    last_seq: int | None


@dataclass(frozen=True, slots=True)
class ExportRow:
    """A stored event with its ``data`` still as the canonical JSON text it was hashed in."""

    hall: str
    seq: int
    id: str
    device: str
    type: str
    device_time: int | None
    agent_time: int
    central_time: int
    prev_hash: str
    hash: str
    data: str


# monitoring and reconciliation (issue 04: central.monitor, central.reconcile; SQLite in
# central.store.monitor_sqlite) -----------------------------------------------------------------------

ALERT_STATES: Final = ("open", "acked", "cleared", "active", "all")
"""``open``: holds, not acknowledged; ``acked``: holds, acknowledged; ``active``: holds (either);
``cleared``: its condition ended; ``all``."""


@dataclass(frozen=True, slots=True)
class AlertDraft:
    """A condition that holds now and must have an open alert, identified by (hall, device, kind, subject):
    while an alert with that identity is open, the same condition raises nothing new."""

    hall: str
    device: str | None
    kind: str
    subject: str
    detail: str


@dataclass(frozen=True, slots=True)
class AlertRecord:
    """An alert as stored: raised once, cleared when its condition stopped, acknowledged by an API key."""

    id: int
    hall: str
    device: str | None
    kind: str
    subject: str
    detail: str
    raised_at: int
    cleared_at: int | None
    acked_by: str | None
    acked_at: int | None

    @property
    def state(self) -> str:
        if self.cleared_at is not None:
            return "cleared"
        return "open" if self.acked_at is None else "acked"


@dataclass(frozen=True, slots=True)
class DeviceCondition:
    """A state a device's events put it in (a door open, a fault, a pending handpay) and since when
    (agent time); kept by the monitor so a restart does not forget a door that is still open."""

    hall: str
    device: str
    name: str
    since: int
    detail: str


@dataclass(frozen=True, slots=True)
class DeviceMissed:
    """How much of one machine's recent money its ``missed`` records carry (issue 12: a machine the
    agent under-polls loses per-game detail to its exception queue, and its meters then bring the
    money back as ``missed`` records; see :func:`central.monitor.evaluate`).

    Counted from the machine's last meter snapshot before the window began: ``records`` ``missed``
    records, carrying ``missed`` of bets plus wins, out of ``turnover`` bets plus wins in all (events
    and ``missed`` records together)."""

    records: int
    missed: int
    turnover: int
    since: int
    """agent_time where the counting starts (that snapshot's, or the window's start without one)."""


@dataclass(frozen=True, slots=True)
class MonitorInputs:
    """The store's state the alert evaluator reads at one moment (see :mod:`central.monitor`).

    ``delays``: per hall, the largest ``central_time - agent_time`` among its newest events stored
    recently; ``link_errors``: per hall, recent integration-log rows by kind; ``failed_commands``:
    per (hall, device), commands that failed recently; ``switches``: the newest *applied*
    enable/disable command per (hall, device, game or None) as (action, updated_at); ``missed``: per
    (hall, device) that central logged a ``missed`` record for recently, the money they carry."""

    halls: list[HallRecord]
    devices: list[DeviceRecord]
    delays: dict[str, int]
    link_errors: dict[str, dict[str, int]]
    failed_commands: dict[tuple[str, str], int]
    switches: dict[tuple[str, str, str | None], tuple[str, int]]
    missed: dict[tuple[str, str], DeviceMissed] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DeviceEventRow:
    """One stored event of a device, reduced to what the reconciliation reads."""

    seq: int
    agent_time: int
    type: str
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class FloorReads:
    """What the floor view (:mod:`central.floor`) reads of one hall besides its devices and the
    monitor's stored conditions.

    ``events``: per device, its events of :data:`central.floor.CONDITION_TYPES` with seq in
    (``from_seq``, ``newest_seq``] and its newest game event if in that range, by seq; ``last_play``:
    per device, the agent time of its newest game event; ``switches``: per device, the newest applied
    enable (True) / disable (False) command of the machine (key None) and of each game (key: game),
    and ``switched_at`` when central stored its applied result (same keys), so that an older event in
    the tail does not undo it. ``from_seq`` is above the caller's ``after_seq`` when more than
    ``max_events`` seqs followed it."""

    events: dict[str, list[DeviceEventRow]]
    last_play: dict[str, int]
    switches: dict[str, dict[str | None, bool]]
    from_seq: int
    newest_seq: int
    switched_at: dict[str, dict[str | None, int]] = field(default_factory=dict)


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

    async def forget_presence(self, hall: str, *, now: int) -> bool:
        """Clear a hall's stored presence (online, session, time) so the next verified status is taken
        whatever its session: for a hall pinned by a forged status stored before statuses were signed.
        False if the hall is not registered."""

    async def set_hall_state(self, hall: str, state: str, *, now: int) -> HallRecord | None:
        """Set a hall's state (:data:`HALL_STATES`) with a ``manual`` integration-log row; the record as it
        was before, None if the hall is not registered."""

    async def get_hall(self, hall: str) -> HallRecord | None:
        """The hall's record and chain state, or None if it is not registered."""

    async def halls(self) -> list[HallRecord]:
        """Every registered hall, by id."""

    async def set_day_rule(self, hall: str, rule: DayRule, *, now: int) -> HallRecord | None:
        """Set a hall's time zone and gaming-day start; None if the hall is not registered.

        A change bumps ``settings_version`` and re-buckets the hall's rollups (daily and hourly) and its
        device days from its stored events, in one transaction, so every report of the hall uses the
        new day from its first day on; it is written to the integration log as ``manual``. Setting the
        rule a hall already has changes nothing (same version).
        """

    async def hourly(self, *, day: dt.date, hall: str | None = None, halls: Sequence[str] | None = None,
                     device: str | None = None) -> list[HourRow]:
        """GGR and rounds per local clock hour of one gaming day, per hall (and device if given), by
        hour: the charts of today."""

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
    async def ingest_events(self, hall: str, events: Sequence[Event], *, central_time: int,
                            signed: SignedHeader | None = None) -> IngestResult:
        """Store a verified, contiguous run of one hall's chain, idempotently, with its rollups.

        In one transaction: read the hall's chain state (locked against concurrent writers), decide
        duplicate / gap / conflict / new tail, insert the new events (unique ``(hall, seq)``), add
        their money to the rollups and update devices and the chain state, commit. The caller has
        verified the signature and the chain links inside ``events``. ``signed`` (the batch's signed
        header) is kept in the same transaction when the batch stored new events (for exports).
        """

    async def ingest_staged(self, staged: StagedEvents, *, signed: SignedHeader | None = None) -> IngestResult:
        """:meth:`ingest_events` for a run staged ahead with :func:`central.store.staging.stage_events`.

        Ingest stages each batch on the thread that verified it, so the single writer only checks
        the chain against stored state and writes; ``staged.central_time`` is the events' central time.
        """

    async def log(self, entries: Sequence[LogEntry]) -> None:
        """Append integration-log rows (one transaction)."""

    # API keys ----------------------------------------------------------------------------------
    async def add_api_key(self, record: ApiKeyRecord) -> None:
        """Store a new API key record (its id must be new)."""

    async def api_key(self, key_id: str) -> ApiKeyRecord | None:
        """The record for ``key_id`` (O(1) lookup by the id prefix of a presented key)."""

    async def api_keys(self) -> list[ApiKeyRecord]:
        """Every key ever created (revoked and expired ones too), oldest first."""

    async def update_api_key(self, key_id: str, *, secret_hash: str | None = None,
                             revoked_at: int | None = None) -> ApiKeyRecord | None:
        """Replace the secret's hash (rotate) and/or mark revoked; the record as it was, None if unknown."""

    # reports -----------------------------------------------------------------------------------
    async def ggr(self, group_by: str, *, day_from: dt.date | None = None, day_to: dt.date | None = None,
                  hall: str | None = None, halls: Sequence[str] | None = None) -> list[GgrRow]:
        """GGR from the rollups, grouped by ``device``/``game``/``hall``/``day``; days inclusive.

        ``halls`` restricts to a scope (an API key's halls); ``hall`` filters to one hall.
        """

    async def events(self, *, hall: str | None = None, device: str | None = None, type: str | None = None,
                     time_from: int | None = None, time_to: int | None = None, after_seq: int | None = None,
                     limit: int = 100, halls: Sequence[str] | None = None,
                     after_hall: str | None = None) -> list[dict[str, Any]]:
        """Stored events in wire form (plus ``central_time``), ordered by (hall, seq).

        ``time_from``/``time_to`` bound ``agent_time`` as [from, to); ``after_seq`` pages within a hall;
        without ``hall``, ``after_hall`` + ``after_seq`` page across halls (rows after that (hall, seq)).
        """

    async def integration_log(self, *, hall: str | None = None, kind: str | None = None, limit: int = 100,
                              halls: Sequence[str] | None = None, device: str | None = None,
                              time_from: int | None = None, time_to: int | None = None) -> list[LogEntry]:
        """Newest first; ``time_from``/``time_to`` bound the row's time as [from, to) in µs."""

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
                    time_to: int | None = None, after_id: int | None = None, limit: int = 100,
                    halls: Sequence[str] | None = None) -> list[AuditEntry]:
        """Audit entries oldest first, filtered; ``after_id`` pages (entries with a larger id).

        ``halls`` restricts to entries whose target is ``hall/<H>`` or under ``hall/<H>/`` for H in
        ``halls`` (the scope rule of :mod:`central.audit`)."""
        ...

    # game catalog (central.catalog; SQLite in central.store.catalog_sqlite) ---------------------------
    async def catalog_providers(self) -> list[Provider]:
        """Every provider, by id."""
        ...

    async def put_provider(self, provider: Provider) -> Provider | None:
        """Create or replace a provider; returns the previous one (None if new)."""
        ...

    async def catalog_games(self) -> list[CatalogGame]:
        """Every catalog game, by id."""
        ...

    async def put_game(self, game: CatalogGame) -> CatalogGame | None:
        """Create or replace a game (its provider must exist, else :class:`CatalogConflict`); returns the previous."""
        ...

    async def placements(self, *, hall: str | None = None, halls: Sequence[str] | None = None,
                         device: str | None = None) -> list[Placement]:
        """Desired configuration rows by (hall, device, number)."""
        ...

    async def replace_placements(self, hall: str, device: str, placements: Sequence[Placement]) -> list[Placement]:
        """Replace one device's placements in one transaction (unknown game → :class:`CatalogConflict`);
        returns the previous ones."""
        ...

    async def add_rule(self, rule: RuleRecord) -> None:
        """Store a new rule and its command ids."""
        ...

    async def add_rule_commands(self, rule_id: str, command_ids: Sequence[str]) -> None:
        """Attach more issued commands to a rule."""
        ...

    async def set_rule_status(self, rule_id: str, status: str, at: int) -> RuleRecord | None:
        """Set a rule's status; returns it as it was before (None if unknown)."""
        ...

    async def rule(self, rule_id: str) -> RuleRecord | None:
        """One rule with its command ids."""
        ...

    async def rules(self, *, kind: str | None = None, status: str | None = None, limit: int = 100) -> list[RuleRecord]:
        """Rules, newest first."""
        ...

    async def rollup_cells(self, *, day_from: dt.date | None = None, day_to: dt.date | None = None,
                           hall: str | None = None, halls: Sequence[str] | None = None) -> list[RollupCell]:
        """Rollups summed per (hall, device, game) over the days (inclusive)."""
        ...

    async def latest_identities(self, *, hall: str | None = None,
                                halls: Sequence[str] | None = None) -> list[tuple[str, str, int, dict[str, Any]]]:
        """(hall, device, agent_time, data) of each device's newest ``device.status`` identity event."""
        ...

    async def event_counts(self, types: Sequence[str], *, time_from: int | None = None, time_to: int | None = None,
                           hall: str | None = None, halls: Sequence[str] | None = None) -> dict[tuple[str, str], int]:
        """How many events of ``types`` each (hall, device) has with agent_time in [from, to)."""
        ...

    # export (issue 04) ---------------------------------------------------------------------------
    async def export_ranges(self, *, time_from: int, time_to: int, hall: str | None = None,
                            halls: Sequence[str] | None = None) -> list[ExportRange]:
        """Per registered hall in scope, by id: the seqs from the first event with agent_time ≥ ``time_from``
        to the last with agent_time < ``time_to`` — every stored event between them included, so an
        export is a gap-free piece of each chain even where an agent's clock stepped back."""
        ...

    async def export_rows(self, hall: str, *, after_seq: int, through_seq: int, limit: int) -> list[ExportRow]:
        """One page: the hall's events with ``after_seq < seq <= through_seq``, by seq, at most ``limit``."""
        ...

    def export_pages(self, hall: str, first_seq: int, last_seq: int, *,
                     page_size: int = 1000) -> AsyncIterator[list[ExportRow]]:
        """The hall's events ``first_seq..last_seq`` in pages of at most ``page_size`` (constant memory)."""
        ...

    async def signed_header_covering(self, hall: str, seq: int) -> SignedHeader | None:
        """The stored signed batch header with the smallest ``last_seq >= seq`` (None if none)."""
        ...

    # monitoring and alerts (issue 04: central.monitor; SQLite in central.store.monitor_sqlite) ----------
    async def monitor_state(self) -> tuple[dict[str, int], list[DeviceCondition]]:
        """The monitor's cursor per hall (the last seq it has read) and the device conditions it keeps."""
        ...

    async def monitor_events(self, hall: str, *, after_seq: int,
                             through_seq: int) -> tuple[list[dict[str, Any]], dict[str, int]]:
        """The hall's events with seq in (after, through] that can change a device condition (doors,
        errors, status, handpays, service) as dicts (``seq``, ``device``, ``type``, ``agent_time``,
        ``data``) by seq, and per device the seq of its last game event in that range — play is the
        bulk of the events and only its last occurrence matters to the conditions."""
        ...

    async def monitor_inputs(self, *, delay_since: int, link_since: int, failures_since: int,
                             missed_since: int | None = None) -> MonitorInputs:
        """What the alert evaluator reads (see :class:`MonitorInputs`); ``*_since`` bound "recent"
        (``missed_since`` None: no :attr:`MonitorInputs.missed`)."""
        ...

    async def sync_alerts(self, drafts: Sequence[AlertDraft], *, now: int, cursors: dict[str, int],
                          conditions: Sequence[DeviceCondition],
                          hold: Sequence[tuple[str, str]] = ()) -> tuple[int, int]:
        """In one transaction: raise an alert for each draft without an open one, clear open alerts whose
        draft is gone — except those of a held (hall, kind) — store the cursors and replace the
        conditions. Returns (raised, cleared)."""
        ...

    async def alerts(self, *, hall: str | None = None, halls: Sequence[str] | None = None, state: str = "open",
                     kind: str | None = None, device: str | None = None, limit: int = 100) -> list[AlertRecord]:
        """Alerts in :data:`ALERT_STATES` ``state``, newest first; ``halls`` restricts to a scope."""
        ...

    async def alert(self, alert_id: int) -> AlertRecord | None:
        """One alert, or None."""
        ...

    async def ack_alert(self, alert_id: int, *, by: str, at: int) -> bool:
        """Record the acknowledgement once; False (nothing changed) if unknown or already acknowledged."""
        ...

    # meters-versus-events reconciliation (issue 04: central.reconcile) ----------------------------------
    async def meter_snapshots(self, hall: str, device: str, *, time_from: int, time_to: int) -> list[DeviceEventRow]:
        """The device's ``meters.snapshot`` events with agent_time in [from, to), and the newest one
        before ``time_from`` (the opening meters), by seq."""
        ...

    async def device_integration_events(self, hall: str, device: str, *, after_seq: int,
                                        through_seq: int | None = None) -> list[DeviceEventRow]:
        """The device's ``integration`` events with ``after_seq`` < seq (≤ ``through_seq``), by seq."""
        ...

    async def snapshot_after(self, hall: str, device: str, time: int) -> int | None:
        """The seq of the device's first ``meters.snapshot`` with agent_time ≥ ``time``, or None."""
        ...

    async def device_money(self, hall: str, device: str, ranges: Sequence[tuple[int, int]]) -> Contribution:
        """The money of the device's events with seq in any ``(after, through]`` of ``ranges``, by
        :func:`central.reconcile.event_money` (the shared rule, ``missed`` records left out)."""
        ...

    # the same reads for many devices of one hall at once: a report page costs a few reads per hall,
    # not a few per device (issue 13)
    async def meter_snapshots_of(self, hall: str, devices: Sequence[str], *, time_from: int,
                                 time_to: int) -> dict[str, list[DeviceEventRow]]:
        """:meth:`meter_snapshots` of each of the hall's ``devices`` (a device with none is absent)."""
        ...

    async def snapshots_after(self, hall: str, devices: Sequence[str], time: int) -> dict[str, int]:
        """:meth:`snapshot_after` of each of ``devices`` (a device with none is absent)."""
        ...

    async def integration_events_of(self, hall: str,
                                    ranges: Mapping[str, tuple[int, int | None]]) -> dict[str, list[DeviceEventRow]]:
        """:meth:`device_integration_events` of each device in ``ranges`` (device → ``(after_seq,
        through_seq)``); a device with none is absent."""
        ...

    async def devices_money(self, hall: str,
                            wanted: Sequence[tuple[str, Sequence[tuple[int, int]]]]) -> list[Contribution]:
        """:meth:`device_money` of each ``(device, ranges)`` of ``wanted``, in order."""
        ...

    async def device_days(self, *, day_from: dt.date, day_to: dt.date, hall: str | None = None,
                          halls: Sequence[str] | None = None, device: str | None = None,
                          after: tuple[str, str, str] | None = None,
                          limit: int | None = None) -> dict[tuple[str, str, str], Contribution]:
        """Rollup money per (hall, device, gaming day ``YYYY-MM-DD``) with money or a meter snapshot in the
        days (inclusive; each hall's own gaming days), in (hall, device, day) order: at most ``limit``
        cells after the cell ``after`` (a page of the reconciliation)."""
        ...

    # metrics (central.metrics; SQLite in central.store.metrics_sqlite) -------------------------------
    async def command_counts(self) -> dict[str, int]:
        """How many commands are in each status (statuses with none are absent)."""
        ...

    # floor view (issue 05 dashboard: central.floor; SQLite in central.store.floor_sqlite) -------------
    async def floor_reads(self, hall: str, *, after_seq: int, max_events: int) -> FloorReads:
        """What the floor view of ``hall`` folds after seq ``after_seq`` (the monitor's cursor), reading
        at most the hall's newest ``max_events`` seqs (see :class:`FloorReads`)."""
        ...
