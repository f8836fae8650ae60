"""The signed envelope shared by acks, resend requests, commands and command results.

Wire form: ``{"body":{...},"sig":"<128 hex>"}``; the signature covers the canonical bytes of
``body`` under a per-kind context (see :func:`canonical.signing_input`). Bodies built in Python are
validated by decoding their own canonical bytes, so a sender cannot emit what a receiver refuses.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar, cast

import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .canonical import canonical_bytes, strict_decode
from .errors import HallMismatch
from .fields import SignatureHex
from .signing import sign, verify

B = TypeVar("B", bound=msgspec.Struct)


class Signed(msgspec.Struct, Generic[B], frozen=True, forbid_unknown_fields=True):
    """A body and the hex Ed25519 signature over its canonical bytes."""

    body: B
    sig: SignatureHex


class SignedKind(Generic[B]):
    """Encoder/decoder for one message kind: its body type, signing context and extra rules."""

    def __init__(self, context: str, body_type: type[B], check: Callable[[B], None] | None = None) -> None:
        self.context = context
        self._check = check
        self._body_decoder = msgspec.json.Decoder(body_type)
        # Signed[body_type] is a type made at run time, which a type checker cannot spell: cast to Any.
        self._decoder: msgspec.json.Decoder[Signed[B]] = msgspec.json.Decoder(cast(Any, Signed)[body_type])

    def encode(self, body: B, key: Ed25519PrivateKey) -> bytes:
        """Validate ``body`` as a receiver would, sign it, and return the envelope bytes."""
        body_bytes = canonical_bytes(body)
        checked = strict_decode(body_bytes, self._body_decoder, self.context)
        if self._check is not None:
            self._check(checked)
        return canonical_bytes(Signed(body=body, sig=sign(self.context, body_bytes, key)))

    def decode(self, payload: bytes, key: Ed25519PublicKey, expect_hall: str | None = None) -> B:
        """Strictly decode, check the hall the caller expects, verify the signature; return the body."""
        envelope: Signed[B] = strict_decode(payload, self._decoder, self.context)
        body = envelope.body
        if self._check is not None:
            self._check(body)
        hall = getattr(body, "hall", None)
        if expect_hall is not None and hall != expect_hall:
            raise HallMismatch(f"{self.context} names hall {hall!r} but arrived for {expect_hall!r}")
        verify(self.context, canonical_bytes(body), envelope.sig, key)
        return body
