"""The demo's game catalog: the simulated machines' games, entered through the API as an operator would.

Without it every game's money sits under the provider ``unassigned`` and the dashboard's catalog is
empty; with it the provider chart, the hold-versus-RTP report and desired-versus-detected work on the
demo floor. The entries match what the machines report (SAS game ID and paytable ID of each game, as
``hall-sim`` configures them), so detected games are recognised without placements.
"""

from __future__ import annotations

from typing import Any, Final

from firmware_sim.games import DEFAULT_GAMES

PROVIDER: Final = "hallsync-sim"
PROVIDER_NAME: Final = "Simulated Games (hall-sim)"


def catalog_entries() -> tuple[tuple[str, dict[str, Any]], ...]:
    """(API path, body) of every PUT, provider first; amounts in minor units, RTP in basis points."""
    entries: list[tuple[str, dict[str, Any]]] = [(f"/catalog/providers/{PROVIDER}", {"name": PROVIDER_NAME})]
    for game in DEFAULT_GAMES:
        entries.append((f"/catalog/games/sim-{game.number}", {
            "provider": PROVIDER, "name": f"Sim game {game.number} ({game.denomination}¢)", "category": "slot",
            "rtp_bp": game.rtp_hundredths, "min_bet": game.denomination, "max_bet": game.max_bet * game.denomination,
            "sas_game_id": game.game_id, "paytable_id": game.effective_paytable_id}))
    return tuple(entries)
