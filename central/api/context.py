"""What a feature module of the API needs from the app: the shared context and request helpers.

The core routes live in :mod:`.app`; every further feature (catalog, audit, export, monitoring,
metrics…) is a module listed in :data:`central.api.features.FEATURES` that exposes

* ``handlers(ctx: ApiContext, store: Needs) -> dict[str, Handler]`` — ``{"GET /path": handler}``, paths
  relative to ``/api/v1``, each also in :data:`central.api.roles.ROUTE_ROLES`; ``Needs`` is the
  feature's protocol of the repositories it uses (built from :class:`central.repos.HasHalls` and kin);
* ``PATHS`` — its OpenAPI path items (``x-roles`` is filled in from the route table);
* ``SCHEMAS`` — its OpenAPI component schemas.

so that features are small modules with one job each, and the middleware (auth, roles, JSON errors)
stays in one place.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Final

from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from central.commands import CommandPublisher
from central.repos.halls import ApiKeyRecord
from central.timeutil import Clock

from . import params as p
from .params import ApiError

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
KEY: Final = web.RequestKey("api_key", ApiKeyRecord)


@dataclasses.dataclass(frozen=True, slots=True)
class ApiContext:
    """Shared by every handler: the currency of every amount, now in µs, and — when central has an
    MQTT link — the command publisher and the key that signs commands. The repositories are not here:
    each feature's ``handlers(ctx, store)`` types ``store`` as the repositories it uses (its ``Needs``
    protocol), so a feature cannot reach one it did not declare."""

    currency: str
    clock: Clock
    command_publisher: CommandPublisher | None = None
    central_key: Ed25519PrivateKey | None = None
    presence: Callable[[], Mapping[str, Any]] | None = None
    on_hall_settings: Callable[[str], Awaitable[Any]] | None = None
    """Called after a hall's settings changed (central's link sends the hall its new standing data)."""


def api_key(request: web.Request) -> ApiKeyRecord:
    """The authenticated key of this request (set by the middleware on every non-public route)."""
    return request[KEY]


def scope(request: web.Request) -> tuple[str | None, Sequence[str] | None]:
    """(the ``hall=`` filter, the key's hall scope); a filter outside the scope is 403."""
    key = request[KEY]
    hall = p.text(request.query, "hall")
    if hall is not None and key.halls is not None and hall not in key.halls:
        raise ApiError(403, "forbidden", f"hall {hall!r} is outside this API key's halls")
    return hall, key.halls


def require_hall_in_scope(request: web.Request, hall: str) -> None:
    """403 when ``hall`` is outside the key's halls (for halls named in a body or path)."""
    key = request[KEY]
    if key.halls is not None and hall not in key.halls:
        raise ApiError(403, "forbidden", f"hall {hall!r} is outside this API key's halls")


def dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def json_response(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.json_response(body, status=status, headers=headers, dumps=dumps)


MAX_BODY_DEPTH: Final = 32
"""Nesting of arrays and objects a request body may have. No body of this API nests more than a few
levels; a deeper one is refused before it can cost a deep recursion in a handler."""


def _depth(value: Any) -> int:
    """How deeply arrays and objects nest in ``value`` (iteratively: the check itself cannot recurse)."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, level)
        if deepest > MAX_BODY_DEPTH:
            break
        stack.extend((child, level + 1) for child in children)
    return deepest


async def json_body(request: web.Request) -> dict[str, Any]:
    """The request body as a JSON object, or a 400 that says so."""
    raw = await request.read()
    try:
        body = json.loads(raw)
    except ValueError:  # also UnicodeDecodeError
        raise p.bad_request("the body must be a JSON object") from None
    except RecursionError:   # thousands of nested brackets: the parser gave up
        raise p.bad_request(f"the body nests arrays or objects more than {MAX_BODY_DEPTH} deep") from None
    if not isinstance(body, dict):
        raise p.bad_request("the body must be a JSON object")
    if _depth(body) > MAX_BODY_DEPTH:
        raise p.bad_request(f"the body nests arrays or objects more than {MAX_BODY_DEPTH} deep")
    if _has_nul(body):
        raise p.bad_request(NUL_REFUSED)
    return body


NUL_REFUSED: Final = "a text holds a NUL character (U+0000), which no name, id or note may contain"
"""One answer on both backends: PostgreSQL cannot store U+0000 in text (it raised a 500), SQLite would
have stored what no report, CSV or terminal shows."""


def _has_nul(value: object) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False
