"""central's HTTP API (JSON under ``/api/v1``; design.md, "Interfaces … HTTP").

* :mod:`.app` — :func:`build_app`: routes, bearer-key auth, roles, hall scopes, JSON errors.
* :mod:`.roles` — :data:`ROUTE_ROLES`, the one table of which role may call which route.
* :mod:`.openapi` — the hand-written OpenAPI 3.0.3 document served at ``/api/v1/openapi.json``.
* :mod:`.params` — query-parameter parsing (400s that name the parameter) and RFC 3339 times.
"""

from __future__ import annotations

from .app import PREFIX, PROVIDER_UNASSIGNED, build_app
from .openapi import document
from .roles import ROUTE_ROLES

__all__ = ["PREFIX", "PROVIDER_UNASSIGNED", "ROUTE_ROLES", "build_app", "document"]
