"""The event vocabulary: every event type, the shape of its ``data``, and what it means for money and play.

One definition, read by the agent (sealing, its ledger) and by central (strict decode, rollups, the
floor, the monitor, the reconciliation), so no module spells an event type or a money rule again.

* :class:`EventType` — the 19 types of design.md's event model (the wire's ``type``).
* One :class:`EventData` struct per type (:data:`DATA_TYPES`) naming every ``data`` key the agent
  writes, typed: money is :data:`Amount` (int ≥ 0, minor units) with an ISO 4217 :data:`Currency`,
  flags are bools, counts are ints in 64 bits. Keys outside a struct are still accepted under the
  rules of :mod:`.data` (key charset, no floats, 64-bit ints, depth; ``*_amount`` ≥ 0), as they were
  before the vocabulary existed; what a struct names must have the struct's type, or the event is
  malformed (central logs it as a ``format_error`` and stores nothing of its batch; the agent refuses
  to seal it). Encoding a struct decoded from the agent's data gives the same canonical bytes, so
  the typed view never changes a hash (tests/protocols/test_vocabulary.py checks it on a corpus).
* The predicates: :func:`is_play` (a game event: the machine is playing), :data:`MONEY_TYPES`
  (types that carry ``amount``/``currency``), :func:`is_missed` (an ``integration`` of kind
  ``missed``, the reconciliation's own column), :func:`counts_in_events` (money of the events side:
  everything but ``missed`` records) and :func:`counts_in_ggr` (may move bets or wins).
* :func:`contribution` — what an event adds to bets, wins, rounds, cash in and cash out, defined by
  each struct's :meth:`EventData.contribution` (the rule is spelt out in :mod:`.money`'s docstring).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Final, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

from .data import check_amounts, check_object
from .errors import Malformed
from .fields import ID_PATTERN, INT64_MAX, INT64_MIN, Micros


class EventType(StrEnum):
    """An event's ``type`` (design.md "Event model"; README's event-types list)."""

    SESSION_STARTED = "session.started"
    SESSION_ENDED = "session.ended"
    GAME_BET = "game.bet"
    GAME_WIN = "game.win"
    GAME_LOSS = "game.loss"
    GAME_ENDED = "game.ended"
    OP_CANCELLED = "op.cancelled"
    GAME_ERROR = "game.error"
    DEVICE_STATUS = "device.status"
    DEVICE_DOOR = "device.door"
    SERVICE = "service"
    JACKPOT = "jackpot"
    HANDPAY = "handpay"
    BILL_ACCEPTED = "bill.accepted"
    TICKET_PRINTED = "ticket.printed"
    TICKET_REDEEMED = "ticket.redeemed"
    TRANSFER = "transfer"
    METERS_SNAPSHOT = "meters.snapshot"
    INTEGRATION = "integration"


# ---- money --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Contribution:
    """What events add up to: bets, wins (GGR = bets − wins), rounds, cash in, cash out."""

    bets: int = 0
    wins: int = 0
    rounds: int = 0
    cash_in: int = 0
    cash_out: int = 0

    def __add__(self, other: Contribution) -> Contribution:
        return Contribution(self.bets + other.bets, self.wins + other.wins, self.rounds + other.rounds,
                            self.cash_in + other.cash_in, self.cash_out + other.cash_out)

    @property
    def ggr(self) -> int:
        return self.bets - self.wins


ZERO: Final = Contribution()
MISSED_KEYS: Final = ("bets", "wins", "rounds", "cash_in", "cash_out")
"""The keys of a ``missed`` record, in :class:`Contribution` order."""

# ---- field types --------------------------------------------------------------------------------

Int64 = Annotated[int, Meta(ge=INT64_MIN, le=INT64_MAX)]
Amount = Annotated[int, Meta(ge=0, le=INT64_MAX)]
"""Money and meter values: integer minor units ≥ 0."""
Rounds = Annotated[int, Meta(ge=1, le=INT64_MAX)]
Currency = Annotated[str, Meta(pattern=r"^[A-Z]{3}\Z")]
Key = Annotated[str, Meta(pattern=ID_PATTERN)]
Scalar = str | Int64 | bool | None
"""A descriptive value nothing computes with (a reason, a source, a code's name)."""
GameRef = Int64 | str | None
"""A game: SAS game number (int) or a game id (str); see :func:`game_key`."""
Amounts = dict[Key, Amount]
Free = Any
"""A free-form JSON value (a nested record, a detail object): checked by :func:`.data.check_object`."""

Opt = UnsetType
"""Every optional key defaults to UNSET, so an absent key stays absent when the struct is encoded."""

_STRUCT: Final[dict[str, Any]] = {"frozen": True, "kw_only": True, "omit_defaults": True, "gc": False}


class EventData(msgspec.Struct, **_STRUCT):
    """The typed ``data`` of one event type (the base: no known keys)."""

    TYPE: ClassVar[EventType]
    FREE: ClassVar[tuple[str, ...]] = ()
    """Keys typed :data:`Free`, checked by the data rules after the typed decode."""

    def contribution(self) -> Contribution:
        """The money this event adds (see :mod:`.money`); nothing, unless a type says otherwise."""
        return ZERO

    def slot(self) -> str | None:
        """The one :class:`Contribution` field this event adds to, even with an amount of 0 (None: none,
        or several, as a ``missed`` record's)."""
        return None


class _Money(EventData, **_STRUCT):
    """A money type: ``amount`` and ``currency`` are required."""

    amount: Amount
    currency: Currency


class SessionStarted(EventData, **_STRUCT):
    TYPE = EventType.SESSION_STARTED
    session: Scalar | Opt = UNSET
    reason: Scalar | Opt = UNSET


class SessionEnded(EventData, **_STRUCT):
    TYPE = EventType.SESSION_ENDED
    session: Scalar | Opt = UNSET
    reason: Scalar | Opt = UNSET


class GameBet(_Money, **_STRUCT):
    TYPE = EventType.GAME_BET
    source: Scalar | Opt = UNSET
    game: GameRef | Opt = UNSET
    credits: Int64 | Opt = UNSET
    coin_in_meter: Int64 | Opt = UNSET

    def contribution(self) -> Contribution:
        return Contribution(bets=self.amount)

    def slot(self) -> str | None:
        return "bets"


class GameWin(_Money, **_STRUCT):
    TYPE = EventType.GAME_WIN
    source: Scalar | Opt = UNSET
    game: GameRef | Opt = UNSET
    paid_by: Scalar | Opt = UNSET
    delayed: bool | Opt = UNSET

    def contribution(self) -> Contribution:
        return Contribution(wins=self.amount)

    def slot(self) -> str | None:
        return "wins"


class GameLoss(EventData, **_STRUCT):
    TYPE = EventType.GAME_LOSS
    game: GameRef | Opt = UNSET
    bet: Amount | Opt | None = UNSET
    source: Scalar | Opt = UNSET


class GameEnded(EventData, **_STRUCT):
    TYPE = EventType.GAME_ENDED
    game: GameRef | Opt = UNSET
    bet: Amount | Opt | None = UNSET
    win: Amount | Opt | None = UNSET
    paid_by: Scalar | Opt = UNSET
    source: Scalar | Opt = UNSET
    rounds: Rounds | Opt = UNSET
    """Several rounds settled together (a terminal's counter); absent means one."""

    def contribution(self) -> Contribution:
        return Contribution(rounds=1 if self.rounds is UNSET else self.rounds)

    def slot(self) -> str | None:
        return "rounds"


class OpCancelled(EventData, **_STRUCT):
    TYPE = EventType.OP_CANCELLED


class GameError(EventData, **_STRUCT):
    TYPE = EventType.GAME_ERROR
    code: Scalar | Opt = UNSET
    name: Scalar | Opt = UNSET
    category: Scalar | Opt = UNSET
    error_code: Int64 | Opt | None = UNSET
    error: bool | Opt = UNSET


class DeviceStatus(EventData, **_STRUCT):
    TYPE = EventType.DEVICE_STATUS
    FREE = ("detail", "enabled_games", "games", "counters", "firmware")
    status: str | Opt = UNSET
    online: bool | Opt = UNSET
    enabled: bool | Opt = UNSET
    in_service: bool | Opt = UNSET
    error: bool | Opt = UNSET
    paper_low: bool | Opt = UNSET
    door_open: bool | Opt = UNSET
    error_code: Int64 | Opt | None = UNSET
    device_kind: Scalar | Opt = UNSET
    kind: Scalar | Opt = UNSET
    reason: Scalar | Opt = UNSET
    source: Scalar | Opt = UNSET
    missed_polls: Int64 | Opt | None = UNSET
    detail: Free | Opt = UNSET
    game: GameRef | Opt = UNSET
    code: Scalar | Opt = UNSET
    name: Scalar | Opt = UNSET
    game_id: Scalar | Opt = UNSET
    serial: Scalar | Opt = UNSET
    paytable_id: Scalar | Opt = UNSET
    sas_version: Scalar | Opt = UNSET
    accounting_denomination_cents: Int64 | Opt | None = UNSET
    enabled_games: Free | Opt = UNSET
    rte: bool | Opt | None = UNSET
    games: Free | Opt = UNSET
    drift_ms: Int64 | Opt | None = UNSET
    set: bool | Opt | None = UNSET
    amount: Amount | Opt = UNSET
    currency: Currency | Opt = UNSET
    level: Int64 | Opt = UNSET
    progressive_group: Int64 | Opt = UNSET
    partial_pay_cents: Int64 | Opt = UNSET
    firmware: Free | Opt = UNSET
    counters: Free | Opt = UNSET

    def __post_init__(self) -> None:
        if self.amount is not UNSET and self.currency is UNSET:
            raise ValueError("data.currency must be an ISO 4217 code like 'EUR' where data.amount is given")


class DeviceDoor(EventData, **_STRUCT):
    TYPE = EventType.DEVICE_DOOR
    door: str | Opt | None = UNSET
    open: bool | Opt = UNSET
    power_off: bool | Opt = UNSET
    code: Scalar | Opt = UNSET


class Service(EventData, **_STRUCT):
    TYPE = EventType.SERVICE
    kind: str | Opt = UNSET
    on: bool | Opt = UNSET
    entered: bool | Opt = UNSET
    code: Scalar | Opt = UNSET
    name: Scalar | Opt = UNSET


class Jackpot(_Money, **_STRUCT):
    """A jackpot's record; its money is the ``game.win`` beside it, so it contributes nothing."""

    TYPE = EventType.JACKPOT
    source: Scalar | Opt = UNSET
    game: GameRef | Opt = UNSET
    paid_by: Scalar | Opt = UNSET
    level: Int64 | Opt = UNSET
    progressive_group: Int64 | Opt = UNSET
    partial_pay_cents: Int64 | Opt = UNSET


class Handpay(_Money, **_STRUCT):
    """An attendant's payout: cash out when it cancels credits; a jackpot's counts as its ``game.win``."""

    TYPE = EventType.HANDPAY
    source: Scalar | Opt = UNSET
    kind: str | Opt = UNSET
    game: GameRef | Opt = UNSET
    level: Int64 | Opt = UNSET
    progressive_group: Int64 | Opt = UNSET
    partial_pay_cents: Int64 | Opt = UNSET

    def contribution(self) -> Contribution:
        return Contribution(cash_out=self.amount) if self.kind == "cancelled_credits" else ZERO

    def slot(self) -> str | None:
        return "cash_out" if self.kind == "cancelled_credits" else None


class BillAccepted(_Money, **_STRUCT):
    TYPE = EventType.BILL_ACCEPTED
    source: Scalar | Opt = UNSET
    code: Scalar | Opt = UNSET
    bill: Int64 | Opt = UNSET
    country_code: Scalar | Opt = UNSET
    bill_meter: Int64 | Opt = UNSET
    medium: Scalar | Opt = UNSET

    def contribution(self) -> Contribution:
        return Contribution(cash_in=self.amount)

    def slot(self) -> str | None:
        return "cash_in"


class TicketPrinted(_Money, **_STRUCT):
    TYPE = EventType.TICKET_PRINTED
    source: Scalar | Opt = UNSET
    kind: Scalar | Opt = UNSET
    validation: Scalar | Opt = UNSET

    def contribution(self) -> Contribution:
        return Contribution(cash_out=self.amount)

    def slot(self) -> str | None:
        return "cash_out"


class TicketRedeemed(_Money, **_STRUCT):
    TYPE = EventType.TICKET_REDEEMED
    source: Scalar | Opt = UNSET
    validation: Scalar | Opt = UNSET

    def contribution(self) -> Contribution:
        return Contribution(cash_in=self.amount)

    def slot(self) -> str | None:
        return "cash_in"


class Transfer(_Money, **_STRUCT):
    """Cashless or wallet money: ``direction`` says which way, so it is required."""

    TYPE = EventType.TRANSFER
    direction: Literal["in", "out"]
    source: Scalar | Opt = UNSET
    method: Scalar | Opt = UNSET

    def contribution(self) -> Contribution:
        return Contribution(cash_in=self.amount) if self.direction == "in" else Contribution(cash_out=self.amount)

    def slot(self) -> str | None:
        return "cash_in" if self.direction == "in" else "cash_out"


class MetersSnapshot(EventData, **_STRUCT):
    TYPE = EventType.METERS_SNAPSHOT
    meters: Annotated[dict[Key, Int64], Meta(min_length=1)]
    """Meter name → value ≥ 0 (minor units, or counts for game meters); at least one."""
    reason: Scalar | Opt = UNSET
    trigger: Scalar | Opt = UNSET
    source: Scalar | Opt = UNSET
    game: GameRef | Opt = UNSET
    gaming_day: Scalar | Opt = UNSET
    denomination_cents: Int64 | Opt | None = UNSET
    unmetered: Amounts | Opt = UNSET
    """Money of events before this snapshot that its meters do not hold yet, by :data:`MISSED_KEYS` key."""

    def __post_init__(self) -> None:
        for name, value in self.meters.items():
            if value < 0:  # checked here rather than by the type, so the message names the meter
                raise ValueError(f"data.meters.{name}: meter values must be integers ≥ 0, got {value!r}")


class Integration(EventData, **_STRUCT):
    """The agent's integration log (``kind``: missed, late, anomaly, meters_reset, response, command,
    format_error, duplicate, buffer_overflow, counter_reset, ...). Only ``missed`` carries money."""

    TYPE = EventType.INTEGRATION
    FREE = ("detail", "data", "excess")
    kind: str | Opt = UNSET
    reason: Scalar | Opt = UNSET
    detail: Free | Opt = UNSET
    bets: Amount | Opt = UNSET
    wins: Amount | Opt = UNSET
    rounds: Amount | Opt = UNSET
    cash_in: Amount | Opt = UNSET
    cash_out: Amount | Opt = UNSET
    meters_time: Micros | Opt | None = UNSET
    event: Scalar | Opt = UNSET
    data: Free | Opt = UNSET
    quantity: Scalar | Opt = UNSET
    coin_in: Int64 | Opt = UNSET
    excess: Free | Opt = UNSET
    since: Int64 | Opt | None = UNSET
    id: Scalar | Opt = UNSET
    action: Scalar | Opt = UNSET
    status: Scalar | Opt = UNSET
    device: Scalar | Opt = UNSET
    game: GameRef | Opt = UNSET
    acked: bool | Opt | None = UNSET
    code: Scalar | Opt = UNSET
    validation: Scalar | Opt = UNSET
    bill_meter: Int64 | Opt = UNSET
    counter: Scalar | Opt = UNSET
    previous: Int64 | Opt = UNSET
    current: Int64 | Opt = UNSET

    def contribution(self) -> Contribution:
        if self.kind != "missed":
            return ZERO
        return Contribution(*(0 if v is UNSET else v for v in (self.bets, self.wins, self.rounds, self.cash_in,
                                                                self.cash_out)))


DATA_TYPES: Final[dict[str, type[EventData]]] = {
    cls.TYPE.value: cls for cls in (
        SessionStarted, SessionEnded, GameBet, GameWin, GameLoss, GameEnded, OpCancelled, GameError, DeviceStatus,
        DeviceDoor, Service, Jackpot, Handpay, BillAccepted, TicketPrinted, TicketRedeemed, Transfer,
        MetersSnapshot, Integration,
    )
}
"""Event type → the struct of its ``data``."""

_FIELDS: Final = {name: frozenset(cls.__struct_fields__) for name, cls in DATA_TYPES.items()}

# ---- predicates ---------------------------------------------------------------------------------

PLAY_TYPES: Final = frozenset({EventType.GAME_BET, EventType.GAME_WIN, EventType.GAME_LOSS, EventType.GAME_ENDED})
"""Game events: a machine that sends one is playing (clears a fault and out-of-service)."""
MONEY_TYPES: Final = frozenset(name for name, cls in DATA_TYPES.items() if issubclass(cls, _Money))
"""Types whose ``data`` must carry ``amount`` (int ≥ 0, minor units) and ``currency`` (ISO 4217)."""
COUNTING_TYPES: Final = frozenset(name for name, cls in DATA_TYPES.items()
                                  if cls.contribution is not EventData.contribution)
"""Types that can contribute money or rounds (:func:`contribution` of any other type is :data:`ZERO`)."""
GGR_TYPES: Final = frozenset({EventType.GAME_BET, EventType.GAME_WIN, EventType.INTEGRATION})
"""Types that can move bets or wins (an ``integration`` only as a ``missed`` record)."""


def is_play(event_type: str) -> bool:
    """A game event (bet, win, loss, end of a round)."""
    return event_type in PLAY_TYPES


def is_missed(event_type: str, data: Any) -> bool:
    """An ``integration`` of kind ``missed``: activity the meters showed and the events did not."""
    if event_type != "integration":
        return False
    kind = getattr(data, "kind", None) if isinstance(data, EventData) else data.get("kind")
    return bool(kind == "missed")


def counts_in_events(event_type: str, data: Any) -> bool:
    """Whether an event's money belongs to the *events* side (everything but ``missed`` records, which
    are the reconciliation's own column)."""
    return event_type in COUNTING_TYPES and not is_missed(event_type, data)


def counts_in_ggr(event_type: str, data: Any) -> bool:
    """Whether an event can move GGR (bets or wins): a bet, a win or a ``missed`` record."""
    return event_type in GGR_TYPES and (event_type != "integration" or is_missed(event_type, data))


def game_key(data: Any) -> str:
    """The game an event belongs to as a string (``data.game``: number or id), or ``""``."""
    game = getattr(data, "game", UNSET) if isinstance(data, EventData) else data.get("game")
    if type(game) is str:
        # U+0000 cannot be stored in PostgreSQL text: a signed game id holding one made its batch fail
        # for ever there (the hall stuck behind it). Spelled as JSON spells it, on both backends.
        return game.replace("\x00", "\\u0000") if "\x00" in game else game
    if type(game) is int:
        return str(game)
    return ""


# ---- decoding -----------------------------------------------------------------------------------


def typed(event_type: str, data: Any) -> EventData:
    """``data`` (a decoded JSON object) as its type's struct; keys the struct does not name are left
    out. Raises :class:`Malformed` for an unknown type or a named key of the wrong type."""
    if isinstance(data, EventData):
        return data
    cls = DATA_TYPES.get(event_type)
    if cls is None:
        raise Malformed(f"unknown event type {event_type!r}")
    try:
        return msgspec.convert(data, cls)
    except msgspec.ValidationError as exc:
        raise Malformed(f"{event_type}: data {exc}".replace("`$", "`data")) from None


def check_data(event_type: str, data: Any) -> EventData:
    """The data rules of one event, typed: every key its struct names has the struct's type, and
    keys outside it (and free-form values) follow :mod:`.data`'s rules. Returns the typed view.

    This is the check agents apply before sealing and central applies to every event it receives;
    raises :class:`Malformed`."""
    result = typed(event_type, data)
    if type(data) is not dict:  # a struct given back: it was checked when it was made
        return result
    named = _FIELDS[event_type]
    if not data.keys() <= named:
        # keys the vocabulary does not name: the generic rules, as for any free-form object (the
        # struct names ``amount`` only with ``currency``, so the currency rule needs no named key)
        extra = {key: data[key] for key in data.keys() - named}
        check_amounts(extra, check_object(extra))
    for key in result.FREE:
        value = data.get(key, UNSET)
        if value is not UNSET and type(value) not in _PLAIN:
            check_object({key: value})
    return result


_PLAIN: Final = frozenset({str, bool, type(None)})


def contribution(event_type: str, data: Any) -> Contribution:
    """The money one event adds (``data`` as decoded JSON or typed); raises ValueError (:class:`Malformed`)
    for money its type refuses (an amount that is not an int ≥ 0, a transfer without a direction)."""
    if event_type not in COUNTING_TYPES:
        return ZERO
    return typed(event_type, data).contribution()


def money_slot(event_type: str, data: Any) -> str | None:
    """:meth:`EventData.slot` of an event (decoded JSON or typed): where its money goes, amount or not."""
    if event_type not in COUNTING_TYPES:
        return None
    return typed(event_type, data).slot()


__all__ = [
    "COUNTING_TYPES", "DATA_TYPES", "GGR_TYPES", "MISSED_KEYS", "MONEY_TYPES", "PLAY_TYPES", "ZERO", "Amount",
    "Contribution", "Currency", "EventData", "EventType", "check_data", "contribution", "counts_in_events",
    "counts_in_ggr", "game_key", "is_missed", "is_play", "money_slot", "typed",
]
