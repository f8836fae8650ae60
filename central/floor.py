"""The floor view: what each machine of a hall is doing now, derived from what central stored.

A hall manager looks at the floor to see at a glance which machines earn (playing), which wait for a
player (idle), and which need someone (door open, tilt, disabled, offline). Central has no live line
to the machines, only their events, so the state is a fold (:func:`derive`, pure: the store reads,
this decides) that starts from what the monitor already folded — its stored device conditions as of
its cursor, so no request re-reads a year of events to find a door opened last month — and goes on
with the device's events after that cursor, its ``devices`` row, its newest game event, and the
newest applied enable/disable commands in central's command table.

The same event words as the monitor (:mod:`central.monitor`) so that the floor and the alert list
agree: a door is open from ``device.door open=true`` until ``open=false`` (a terminal also says it in
its ``device.status`` ``door_open``); a ``game.error`` (a tilt, reel, printer, memory or terminal
fault) holds until the machine plays again (or a terminal's status says ``error: false``); a machine
is disabled by an applied ``disable_machine`` command (the agent's ``integration`` event of kind
``command``), by a terminal's ``enabled: false``, or by an attendant's "out of service" (until play).
Playing means a game event within :data:`PLAYING_WINDOW_US` of now.

One state per machine, the one that needs attention first (:data:`STATES` order); every condition
that holds is also listed in ``flags`` so that none hides behind another.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from msgspec import UNSET

from central.eventtypes import CONDITION_TYPES as CONDITION_TYPES  # re-exported
from central.repos.devices import DeviceCondition, DeviceEventRow, DeviceRecord
from protocols.sync.errors import Malformed
from protocols.sync.vocabulary import (
    DATA_TYPES,
    DeviceDoor,
    DeviceStatus,
    EventData,
    GameError,
    Integration,
    Service,
    is_play,
    typed,
)

STATES: Final = ("offline", "door_open", "tilt", "disabled", "playing", "idle")
"""The machine states, most urgent first (a machine shows the first one that holds)."""
PLAYING_WINDOW_US: Final = 60_000_000
"""A game event within the last minute: the simulator and real players start a game every few seconds,
so a minute without one is a machine waiting for a player."""
_MACHINE_ACTIONS: Final = {"disable_machine": False, "enable_machine": True}
_GAME_ACTIONS: Final = {"disable_game": False, "enable_game": True}


@dataclass(frozen=True, slots=True)
class MachineState:
    """One machine on the floor as the dashboard shows it."""

    device: str
    kind: str
    state: str
    flags: tuple[str, ...]
    """Every condition that holds, in :data:`STATES` order (``handpay_pending`` after them)."""
    detail: str
    online: bool | None
    enabled: bool
    open_doors: tuple[str, ...]
    disabled_games: tuple[str, ...]
    last_seen: int
    last_play: int | None


def derive(device: DeviceRecord, events: Iterable[DeviceEventRow], *, now: int, hall_online: bool | None = True,
           conditions: Iterable[DeviceCondition] = (), last_play: int | None = None,
           switches: Mapping[str | None, bool] | None = None,
           switched_at: Mapping[str | None, int] | None = None,
           playing_window_us: int = PLAYING_WINDOW_US) -> MachineState:
    """The state of ``device`` now.

    ``conditions`` are the monitor's stored conditions of this device (``door:<door>``, ``fault``,
    ``handpay_pending``, ``out_of_service``) as of its cursor, and ``events`` the device's events after
    that cursor (any order: they are folded by seq), so a door opened months ago is known without
    reading months of events. ``last_play`` is the agent time of its newest game event (wherever it
    is); ``switches`` the newest applied enable (True) / disable (False) command of the machine (key
    None) and of each game (key: game number) in central's command table, and ``switched_at`` when
    central stored each one's applied result. A command's result reaches central before (or without)
    the agent's trail event of it, so the table is the newest word on a switch: a tail event older than
    the switch (an earlier command's trail, a terminal's earlier status word) does not undo it; a newer
    one (a later command whose result is still on its way, the terminal's own flag) does. Without
    ``switched_at`` events are folded after the table, as before. ``hall_online`` False (the agent's
    last will) makes every machine of the hall offline: nobody can tell what it does."""
    fold = _Fold.start(device, conditions, switches or {}, switched_at or {}, last_play)
    for event in sorted(events, key=lambda e: e.seq):
        fold.apply(event)
    return fold.state(device, now=now, hall_online=hall_online, playing_window_us=playing_window_us)


_NEVER: Final = -(2**63)


def _data(event: DeviceEventRow) -> EventData:
    """The event's data as its vocabulary type (a stored row central refused nothing of, so this only
    falls back, to a view naming nothing, for a row stored before the vocabulary was enforced)."""
    try:
        return typed(event.type, event.data)
    except Malformed:
        return _EMPTY.get(event.type, _NOTHING)


_NOTHING: Final = EventData()
_EMPTY: Final = {t: DATA_TYPES[t]() for t in CONDITION_TYPES if t != "handpay"}  # a handpay needs its amount


@dataclass(slots=True)
class _Fold:
    """What :func:`derive` folds: the machine's conditions, switches and last play so far."""

    online: bool | None
    enabled: bool
    machine_at: int
    switched_at: Mapping[str | None, int]
    games_off: dict[str, bool]
    last_play: int | None
    doors: dict[str, bool] = field(default_factory=dict)
    fault: str = ""
    out_of_service: bool = False
    handpay: bool = False

    @classmethod
    def start(cls, device: DeviceRecord, conditions: Iterable[DeviceCondition], switches: Mapping[str | None, bool],
              switched_at: Mapping[str | None, int], last_play: int | None) -> _Fold:
        """The fold as of the monitor's cursor: its stored conditions, the devices row, the command table."""
        machine_at = switched_at.get(None, _NEVER)
        enabled = device.enabled
        switch = switches.get(None)
        if switch is False:
            enabled = False
        elif switch is True and not enabled and machine_at > device.last_seen:
            enabled = True   # enabled by central after the device's last word (its stored flag is older)
        fold = cls(device.online, enabled, machine_at, switched_at,
                   {game: not on for game, on in switches.items() if game is not None}, last_play)
        for c in conditions:
            if c.name.startswith("door:"):
                fold.doors[c.name.split(":", 1)[1]] = True
            elif c.name == "fault":
                fold.fault = c.detail or "fault"
            elif c.name == "handpay_pending":
                fold.handpay = True
            elif c.name == "out_of_service":
                fold.out_of_service = True
        return fold

    def apply(self, event: DeviceEventRow) -> None:
        kind = event.type
        if is_play(kind):
            self.fault, self.out_of_service = "", False
            self.last_play = event.agent_time if self.last_play is None else max(self.last_play, event.agent_time)
            return
        handler = _APPLY.get(kind)
        if handler is not None:
            handler(self, event, _data(event))

    def _door(self, event: DeviceEventRow, d: DeviceDoor) -> None:
        if d.open is not UNSET:
            self.doors[str(d.door or "main")] = d.open

    def _error(self, event: DeviceEventRow, d: GameError) -> None:
        what = d.name or d.category or "error"
        code = d.code if d.code is not UNSET else (None if d.error_code is UNSET else d.error_code)
        self.fault = f"{what} (code {code})" if code is not None else str(what)

    def _status(self, event: DeviceEventRow, d: DeviceStatus) -> None:
        if d.online is not UNSET:
            self.online = d.online
        if d.enabled is not UNSET and event.agent_time > self.machine_at:
            self.enabled = d.enabled
        if d.door_open is not UNSET:
            self.doors["main"] = d.door_open
        if d.error is False:
            self.fault = ""
        if d.status == "handpay_pending" or (d.status == "handpay_info" and d.kind == "jackpot"):
            self.handpay = True
        elif d.status == "handpay_reset":
            self.handpay = False

    def _handpay(self, event: DeviceEventRow, d: EventData) -> None:
        self.handpay = False

    def _service(self, event: DeviceEventRow, d: Service) -> None:
        if d.kind == "out_of_service":
            self.out_of_service = True

    def _integration(self, event: DeviceEventRow, d: Integration) -> None:
        if d.kind != "command" or d.status != "applied":
            return
        if d.action in _MACHINE_ACTIONS and event.agent_time > self.machine_at:
            self.enabled = _MACHINE_ACTIONS[d.action]
        elif (d.action in _GAME_ACTIONS and isinstance(d.game, str)
              and event.agent_time > self.switched_at.get(d.game, _NEVER)):
            self.games_off[d.game] = not _GAME_ACTIONS[d.action]

    def state(self, device: DeviceRecord, *, now: int, hall_online: bool | None,
              playing_window_us: int) -> MachineState:
        """The machine's state from what the fold holds now."""
        open_doors = tuple(sorted(d for d, is_open in self.doors.items() if is_open))
        holds = {
            "offline": self.online is False or hall_online is False,
            "door_open": bool(open_doors),
            "tilt": bool(self.fault),
            "disabled": not self.enabled or self.out_of_service,
            "playing": self.last_play is not None and now - self.last_play <= playing_window_us,
        }
        flags = [s for s in STATES[:-1] if holds[s]]
        if self.handpay:
            flags.append("handpay_pending")
        state = next((s for s in STATES[:-1] if holds[s]), "idle")
        return MachineState(device=device.id, kind=device.kind, state=state, flags=tuple(flags),
                            detail="; ".join(self._details(hall_online, open_doors)), online=self.online,
                            enabled=self.enabled, open_doors=open_doors,
                            disabled_games=tuple(sorted(g for g, off in self.games_off.items() if off)),
                            last_seen=device.last_seen, last_play=self.last_play)

    def _details(self, hall_online: bool | None, open_doors: tuple[str, ...]) -> list[str]:
        details = []
        if hall_online is False:
            details.append("hall agent offline")
        elif self.online is False:
            details.append("no link to the machine")
        if open_doors:
            details.append("door open: " + ", ".join(open_doors))
        if self.fault:
            details.append(self.fault)
        if not self.enabled:
            details.append("disabled")
        if self.out_of_service:
            details.append("out of service")
        if self.handpay:
            details.append("handpay pending")
        return details


_APPLY: Final[dict[str, Callable[[_Fold, DeviceEventRow, Any], None]]] = {
    "device.door": _Fold._door, "game.error": _Fold._error, "device.status": _Fold._status,
    "handpay": _Fold._handpay, "service": _Fold._service, "integration": _Fold._integration,
}
