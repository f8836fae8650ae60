"""The floor view: the pure state rule (central.floor.derive) and GET /floor and GET /whoami over a real
SQLite store filled by ingesting signed events (tests/dashboard/world.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest

from central.floor import PLAYING_WINDOW_US, STATES, derive
from central.monitor import Monitor
from central.repos.devices import DeviceCondition, DeviceEventRow, DeviceRecord

from .world import HALL, ROLES, build_world, now_us, serving

NOW = 1_800_000_000_000_000


def _device(**kw: Any) -> DeviceRecord:
    base = {"id": "egm-001", "hall": HALL, "kind": "egm", "online": True, "enabled": True, "first_seen": 0,
            "last_seen": NOW, "last_seq": 1}
    return DeviceRecord(**{**base, **kw})


def _events(*items: tuple[str, dict[str, Any], int]) -> list[DeviceEventRow]:
    return [DeviceEventRow(seq=i + 1, agent_time=at, type=kind, data=data) for i, (kind, data, at) in enumerate(items)]


def _state(events: list[DeviceEventRow], **kw: Any) -> tuple[str, tuple[str, ...]]:
    m = derive(_device(**kw.pop("device", {})), events, now=NOW, **kw)
    return m.state, m.flags


def test_play_within_the_window_is_playing_and_older_play_is_idle() -> None:
    assert _state(_events(("game.ended", {}, NOW - PLAYING_WINDOW_US))) == ("playing", ("playing",))
    assert _state(_events(("game.ended", {}, NOW - PLAYING_WINDOW_US - 1))) == ("idle", ())
    assert _state([]) == ("idle", ())


def test_a_door_is_open_until_it_closes_and_each_door_counts() -> None:
    opened = ("device.door", {"door": "main", "open": True}, NOW - 10)
    belly = ("device.door", {"door": "belly", "open": True}, NOW - 9)
    closed = ("device.door", {"door": "main", "open": False}, NOW - 5)
    assert _state(_events(opened))[0] == "door_open"
    assert derive(_device(), _events(opened, belly), now=NOW).open_doors == ("belly", "main")
    assert _state(_events(opened, belly, closed))[0] == "door_open"
    assert _state(_events(opened, closed))[0] == "idle"
    # a terminal says it in its status word
    assert _state(_events(("device.status", {"door_open": True}, NOW)))[0] == "door_open"


def test_a_tilt_holds_until_the_machine_plays_again() -> None:
    tilt = ("game.error", {"code": "20", "name": "General tilt", "category": "tilt"}, NOW - 100)
    m = derive(_device(), _events(tilt), now=NOW)
    assert (m.state, m.detail) == ("tilt", "General tilt (code 20)")
    assert _state(_events(tilt, ("game.bet", {"amount": 1}, NOW - 50)))[0] == "playing"
    # a terminal's error flag going down clears it too
    assert _state(_events(("game.error", {"error_code": 7, "category": "terminal"}, NOW - 9),
                          ("device.status", {"error": False}, NOW - 5)))[0] == "idle"


def test_disabled_by_an_applied_command_or_the_terminal_or_out_of_service() -> None:
    def cmd(action: str, status: str = "applied") -> tuple[str, dict[str, Any], int]:
        return ("integration", {"kind": "command", "action": action, "status": status}, NOW - 5)

    assert _state(_events(cmd("disable_machine")))[0] == "disabled"
    assert _state(_events(cmd("disable_machine"), cmd("enable_machine")))[0] == "idle"
    assert _state(_events(cmd("disable_machine", "failed")))[0] == "idle"   # not applied: still enabled
    assert _state([], device={"enabled": False})[0] == "disabled"
    assert _state(_events(("device.status", {"enabled": False}, NOW)))[0] == "disabled"
    assert _state(_events(("service", {"kind": "out_of_service"}, NOW - 9)))[0] == "disabled"
    games = _events(("integration", {"kind": "command", "action": "disable_game", "status": "applied", "game": "3"},
                     NOW - 2))
    m = derive(_device(), games, now=NOW)
    assert (m.state, m.disabled_games) == ("idle", ("3",))   # one game off: the machine still plays others


def test_offline_wins_and_every_condition_is_listed() -> None:
    events = _events(("device.door", {"door": "main", "open": True}, NOW - 9),
                     ("game.error", {"category": "tilt"}, NOW - 8),
                     ("device.status", {"status": "handpay_pending", "code": "51"}, NOW - 7),
                     ("device.status", {"status": "offline", "online": False}, NOW - 6))
    m = derive(_device(), events, now=NOW)
    assert m.state == "offline"
    assert m.flags == ("offline", "door_open", "tilt", "handpay_pending")
    assert set(m.flags) - {"handpay_pending"} <= set(STATES)
    # the hall's agent offline: nobody can tell what its machines do
    assert _state(_events(("game.ended", {}, NOW)), hall_online=False)[0] == "offline"
    # back online
    assert _state(_events(("device.status", {"online": False}, NOW - 9),
                          ("device.status", {"online": True}, NOW - 2)))[0] == "idle"


def test_the_monitors_stored_conditions_are_the_start_and_later_events_go_on() -> None:
    stored = [DeviceCondition(HALL, "egm-001", "door:main", NOW - 10**9, ""),
              DeviceCondition(HALL, "egm-001", "fault", NOW - 10**9, "Reel tilt (code 40)")]
    m = derive(_device(), [], now=NOW, conditions=stored)
    assert (m.state, m.flags, m.open_doors) == ("door_open", ("door_open", "tilt"), ("main",))
    assert "Reel tilt (code 40)" in m.detail
    later = _events(("device.door", {"door": "main", "open": False}, NOW - 9), ("game.ended", {}, NOW - 5))
    assert derive(_device(), later, now=NOW, conditions=stored).state == "playing"
    # the newest game may be older than the monitor's cursor: it still says when the machine last played
    assert derive(_device(), [], now=NOW, last_play=NOW - 1).state == "playing"


def test_applied_commands_from_centrals_table_disable_machines_and_games() -> None:
    assert derive(_device(), [], now=NOW, switches={None: False}).state == "disabled"
    assert derive(_device(), [], now=NOW, switches={None: True}).state == "idle"
    m = derive(_device(), [], now=NOW, switches={"2": False, "3": True})
    assert (m.state, m.disabled_games) == ("idle", ("2",))
    # a newer enable seen in the events (after the table was read) wins
    enable = ("integration", {"kind": "command", "action": "enable_machine", "status": "applied"}, NOW)
    assert derive(_device(), _events(enable), now=NOW, switches={None: False}).state == "idle"


def test_an_applied_command_is_not_undone_by_an_older_event_of_the_tail() -> None:
    """The hall's result reaches central before the trail event of it: the table is the newest word."""
    def trail(action: str, at: int) -> tuple[str, dict[str, Any], int]:
        return ("integration", {"kind": "command", "action": action, "status": "applied"}, at)

    # disabled at NOW-20 (its trail is in the tail), enabled at NOW-5 (its trail still on its way)
    older = _events(trail("disable_machine", NOW - 20))
    assert derive(_device(), older, now=NOW, switches={None: True}, switched_at={None: NOW - 5}).state == "idle"
    # and the other way round, on a machine that plays
    play = ("game.ended", {}, NOW - 2)
    tail = _events(trail("enable_machine", NOW - 30), play)
    assert derive(_device(), tail, now=NOW, switches={None: False}, switched_at={None: NOW - 5}).state == "disabled"
    # a terminal's status word from before the command does not undo it; a newer one does
    status = ("device.status", {"enabled": True}, NOW - 9)
    assert derive(_device(), _events(status), now=NOW, switches={None: False},
                  switched_at={None: NOW - 5}).state == "disabled"
    assert derive(_device(), _events(("device.status", {"enabled": True}, NOW - 1)), now=NOW,
                  switches={None: False}, switched_at={None: NOW - 5}).state == "idle"
    # a terminal that disabled itself, then enabled by central after its last word
    stale = {"enabled": False, "last_seen": NOW - 10}
    assert derive(_device(**stale), [], now=NOW, switches={None: True}, switched_at={None: NOW - 5}).state == "idle"
    assert derive(_device(**{**stale, "last_seen": NOW}), [], now=NOW, switches={None: True},
                  switched_at={None: NOW - 5}).state == "disabled"
    # a game switched back on is not switched off again by its older trail
    game_trail = ("integration", {"kind": "command", "action": "disable_game", "status": "applied", "game": "3"},
                  NOW - 20)
    m = derive(_device(), _events(game_trail), now=NOW, switches={"3": True}, switched_at={"3": NOW - 5})
    assert m.disabled_games == ()


def test_events_are_folded_by_seq_whatever_order_they_come_in() -> None:
    events = _events(("device.door", {"door": "main", "open": True}, NOW - 9),
                     ("device.door", {"door": "main", "open": False}, NOW - 8))
    assert _state(list(reversed(events)))[0] == "idle"


async def _get(base: str, path: str, key: str | None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with aiohttp.ClientSession() as session, session.get(base + "/api/v1" + path, headers=headers) as r:
        return r.status, await r.json()


async def test_floor_api_shows_each_machine_as_the_hall_left_it(tmp_path: Path) -> None:
    world = await build_world(tmp_path)
    try:
        async with serving(world):
            status, body = await _get(world.base_url, f"/floor?hall={HALL}", world.keys["viewer"])
            assert status == 200
            assert {m["device"]: m["state"] for m in body["machines"]} == world.states
            assert body["hall_online"] is True
            assert sum(body["counts"].values()) == len(world.states)
            door = next(m for m in body["machines"] if m["device"] == "egm-002")
            assert door["open_doors"] == ["main"]   # the belly door closed again
            assert body["complete"] is True
            # the same floor once the monitor has folded the events (the API then reads only what follows)
            await Monitor(world.store).tick()
            _, body = await _get(world.base_url, f"/floor?hall={HALL}", world.keys["viewer"])
            assert {m["device"]: m["state"] for m in body["machines"]} == world.states
            # the door closes after the monitor's last look
            world.chain.add("egm-002", "device.door", {"door": "main", "open": False, "code": "1A"}, now_us())
            # a machine played again after its tilt: the hall sends a game, the floor follows
            world.play("egm-003", 100, 0, now_us())
            await world.flush()
            _, body = await _get(world.base_url, f"/floor?hall={HALL}", world.keys["technician"])
            states = {m["device"]: m["state"] for m in body["machines"]}
            assert (states["egm-002"], states["egm-003"]) == ("idle", "playing")
            # the agent's last will: the whole hall is offline
            assert await world.store.halls.set_presence(HALL, online=False, session=1, at=now_us())
            _, body = await _get(world.base_url, f"/floor?hall={HALL}", world.keys["admin"])
            assert {m["state"] for m in body["machines"]} == {"offline"}
    finally:
        await world.store.close()


@pytest.mark.parametrize(("path", "key_role", "status", "code"), [
    (f"/floor?hall={HALL}", "regulator", 403, "forbidden"),
    (f"/floor?hall={HALL}", None, 401, "unauthorized"),
    ("/floor", "admin", 400, "bad_request"),
    ("/floor?hall=bad%20hall", "admin", 400, "bad_request"),
    ("/floor?hall=nohall", "admin", 404, "not_found"),
])
async def test_floor_api_errors_are_json(tmp_path: Path, path: str, key_role: str | None, status: int,
                                         code: str) -> None:
    world = await build_world(tmp_path)
    try:
        async with serving(world):
            got, body = await _get(world.base_url, path, world.keys[key_role] if key_role else None)
            assert (got, body["error"]["code"]) == (status, code)
    finally:
        await world.store.close()


async def test_floor_respects_a_keys_hall_scope_and_whoami_tells_the_role(tmp_path: Path) -> None:
    from central.apikeys import create_api_key

    world = await build_world(tmp_path)
    try:
        _, scoped = await create_api_key(world.store.halls, "technician", ("other-hall",), now=now_us())
        async with serving(world):
            status, body = await _get(world.base_url, f"/floor?hall={HALL}", scoped)
            assert (status, body["error"]["code"]) == (403, "forbidden")
            status, me = await _get(world.base_url, "/whoami", scoped)
            assert (status, me["role"], me["halls"]) == (200, "technician", ["other-hall"])
            assert "GET /floor" in me["routes"] and "POST /commands" not in me["routes"]
            for role in ROLES:
                status, me = await _get(world.base_url, "/whoami", world.keys[role])
                scope = [HALL] if role == "technician" else None   # a technician key names its halls
                assert (status, me["role"], me["halls"]) == (200, role, scope)
                assert ("POST /commands" in me["routes"]) == (role in ("admin", "operator"))
            assert (await _get(world.base_url, "/whoami", "not-a-key"))[0] == 401
    finally:
        await world.store.close()


async def test_floor_and_whoami_for_every_role(tmp_path: Path) -> None:
    world = await build_world(tmp_path)
    try:
        async with serving(world):
            for role in ROLES:
                status, body = await _get(world.base_url, f"/floor?hall={HALL}", world.keys[role])
                if role == "regulator":   # evidence, not floor operations (roles.py)
                    assert (status, body["error"]["code"]) == (403, "forbidden")
                else:
                    assert status == 200 and len(body["machines"]) == len(world.states)
                assert (await _get(world.base_url, "/whoami", world.keys[role]))[0] == 200
    finally:
        await world.store.close()


async def test_the_floor_reads_at_most_the_newest_events_after_the_cursor(tmp_path: Path) -> None:
    world = await build_world(tmp_path)
    try:
        newest = len(world.chain.events)
        everything = await world.store.devices.floor_reads(HALL, after_seq=0, max_events=10**6)
        assert (everything.from_seq, everything.newest_seq) == (0, newest)
        assert everything.switches == {"egm-004": {None: False}}
        assert set(everything.switched_at) == {"egm-004"} and None in everything.switched_at["egm-004"]
        assert set(everything.last_play) == {"egm-001", "egm-002", "egm-003", "egm-004", "egm-005", "egm-006"}
        tail = await world.store.devices.floor_reads(HALL, after_seq=0, max_events=5)
        assert tail.from_seq == newest - 5
        assert all(e.seq > newest - 5 or e.type in ("game.bet", "game.win", "game.ended")
                   for rows in tail.events.values() for e in rows)
    finally:
        await world.store.close()
