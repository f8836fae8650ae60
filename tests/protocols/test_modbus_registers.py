"""The terminal register map: word order, round trips, bad registers, counter wrap versus reset."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols.modbus import HALLSYNC_TERMINAL_V1 as MAP
from protocols.modbus import counter_delta, decode, encode
from protocols.modbus.registers import RegisterError

COUNTERS = [f.name for f in MAP.counters]


def test_map_is_twenty_holding_registers_from_zero_without_overlaps() -> None:
    assert MAP.start == 0 and MAP.span >= 20
    used: list[int] = []
    for f in MAP.fields:
        used.extend(range(f.address, f.address + f.words))
    assert len(used) == len(set(used)) and max(used) < MAP.span
    assert COUNTERS == ["bets", "wins", "rounds", "cash_in", "cash_out", "tickets_in", "tickets_out"]


def test_32_bit_counters_are_high_word_first() -> None:
    words = encode(MAP, {"bets": 0x0001_0002, "status": 0b1011})
    assert words[4:6] == [0x0001, 0x0002]
    reading = decode(MAP, words)
    assert reading["bets"] == 65538
    assert reading.flags == {"enabled": True, "in_service": True, "door_open": False, "error": True,
                             "paper_low": False}
    assert reading["map_version"] == 1


@given(st.dictionaries(st.sampled_from(COUNTERS), st.integers(0, 2**32 - 1)))
def test_round_trip(values: dict[str, int]) -> None:
    reading = decode(MAP, encode(MAP, values))
    assert {k: reading[k] for k in values} == values


@pytest.mark.parametrize("registers", [[0] * 19, [0] * 19 + [70000], [0] * 19 + [-1], [0] * 19 + [2]])
def test_bad_registers_are_a_clear_error(registers: list[int]) -> None:
    with pytest.raises(RegisterError):
        decode(MAP, registers)


def test_counter_delta_wrap_reset_and_growth() -> None:
    assert counter_delta(100, 250).amount == 150
    wrapped = counter_delta(2**32 - 10, 5)
    assert (wrapped.amount, wrapped.wrapped, wrapped.reset) == (15, True, False)
    reset = counter_delta(5_000_000, 1_200)
    assert (reset.amount, reset.wrapped, reset.reset) == (1_200, False, True)
    assert counter_delta(7, 7).amount == 0
    with pytest.raises(RegisterError):
        counter_delta(-1, 3)


@given(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1))
def test_counter_delta_is_never_negative(previous: int, current: int) -> None:
    assert counter_delta(previous, current).amount >= 0


def test_a_second_vendor_is_a_new_table_not_new_code() -> None:
    """Another layout (other addresses, low word first, no map-version register) decodes with the same code."""
    from protocols.modbus import Field, RegisterMap

    other = RegisterMap(vendor="acme", name="kiosk", version=3, start=100, span=8, word_order="low_first",
                        fields=(Field("status", 100, 1, "status"), Field("bets", 101, 2, "counter", "minor"),
                                Field("wins", 103, 2, "counter", "minor"), Field("rounds", 105, 2, "counter", "count"),
                                Field("error_code", 107, 1, "code")))
    words = [0b11, 0x0002, 0x0001, 5, 0, 9, 0, 0]
    reading = decode(other, words)
    assert (reading["bets"], reading["wins"], reading["rounds"]) == (0x0001_0002, 5, 9)
    assert reading.flags["enabled"] and reading.flags["in_service"] and not reading.flags["door_open"]
    assert encode(other, {"bets": 0x0001_0002, "wins": 5, "rounds": 9, "status": 3}) == words
    assert [f.name for f in other.counters] == ["bets", "wins", "rounds"]
