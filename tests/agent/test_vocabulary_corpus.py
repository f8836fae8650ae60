"""The typed vocabulary never changes a hash: a corpus of events the real agent paths write (a simulated
EGM through the coordinator and the normalizer, RTE on and off, an overflowing exception buffer; a
Modbus terminal's readings; a command's trail) is sealed, decoded into protocols.sync.vocabulary's
structs, encoded again from the structs alone and hashed: bytes and hashes must be identical, so every
key the agent writes is named by its type's struct, with the type it is written with."""

from __future__ import annotations

import hashlib
import random
import uuid

import msgspec

from agent.modbus.facts import TerminalCommandResult, TerminalLinkDown, TerminalLinkUp
from agent.modbus.terminal import TerminalNormalizer
from agent.pipeline import EventDraft
from protocols.modbus import STATUS_BITS
from protocols.sync.canonical import canonical_bytes
from protocols.sync.events import Event, UnsealedEvent, canonical_event_bytes, decode_event, encode_event, seal
from protocols.sync.fields import GENESIS_HASH
from protocols.sync.vocabulary import DATA_TYPES, EventType, check_data

from .test_modbus_terminal import BASE_STATUS, read
from .test_normalizer_sim import FAST, PollConfig, play_session, rig, scenario


def sealed(drafts: list[EventDraft]) -> list[Event]:
    out, prev = [], GENESIS_HASH
    for seq, d in enumerate(drafts, 1):
        event = seal(UnsealedEvent(seq=seq, id=str(uuid.uuid4()), hall="hall-1", device=d.device, type=d.type,  # type: ignore[arg-type]
                                   device_time=d.device_time, agent_time=d.agent_time, data=d.data), prev)
        out.append(event)
        prev = event.hash
    return out


def assert_round_trips(events: list[Event]) -> set[str]:
    """Decode each stored event, type its data, re-encode from the struct: same bytes, same hash."""
    for event in events:
        stored = decode_event(encode_event(event))          # as central reads it back
        data = check_data(stored.type, stored.data)
        assert isinstance(data, DATA_TYPES[stored.type])
        assert canonical_bytes(data) == canonical_bytes(stored.data), (stored.type, stored.data)
        retyped = msgspec.structs.replace(stored, data=data)  # type: ignore[arg-type]
        assert canonical_event_bytes(retyped) == canonical_event_bytes(event)
        assert hashlib.sha256(canonical_event_bytes(retyped)).hexdigest() == event.hash
    return {e.type for e in events}


async def test_simulated_egm_events_round_trip_through_the_vocabulary() -> None:
    seen: set[str] = set()
    async with rig(handpay_limit=5000, ticket_limit=20_000) as r:
        await scenario(r, 1, pace=0.005)    # fast play: the FIFO overflows and ``missed`` records follow
        await r.settle()
        seen |= assert_round_trips(sealed(r.drafts))
    async with rig(PollConfig(**{**FAST.__dict__, "rte": False}), handpay_limit=5000, ticket_limit=20_000) as r:
        await play_session(r, random.Random(2), 20)
        await r.settle()
        seen |= assert_round_trips(sealed(r.drafts))
    assert {"game.bet", "game.win", "game.loss", "game.ended", "bill.accepted", "ticket.printed", "handpay",
            "device.door", "device.status", "service", "meters.snapshot", "session.started", "session.ended",
            "integration"} <= seen


def test_terminal_and_command_events_round_trip_through_the_vocabulary() -> None:
    n = TerminalNormalizer("EUR")
    rng = random.Random(5)
    counters = dict.fromkeys(("bets", "wins", "rounds", "cash_in", "cash_out", "tickets_in", "tickets_out"), 0)
    drafts = n.feed(read(**counters))
    for i in range(60):
        for name in counters:
            counters[name] += rng.choice((0, 0, 5, 100))
        status = BASE_STATUS | (1 << STATUS_BITS["door_open"] if i % 7 == 3 else 0)
        status |= 1 << STATUS_BITS["error"] if i % 11 == 5 else 0
        drafts += n.feed(read(status=status, error_code=9 if i % 11 == 5 else 0, **counters))
    drafts += n.feed(read(**{**counters, "bets": 1}))            # a counter reset
    base = {"device": "term-01", "unit": 1, "mono": 1.0, "wall": 1_700_000_000.5}
    drafts += n.feed(TerminalLinkDown(**base, missed=3, reason="unreachable", detail="refused", last_seen_wall=None))
    drafts += n.feed(TerminalLinkUp(**base, reason="connect"))
    drafts += n.feed(TerminalCommandResult(**base, action="disable_machine", acked=True))
    # the command handler's trail (agent/commands.py: _settle)
    drafts.append(EventDraft("hall", "integration", None, 1_700_000_001_000_000,
                             {"kind": "command", "id": str(uuid.uuid4()), "action": "disable_game", "status": "applied",
                              "detail": "", "device": "egm-1", "game": "3"}))
    seen = assert_round_trips(sealed(drafts))
    assert {"game.bet", "game.win", "game.ended", "bill.accepted", "ticket.redeemed", "ticket.printed", "transfer",
            "device.door", "device.status", "game.error", "integration"} <= seen


def test_every_event_type_has_its_struct() -> None:
    from protocols.sync import EVENT_TYPES

    assert tuple(EventType) == EVENT_TYPES
    assert set(DATA_TYPES) == set(EVENT_TYPES)
