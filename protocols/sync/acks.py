"""Central → agent delivery control: acks (events are durably stored) and resend requests (gaps).

Both are signed by central, because an ack lets the agent prune its outbox: a forged ack would be
a way to make a hall forget money events.
"""

from __future__ import annotations

from typing import Final

import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .envelope import SignedKind
from .errors import Malformed
from .fields import HallId, Micros, Seq, SeqOrZero, Sha256Hex, Text, Version

_S = {"frozen": True, "kw_only": True, "forbid_unknown_fields": True}


class Ack(msgspec.Struct, **_S):
    """Everything up to and including ``acked_through_seq`` is committed at HQ; ``last_hash`` is its hash.

    The hash lets the agent confirm central holds *its* chain, not merely the same seq numbers.
    """

    v: Version
    hall: HallId
    acked_through_seq: SeqOrZero
    last_hash: Sha256Hex
    created_at: Micros


class ResendRequest(msgspec.Struct, **_S):
    """Central asks the agent to publish seq ``from_seq``..``to_seq`` (inclusive) again."""

    v: Version
    hall: HallId
    from_seq: Seq
    to_seq: Seq
    reason: Text
    created_at: Micros


def _check_resend(request: ResendRequest) -> None:
    if request.from_seq > request.to_seq:
        raise Malformed(f"resend: from_seq {request.from_seq} > to_seq {request.to_seq}")


ACK: Final = SignedKind("ack", Ack)
RESEND: Final = SignedKind("resend", ResendRequest, _check_resend)


def encode_ack(ack: Ack, central_key: Ed25519PrivateKey) -> bytes:
    """Sign and encode an ack (central side)."""
    return ACK.encode(ack, central_key)


def decode_ack(payload: bytes, central_key: Ed25519PublicKey, *, expect_hall: str | None = None) -> Ack:
    """Decode and verify an ack (agent side); ``expect_hall`` is the agent's own hall."""
    return ACK.decode(payload, central_key, expect_hall)


def encode_resend(request: ResendRequest, central_key: Ed25519PrivateKey) -> bytes:
    """Sign and encode a resend request (central side)."""
    return RESEND.encode(request, central_key)


def decode_resend(
    payload: bytes, central_key: Ed25519PublicKey, *, expect_hall: str | None = None
) -> ResendRequest:
    """Decode and verify a resend request (agent side)."""
    return RESEND.decode(payload, central_key, expect_hall)
