"""Agent presence: the retained status message, also registered as the agent's MQTT last will.

Unsigned on purpose: the offline status is published by the *broker* when the agent vanishes,
built at connect time, so a signature would only prove the agent once connected. Who may publish
on a hall's status topic is the broker ACL's job, and status never moves money: central only uses
it for the online/offline display and alerts, and the ``session`` counter (incremented per
connection, like Sparkplug's ``bdSeq``) lets it ignore a stale will arriving after a reconnect.
"""

from __future__ import annotations

import msgspec

from .canonical import canonical_bytes, strict_decode
from .errors import HallMismatch
from .fields import HallId, Micros, SeqOrZero, Version


class Status(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``online`` of ``hall`` as of ``at``; ``session`` counts the agent's connections."""

    v: Version
    hall: HallId
    online: bool
    session: SeqOrZero
    at: Micros


_DECODER = msgspec.json.Decoder(Status)


def encode_status(status: Status) -> bytes:
    """Canonical bytes of a status (validated as a receiver would)."""
    raw = canonical_bytes(status)
    strict_decode(raw, _DECODER, "status")
    return raw


def decode_status(payload: bytes, *, expect_hall: str | None = None) -> Status:
    """Strictly decode a status; ``expect_hall`` is the hall named by the topic it arrived on."""
    status = strict_decode(payload, _DECODER, "status")
    if expect_hall is not None and status.hall != expect_hall:
        raise HallMismatch(f"status names hall {status.hall!r} but arrived for {expect_hall!r}")
    return status
