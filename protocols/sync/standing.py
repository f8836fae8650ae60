"""Standing data, HQ → hall: what HQ owns and a hall must obey even while offline (design.md).

One document per hall, signed by central, versioned: central publishes it retained on
``hallsync/v1/halls/{hall}/standing`` whenever it changes and again when the hall's agent connects;
the agent verifies it, refuses a version older than the one it holds (a replayed or stale retained
message must not turn a hall's day back), keeps the last verified document on disk and applies it.
It carries the hall's gaming day (time zone and day start: the agent's day-close snapshot
and central's reports then use one and the same day); later money issues add their settings as new
optional fields of the same document, so the version stays one counter per hall.
"""

from __future__ import annotations

from typing import Final

import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .envelope import SignedKind
from .errors import Malformed
from .fields import HallId, Micros, SeqOrZero, Version
from .gamingday import DayRule, DayRuleError

_S = {"frozen": True, "kw_only": True, "forbid_unknown_fields": True}


class StandingData(msgspec.Struct, **_S):
    """A hall's standing data; ``version`` is central's ``settings_version`` of the hall."""

    v: Version
    hall: HallId
    version: SeqOrZero
    issued_at: Micros
    timezone: str
    gaming_day_start: str

    @property
    def day_rule(self) -> DayRule:
        return DayRule(self.timezone, self.gaming_day_start)


def _check(doc: StandingData) -> None:
    try:
        doc.day_rule  # noqa: B018 - validates the zone and the start
    except DayRuleError as exc:
        raise Malformed(f"standing data: {exc}") from None


STANDING: Final = SignedKind("standing", StandingData, _check)


def encode_standing(doc: StandingData, central_key: Ed25519PrivateKey) -> bytes:
    """Sign and encode a hall's standing data (central side)."""
    return STANDING.encode(doc, central_key)


def decode_standing(payload: bytes, central_key: Ed25519PublicKey, *, expect_hall: str | None = None) -> StandingData:
    """Decode and verify standing data (agent side); ``expect_hall`` is the agent's own hall."""
    return STANDING.decode(payload, central_key, expect_hall)
