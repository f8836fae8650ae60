"""SAS meter codes (Table C-7) and their names, as the agent and the simulator report them."""

from __future__ import annotations

METER_NAMES: dict[int, str] = {
    0x00: "coin_in", 0x01: "coin_out", 0x02: "jackpot", 0x03: "handpaid_cancelled_credits",
    0x04: "cancelled_credits", 0x05: "games_played", 0x06: "games_won", 0x07: "games_lost",
    0x08: "coin_acceptor_credits", 0x09: "hopper_paid_credits", 0x0A: "coins_to_drop",
    0x0B: "bills_accepted_credits", 0x0C: "current_credits", 0x0D: "ticket_in_cents",
    0x0E: "ticket_out_cents", 0x15: "ticket_in_credits", 0x16: "ticket_out_credits", 0x17: "electronic_in",
    0x18: "electronic_out", 0x1C: "machine_paid_paytable_win", 0x1D: "machine_paid_progressive_win",
    0x1E: "machine_paid_external_bonus", 0x24: "total_drop", 0x25: "games_since_power_reset",
    0x26: "games_since_door_closure", 0x7F: "theoretical_payback_hundredths",
    0xA0: "aft_cashable_in_cents", 0xA1: "aft_cashable_in_count", 0xB8: "aft_cashable_out_cents",
    0xB9: "aft_cashable_out_count",
}
METER_CODES: dict[str, int] = {name: code for code, name in METER_NAMES.items()}


def meter_name(code: int) -> str:
    return METER_NAMES.get(code, f"meter_{code:04x}")


# Units of the meters above: amounts in cents (dollar-type meters), counts, a percentage; every other
# meter is in credits of the accounting denomination (notes/sas-protocol.md §3.4).
CENT_METERS = frozenset({0x0D, 0x0E, 0xA0, 0xB8})
COUNT_METERS = frozenset({0x05, 0x06, 0x07, 0x25, 0x26, 0xA1, 0xB9})


def meter_unit(code: int) -> str:
    """``"cents"``, ``"count"``, ``"hundredths_percent"`` or ``"credits"``."""
    if code in CENT_METERS:
        return "cents"
    if code in COUNT_METERS:
        return "count"
    if code == 0x7F:
        return "hundredths_percent"
    return "credits"
