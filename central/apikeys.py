"""API keys: ``hsk_<id>_<secret>``; central stores the id and SHA-256 of the secret, never the key.

The id (8 random bytes, hex) is the primary key of the record, so checking a presented key is one
indexed lookup plus a constant-time comparison. The secret is 32 random bytes (256 bits), so a fast
hash is enough: there is nothing to brute-force that a slow KDF would protect (unlike passwords).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Sequence
from typing import Final

from protocols.sync import check_hall_id

from .store.base import ROLES, ApiKeyRecord, Store

PREFIX: Final = "hsk"
HALL_BOUND_ROLES: Final = frozenset({"technician"})
"""Roles whose keys must name their halls: design.md gives a technician "devices and diagnostics of
its halls", so a network-wide technician key would read every hall's floor and integration log."""
_KEY_RE: Final = re.compile(r"hsk_([0-9a-f]{16})_([A-Za-z0-9_-]{43})\Z")


def hash_secret(secret: str) -> str:
    """SHA-256 hex of the secret part of a key."""
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


def new_key(role: str, halls: Sequence[str] | None, *, now: int) -> tuple[str, ApiKeyRecord]:
    """A fresh key (shown once) and the record to store for it. Validates role and hall IDs."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    scope = None if halls is None else tuple(check_hall_id(h) for h in halls)
    if role in HALL_BOUND_ROLES and not scope:
        raise ValueError(f"a {role} key needs its halls (--halls H1,H2): a {role} reads the devices and "
                         "diagnostics of its halls only")
    key_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    record = ApiKeyRecord(id=key_id, role=role, secret_hash=hash_secret(secret), halls=scope, created_at=now)
    return f"{PREFIX}_{key_id}_{secret}", record


async def create_api_key(store: Store, role: str, halls: Sequence[str] | None, *, now: int) -> tuple[str, str]:
    """Create and store a key; returns (key id, the key). The key is not recoverable afterwards."""
    key, record = new_key(role, halls, now=now)
    await store.add_api_key(record)
    return record.id, key


async def authenticate(store: Store, presented: str) -> ApiKeyRecord | None:
    """The record of a presented key, or None (unknown id, wrong secret or malformed key)."""
    found = _KEY_RE.match(presented)
    if found is None:
        return None
    record = await store.api_key(found.group(1))
    if record is None or not hmac.compare_digest(record.secret_hash, hash_secret(found.group(2))):
        return None
    return record
