"""The audit trail's vocabulary: who acted, on what target, and which targets a hall-scoped key may see.

Every change made through the HTTP API or the CLI appends one :class:`~central.repos.AuditEntry`
(``Store.add_audit``). This module keeps the conventions in one place so that the entries written by
different features read alike and the hall-scope rule of ``GET /audit`` has one definition:

* **actor** — the API key id for the HTTP API (never the key itself), ``cli:<OS user>`` for the
  command line (:func:`cli_actor`); other writers use their own prefix (``rule:<id>``…).
* **target** — a path naming what changed. A target that belongs to one hall starts with
  ``hall/<hall id>`` (``hall/A``, ``hall/A/device/egm-001``); targets that belong to no single hall
  start with something else (``apikey/<id>``, ``catalog/game/<id>``).
* **scope rule** — a key limited to some halls sees exactly the entries whose target is ``hall/<H>`` or
  lies under ``hall/<H>/`` for one of its halls (:func:`target_hall`). Network-wide targets (API keys,
  the catalog) are not shown to it: they are changes outside its halls, and showing an ``apikey``
  entry would reveal other keys' scopes. An unscoped key sees everything.
* **before/after** — JSON-able snapshots of the state (None when it did not exist / no longer exists).
  Secrets never go in: an API key is recorded by id, role and halls; a public key by fingerprint.
"""

from __future__ import annotations

import getpass
from collections.abc import Sequence
from typing import Any, Final

from central.repos.audit import AuditEntry, AuditRepository
from central.repos.halls import ApiKeyRecord
from protocols.sync import Command

HALL_PREFIX: Final = "hall/"


def cli_actor() -> str:
    """``cli:<user>`` for the OS user running the command (``cli:unknown`` if the OS cannot say)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry and no LOGNAME/USER (e.g. a bare container)
        user = "unknown"
    return f"cli:{user}"


def hall_target(hall: str) -> str:
    return f"{HALL_PREFIX}{hall}"


def device_target(hall: str, device: str) -> str:
    return f"{HALL_PREFIX}{hall}/device/{device}"


def apikey_target(key_id: str) -> str:
    return f"apikey/{key_id}"


def target_hall(target: str) -> str | None:
    """The hall a target belongs to (``hall/A/device/x`` → ``A``), or None for a network-wide target."""
    if not target.startswith(HALL_PREFIX):
        return None
    hall = target[len(HALL_PREFIX):].split("/", 1)[0]
    return hall or None


def command_snapshot(command: Command, created_by: str) -> dict[str, Any]:
    """A command as the audit records it when created: what was asked, of whom, valid until when.

    Its later status (sent, applied…) is the hall's answer, not a change someone made: it is in
    ``GET /commands/{id}`` and the integration log, not here."""
    return {"id": command.id, "hall": command.hall, "device": command.device, "action": command.action,
            "game": command.game, "params": dict(command.params), "issued_at": command.issued_at,
            "expires_at": command.expires_at, "created_by": created_by}


async def record(audit: AuditRepository, *, time: int, actor: str, action: str, target: str, before: Any = None,
                 after: Any = None) -> int:
    """Append one audit entry; returns its id."""
    return await audit.add_audit(AuditEntry(time=time, actor=actor, action=action, target=target, before=before,
                                            after=after))


async def hall_added(audit: AuditRepository, *, actor: str, time: int, hall: str, outcome: str,
                     old_fingerprint: str | None,
                     new_fingerprint: str) -> int | None:
    """The entry for ``halls add``: ``hall.add`` or ``hall.key.replace`` (before = the old key's
    fingerprint); None and no entry when nothing changed (``unchanged``)."""
    if outcome == "unchanged":
        return None
    action = "hall.key.replace" if outcome == "replaced" else "hall.add"
    before = {"hall": hall, "fingerprint": old_fingerprint} if outcome == "replaced" else None
    return await record(audit, time=time, actor=actor, action=action, target=hall_target(hall), before=before,
                        after={"hall": hall, "fingerprint": new_fingerprint})


async def apikey_created(audit: AuditRepository, *, actor: str, time: int, key_id: str, role: str,
                         halls: Sequence[str] | None, name: str | None = None, expires_at: int | None = None) -> int:
    """The entry for a new API key: its id, name, role, halls and expiry — never the key or its hash."""
    return await record(audit, time=time, actor=actor, action="apikey.create", target=apikey_target(key_id),
                        after={"id": key_id, "name": name, "role": role,
                               "halls": None if halls is None else list(halls), "expires_at": expires_at})


def _key_snapshot(key: ApiKeyRecord) -> dict[str, Any]:
    return {"id": key.id, "name": key.name, "role": key.role, "halls": None if key.halls is None else list(key.halls),
            "expires_at": key.expires_at, "revoked_at": key.revoked_at}


async def apikey_revoked(audit: AuditRepository, *, actor: str, time: int, before: ApiKeyRecord) -> int:
    """Who revoked which key when (the key's snapshot before and after; never its hash)."""
    after = {**_key_snapshot(before), "revoked_at": time}
    return await record(audit, time=time, actor=actor, action="apikey.revoke", target=apikey_target(before.id),
                        before=_key_snapshot(before), after=after)


async def apikey_rotated(audit: AuditRepository, *, actor: str, time: int, before: ApiKeyRecord) -> int:
    """A key given a new secret: the same snapshot before and after (the secret is never recorded)."""
    return await record(audit, time=time, actor=actor, action="apikey.rotate", target=apikey_target(before.id),
                        before=_key_snapshot(before), after={**_key_snapshot(before), "rotated_at": time})
