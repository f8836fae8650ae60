"""Human labels for ``GET /reports/ggr`` rows: a ``label`` beside each row's unchanged ``key``.

The keys are what the rollups group by, which a person cannot read: ``group_by=game`` keys are SAS
game numbers (``"1"`` is a different game on each machine) and ``""`` is money outside any game (a
terminal's bets carry no game number, bills and tickets none either — in the demo 93 % of the GGR);
``group_by=provider`` puts that same money and every uncatalogued game under ``unassigned``. The
label names the catalog games (by each (hall, device, number)'s mapping, :func:`central.catalog.
game_map`) and providers, and says plainly what money outside games is. Keys stay as they were, so
scripts that join on them keep working.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Final, Protocol

from central import catalog as cat
from central.repos import HasCatalog, HasReports
from central.repos.reports import GgrRow

from .catalog import cell_games

OUTSIDE_GAMES: Final = "not in a game (terminals, bills, tickets)"
"""The ``group_by=game`` row of key ``""``: bets without a game number (terminals) and cash in/out."""
UNASSIGNED_LABEL: Final = "not in a catalog game (terminals, bills, tickets, unplaced games)"
"""The ``group_by=provider`` row of key ``unassigned``."""
NOT_IN_CATALOG: Final = "not in the catalog"


def game_label(number: str, names: Iterable[str | None]) -> str:
    """``"Fruits (game 1)"``; several machines may hold different games at one number:
    ``"Fruits / Lucky 7 (game 1)"``; a number no catalog game accounts for says so."""
    if number == "":
        return OUTSIDE_GAMES
    known = sorted({n for n in names if n is not None})
    unknown = any(n is None for n in names)
    if not known:
        return f"game {number} ({NOT_IN_CATALOG})"
    return " / ".join(known + ([NOT_IN_CATALOG] if unknown else [])) + f" (game {number})"


class LabelSource(HasCatalog, HasReports, Protocol):
    """What :func:`labels` reads (the placed cells and the catalog's names, :func:`cell_games`)."""


async def labels(store: LabelSource, group_by: str, rows: Sequence[GgrRow],
                 periods: Sequence[tuple[dt.date | None, dt.date | None, Sequence[str] | None]],
                 hall: str | None, halls: Sequence[str] | None) -> list[str]:
    """One label per row, in order. ``periods`` are the report's slices (day range, hall scope), so
    a game number is named by the machines that played it in the period, not by every machine."""
    if group_by == "provider":
        providers = {p.id: p.name for p in await store.catalog.catalog_providers()}
        return [UNASSIGNED_LABEL if r.key == cat.UNASSIGNED else providers.get(r.key) or r.key for r in rows]
    if group_by != "game":
        return [r.key for r in rows]
    if not rows:
        return []
    names: dict[str, list[str | None]] = {}
    for day_from, day_to, scoped in periods:
        cells = await store.reports.placed_cells(day_from=day_from, day_to=day_to, hall=hall, halls=scoped)
        games = await cell_games(store, cells, hall, scoped)
        for cell in cells:
            if cell.number:
                game = games.game(cell)
                names.setdefault(cell.number, []).append(None if game is None else game.name)
    return [game_label(r.key, names.get(r.key, [None])) for r in rows]
