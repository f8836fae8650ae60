"""The building blocks of the OpenAPI description that :mod:`.openapi` and every feature module share
(references, the error responses, the time and money schemas), in a module that imports none of them."""

from __future__ import annotations

from typing import Any, Final


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _param(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/parameters/{name}"}


def _json(schema: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(schema)}}}


_ERRORS: Final = {
    "401": {"$ref": "#/components/responses/Unauthorized"},
    "403": {"$ref": "#/components/responses/Forbidden"},
    "429": {"$ref": "#/components/responses/TooManyRequests"},
    "500": {"$ref": "#/components/responses/InternalError"},
}
_WITH_400: Final = {"400": {"$ref": "#/components/responses/BadRequest"}, **_ERRORS}

_TIME = {"type": "string", "format": "date-time", "example": "2026-01-01T00:00:00.000000Z"}
_NULLABLE_TIME = {**_TIME, "nullable": True}
_MICROS = {"type": "integer", "format": "int64", "description": "Microseconds since the epoch (UTC)."}
_NULLABLE_MICROS = {**_MICROS, "nullable": True}
_MONEY = {"type": "integer", "format": "int64", "description": "Minor units of the report's currency."}

_INSTANT = {"type": "string", "description": "RFC 3339 with an offset (`2026-01-01T00:00:00Z`), integer "
                                             "microseconds since the epoch, or a gaming day as in the reports: "
                                             "`YYYY-MM-DD` or `today` is that whole gaming day of the halls in "
                                             "scope (`to` included), 400 when they keep different gaming days."}
