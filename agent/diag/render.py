"""Plain-text tables for a terminal and JSON-ready dicts for machines; no third-party deps."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any


def table(rows: list[tuple[str, ...]], header: tuple[str, ...] | None = None) -> str:
    """Left-aligned columns separated by two spaces."""
    allrows = ([header] if header else []) + rows
    if not allrows:
        return ""
    widths = [max(len(str(r[i])) for r in allrows) for i in range(len(allrows[0]))]
    lines = []
    for n, row in enumerate(allrows):
        lines.append("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        if header and n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def to_jsonable(obj: Any) -> Any:
    """Dataclasses, datetimes, tuples → JSON types."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, dt.datetime):
        return obj.isoformat()
    return obj
