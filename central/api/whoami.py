"""``GET /whoami``: the calling key's id, role and halls.

The dashboard asks this right after login so that it shows only what the key may use (a viewer gets
no disable buttons) and can tell a bad key (401) from a good one before it loads anything else.
It reveals nothing a key holder does not already have: every role may call it.
"""

from __future__ import annotations

from typing import Any, Final

from aiohttp import web

from central.repos.halls import ROLES

from . import params as p
from .context import ApiContext, Handler, api_key, json_response
from .openapi_parts import _ERRORS, _ref
from .roles import ROUTE_ROLES


def handlers(ctx: ApiContext, store: object) -> dict[str, Handler]:
    """``store`` is unused: who-am-I reads only the request's key."""
    async def whoami(request: web.Request) -> web.Response:
        key = api_key(request)
        routes = sorted(r for r, roles in ROUTE_ROLES.items() if roles is not None and key.role in roles)
        return json_response({"id": key.id, "name": key.name, "role": key.role,
                              "halls": None if key.halls is None else list(key.halls),
                              "expires_at": None if key.expires_at is None else p.rfc3339(key.expires_at),
                              "routes": routes})

    return {"GET /whoami": whoami}


PATHS: Final[dict[str, Any]] = {
    "/whoami": {"get": {
        "operationId": "whoami", "summary": "The calling API key: its id, role, hall scope and the routes it may use.",
        "responses": {"200": {"description": "The key.", "content": {"application/json": {
            "schema": _ref("WhoAmI")}}}, **_ERRORS}}},
}

SCHEMAS: Final[dict[str, Any]] = {
    "WhoAmI": {
        "type": "object", "required": ["id", "role", "halls", "routes"],
        "properties": {
            "id": {"type": "string", "description": "The API key's id (never its secret)."},
            "name": {"type": "string", "nullable": True,
                     "description": "Whose key it is (`apikeys create --name`); null for keys without one."},
            "role": {"type": "string", "enum": list(ROLES)},
            "expires_at": {"type": "string", "format": "date-time", "nullable": True,
                           "description": "When the key stops working (RFC 3339, UTC); null: it does not expire."},
            "halls": {"type": "array", "items": {"type": "string"}, "nullable": True,
                      "description": "The halls the key may see; null for every hall."},
            "routes": {"type": "array", "items": {"type": "string"},
                       "description": "`METHOD /path` of every keyed route the role may call."},
        },
    },
}
