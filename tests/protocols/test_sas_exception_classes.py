"""The one classification of SAS exception codes (issue 15) keeps what the agent did before it existed:
the sets below are the ones the coordinator and the normalizer spelt out on their own, pinned here so
a change to the table is a deliberate one."""

from __future__ import annotations

from protocols.sas.exceptions import (
    CLASSIFICATION,
    DOOR_CODES,
    EXCEPTION_NAMES,
    FAULT_CATEGORIES,
    ExceptionCode,
    Significance,
    codes_with,
    significance,
)


def test_the_meters_are_read_after_doors_power_resets_service_handpay_and_tickets() -> None:
    assert codes_with(Significance.READ_METERS) == frozenset(DOOR_CODES) | {
        0x17, 0x18, 0x31, 0x32, 0x33, 0x3A, 0x3C, 0x3D, 0x51, 0x52, 0x7A, 0x82, 0x83, 0x84, 0x85, 0x86, 0xA2}


def test_noise_resets_and_faults_are_the_normalizers_former_sets() -> None:
    assert codes_with(Significance.NOISE) == {0x00, 0x1F, 0x87, 0x88, 0x89, 0x8A, 0x8B}
    assert codes_with(Significance.METERS_RESET) == {0x3A, 0x7A}
    assert codes_with(Significance.FAULT) == set(FAULT_CATEGORIES)
    assert FAULT_CATEGORIES[0x20] == "tilt" and FAULT_CATEGORIES[0x61] == "printer"


def test_every_classified_code_is_a_known_exception_and_no_flagless_entry_exists() -> None:
    assert set(CLASSIFICATION) <= set(EXCEPTION_NAMES)
    assert all(flags != Significance.NONE for flags in CLASSIFICATION.values())
    assert significance(0x7F) == Significance.NONE   # game ended: a game event, not a condition
    assert Significance.HANDPAY in significance(0x51) and Significance.READ_METERS in significance(0x51)


def test_the_enum_names_every_known_code_and_keys_the_classification() -> None:
    assert {int(code) for code in ExceptionCode} == set(EXCEPTION_NAMES)
    assert all(type(code) is ExceptionCode for code in CLASSIFICATION)
    assert ExceptionCode.HANDPAY_PENDING == 0x51 and f"{ExceptionCode.HANDPAY_PENDING:02X}" == "51"
    assert 0x51 in codes_with(Significance.HANDPAY)   # an int off the wire finds its member
