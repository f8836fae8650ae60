"""The game catalog and network-wide rules: providers, games, the desired placements, the
rules with the commands they issued, and the reads the catalog's reports need (latest identities,
event counts).

The records and the repository's interface are backend-neutral: each backend implements
:class:`CatalogRepository` with its own SQL (SQLite in :mod:`central.store`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from .errors import StoreError


class CatalogConflict(StoreError):
    """A catalog change that names what the catalog lacks (a game of an unknown provider, a placement of
    an unknown game); nothing was changed."""


@dataclass(frozen=True, slots=True)
class Provider:
    id: str
    name: str
    status: str = "active"

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "status": self.status}


@dataclass(frozen=True, slots=True)
class CatalogGame:
    """A game of the catalog. ``rtp_bp`` is the theoretical return to player in basis points (9612 =
    96.12 %); ``min_bet``/``max_bet`` are per round in minor units; ``sas_game_id``/``paytable_id`` are
    what a machine running it reports (LP 1F/53), empty when unknown."""

    id: str
    provider: str
    name: str
    category: str
    rtp_bp: int
    status: str
    min_bet: int
    max_bet: int
    sas_game_id: str = ""
    paytable_id: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "provider": self.provider, "name": self.name, "category": self.category,
                "rtp_bp": self.rtp_bp, "status": self.status, "min_bet": self.min_bet, "max_bet": self.max_bet,
                "sas_game_id": self.sas_game_id, "paytable_id": self.paytable_id}


@dataclass(frozen=True, slots=True)
class Placement:
    """Desired configuration: catalog ``game`` at SAS game number ``number`` of (hall, device)."""

    hall: str
    device: str
    number: int
    game: str
    enabled: bool = True

    def as_dict(self) -> dict[str, Any]:
        return {"number": self.number, "game": self.game, "enabled": self.enabled}


@dataclass(frozen=True, slots=True)
class RuleRecord:
    """A network-wide rule as stored: ``kind`` is one of :data:`central.catalog.RULE_KINDS`; ``params`` its JSON
    parameters; ``halls`` its scope (None = every hall); ``status`` ``active`` or ``revoked``;
    ``commands`` the ids of the commands it issued."""

    id: str
    kind: str
    params: dict[str, Any]
    halls: tuple[str, ...] | None
    created_by: str
    created_at: int
    status: str
    updated_at: int
    commands: tuple[str, ...] = ()


@runtime_checkable
class CatalogRepository(Protocol):
    """The catalog's providers, games and placements, and the network-wide rules."""

    async def catalog_providers(self) -> list[Provider]:
        """Every provider, by id."""
        ...

    async def put_provider(self, provider: Provider) -> Provider | None:
        """Create or replace a provider; returns the previous one (None if new)."""
        ...

    async def catalog_games(self) -> list[CatalogGame]:
        """Every catalog game, by id."""
        ...

    async def put_game(self, game: CatalogGame) -> CatalogGame | None:
        """Create or replace a game (its provider must exist, else :class:`CatalogConflict`); returns the previous."""
        ...

    async def placements(self, *, hall: str | None = None, halls: Sequence[str] | None = None,
                         device: str | None = None) -> list[Placement]:
        """Desired configuration rows by (hall, device, number)."""
        ...

    async def replace_placements(self, hall: str, device: str, placements: Sequence[Placement]) -> list[Placement]:
        """Replace one device's placements in one transaction (unknown game → :class:`CatalogConflict`);
        returns the previous ones."""
        ...

    async def add_rule(self, rule: RuleRecord) -> None:
        """Store a new rule and its command ids."""
        ...

    async def add_rule_commands(self, rule_id: str, command_ids: Sequence[str]) -> None:
        """Attach more issued commands to a rule."""
        ...

    async def set_rule_status(self, rule_id: str, status: str, at: int) -> RuleRecord | None:
        """Set a rule's status; returns it as it was before (None if unknown)."""
        ...

    async def rule(self, rule_id: str) -> RuleRecord | None:
        """One rule with its command ids."""
        ...

    async def rules(self, *, kind: str | None = None, status: str | None = None, limit: int = 100) -> list[RuleRecord]:
        """Rules, newest first."""
        ...

    async def latest_identities(self, *, hall: str | None = None,
                                halls: Sequence[str] | None = None) -> list[tuple[str, str, int, dict[str, Any]]]:
        """(hall, device, agent_time, data) of each device's newest ``device.status`` identity event."""
        ...

    async def event_counts(self, types: Sequence[str], *, time_from: int | None = None, time_to: int | None = None,
                           hall: str | None = None, halls: Sequence[str] | None = None) -> dict[tuple[str, str], int]:
        """How many events of ``types`` each (hall, device) has with agent_time in [from, to)."""
        ...
