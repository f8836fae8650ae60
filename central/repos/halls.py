"""Halls and API keys: the registered halls (their keys, chain state, presence, gaming day and
state) and the API keys of the HTTP API.

The records and the repository's interface are backend-neutral: each backend implements
:class:`HallRepository` with its own SQL (SQLite in :mod:`central.store`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Protocol, runtime_checkable

from protocols.sync.gamingday import DEFAULT_START, DEFAULT_ZONE, DayRule, day_rule

from .errors import StoreError

HALL_STATES: Final = ("active", "disabled", "removed")


ROLES: Final = ("admin", "operator", "technician", "viewer", "regulator")
"""API key roles (design.md, HTTP section)."""


class HallKeyConflict(StoreError):
    """``add_hall`` with a different key for an existing hall, without ``replace``."""


@dataclass(frozen=True, slots=True)
class HallRecord:
    """A registered hall, the contiguous prefix of its chain that central holds, and its agent's presence.

    ``online``/``session``/``status_at`` are the last accepted MQTT status of the hall's agent (see
    :meth:`set_presence`); all None until one arrives.
    """

    id: str
    public_key_pem: str
    added_at: int
    last_seq: int
    last_hash: str
    online: bool | None = None
    session: int | None = None
    status_at: int | None = None
    timezone: str = DEFAULT_ZONE
    gaming_day_start: str = DEFAULT_START
    settings_version: int = 0
    """Bumped by every change of the hall's settings (the standing data's version)."""
    state: str = "active"
    """``active``; ``disabled`` (``halls disable``: its messages are refused, nothing stored or acked, so
    its agent keeps them until ``halls enable``); ``removed`` (``halls remove``: its key no longer works,
    its stored data stays in every report). See :data:`HALL_STATES`."""

    @property
    def day_rule(self) -> DayRule:
        """The hall's gaming day (:mod:`protocols.sync.gamingday`): every report and rollup uses it."""
        return day_rule(self.timezone, self.gaming_day_start)


@dataclass(frozen=True, slots=True)
class ApiKeyRecord:
    """An API key as stored: never the key itself, only its id and the SHA-256 of its secret."""

    id: str
    role: str
    secret_hash: str
    halls: tuple[str, ...] | None
    """Halls the key may see; None means every hall."""
    created_at: int
    name: str | None = None
    """Whose key it is ("Anna, cashier lead"), shown in the audit log and the dashboard; None for keys
    created before names existed."""
    expires_at: int | None = None
    """µs UTC after which the key is refused; None: it does not expire."""
    revoked_at: int | None = None
    """µs UTC the key was revoked; a revoked key is refused at once, its record kept for the audit log."""

    def state(self, now: int) -> str:
        """``active``, ``expired`` or ``revoked`` as of ``now``."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and now >= self.expires_at:
            return "expired"
        return "active"


@runtime_checkable
class HallRepository(Protocol):
    """The registered halls and the API keys, each method one unit of work."""

    async def add_hall(self, hall: str, public_key_pem: str, *, now: int, replace: bool = False) -> str:
        """Register a hall: returns ``added``, ``unchanged`` or ``replaced``.

        A different key for an existing hall raises :class:`HallKeyConflict` unless ``replace``; a
        replacement is written to the integration log as ``manual`` in the same transaction.
        """
        ...

    async def forget_presence(self, hall: str, *, now: int) -> bool:
        """Clear a hall's stored presence (online, session, time) so the next verified status is taken
        whatever its session: for a hall pinned by a forged status stored before statuses were signed.
        False if the hall is not registered."""
        ...

    async def set_hall_state(self, hall: str, state: str, *, now: int) -> HallRecord | None:
        """Set a hall's state (:data:`HALL_STATES`) with a ``manual`` integration-log row; the record as it
        was before, None if the hall is not registered."""
        ...

    async def get_hall(self, hall: str) -> HallRecord | None:
        """The hall's record and chain state, or None if it is not registered."""
        ...

    async def halls(self) -> list[HallRecord]:
        """Every registered hall, by id."""
        ...

    async def set_day_rule(self, hall: str, rule: DayRule, *, now: int) -> HallRecord | None:
        """Set a hall's time zone and gaming-day start; None if the hall is not registered.

        A change bumps ``settings_version`` and re-buckets the hall's rollups (daily and hourly) and its
        device days from its stored events, in one transaction, so every report of the hall uses the
        new day from its first day on; it is written to the integration log as ``manual``. Setting the
        rule a hall already has changes nothing (same version).
        """
        ...

    async def set_presence(self, hall: str, *, online: bool, session: int, at: int) -> bool:
        """Record the hall agent's MQTT status; False (nothing changed) when it is stale or the hall unknown.

        The agent's ``session`` counts its connections, and its last will (the offline status the
        broker publishes when the connection drops) is built at connect time. So, in one transaction:

        * an unregistered hall → False;
        * no status stored yet, or a newer ``session`` → accepted;
        * an older ``session`` → False (a stale will arriving after a reconnect must not mark the
          hall offline);
        * the same ``session``: an online status older (``at``) than the stored one → False; an
          offline status is accepted whatever its ``at`` while the stored one is online (the will
          carries the connect time, older than the online status of the same connection), and
          offline ends the session: later statuses of that session → False.
        """
        ...

    async def add_api_key(self, record: ApiKeyRecord) -> None:
        """Store a new API key record (its id must be new)."""
        ...

    async def api_key(self, key_id: str) -> ApiKeyRecord | None:
        """The record for ``key_id`` (O(1) lookup by the id prefix of a presented key)."""
        ...

    async def api_keys(self) -> list[ApiKeyRecord]:
        """Every key ever created (revoked and expired ones too), oldest first."""
        ...

    async def update_api_key(self, key_id: str, *, secret_hash: str | None = None,
                             revoked_at: int | None = None) -> ApiKeyRecord | None:
        """Replace the secret's hash (rotate) and/or mark revoked; the record as it was, None if unknown."""
        ...
