"""``GET /export``: a period's events as one verifiable file, streamed (format: :mod:`central.export`).

The response is chunked and written page by page as the store yields them, so memory stays flat
whatever the period. Everything that can be refused (parameters, scope, a missing signing key) is
refused before the first byte, as a JSON error. A failure after streaming began cannot become a JSON
error any more: the connection is cut, so the client sees a broken transfer (and a file without its
manifest, which the verifier refuses) instead of a short file that looks complete.
"""

from __future__ import annotations

import asyncio
from typing import Any, Final, Protocol

import structlog
from aiohttp import web

from central.export import FORMATS, MEDIA_TYPES, write_export
from central.repos import HasExport, HasHalls

from . import days
from . import params as p
from .context import ApiContext, Handler, api_key, scope
from .openapi_parts import _ERRORS, _INSTANT, _param
from .params import ApiError

log = structlog.get_logger("central.api")


class Needs(HasExport, HasHalls, Protocol):
    """The repositories this feature uses (the app passes :class:`central.repos.Repositories`)."""


def handlers(ctx: ApiContext, store: Needs) -> dict[str, Handler]:
    async def export(request: web.Request) -> web.StreamResponse:
        q = request.query
        fmt = p.choice(q, "format", FORMATS, default="jsonl")
        assert fmt is not None
        hall, halls = scope(request)
        if hall is not None and await store.halls.get_hall(hall) is None:
            raise p.bad_request(f"hall {hall!r} is not registered")
        time_from, time_to = await days.window_in_scope(q, store.halls, hall, halls, ctx.clock())
        if time_from is None or time_to is None:
            raise p.bad_request("from and to are required: the export's period, [from, to), as instants or "
                                "gaming days (YYYY-MM-DD, both days included)")
        if time_from >= time_to:
            raise p.bad_request(f"from ({p.rfc3339(time_from)}) must be before to ({p.rfc3339(time_to)})")
        if ctx.central_key is None:
            raise ApiError(503, "unavailable", "central has no signing key (central.key), so it cannot sign an export")
        key = api_key(request)
        response = web.StreamResponse(headers={
            "Content-Type": MEDIA_TYPES[fmt],
            "Content-Disposition": f'attachment; filename="hallsync-export-{time_from}-{time_to}.{fmt}"',
            "Cache-Control": "no-store"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        try:
            await write_export(store, response.write, fmt=fmt, time_from=time_from, time_to=time_to,
                               key=ctx.central_key, generated_at=ctx.clock(), generated_by=key.id, hall=hall,
                               halls=halls)
        except (asyncio.CancelledError, ConnectionResetError):
            raise
        except Exception:
            log.exception("export_failed", key=key.id, time_from=time_from, time_to=time_to, hall=hall)
            if request.transport is not None:
                request.transport.close()  # no clean end of the chunked body: the client must not take it as whole
            raise ConnectionResetError("export aborted; see central's log") from None
        await response.write_eof()
        log.info("export", key=key.id, format=fmt, time_from=time_from, time_to=time_to, hall=hall)
        return response

    return {"GET /export": export}


_FILE: Final = {"type": "string", "format": "binary"}

PATHS: Final[dict[str, Any]] = {
    "/export": {"get": {
        "operationId": "exportEvents",
        "summary": "The events of a period as one file a regulator can verify offline (streamed).",
        "description": (
            "Per hall, the first to the last event whose agent time is in [`from`, `to`), and every event between "
            "them, in wire form (the exact canonical content each hall hashed), ordered by hall and seq. "
            "`format=jsonl` (default): one event per line; `format=csv`: a header row, then one event per row "
            "(`data` as canonical JSON). The last line is the manifest: the period, per hall the seq range, count, "
            "chain ends, the hall's public key and its signed batch header, the SHA-256 of everything before it, "
            "signed by central's key. Check a file with `hall-central export verify FILE --central-pub "
            "central.pub`. A key with a hall scope exports only its halls. 503 when central has no signing key. "
            "The body is chunked; a failure mid-stream cuts the connection."),
        "parameters": [
            {"name": "from", "in": "query", "required": True, "schema": _INSTANT},
            {"name": "to", "in": "query", "required": True, "schema": _INSTANT},
            {"name": "format", "in": "query", "required": False,
             "schema": {"type": "string", "enum": list(FORMATS), "default": "jsonl"}},
            _param("hall"),
        ],
        "responses": {
            "200": {"description": "The export file (events, then the signed manifest line).",
                    "content": {"application/x-ndjson": {"schema": _FILE}, "text/csv": {"schema": _FILE}}},
            "400": {"$ref": "#/components/responses/BadRequest"},
            "503": {"description": "Central has no signing key (`unavailable`).",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
            **_ERRORS},
    }},
}

SCHEMAS: Final[dict[str, Any]] = {}
