"""TerminalNormalizer: counter deltas → events whose contributions sum to the counter movement."""

from __future__ import annotations

import itertools
import random

import pytest

from agent.modbus.facts import TerminalCommandResult, TerminalLinkDown, TerminalLinkUp, TerminalRead
from agent.modbus.terminal import TerminalNormalizer, dump_state, load_state
from agent.pipeline.drafts import EventDraft
from protocols.modbus import HALLSYNC_TERMINAL_V1, STATUS_BITS, decode, encode
from protocols.sync.events import check_event_data
from protocols.sync.money import ZERO, Contribution, contribution

DEV = "term-01"
BASE_STATUS = 1 << STATUS_BITS["enabled"] | 1 << STATUS_BITS["in_service"]
_clock = itertools.count(1)


def read(device: str = DEV, **values: int) -> TerminalRead:
    vals = {"status": BASE_STATUS, **values}
    words = encode(HALLSYNC_TERMINAL_V1, vals)
    t = next(_clock)
    return TerminalRead(device=device, unit=1, mono=float(t), wall=1_700_000_000.0 + t, registers=tuple(words),
                        reading=decode(HALLSYNC_TERMINAL_V1, words))


def total(drafts: list[EventDraft]) -> Contribution:
    out = ZERO
    for d in drafts:
        check_event_data(d.type, d.data)   # protocols.sync's strict rules
        out = out + contribution(d.type, d.data)
    return out


def movement(a: dict[str, int], b: dict[str, int]) -> Contribution:
    d = {k: b.get(k, 0) - a.get(k, 0) for k in ("bets", "wins", "rounds", "cash_in", "cash_out", "tickets_in",
                                                 "tickets_out")}
    return Contribution(d["bets"], d["wins"], d["rounds"], d["cash_in"] + d["tickets_in"],
                        d["cash_out"] + d["tickets_out"])


def test_first_reading_is_a_baseline_without_money() -> None:
    n = TerminalNormalizer("EUR")
    drafts = n.feed(read(bets=5000, wins=4000, rounds=10, cash_in=9000))
    assert [d.type for d in drafts] == ["device.status"]
    data = drafts[0].data
    assert data["status"] == "baseline" and data["device_kind"] == "terminal" and data["online"] is True
    assert data["enabled"] is True and data["in_service"] is True and data["error_code"] == 0
    assert total(drafts) == ZERO


def test_each_counter_maps_to_its_event() -> None:
    n = TerminalNormalizer("EUR")
    n.feed(read())
    drafts = n.feed(read(bets=300, wins=250, rounds=3, cash_in=1000, cash_out=400, tickets_in=500, tickets_out=700))
    by_type = {d.type: d.data for d in drafts}
    assert by_type["game.bet"] == {"amount": 300, "currency": "EUR", "source": "counters"}
    assert by_type["game.win"] == {"amount": 250, "currency": "EUR", "paid_by": "terminal", "source": "counters"}
    assert by_type["game.ended"] == {"rounds": 3, "source": "counters"}
    assert by_type["bill.accepted"] == {"amount": 1000, "currency": "EUR", "medium": "cash", "source": "counters"}
    assert by_type["ticket.redeemed"] == {"amount": 500, "currency": "EUR", "source": "counters"}
    assert by_type["transfer"] == {"amount": 400, "currency": "EUR", "direction": "out", "method": "cash",
                                   "source": "counters"}
    assert by_type["ticket.printed"] == {"amount": 700, "currency": "EUR", "source": "counters"}
    assert total(drafts) == Contribution(bets=300, wins=250, rounds=3, cash_in=1500, cash_out=1100)
    assert n.feed(read(bets=300, wins=250, rounds=3, cash_in=1000, cash_out=400, tickets_in=500,
                       tickets_out=700)) == []


def test_random_walk_sums_exactly_to_the_counter_movement() -> None:
    rng = random.Random(7)
    n = TerminalNormalizer("EUR")
    counters = {k: rng.randrange(0, 1 << 31) for k in ("bets", "wins", "rounds", "cash_in", "cash_out",
                                                      "tickets_in", "tickets_out")}
    first = dict(counters)
    n.feed(read(**counters))
    got = ZERO
    for _ in range(300):
        for k in counters:
            if rng.random() < 0.4:
                counters[k] += rng.randrange(0, 5000)
        got = got + total(n.feed(read(**counters)))
    assert got == movement(first, counters)


def test_wrap_is_counted_normally() -> None:
    n = TerminalNormalizer("EUR")
    top = (1 << 32) - 1
    n.feed(read(bets=top - 99, rounds=top))
    drafts = n.feed(read(bets=50, rounds=1))
    assert total(drafts) == Contribution(bets=150, rounds=2)
    assert not any(d.type == "integration" for d in drafts)


def test_reset_is_recorded_and_counts_the_new_value() -> None:
    n = TerminalNormalizer("EUR")
    n.feed(read(bets=1_000_000, wins=500_000))
    drafts = n.feed(read(bets=300, wins=500_100))
    resets = [d.data for d in drafts if d.type == "integration"]
    assert resets == [{"kind": "counter_reset", "counter": "bets", "previous": 1_000_000, "current": 300}]
    assert total(drafts) == Contribution(bets=300, wins=100)
    # back to zero: a reset with nothing to count, never a negative amount
    drafts = n.feed(read(bets=0, wins=500_100))
    assert total(drafts) == ZERO and [d.data["kind"] for d in drafts] == ["counter_reset"]


def test_status_door_and_error_changes() -> None:
    n = TerminalNormalizer("EUR")
    n.feed(read())
    door = BASE_STATUS | 1 << STATUS_BITS["door_open"]
    drafts = n.feed(read(status=door))
    assert [(d.type, d.data) for d in drafts] == [("device.door", {"door": "main", "open": True})]
    drafts = n.feed(read(status=BASE_STATUS))
    assert [d.data["open"] for d in drafts if d.type == "device.door"] == [False]
    err = BASE_STATUS | 1 << STATUS_BITS["error"]
    drafts = n.feed(read(status=err, error_code=42))
    types = [d.type for d in drafts]
    assert types == ["device.status", "game.error"]
    assert drafts[0].data["error_code"] == 42 and drafts[0].data["error"] is True
    assert drafts[1].data == {"error_code": 42, "category": "terminal", "error": True}
    assert n.feed(read(status=err, error_code=42)) == []
    drafts = n.feed(read(status=BASE_STATUS & ~1, error_code=0))   # cleared, and disabled by the host
    assert [d.type for d in drafts] == ["device.status"]
    assert drafts[0].data["enabled"] is False and drafts[0].data["error_code"] == 0
    for d in drafts:
        check_event_data(d.type, d.data)


def test_link_and_command_facts() -> None:
    n = TerminalNormalizer("EUR")
    base = {"device": DEV, "unit": 1, "mono": 1.0, "wall": 1_700_000_000.5}
    up = n.feed(TerminalLinkUp(**base, reason="connect"))
    down = n.feed(TerminalLinkDown(**base, missed=3, reason="unreachable", detail="refused", last_seen_wall=None))
    cmd = n.feed(TerminalCommandResult(**base, action="disable_machine", acked=True))
    assert up[0].data == {"status": "online", "online": True, "reason": "connect", "device_kind": "terminal"}
    assert down[0].type == "device.status" and down[0].data["online"] is False and down[0].data["missed_polls"] == 3
    assert cmd[0].type == "integration" and cmd[0].data["kind"] == "response" and cmd[0].data["acked"] is True
    for d in up + down + cmd:
        check_event_data(d.type, d.data)


def test_checkpoint_round_trip() -> None:
    n = TerminalNormalizer("EUR")
    n.feed(read(bets=10, wins=5, rounds=1, error_code=3))
    cps = n.take_checkpoints()
    assert list(cps) == [DEV]
    assert n.take_checkpoints() == {}            # nothing changed since
    n.feed(read(bets=10, wins=5, rounds=1, error_code=3))
    assert n.take_checkpoints() == {}            # same reading: no state change, no checkpoint
    state = load_state(DEV, cps[DEV])
    assert state.counters is not None and state.counters["bets"] == 10 and state.error_code == 3
    assert load_state(DEV, dump_state(state)) == state


def test_crash_restore_counts_uncommitted_readings_exactly_once() -> None:
    """The outbox commits drafts and checkpoints together; a crash loses both of an append."""
    committed: list[EventDraft] = []
    checkpoints: dict[str, bytes] = {}
    n = TerminalNormalizer("EUR")
    values = {"bets": 1000, "wins": 0, "rounds": 0, "cash_in": 0}
    first = dict(values)

    def step(norm: TerminalNormalizer, commit: bool) -> None:
        for k, inc in (("bets", 200), ("wins", 150), ("rounds", 2), ("cash_in", 500)):
            values[k] += inc
        drafts = norm.feed(read(**values))
        cps = norm.take_checkpoints()
        if commit:
            committed.extend(drafts)
            checkpoints.update(cps)

    n.feed(read(**values))
    checkpoints.update(n.take_checkpoints())
    for _ in range(3):
        step(n, commit=True)
    step(n, commit=False)            # read, fed, but the append never committed: SIGKILL
    step(n, commit=False)
    n2 = TerminalNormalizer("EUR")
    assert n2.restore(checkpoints) == []
    for _ in range(2):
        step(n2, commit=True)
    assert total(committed) == movement(first, values)


def test_restore_never_raises_and_unreadable_starts_afresh() -> None:
    n = TerminalNormalizer("EUR")
    bad = {"term-a": b"garbage", "term-b": b'{"v": 9, "kind": "terminal"}',
           "term-c": b'{"v": 1, "kind": "terminal", "counters": {"bets": 1.5}}',
           "term-d": dump_state(load_state("term-d", b'{"v": 1, "kind": "terminal", "counters": {"bets": 7}}'))}
    assert sorted(n.restore(bad)) == ["term-a", "term-b", "term-c"]
    assert n.restore(None) == []   # type: ignore[arg-type]
    drafts = n.feed(read(device="term-a", bets=99))
    assert [d.data["status"] for d in drafts] == ["baseline"]
    assert total(n.feed(read(device="term-d", bets=10))) == Contribution(bets=3)


@pytest.mark.parametrize("currency", ["eur", "EURO", ""])
def test_currency_is_checked(currency: str) -> None:
    with pytest.raises(ValueError):
        TerminalNormalizer(currency)
