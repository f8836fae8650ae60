"""Who may call what: the one table of the HTTP API's authorisation (design.md, "Roles").

``ROUTE_ROLES`` maps ``"METHOD /path"`` (relative to ``/api/v1``) to the roles allowed, or to
``None`` for routes that need no key. The middleware consults only this table, the OpenAPI
document lists it per operation (``x-roles``), and the tests walk every route × every role.

| route                    | admin | operator | viewer | technician | regulator |
|--------------------------|-------|----------|--------|------------|-----------|
| GET /reports/ggr         |  yes  |   yes    |  yes   |     —      |    yes    |
| GET /devices             |  yes  |   yes    |  yes   |    yes     |     —     |
| GET /halls               |  yes  |   yes    |  yes   |    yes     |     —     |
| GET /events              |  yes  |    —     |   —    |     —      |    yes    |
| GET /integration-log     |  yes  |    —     |   —    |    yes     |    yes    |
| POST /commands           |  yes  |   yes    |   —    |     —      |     —     |
| GET /commands/{id}       |  yes  |   yes    |  yes   |    yes     |     —     |
| GET /health, /openapi.json | public (no key)                                     |

Reasons: ``viewer`` reads reports, devices and status (``/halls`` is the agents' online status) but
no event export; ``operator`` is viewer plus commands and catalog (not in this slice), so it reads
the same; ``technician`` reads devices and diagnostics of its halls — the agents' status and the
integration log (rejected or malformed batches, gaps, connection trouble) are those diagnostics — and
no money (no reports, no events); ``regulator`` reads reports, events and the integration log
(read-only evidence of what was rejected, missed or resent), not the operational device and hall
status; ``admin`` reads everything.
Commands: only ``operator`` and ``admin`` send them (design.md). Reading one back is status, not money:
``viewer`` (reads status) and ``technician`` (a command's outcome on a device of its halls is a
diagnostic) may read it, ``regulator`` (evidence, not operations) may not — the integration log's
``command`` rows are its record of them. A hall-scoped key may send commands only to its halls (403)
and gets 404 for another hall's command (its existence is not revealed). A key with a hall scope sees
only those halls on every route.
"""

from __future__ import annotations

from typing import Final

from central.store.base import ROLES

ROUTE_ROLES: Final[dict[str, frozenset[str] | None]] = {
    "GET /health": None,
    "GET /openapi.json": None,
    "GET /reports/ggr": frozenset({"admin", "operator", "viewer", "regulator"}),
    "GET /devices": frozenset({"admin", "operator", "viewer", "technician"}),
    "GET /halls": frozenset({"admin", "operator", "viewer", "technician"}),
    "GET /events": frozenset({"admin", "regulator"}),
    "GET /integration-log": frozenset({"admin", "technician", "regulator"}),
    "POST /commands": frozenset({"admin", "operator"}),
    "GET /commands/{id}": frozenset({"admin", "operator", "viewer", "technician"}),
}

if not all(roles is None or roles <= set(ROLES) for roles in ROUTE_ROLES.values()):
    raise AssertionError("ROUTE_ROLES names a role that does not exist")


def is_public(route: str) -> bool:
    """True when ``route`` (``"GET /health"``) needs no key."""
    return ROUTE_ROLES[route] is None


def allowed(route: str, role: str) -> bool:
    """True when ``role`` may call ``route``; public routes allow everyone."""
    roles = ROUTE_ROLES[route]
    return roles is None or role in roles
