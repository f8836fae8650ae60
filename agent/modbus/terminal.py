"""Terminal readings → the event log's records, by counter delta (pure and synchronous).

:class:`TerminalNormalizer` mirrors :class:`agent.sas.normalizer.Normalizer`'s API (``feed``,
``take_checkpoints``, ``restore``) for the facts of :mod:`agent.modbus.facts`.

Money (protocols/sync/money.py is the contract): a terminal has no per-game events, only absolute
counters, so each reading after the first is compared with the previous one, counter by counter
(:func:`protocols.modbus.counter_delta`), and every movement becomes one event whose contribution
is exactly that movement:

==============  =================  ==============================================================
counter         event              data
==============  =================  ==============================================================
bets            ``game.bet``       ``amount``, ``currency``, ``source: "counters"``
wins            ``game.win``       ``amount``, ``currency``, ``paid_by: "terminal"``, ``source``
rounds          ``game.ended``     ``rounds: N`` (N ≥ 1), ``source``
cash_in         ``bill.accepted``  ``amount``, ``currency``, ``medium: "cash"``, ``source``
tickets_in      ``ticket.redeemed`` ``amount``, ``currency``, ``source``
cash_out        ``transfer``       ``amount``, ``currency``, ``direction: "out"``, ``method: "cash"``
tickets_out     ``ticket.printed`` ``amount``, ``currency``, ``source``
==============  =================  ==============================================================

* The first reading of a device is its baseline: no money, one ``device.status`` (``status:
  "baseline"``) with the decoded status. Counters are never re-baselined on a link change, so
  what moved while the terminal was unreachable is counted on its first reading after it returns.
* A wrap (2**32 - 1 → 0) is counted normally (logged at info). A reset (a counter went back: the
  terminal's memory was cleared) is logged as a warning and recorded as an ``integration`` event
  ``{kind: "counter_reset", counter, previous, current}``; the new value is counted as the movement
  since the reset (never a negative amount).
* Status: a change of enabled/in-service/error/paper-low or of the error code → ``device.status``
  ``{status: "status", online, enabled, in_service, error_code, error, paper_low, device_kind:
  "terminal"}``; a door bit change → ``device.door {door: "main", open}``; an error appearing (the
  error bit set, or a new non-zero code) → ``game.error {error_code, category: "terminal"}``.
* Link facts: :class:`~agent.modbus.facts.TerminalLinkDown` → ``device.status {status: "offline",
  online: false, reason, missed_polls}``; :class:`~agent.modbus.facts.TerminalLinkUp` →
  ``device.status {status: "online", online: true, reason}``. Command outcomes → ``integration
  {kind: "response", action, acked, detail}``.

Crash safety: :meth:`TerminalNormalizer.take_checkpoints` returns the state (last counters, status
word, error code, online) of every device changed since the previous call; the runtime commits it
in the same transaction as the events. After a crash, :meth:`TerminalNormalizer.restore` brings the
last committed counters back, so the next reading's delta includes whatever was read but never
committed: nothing is lost and nothing is counted twice.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import structlog

from protocols.modbus import STATUS_BITS, TerminalReading, counter_delta

from ..pipeline.drafts import EventDraft, micros
from .facts import TerminalCommandResult, TerminalFactBase, TerminalLinkDown, TerminalLinkUp, TerminalRead

log = structlog.get_logger("agent.modbus")

CHECKPOINT_VERSION: Final = 1
CHECKPOINT_KIND: Final = "terminal"
COUNTER_MAX: Final = (1 << 32) - 1

COUNTER_EVENTS: Final[dict[str, tuple[str, dict[str, Any]]]] = {
    "bets": ("game.bet", {}),
    "wins": ("game.win", {"paid_by": "terminal"}),
    "cash_in": ("bill.accepted", {"medium": "cash"}),
    "tickets_in": ("ticket.redeemed", {}),
    "cash_out": ("transfer", {"direction": "out", "method": "cash"}),
    "tickets_out": ("ticket.printed", {}),
}
"""Money counters (minor units) → the event type and its extra data; ``rounds`` is handled apart."""
STATUS_WATCHED: Final = ("enabled", "in_service", "error", "paper_low")


@dataclass
class TerminalState:
    device: str
    counters: dict[str, int] | None = None   # None: no baseline yet
    status: int | None = None                # the last status word
    error_code: int | None = None
    online: bool | None = None


def _flags(status: int) -> dict[str, bool]:
    return {name: bool(status >> bit & 1) for name, bit in STATUS_BITS.items()}


class CheckpointError(ValueError):
    """The bytes are not a terminal checkpoint this agent can use."""


def dump_state(state: TerminalState) -> bytes:
    obj = {"v": CHECKPOINT_VERSION, "kind": CHECKPOINT_KIND, "device": state.device, "counters": state.counters,
           "status": state.status, "error_code": state.error_code, "online": state.online}
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def _word(obj: Mapping[str, Any], key: str, top: int) -> int | None:
    value = obj.get(key)
    if value is None:
        return None
    if type(value) is not int or not 0 <= value <= top:
        raise CheckpointError(f"{key}: {value!r} is not an integer in 0..{top}")
    return value


def load_state(device: str, blob: bytes) -> TerminalState:
    try:
        obj = json.loads(blob)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"not JSON: {exc}") from exc
    if type(obj) is not dict or obj.get("kind") != CHECKPOINT_KIND:
        raise CheckpointError("not a terminal checkpoint")
    if obj.get("v") != CHECKPOINT_VERSION:
        raise CheckpointError(f"version {obj.get('v')!r}, this agent reads {CHECKPOINT_VERSION}")
    raw = obj.get("counters")
    counters: dict[str, int] | None = None
    if raw is not None:
        if type(raw) is not dict:
            raise CheckpointError("counters is not an object")
        counters = {}
        for name, value in raw.items():
            if type(value) is not int or not 0 <= value <= COUNTER_MAX:
                raise CheckpointError(f"counter {name}: {value!r} is not a 32-bit unsigned integer")
            counters[str(name)] = value
    online = obj.get("online")
    if online is not None and type(online) is not bool:
        raise CheckpointError(f"online: {online!r} is not a boolean")
    return TerminalState(device, counters, _word(obj, "status", 0xFFFF), _word(obj, "error_code", 0xFFFF), online)


class TerminalNormalizer:
    """Turns :mod:`agent.modbus.facts` into event drafts (see the module docstring)."""

    def __init__(self, currency: str) -> None:
        if len(currency) != 3 or not currency.isascii() or not currency.isupper():
            raise ValueError(f"currency must be an ISO 4217 code like 'EUR', got {currency!r}")
        self.currency = currency
        self.devices: dict[str, TerminalState] = {}
        self._dirty: set[str] = set()

    # ---- public API ---------------------------------------------------------------------------------

    def feed(self, fact: TerminalFactBase) -> list[EventDraft]:
        """The drafts one fact implies, in order (possibly none)."""
        state = self.devices.get(fact.device)
        if state is None:
            state = self.devices[fact.device] = TerminalState(fact.device)
        out: list[EventDraft] = []
        if isinstance(fact, TerminalRead):
            self._reading(state, fact, out)
        elif isinstance(fact, TerminalLinkDown):
            if state.online is not False:
                state.online = False
                self._dirty.add(state.device)
            self._emit(out, fact, "device.status", {"status": "offline", "online": False, "reason": fact.reason,
                                                    "missed_polls": fact.missed, "detail": fact.detail})
        elif isinstance(fact, TerminalLinkUp):
            if state.online is not True:
                state.online = True
                self._dirty.add(state.device)
            self._emit(out, fact, "device.status", {"status": "online", "online": True, "reason": fact.reason})
        elif isinstance(fact, TerminalCommandResult):
            self._emit(out, fact, "integration", {"kind": "response", "action": fact.action, "acked": fact.acked,
                                                  "detail": fact.detail})
        return out

    def take_checkpoints(self) -> dict[str, bytes]:
        """The serialized state of every device changed since the previous call: device → bytes."""
        dirty, self._dirty = self._dirty, set()
        return {device: dump_state(self.devices[device]) for device in sorted(dirty) if device in self.devices}

    def restore(self, checkpoints: Mapping[str, bytes]) -> list[str]:
        """Resume from the last committed checkpoints (before any fact is fed). Returns the devices
        whose checkpoint could not be used: they start with a fresh baseline (logged). Never raises."""
        unreadable: list[str] = []
        try:
            items = list(checkpoints.items())
        except Exception as exc:
            log.warning("terminal checkpoints unreadable; every terminal starts with a new baseline", error=repr(exc))
            return unreadable
        for device, blob in items:
            device = str(device)
            try:
                state = load_state(device, bytes(blob))
            except Exception as exc:  # whatever the bytes are, the agent must start
                log.warning("terminal checkpoint unreadable; the terminal starts with a new baseline",
                            device=device, error=str(exc))
                unreadable.append(device)
                self.devices.pop(device, None)
                continue
            self.devices[device] = state
            self._dirty.discard(device)
            log.info("terminal state restored from its checkpoint", device=device,
                     baseline=state.counters is not None)
        return unreadable

    # ---- readings -----------------------------------------------------------------------------------

    def _emit(self, out: list[EventDraft], fact: TerminalFactBase, type_: str, data: dict[str, Any]) -> None:
        if type_ == "device.status":
            data = {**data, "device_kind": "terminal"}
        out.append(EventDraft(fact.device, type_, None, micros(fact.wall), data))

    def _status_data(self, reading: TerminalReading, online: bool | None) -> dict[str, Any]:
        flags = reading.flags
        return {"online": True if online is None else online, "enabled": flags["enabled"],
                "in_service": flags["in_service"], "error": flags["error"], "paper_low": flags["paper_low"],
                "door_open": flags["door_open"], "error_code": reading["error_code"]}

    def _reading(self, state: TerminalState, fact: TerminalRead, out: list[EventDraft]) -> None:
        reading = fact.reading
        values = reading.values
        names = [name for name in values if name in COUNTER_EVENTS or name == "rounds"]
        if state.counters is None:
            state.counters = {name: values[name] for name in names}
            state.status, state.error_code = values.get("status", 0), values.get("error_code", 0)
            self._dirty.add(state.device)
            self._emit(out, fact, "device.status", {"status": "baseline", **self._status_data(reading, state.online),
                                                    "firmware": values.get("firmware"),
                                                    "counters": dict(state.counters)})
            log.info("terminal baseline", device=state.device, counters=state.counters)
            return
        changed = self._counters(state, fact, names, out)
        changed |= self._status(state, fact, out)
        if changed:
            self._dirty.add(state.device)

    def _counters(self, state: TerminalState, fact: TerminalRead, names: list[str], out: list[EventDraft]) -> bool:
        assert state.counters is not None
        values = fact.reading.values
        changed = False
        for name in names:
            current = values[name]
            previous = state.counters.get(name)
            state.counters[name] = current
            if previous is None:
                log.warning("terminal counter without a previous value; baseline for it", device=state.device,
                            counter=name, value=current)
                changed = True
                continue
            if previous == current:
                continue
            changed = True
            delta = counter_delta(previous, current)
            if delta.wrapped:
                log.info("terminal counter wrapped", device=state.device, counter=name, previous=previous,
                         current=current, amount=delta.amount)
            if delta.reset:
                log.warning("terminal counter reset (went back): counting the new value since the reset",
                            device=state.device, counter=name, previous=previous, current=current)
                self._emit(out, fact, "integration", {"kind": "counter_reset", "counter": name,
                                                      "previous": previous, "current": current})
            if delta.amount <= 0:
                continue
            if name == "rounds":
                self._emit(out, fact, "game.ended", {"rounds": delta.amount, "source": "counters"})
                continue
            type_, extra = COUNTER_EVENTS[name]
            self._emit(out, fact, type_, {"amount": delta.amount, "currency": self.currency, **extra,
                                          "source": "counters"})
        return changed

    def _status(self, state: TerminalState, fact: TerminalRead, out: list[EventDraft]) -> bool:
        reading = fact.reading
        status, code = reading.values.get("status", 0), reading.values.get("error_code", 0)
        old_status = state.status if state.status is not None else status
        old_code = state.error_code if state.error_code is not None else code
        if status == old_status and code == old_code:
            return False
        before, after = _flags(old_status), reading.flags
        if before["door_open"] != after["door_open"]:
            self._emit(out, fact, "device.door", {"door": "main", "open": after["door_open"]})
        if any(before[k] != after[k] for k in STATUS_WATCHED) or code != old_code:
            self._emit(out, fact, "device.status", {"status": "status", **self._status_data(reading, state.online)})
        error_appeared = (after["error"] and not before["error"]) or (code != 0 and code != old_code)
        if error_appeared:
            self._emit(out, fact, "game.error", {"error_code": code, "category": "terminal",
                                                 "error": after["error"]})
        state.status, state.error_code = status, code
        return True


__all__ = ["COUNTER_EVENTS", "CheckpointError", "TerminalNormalizer", "TerminalState", "dump_state", "load_state"]
