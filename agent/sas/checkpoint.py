"""A device's normalizer state as bytes, committed by the outbox in the same transaction as its events.

After a crash the agent restores the state that matches exactly the events committed with it
(:meth:`.normalizer.Normalizer.restore`), so the first snapshot after the restart is reconciled
against the old ledger: what the meters moved while facts were read but never committed becomes
``missed``, instead of disappearing into a fresh baseline.

Format: compact JSON (msgspec), one object per device, ``{"v": 1, "device": ..., ...}``. Money and
meter values are integers (decoding rejects floats and booleans there); times are ``time.time()``
seconds. Fields equal to their default are omitted, so a field's default is also its meaning
when it is absent.

Versioning (``v``, :data:`VERSION`):

* a new field gets a default that means "as before" (old checkpoints stay readable with it), and
  unknown fields are ignored (an older agent can read a newer checkpoint of the same version);
* any change that makes an old reader wrong (a field whose meaning, unit or absence changes)
  bumps the version; a checkpoint of any other version than :data:`VERSION` is rejected with
  :class:`CheckpointError` (the device then starts afresh: a new baseline, as before checkpoints).
"""

from __future__ import annotations

import datetime as dt
import functools
from collections import deque
from pathlib import Path
from typing import Any, Final, Literal

import msgspec

from .device_state import DeviceState, HeldWin, OpenRound
from .facts import HandpayInfo
from .ledger import QUANTITIES, Game, Ledger, Quantity

VERSION: Final = 1


class CheckpointError(ValueError):
    """The bytes are not a checkpoint this agent can use (garbage, wrong version, inconsistent)."""


class _Struct(msgspec.Struct, kw_only=True, omit_defaults=True):
    pass


class _Header(msgspec.Struct):
    v: int


class QuantityV1(_Struct):
    code: int | None = None
    last_raw: int | None = None
    meters: int = 0
    reported: int = 0
    seen: int = 0
    excess: int = 0
    grace: int = 0
    missed: int = 0
    absorbed: int = 0
    read_at: float | None = None     # monotonic: only meaningful on the boot named by LedgerV1.boot


class GameV1(_Struct):
    raw: int
    credits: int
    pos: int | None = None
    status: Literal["open", "late", "before"] = "open"
    contributed: dict[str, int] = {}
    end_at: float | None = None      # monotonic, as QuantityV1.read_at


class RoundV1(_Struct):
    game: int
    bet: int | None = None
    credits: int | None = None
    # Its 7E's placed game: the very object tracked by the ledger (``placed_in``/``placed_index``),
    # else its own copy (``placed``: a game of the baseline, a late one, or one no longer tracked).
    placed_in: Literal["games", "unplaced"] | None = None
    placed_index: int = 0
    placed: GameV1 | None = None


class HeldWinV1(_Struct):
    amount: int
    game: int
    agent_time: int


class HandpayInfoV1(_Struct):
    progressive_group: int
    level: int
    amount_cents: int
    partial_pay_cents: int
    reset_id: int
    address: int = 0
    wall: float = 0.0


class LedgerV1(_Struct):
    active: bool = False
    baseline_wall: float = 0.0
    seen_wall: float = 0.0
    declared: int | None = None
    quantities: dict[str, QuantityV1] = {}
    history: list[tuple[float, dict[str, int]]] = []
    games: list[GameV1] = []
    unplaced: list[GameV1] = []
    boot: str | None = None            # the kernel's boot id when the monotonic stamps were taken


class DeviceV1(_Struct):
    v: int
    device: str
    wall: float | None = None              # the last fact fed (a clock that went back is detected with it)
    gaming_day: str | None = None          # the normalizer's current gaming day (ISO), if known
    denom: int | None = None
    denom_warned: bool = False
    identity: list[Any] | None = None
    rte_mode: bool | None = None
    legacy_in_interval: bool = False
    game: int = 0
    round: RoundV1 | None = None
    session: str | None = None
    session_count: int = 0
    handpay_pending: bool = False
    handpay_info: HandpayInfoV1 | None = None
    handpay_bound: bool = False
    held_wins: list[HeldWinV1] = []
    last_ticket: int | None = None
    bill_meters: dict[int, int] = {}
    reset_pending: bool = False
    hints: list[str] = []
    last_snapshot_time: int | None = None
    link_up_since: float | None = None
    close_pending: str | None = None
    ledger: LedgerV1 = msgspec.field(default_factory=LedgerV1)


_ENCODER = msgspec.json.Encoder()
_HEADER = msgspec.json.Decoder(_Header)
_DECODER = msgspec.json.Decoder(DeviceV1)


# ---- state → bytes ---------------------------------------------------------------------------------


def dump(state: DeviceState, gaming_day: dt.date | None = None) -> bytes:
    """The checkpoint of one device (``gaming_day``: the normalizer's, restored with it)."""
    ledger = state.ledger
    rnd = None
    if state.round is not None:
        r = state.round
        rnd = RoundV1(game=r.game, bet=r.bet, credits=r.credits)
        if r.placed is not None:
            for name, games in (("games", ledger.games), ("unplaced", ledger.unplaced)):
                index = next((i for i, g in enumerate(games) if g is r.placed), None)
                if index is not None:
                    rnd.placed_in, rnd.placed_index = name, index   # type: ignore[assignment]
                    break
            else:
                rnd.placed = _game_out(r.placed)
    info = state.handpay_info
    body = DeviceV1(
        v=VERSION, device=state.device, wall=state.last_wall,
        gaming_day=None if gaming_day is None else gaming_day.isoformat(),
        denom=state.denom, denom_warned=state.denom_warned,
        identity=None if state.identity_key is None else list(state.identity_key),
        rte_mode=state.rte_mode, legacy_in_interval=state.legacy_in_interval, game=state.game, round=rnd,
        session=state.session, session_count=state.session_count,
        handpay_pending=state.handpay_pending,
        handpay_info=None if info is None else HandpayInfoV1(
            address=info.address, wall=info.wall, progressive_group=info.progressive_group, level=info.level,
            amount_cents=info.amount_cents, partial_pay_cents=info.partial_pay_cents, reset_id=info.reset_id),
        handpay_bound=state.handpay_bound,
        held_wins=[HeldWinV1(amount=w.amount, game=w.game, agent_time=w.agent_time) for w in state.held_wins],
        last_ticket=state.last_ticket, bill_meters=dict(state.bill_meters), reset_pending=state.reset_pending,
        hints=sorted(state.hints), last_snapshot_time=state.last_snapshot_time,
        link_up_since=state.link_up_since, close_pending=state.close_pending,
        ledger=LedgerV1(
            active=ledger.active, baseline_wall=ledger.baseline_wall, seen_wall=ledger.seen_wall,
            declared=ledger.declared,
            quantities={name: QuantityV1(code=q.code, last_raw=q.last_raw, meters=q.meters, reported=q.reported,
                                         seen=q.seen, excess=q.excess, grace=q.grace, missed=q.missed,
                                         absorbed=q.absorbed, read_at=q.read_at)
                        for name, q in ledger.quantities.items()},
            history=[(when, dict(values)) for when, values in ledger.history],
            games=[_game_out(g) for g in ledger.games],
            unplaced=[_game_out(g) for g in ledger.unplaced], boot=boot_id()),
    )
    return _ENCODER.encode(body)


def _game_out(game: Game) -> GameV1:
    return GameV1(raw=game.raw, credits=game.credits, pos=game.pos, status=game.status,  # type: ignore[arg-type]
                  contributed=dict(game.contributed), end_at=game.end_at)


# ---- bytes → state ---------------------------------------------------------------------------------


def load(device: str, blob: bytes, settle: float) -> tuple[DeviceState, dt.date | None]:
    """A device's state from its checkpoint, and the gaming day it recorded.

    Raises :class:`CheckpointError` on anything it cannot use (never a partial state)."""
    try:
        version = _HEADER.decode(blob).v
    except (msgspec.DecodeError, TypeError) as exc:
        raise CheckpointError(f"not a checkpoint: {exc}") from exc
    if version != VERSION:
        raise CheckpointError(f"unsupported checkpoint version {version} (this agent reads {VERSION})")
    try:
        body = _DECODER.decode(blob)
    except (msgspec.DecodeError, TypeError) as exc:
        raise CheckpointError(f"malformed checkpoint: {exc}") from exc
    if body.device != device:
        raise CheckpointError(f"checkpoint of {body.device!r} stored for {device!r}")
    day = None
    if body.gaming_day is not None:
        try:
            day = dt.date.fromisoformat(body.gaming_day)
        except ValueError as exc:
            raise CheckpointError(f"bad gaming day {body.gaming_day!r}") from exc
    ledger = _ledger_in(body.ledger, settle)
    rnd = None
    if body.round is not None:
        r = body.round
        placed = None
        if r.placed_in is not None:
            games = ledger.games if r.placed_in == "games" else ledger.unplaced
            if not 0 <= r.placed_index < len(games):
                raise CheckpointError(f"open round placed at {r.placed_in}[{r.placed_index}], which does not exist")
            placed = games[r.placed_index]
        elif r.placed is not None:
            placed = _game_in(r.placed, body.ledger.boot is not None and body.ledger.boot == boot_id())
        rnd = OpenRound(r.game, r.bet, r.credits, placed)
    info = None
    if body.handpay_info is not None:
        h = body.handpay_info
        info = HandpayInfo(device=device, address=h.address, mono=0.0, wall=h.wall,
                           progressive_group=h.progressive_group, level=h.level, amount_cents=h.amount_cents,
                           partial_pay_cents=h.partial_pay_cents, reset_id=h.reset_id)
    state = DeviceState(
        device, denom=body.denom, denom_warned=body.denom_warned,
        identity_key=None if body.identity is None else _frozen(body.identity),
        rte_mode=body.rte_mode, legacy_in_interval=body.legacy_in_interval, game=body.game, round=rnd,
        session=body.session, session_count=body.session_count, handpay_pending=body.handpay_pending,
        handpay_info=info, handpay_bound=body.handpay_bound,
        held_wins=[HeldWin(w.amount, w.game, w.agent_time) for w in body.held_wins],
        last_ticket=body.last_ticket, bill_meters=dict(body.bill_meters), reset_pending=body.reset_pending,
        hints=set(body.hints), last_snapshot_time=body.last_snapshot_time, link_up_since=body.link_up_since,
        close_pending=body.close_pending, ledger=ledger, last_wall=body.wall)
    return state, day


def _ledger_in(body: LedgerV1, settle: float) -> Ledger:
    same_boot = body.boot is not None and body.boot == boot_id()   # else monotonic stamps mean nothing
    unknown = (set(body.quantities) | {n for _, values in body.history for n in values}) - set(QUANTITIES)
    if unknown:
        raise CheckpointError(f"unknown ledger quantities {sorted(unknown)}")
    quantities = {name: Quantity() for name in QUANTITIES}
    for name, q in body.quantities.items():
        quantities[name] = Quantity(code=q.code, last_raw=q.last_raw, meters=q.meters, reported=q.reported,
                                    seen=q.seen, excess=q.excess, grace=q.grace, missed=q.missed,
                                    absorbed=q.absorbed, read_at=q.read_at if same_boot else None)
    return Ledger(quantities=quantities, active=body.active, baseline_wall=body.baseline_wall, settle=settle,
                  history=deque((when, dict(values)) for when, values in body.history),
                  games=deque(_game_in(g, same_boot) for g in body.games),
                  unplaced=[_game_in(g, same_boot) for g in body.unplaced],
                  declared=body.declared, seen_wall=body.seen_wall)


def _game_in(body: GameV1, same_boot: bool) -> Game:
    unknown = set(body.contributed) - set(QUANTITIES)
    if unknown:
        raise CheckpointError(f"unknown ledger quantities {sorted(unknown)} in a game")
    return Game(body.raw, body.credits, body.pos, body.status, dict(body.contributed),
                body.end_at if same_boot else None)


@functools.cache
def boot_id() -> str | None:
    """The kernel's id of this boot: ``time.monotonic()`` stamps compare only within one boot."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip() or None
    except OSError:
        return None


def _frozen(value: Any) -> Any:
    """JSON lists back into the tuples the state compares with (the identity key)."""
    return tuple(_frozen(v) for v in value) if isinstance(value, list) else value


__all__ = ["VERSION", "CheckpointError", "dump", "load"]
