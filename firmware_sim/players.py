"""Simulated players (and the attendant) in front of one EGM, as a step function.

:meth:`Player.act` performs the next action and says how long to wait before the one after; the
transport's task just sleeps that long. Every choice comes from one seeded ``random.Random``, so
the same seed gives the same sequence of actions (and the same truth) whatever the timing.
"""

from __future__ import annotations

import random

from .egm import Egm, PlayRefused

_BILLS = (1, 5, 10, 20, 50, 100)
_BILL_WEIGHTS = (10, 20, 20, 30, 10, 10)
_CASH_OUT_AFTER_GAME = 0.03
_SWITCH_GAME = 0.05


class Player:
    """A stream of players on one machine: bills in, games, cash-out by ticket, handpays keyed off.

    The player stops starting games after ``egm.rounds`` games, cashes out what is left and is then
    :attr:`finished`; the machine keeps answering the host.
    """

    def __init__(self, egm: Egm, rng: random.Random | None = None) -> None:
        self.egm = egm
        self.rng = rng or random.Random(f"player:{egm.seed}:{egm.address}")
        self.finished = False
        self.started = 0

    @property
    def game_time(self) -> float:
        """How long the reels spin: a slice of the pace, so an LP 01 can arrive mid-game."""
        return min(1.0, self.egm.pace * 0.3)

    def _pause(self) -> float:
        return self.egm.pace * self.rng.uniform(0.7, 1.3)

    def _rounds_done(self) -> bool:
        return self.egm.rounds is not None and self.started >= self.egm.rounds

    def act(self) -> float | None:
        """Do one thing; return the delay until the next action, or None once finished."""
        egm = self.egm
        if self.finished:
            return None
        if not egm.powered:
            return self._pause()
        if egm.handpay is not None:
            egm.reset_handpay()          # the attendant arrives and pays
            return self._pause()
        if egm.current_round is not None:
            egm.end_game()
            if self._rounds_done() or self.rng.random() < _CASH_OUT_AFTER_GAME:
                egm.cash_out()
            return max(0.0, self._pause() - self.game_time)
        if self._rounds_done():
            egm.cash_out()
            if egm.handpay is None and egm.credits == 0:
                self.finished = True
                return None
            return self._pause()
        return self._play_or_fund()

    def _play_or_fund(self) -> float:
        egm = self.egm
        enabled = egm.enabled_games()
        if enabled and (egm.selected_game not in enabled or self.rng.random() < _SWITCH_GAME):
            try:
                egm.select_game(self.rng.choice(enabled))
            except PlayRefused:
                pass
        config = egm.games[egm.selected_game]
        affordable = min(config.max_bet, egm.credits // config.denomination)
        if affordable < 1:
            dollars = self.rng.choices(_BILLS, _BILL_WEIGHTS)[0]
            egm.insert_bill(dollars)   # refused while the acceptor or machine is disabled: try later
            return self._pause() * 0.3
        if not egm.can_start_game():
            return self._pause()
        bet = self.rng.randint(1, affordable)
        egm.start_game(bet)
        self.started += 1
        return self.game_time
