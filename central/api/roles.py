"""Who may call what: the one table of the HTTP API's authorisation (design.md, "Roles").

``ROUTE_ROLES`` maps ``"METHOD /path"`` (relative to ``/api/v1``) to the roles allowed, or to
``None`` for routes that need no key. The middleware consults only this table, the OpenAPI
document lists it per operation (``x-roles``), and the tests walk every route × every role.

| route                    | admin | operator | viewer | technician | regulator |
|--------------------------|-------|----------|--------|------------|-----------|
| GET /reports/ggr, /reports/hourly |  yes  |   yes    |  yes   |     —      |    yes    |
| GET /devices             |  yes  |   yes    |  yes   |    yes     |     —     |
| GET /halls               |  yes  |   yes    |  yes   |    yes     |     —     |
| PUT /halls/{hall}/settings |  yes  |    —     |   —    |     —      |     —     |
| GET /events              |  yes  |    —     |   —    |     —      |    yes    |
| GET /integration-log     |  yes  |    —     |   —    |    yes     |    yes    |
| POST /commands           |  yes  |   yes    |   —    |     —      |     —     |
| GET /commands/{id}       |  yes  |   yes    |  yes   |    yes     |     —     |
| GET /catalog/providers, /catalog/games[/{id}] | yes | yes | yes | — | yes |
| PUT /catalog/providers/{id}, /catalog/games/{id}, /catalog/placements/{hall}/{device} | yes | yes | — | — | — |
| GET /catalog/availability, /catalog/devices | yes | yes | yes | yes | — |
| POST /rules, POST /rules/{id}/revoke | yes | yes | — | — | — |
| GET /rules, /rules/{id}  |  yes  |   yes    |  yes   |     —      |     —     |
| GET /reports/providers, /reports/hold | yes | yes | yes | — | yes |
| GET /alerts              |  yes  |   yes    |  yes   |    yes     |     —     |
| POST /alerts/{id}/ack    |  yes  |   yes    |   —    |     —      |     —     |
| GET /reports/reconciliation | yes |  yes    |  yes   |     —      |    yes    |
| GET /audit, /export      |  yes  |    —     |   —    |     —      |    yes    |
| GET /floor               |  yes  |   yes    |  yes   |    yes     |     —     |
| GET /whoami              |  yes  |   yes    |  yes   |    yes     |    yes    |
| GET /health, /openapi.json | public (no key)                                     |

Reasons: ``viewer`` reads reports, devices and status (``/halls`` is the agents' online status) but
no event export; ``operator`` is viewer plus commands and catalog, so it reads
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
Game catalog (central.api.catalog, .rules, .provider_reports): ``operator`` edits the catalog and
issues rules (design.md); providers and games are reference data for reading reports (RTP is what the
hold report is judged against), so ``viewer`` and ``regulator`` read them; availability and desired vs
detected configuration are device status, read by ``viewer`` and by ``technician`` (its halls), not by
``regulator``; rules are operations (status of commands), read like commands minus ``technician`` (a
rule spans halls); the provider and hold reports are reports (no ``technician``).
Audit and export (central.api.audit, .export; issue 04): design.md — ``regulator`` reads audit and
exports, ``viewer`` neither; ``operator`` is viewer plus commands and catalog, so neither; ``technician``
reads no money (an export is every event's money); ``admin`` everything. A hall-scoped key sees the
audit entries whose target belongs to its halls and exports only its halls.
Monitoring (central.api.alerts, .reconciliation): the alert list is operational status (halls offline,
doors open, tilts, disabled machines), read by those who watch the floor — ``viewer``, ``operator``,
``technician`` (its halls) — and not by ``regulator`` (it is not evidence of money; the integration log
and the reconciliation are). Acknowledging ("seen, on it") is acting on the floor: ``operator``
(a hall-scoped one only its halls; another hall's alert is 404) and ``admin``; never ``viewer`` or
``technician``, whose role design.md makes read-only ("reads devices and diagnostics of its halls";
the floor manager who dispatched the technician acknowledges); each acknowledgement is audited.
The reconciliation report is money (meters against events), so it has the GGR report's roles:
``regulator`` reads it (its variance and reasons are evidence), ``technician`` not.
Dashboard (central.api.floor, .whoami; issue 05): the floor view is device status (which machine
plays, is idle, disabled, has a door open, a tilt, is offline), read like ``GET /devices`` —
``technician`` its halls, not ``regulator``; ``GET /whoami`` tells any valid key its own role and halls,
so the dashboard shows only what the key may use.
"""

from __future__ import annotations

from typing import Final

from central.repos.halls import ROLES

ROUTE_ROLES: Final[dict[str, frozenset[str] | None]] = {
    "GET /health": None,
    "GET /openapi.json": None,
    "GET /reports/ggr": frozenset({"admin", "operator", "viewer", "regulator"}),
    "GET /reports/hourly": frozenset({"admin", "operator", "viewer", "regulator"}),
    "PUT /halls/{hall}/settings": frozenset({"admin"}),
    "GET /devices": frozenset({"admin", "operator", "viewer", "technician"}),
    "GET /halls": frozenset({"admin", "operator", "viewer", "technician"}),
    "GET /events": frozenset({"admin", "regulator"}),
    "GET /integration-log": frozenset({"admin", "technician", "regulator"}),
    "POST /commands": frozenset({"admin", "operator"}),
    "GET /commands/{id}": frozenset({"admin", "operator", "viewer", "technician"}),
    # game catalog (central.api.catalog, .rules, .provider_reports)
    "GET /catalog/providers": frozenset({"admin", "operator", "viewer", "regulator"}),
    "PUT /catalog/providers/{id}": frozenset({"admin", "operator"}),
    "GET /catalog/games": frozenset({"admin", "operator", "viewer", "regulator"}),
    "GET /catalog/games/{id}": frozenset({"admin", "operator", "viewer", "regulator"}),
    "PUT /catalog/games/{id}": frozenset({"admin", "operator"}),
    "PUT /catalog/placements/{hall}/{device}": frozenset({"admin", "operator"}),
    "GET /catalog/availability": frozenset({"admin", "operator", "viewer", "technician"}),
    "GET /catalog/devices": frozenset({"admin", "operator", "viewer", "technician"}),
    "POST /rules": frozenset({"admin", "operator"}),
    "GET /rules": frozenset({"admin", "operator", "viewer"}),
    "GET /rules/{id}": frozenset({"admin", "operator", "viewer"}),
    "POST /rules/{id}/revoke": frozenset({"admin", "operator"}),
    "GET /reports/providers": frozenset({"admin", "operator", "viewer", "regulator"}),
    "GET /reports/hold": frozenset({"admin", "operator", "viewer", "regulator"}),
    # audit and export (issue 04)
    "GET /audit": frozenset({"admin", "regulator"}),
    "GET /export": frozenset({"admin", "regulator"}),
    # monitoring and reconciliation (central.api.alerts, .reconciliation)
    "GET /alerts": frozenset({"admin", "operator", "viewer", "technician"}),
    "POST /alerts/{id}/ack": frozenset({"admin", "operator"}),
    "GET /reports/reconciliation": frozenset({"admin", "operator", "viewer", "regulator"}),
    # dashboard (issue 05: central.api.floor, .whoami)
    "GET /floor": frozenset({"admin", "operator", "viewer", "technician"}),
    "GET /whoami": frozenset({"admin", "operator", "viewer", "technician", "regulator"}),
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
