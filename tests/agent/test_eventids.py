"""The outbox's event IDs: random version-4 UUIDs in the lower-case hyphenated form the protocol takes."""

from __future__ import annotations

import uuid

from agent.outbox.eventids import new_event_ids
from protocols.sync.fields import UUID_RE


def test_ids_are_fresh_version_4_uuids_in_canonical_form() -> None:
    ids = new_event_ids(20_000) + new_event_ids(1)
    assert len(set(ids)) == len(ids) == 20_001
    for text in ids:
        parsed = uuid.UUID(text)
        assert UUID_RE.match(text) and str(parsed) == text
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122
    assert new_event_ids(0) == []


def test_every_random_bit_varies() -> None:
    """122 random bits: across many IDs each position that is not the version or variant takes both values."""
    ints = [uuid.UUID(text).int for text in new_event_ids(2000)]
    fixed = (0xF << 76) | (0x3 << 62)   # the version nibble and the variant's two high bits
    varied = 0
    for value in ints:
        varied |= value ^ ints[0]
    assert varied == ((1 << 128) - 1) & ~fixed
