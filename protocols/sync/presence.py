"""Agent presence: the retained status message, also registered as the agent's MQTT last will.

Signed with the hall's key (a :class:`~.envelope.SignedKind` like commands and acks), because central
orders statuses by ``session`` and trusts the highest: an unsigned ``{"online":false,"session":2^63-1}``
on an open broker (or one whose ACL slipped) would pin the hall "offline" for good, however often its
agent reconnects. The offline status is published by the *broker* when the agent vanishes, but the agent
builds (and so signs) it at connect time, so the will is as genuine as any other status.

The signature proves the hall said it, not when: a recorded genuine status can be replayed. That is
what ``session`` is for: it grows by one per connection (like Sparkplug's ``bdSeq``), and central
accepts only a newer session, or the offline end of the current one (see
``central.repos.halls.HallRepository.set_presence``), so a replayed status of an earlier connection changes
nothing. Central also refuses a session more than :data:`MAX_SESSION_JUMP` above the last one it
accepted (see its docstring). Status never moves money: central uses it for the online/offline display
and alerts only.
"""

from __future__ import annotations

from typing import Final

import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .canonical import strict_decode
from .envelope import SignedKind
from .errors import BadSignature, Malformed, SyncError
from .fields import HallId, Micros, SeqOrZero, Version

MAX_SESSION_JUMP: Final = 1_000_000
"""Central refuses a status whose session is more than this above the last one it accepted for the hall.

An agent adds one per MQTT connection, so a million is a link flapping once a second for eleven days
with central hearing none of it: beyond any real outage, while still a negligible step towards the
counter's end (2^63), so even a status signed by mistake (a corrupted counter file) cannot push the
hall's session out of its agent's reach in one message. The refusal is logged, so the cause is looked at.
"""


class Status(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``online`` of ``hall`` as of ``at``; ``session`` counts the agent's connections."""

    v: Version
    hall: HallId
    online: bool
    session: SeqOrZero
    at: Micros


STATUS: Final = SignedKind("status", Status)
_UNSIGNED = msgspec.json.Decoder(Status)


def encode_status(status: Status, hall_key: Ed25519PrivateKey) -> bytes:
    """Sign and encode a status (agent side; validated as a receiver would)."""
    return STATUS.encode(status, hall_key)


def decode_status(payload: bytes, hall_key: Ed25519PublicKey, *, expect_hall: str | None = None) -> Status:
    """Decode and verify a status with the registered key of ``expect_hall`` (the hall named by its topic).

    A bare, unsigned status (the form before presence was signed, and the form of the forgery this
    prevents) raises :class:`BadSignature`, not :class:`Malformed`: it is refused as ``rejected``.
    """
    try:
        return STATUS.decode(payload, hall_key, expect_hall)
    except Malformed:
        if not _is_unsigned_status(payload):
            raise
    raise BadSignature("status: unsigned (a status must be signed with the hall key)")


def _is_unsigned_status(payload: bytes) -> bool:
    try:
        strict_decode(payload, _UNSIGNED, "status")
    except SyncError:
        return False
    return True
