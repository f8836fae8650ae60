"""Ed25519 key helpers: PEM in and out of bytes (callers do the file I/O) and log fingerprints.

Private keys are PKCS#8 PEM without encryption (the agent's key file is protected by mode 0600);
public keys are SubjectPublicKeyInfo PEM, the form ``hall-central halls add --public-key`` takes.
"""

from __future__ import annotations

import hashlib

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from .errors import InvalidKey

__all__ = [
    "Ed25519PrivateKey", "Ed25519PublicKey", "fingerprint", "generate_private_key", "private_key_from_pem",
    "private_key_to_pem", "public_key_from_pem", "public_key_to_pem",
]


def generate_private_key() -> Ed25519PrivateKey:
    """A fresh Ed25519 key (from the OS CSPRNG)."""
    return Ed25519PrivateKey.generate()


def private_key_to_pem(key: Ed25519PrivateKey) -> bytes:
    """PKCS#8 PEM, unencrypted."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def public_key_to_pem(key: Ed25519PublicKey) -> bytes:
    """SubjectPublicKeyInfo PEM."""
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def private_key_from_pem(pem: bytes) -> Ed25519PrivateKey:
    """Load a PKCS#8 PEM private key; anything else (RSA, encrypted, garbage) is :class:`InvalidKey`."""
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:  # wrong format, encrypted, unsupported algorithm
        raise InvalidKey(f"not an unencrypted PEM private key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise InvalidKey(f"expected an Ed25519 private key, got {type(key).__name__}")
    return key


def public_key_from_pem(pem: bytes) -> Ed25519PublicKey:
    """Load a SubjectPublicKeyInfo PEM public key; anything else is :class:`InvalidKey`."""
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError) as exc:
        raise InvalidKey(f"not a PEM public key: {exc}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise InvalidKey(f"expected an Ed25519 public key, got {type(key).__name__}")
    return key


def fingerprint(key: Ed25519PublicKey | Ed25519PrivateKey) -> str:
    """``ed25519:`` + the first 16 hex digits of SHA-256 over the raw 32-byte public key.

    Short enough for log lines, long enough (64 bits) that two registered halls never collide by
    accident; it identifies a key, it does not authenticate one.
    """
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "ed25519:" + hashlib.sha256(raw).hexdigest()[:16]
