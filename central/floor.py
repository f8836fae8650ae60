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

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from protocols.sync.vocabulary import PLAY_TYPES

if TYPE_CHECKING:  # the store imports this module's event types: no import cycle at run time
    from central.store.base import DeviceCondition, DeviceEventRow, DeviceRecord

STATES: Final = ("offline", "door_open", "tilt", "disabled", "playing", "idle")
"""The machine states, most urgent first (a machine shows the first one that holds)."""
PLAYING_WINDOW_US: Final = 60_000_000
"""A game event within the last minute: the simulator and real players start a game every few seconds,
so a minute without one is a machine waiting for a player."""
CONDITION_TYPES: Final = ("device.door", "game.error", "device.status", "handpay", "service", "integration")
"""Event types that can change a machine's state other than play (what the store reads per device)."""
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
    doors: dict[str, bool] = {}
    fault = ""
    out_of_service = False
    handpay = False
    for c in conditions:
        if c.name.startswith("door:"):
            doors[c.name.split(":", 1)[1]] = True
        elif c.name == "fault":
            fault = c.detail or "fault"
        elif c.name == "handpay_pending":
            handpay = True
        elif c.name == "out_of_service":
            out_of_service = True
    switches = switches or {}
    switched_at = switched_at or {}
    never = -(2**63)
    machine_at = switched_at.get(None, never)
    online = device.online
    enabled = device.enabled
    switch = switches.get(None)
    if switch is False:
        enabled = False
    elif switch is True and not enabled and machine_at > device.last_seen:
        enabled = True   # enabled by central after the device's last word (its stored flag is older)
    games_off = {game: not on for game, on in switches.items() if game is not None}
    for event in sorted(events, key=lambda e: e.seq):
        data = event.data
        kind = event.type
        if kind in PLAY_TYPES:
            fault, out_of_service = "", False
            last_play = event.agent_time if last_play is None else max(last_play, event.agent_time)
        elif kind == "device.door":
            if type(data.get("open")) is bool:
                doors[str(data.get("door") or "main")] = data["open"]
        elif kind == "game.error":
            what = data.get("name") or data.get("category") or "error"
            code = data.get("code", data.get("error_code"))
            fault = f"{what} (code {code})" if code is not None else str(what)
        elif kind == "device.status":
            status = data.get("status")
            if type(data.get("online")) is bool:
                online = data["online"]
            if type(data.get("enabled")) is bool and event.agent_time > machine_at:
                enabled = data["enabled"]
            if type(data.get("door_open")) is bool:
                doors["main"] = data["door_open"]
            if data.get("error") is False:
                fault = ""
            if status == "handpay_pending" or (status == "handpay_info" and data.get("kind") == "jackpot"):
                handpay = True
            elif status == "handpay_reset":
                handpay = False
        elif kind == "handpay":
            handpay = False
        elif kind == "service" and data.get("kind") == "out_of_service":
            out_of_service = True
        elif kind == "integration" and data.get("kind") == "command" and data.get("status") == "applied":
            action = data.get("action")
            if action in _MACHINE_ACTIONS and event.agent_time > machine_at:
                enabled = _MACHINE_ACTIONS[action]
            elif (action in _GAME_ACTIONS and isinstance(data.get("game"), str)
                  and event.agent_time > switched_at.get(data["game"], never)):
                games_off[data["game"]] = not _GAME_ACTIONS[action]
    open_doors = tuple(sorted(d for d, is_open in doors.items() if is_open))
    holds = {
        "offline": online is False or hall_online is False,
        "door_open": bool(open_doors),
        "tilt": bool(fault),
        "disabled": not enabled or out_of_service,
        "playing": last_play is not None and now - last_play <= playing_window_us,
    }
    flags = [s for s in STATES[:-1] if holds[s]]
    if handpay:
        flags.append("handpay_pending")
    state = next((s for s in STATES[:-1] if holds[s]), "idle")
    details = []
    if hall_online is False:
        details.append("hall agent offline")
    elif online is False:
        details.append("no link to the machine")
    if open_doors:
        details.append("door open: " + ", ".join(open_doors))
    if fault:
        details.append(fault)
    if not enabled:
        details.append("disabled")
    if out_of_service:
        details.append("out of service")
    if handpay:
        details.append("handpay pending")
    return MachineState(device=device.id, kind=device.kind, state=state, flags=tuple(flags), detail="; ".join(details),
                        online=online, enabled=enabled, open_doors=open_doors,
                        disabled_games=tuple(sorted(g for g, off in games_off.items() if off)),
                        last_seen=device.last_seen, last_play=last_play)
