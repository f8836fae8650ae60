"""Ed25519 signing and verification of canonical bodies, with per-kind domain separation."""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .canonical import signing_input
from .errors import BadSignature


def sign(context: str, body: bytes, key: Ed25519PrivateKey) -> str:
    """Sign ``hallsync/v1/<context>`` LF ``body``; return the 64-byte signature as lower-case hex."""
    return key.sign(signing_input(context, body)).hex()


def verify(context: str, body: bytes, signature_hex: str, key: Ed25519PublicKey) -> None:
    """Raise :class:`BadSignature` unless ``signature_hex`` signs ``body`` under ``context`` and ``key``."""
    try:
        key.verify(bytes.fromhex(signature_hex), signing_input(context, body))
    except (InvalidSignature, ValueError):
        raise BadSignature(f"{context}: signature does not verify under the trusted key") from None
