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

from central.repos.halls import ROLES, ApiKeyRecord, HallRepository
from protocols.sync import check_hall_id

PREFIX: Final = "hsk"
HALL_BOUND_ROLES: Final = frozenset({"technician"})
"""Roles whose keys must name their halls: design.md gives a technician "devices and diagnostics of
its halls", so a network-wide technician key would read every hall's floor and integration log."""
_KEY_RE: Final = re.compile(r"hsk_([0-9a-f]{16})_([A-Za-z0-9_-]{43})\Z")


def hash_secret(secret: str) -> str:
    """SHA-256 hex of the secret part of a key."""
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


MAX_NAME: Final = 100
_DURATION_RE: Final = re.compile(r"([1-9][0-9]{0,4})([hdw])\Z")
_UNIT_US: Final = {"h": 3_600_000_000, "d": 86_400_000_000, "w": 7 * 86_400_000_000}


def check_name(name: str | None) -> str | None:
    """A key's owner name, trimmed: printable, at most :data:`MAX_NAME` characters; None or "" → None."""
    if name is None or not name.strip():
        return None
    name = " ".join(name.split())
    if len(name) > MAX_NAME or not name.isprintable():
        raise ValueError(f"a key's name must be printable and at most {MAX_NAME} characters")
    return name


def parse_expiry(text: str | None, *, now: int) -> int | None:
    """``--expires``: a lifetime (``12h``, ``90d``, ``4w``) from ``now``, or None for a key that does not
    expire. Why no dates: a lifetime means the same in every time zone and cannot be in the past."""
    if text is None or text == "":
        return None
    found = _DURATION_RE.match(text.strip())
    if found is None:
        raise ValueError(f"--expires must be a lifetime like 12h, 90d or 4w, not {text!r}")
    return now + int(found.group(1)) * _UNIT_US[found.group(2)]


def new_key(role: str, halls: Sequence[str] | None, *, now: int, name: str | None = None,
            expires_at: int | None = None) -> tuple[str, ApiKeyRecord]:
    """A fresh key (shown once) and the record to store for it. Validates role, halls, name and expiry."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    scope = None if halls is None else tuple(check_hall_id(h) for h in halls)
    if role in HALL_BOUND_ROLES and not scope:
        raise ValueError(f"a {role} key needs its halls (--halls H1,H2): a {role} reads the devices and "
                         "diagnostics of its halls only")
    if expires_at is not None and expires_at <= now:
        raise ValueError("a key's expiry must be in the future")
    key_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    record = ApiKeyRecord(id=key_id, role=role, secret_hash=hash_secret(secret), halls=scope, created_at=now,
                          name=check_name(name), expires_at=expires_at)
    return f"{PREFIX}_{key_id}_{secret}", record


async def create_api_key(keys: HallRepository, role: str, halls: Sequence[str] | None, *, now: int,
                         name: str | None = None, expires_at: int | None = None) -> tuple[str, str]:
    """Create and store a key; returns (key id, the key). The key is not recoverable afterwards."""
    key, record = new_key(role, halls, now=now, name=name, expires_at=expires_at)
    await keys.add_api_key(record)
    return record.id, key


class KeyNotFound(LookupError):
    """No key with that id (or, for rotate, none that can be rotated)."""


async def revoke_api_key(keys: HallRepository, key_id: str, *, now: int) -> ApiKeyRecord:
    """Revoke at once (a running central looks keys up on every request); the record as it was before.
    Revoking a revoked key keeps its first revocation time."""
    before = await keys.update_api_key(key_id, revoked_at=now)
    if before is None:
        raise KeyNotFound(f"no API key {key_id!r}")
    return before


async def rotate_api_key(keys: HallRepository, key_id: str, *, now: int) -> tuple[ApiKeyRecord, str]:
    """A new secret for the same id, role, halls, name and expiry (the audit trail stays one person's);
    the old secret is refused from now on. Returns (the record before, the new key)."""
    current = await keys.api_key(key_id)
    if current is None:
        raise KeyNotFound(f"no API key {key_id!r}")
    if current.state(now) != "active":
        raise KeyNotFound(f"API key {key_id} is {current.state(now)}: create a new key instead")
    secret = secrets.token_urlsafe(32)
    before = await keys.update_api_key(key_id, secret_hash=hash_secret(secret))
    assert before is not None
    return before, f"{PREFIX}_{key_id}_{secret}"


async def authenticate(keys: HallRepository, presented: str, *, now: int) -> ApiKeyRecord | None:
    """The record of a presented key, or None (unknown id, wrong secret, malformed, revoked or expired)."""
    found = _KEY_RE.match(presented)
    if found is None:
        return None
    record = await keys.api_key(found.group(1))
    if record is None or not hmac.compare_digest(record.secret_hash, hash_secret(found.group(2))):
        return None
    if record.state(now) != "active":
        return None
    return record
