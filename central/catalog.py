"""The game catalog's pure logic: what a machine reports, matched to the catalog; desired vs detected
configuration; money mapped to providers; actual hold against theoretical RTP.

No I/O here, so every rule is unit-tested on plain records and the API modules only fetch and format.

Words used throughout:

* a **placement** is the desired configuration: catalog game ``game`` should be at SAS game number
  ``number`` of ``device`` in ``hall``, enabled or not;
* the **detected** configuration is the device's latest ``device.status`` event with ``status =
  "identity"`` (LP 1F/53/56 as the agent read them): its game numbers, each with the SAS game ID,
  paytable ID, denomination (cents = minor units) and max bet (in credits of that denomination);
* a catalog game **matches** a detected game when its ``sas_game_id`` and ``paytable_id`` equal the
  reported ones (the paytable identifies the maths, hence the RTP; the SAS game ID alone does not).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from central.repos.catalog import CatalogGame, Placement
from central.repos.catalog import Provider as Provider  # re-exported: the catalog's records live with its repository
from central.repos.catalog import RuleRecord as RuleRecord

UNASSIGNED: Final = "unassigned"
"""The provider key of money no catalog game accounts for (and of money outside games)."""

STATUSES: Final = ("active", "inactive")
"""Statuses of providers and catalog games; an inactive game is still mapped, but flagged if placed."""

HOLD_MIN_ROUNDS: Final = 1_000
"""Below this many rounds the hold says nothing about the paytable: no anomaly is ever flagged."""

HOLD_SIGMA_BP: Final = 100_000
"""Assumed standard deviation of one round's return, per unit bet, in basis points (10× the bet).

Slot paytables have a volatility index of roughly 5–15 bets per round; 10 is a middle value. Over
``n`` rounds the hold's standard deviation is about ``sigma / sqrt(n)`` (exactly that for equal bets;
unequal bets only widen it, so the band errs on the quiet side)."""

HOLD_Z: Final = 3
"""Band width in standard deviations: a fair paytable leaves the band about 3 times in 1000."""


@dataclass(frozen=True, slots=True)
class DetectedGame:
    number: int
    game_id: str
    paytable_id: str
    denomination_cents: int | None
    max_bet: int
    """In credits of ``denomination_cents``."""

    @property
    def max_bet_minor(self) -> int | None:
        """The largest bet per round in minor units, or None when the denomination is unknown."""
        return None if self.denomination_cents is None else self.max_bet * self.denomination_cents

    def as_dict(self) -> dict[str, Any]:
        return {"number": self.number, "game_id": self.game_id, "paytable_id": self.paytable_id,
                "denomination_cents": self.denomination_cents, "max_bet": self.max_bet,
                "max_bet_minor": self.max_bet_minor}


@dataclass(frozen=True, slots=True)
class Detected:
    """A device's latest reported identity (``at`` = agent time of that event, µs)."""

    hall: str
    device: str
    at: int
    serial: str
    games: tuple[DetectedGame, ...]
    enabled_games: frozenset[int]

    def game(self, number: int) -> DetectedGame | None:
        return next((g for g in self.games if g.number == number), None)


@dataclass(frozen=True, slots=True)
class LimitRule:
    """A max-bet limit (minor units per round) for the device games in its scope; None = any."""

    id: str
    max_bet: int
    halls: tuple[str, ...] | None = None
    provider: str | None = None
    game: str | None = None

    def covers(self, hall: str, game: CatalogGame | None) -> bool:
        if self.halls is not None and hall not in self.halls:
            return False
        if self.provider is not None and (game is None or game.provider != self.provider):
            return False
        return self.game is None or (game is not None and game.id == self.game)


@dataclass(frozen=True, slots=True)
class Difference:
    """One way a device's detected configuration differs from the desired one (``kind`` is one of
    :data:`DIFFERENCE_KINDS`); ``rule`` names the limit rule broken, if any."""

    kind: str
    number: int | None
    game: str | None
    detail: str
    rule: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "number": self.number, "game": self.game, "detail": self.detail}
        if self.rule is not None:
            out["rule"] = self.rule
        return out


DIFFERENCE_KINDS: Final = ("no_identity", "missing_game", "unexpected_game", "unknown_game", "paytable_mismatch",
                           "disabled_but_desired", "enabled_but_not_desired", "inactive_game",
                           "max_bet_over_catalog", "max_bet_over_limit")


RULE_KINDS: Final = ("disable_game", "enable_game", "max_bet")


# --- identity -----------------------------------------------------------------------------------
def parse_identity(hall: str, device: str, at: int, data: Mapping[str, Any]) -> Detected | None:
    """The detected configuration in an identity ``device.status`` data object; None if it is not one.

    Malformed game entries are skipped rather than failing the whole device: a report must still list
    what could be read (the raw event stays in ``GET /events``)."""
    if data.get("status") != "identity":
        return None
    games: list[DetectedGame] = []
    for raw in data.get("games") or ():
        if not isinstance(raw, Mapping):
            continue
        number, max_bet, denom = raw.get("number"), raw.get("max_bet"), raw.get("denomination_cents")
        if type(number) is not int or type(max_bet) is not int:
            continue
        games.append(DetectedGame(number=number, game_id=_text(raw.get("game_id")),
                                  paytable_id=_text(raw.get("paytable_id")),
                                  denomination_cents=denom if type(denom) is int and denom > 0 else None,
                                  max_bet=max_bet))
    enabled = frozenset(n for n in data.get("enabled_games") or () if type(n) is int)
    return Detected(hall=hall, device=device, at=at, serial=_text(data.get("serial")),
                    games=tuple(sorted(games, key=lambda g: g.number)), enabled_games=enabled)


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def match(detected: DetectedGame, games: Iterable[CatalogGame]) -> CatalogGame | None:
    """The one catalog game whose SAS game ID and paytable ID are the detected ones; None when none or
    several match (an ambiguous catalog must not silently pick a provider)."""
    found = [g for g in games if g.paytable_id and g.paytable_id == detected.paytable_id
             and g.sas_game_id == detected.game_id]
    return found[0] if len(found) == 1 else None


@dataclass(frozen=True, slots=True)
class GameMap:
    """(hall, device, SAS game number as a string) → catalog game, built once per request."""

    by_key: dict[tuple[str, str, str], CatalogGame] = field(default_factory=dict)

    def get(self, hall: str, device: str, number: str) -> CatalogGame | None:
        return self.by_key.get((hall, device, number))


def game_map(games: Sequence[CatalogGame], placements: Iterable[Placement],
             detected: Iterable[Detected]) -> GameMap:
    """Placements first (what HQ says is there), then the detected identity matched to the catalog
    for numbers no placement names."""
    by_id = {g.id: g for g in games}
    out: dict[tuple[str, str, str], CatalogGame] = {}
    for p in placements:
        game = by_id.get(p.game)
        if game is not None:
            out[(p.hall, p.device, str(p.number))] = game
    for d in detected:
        for g in d.games:
            key = (d.hall, d.device, str(g.number))
            if key not in out:
                found = match(g, games)
                if found is not None:
                    out[key] = found
    return GameMap(out)


# --- desired vs detected ------------------------------------------------------------------------
def differences(placements: Sequence[Placement], detected: Detected | None, games: Sequence[CatalogGame],
                limits: Sequence[LimitRule] = (), hall: str = "") -> list[Difference]:
    """Every difference between one device's placements and its detected identity, by game number."""
    by_id = {g.id: g for g in games}
    out: list[Difference] = []
    if detected is None:
        if placements:
            out.append(Difference("no_identity", None, None,
                                  "the device has placements but never reported its games (LP 1F/53/56)"))
        return out
    hall = hall or detected.hall
    placed = {p.number: p for p in placements}
    for p in sorted(placements, key=lambda x: x.number):
        game = by_id.get(p.game)
        seen = detected.game(p.number)
        if game is not None and game.status != "active" and p.enabled:
            out.append(Difference("inactive_game", p.number, p.game, f"catalog game {p.game} is {game.status}"))
        if seen is None:
            out.append(Difference("missing_game", p.number, p.game,
                                  f"game number {p.number} is not among the games the device reports"))
            continue
        if game is not None and (game.paytable_id or game.sas_game_id) and (
                (game.paytable_id and game.paytable_id != seen.paytable_id)
                or (game.sas_game_id and game.sas_game_id != seen.game_id)):
            out.append(Difference("paytable_mismatch", p.number, p.game,
                                  f"catalog {game.sas_game_id or '?'}/{game.paytable_id or '?'}, device reports "
                                  f"{seen.game_id or '?'}/{seen.paytable_id or '?'}"))
        is_on = p.number in detected.enabled_games
        if p.enabled and not is_on:
            out.append(Difference("disabled_but_desired", p.number, p.game,
                                  f"game number {p.number} should be enabled but the device has it disabled"))
        elif not p.enabled and is_on:
            out.append(Difference("enabled_but_not_desired", p.number, p.game,
                                  f"game number {p.number} should be disabled but the device has it enabled"))
    for seen in detected.games:
        placement = placed.get(seen.number)
        game = by_id.get(placement.game) if placement is not None else match(seen, games)
        if placement is None:
            if game is None:
                out.append(Difference("unknown_game", seen.number, None,
                                      f"game number {seen.number} ({seen.game_id or '?'}/{seen.paytable_id or '?'})"
                                      " matches no catalog game"))
            elif placements:
                out.append(Difference("unexpected_game", seen.number, game.id,
                                      f"game number {seen.number} is catalog game {game.id} but is not placed"))
        out.extend(_bet_checks(seen, game, limits, hall))
    return out


def _bet_checks(seen: DetectedGame, game: CatalogGame | None, limits: Sequence[LimitRule],
                hall: str) -> list[Difference]:
    top = seen.max_bet_minor
    if top is None:
        return []
    out = []
    gid = None if game is None else game.id
    if game is not None and top > game.max_bet:
        out.append(Difference("max_bet_over_catalog", seen.number, gid,
                              f"device max bet {top} exceeds the catalog's {game.max_bet}"))
    for rule in limits:
        if rule.covers(hall, game) and top > rule.max_bet:
            out.append(Difference("max_bet_over_limit", seen.number, gid,
                                  f"device max bet {top} exceeds limit {rule.max_bet}", rule=rule.id))
    return out


def over_limit(rule: LimitRule, detected: Iterable[Detected], gmap: GameMap) -> list[tuple[Detected, DetectedGame]]:
    """The (device, game number) pairs in the rule's scope whose detected max bet exceeds it."""
    out = []
    for d in detected:
        for g in d.games:
            top = g.max_bet_minor
            if top is not None and top > rule.max_bet and rule.covers(d.hall, gmap.get(d.hall, d.device,
                                                                                        str(g.number))):
                out.append((d, g))
    return out


# --- hold vs RTP --------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class HoldCheck:
    """Actual hold against theoretical hold, all in basis points of the bets (integers)."""

    actual_bp: int | None
    theoretical_bp: int | None
    deviation_bp: int | None
    band_bp: int | None
    anomaly: bool
    reason: str


def hold_bp(bets: int, wins: int) -> int | None:
    """(bets − wins) / bets in basis points, rounded half away from zero; None without bets."""
    if bets <= 0:
        return None
    num = (bets - wins) * 10_000
    q, r = divmod(abs(num), bets)
    q += 1 if 2 * r >= bets else 0
    return q if num >= 0 else -q


def hold_band_bp(rounds: int, *, sigma_bp: int = HOLD_SIGMA_BP, z: int = HOLD_Z) -> int:
    """``ceil(z · sigma / sqrt(rounds))`` in basis points, in integers (no float)."""
    if rounds <= 0:
        raise ValueError("rounds must be positive")
    top = z * sigma_bp
    # smallest b with b² · rounds ≥ top²
    b = math.isqrt(top * top // rounds)
    while b * b * rounds < top * top:
        b += 1
    return b


def check_hold(bets: int, wins: int, rounds: int, rtp_bp: int | None, *, min_rounds: int = HOLD_MIN_ROUNDS,
               sigma_bp: int = HOLD_SIGMA_BP, z: int = HOLD_Z) -> HoldCheck:
    """Flag an actual hold outside ``theoretical ± band(rounds)``, never below ``min_rounds`` rounds."""
    actual = hold_bp(bets, wins)
    theoretical = None if rtp_bp is None else 10_000 - rtp_bp
    if actual is None:
        return HoldCheck(None, theoretical, None, None, False, "no bets")
    if theoretical is None:
        return HoldCheck(actual, None, None, None, False, "no theoretical RTP (game not in the catalog)")
    deviation = actual - theoretical
    if rounds < min_rounds:
        return HoldCheck(actual, theoretical, deviation, None, False,
                         f"too few rounds to judge ({rounds} < {min_rounds})")
    band = hold_band_bp(rounds, sigma_bp=sigma_bp, z=z)
    if abs(deviation) > band:
        side = "above" if deviation > 0 else "below"
        return HoldCheck(actual, theoretical, deviation, band, True,
                         f"hold {actual} bp is {abs(deviation)} bp {side} the theoretical {theoretical} bp, "
                         f"beyond the {band} bp band for {rounds} rounds")
    return HoldCheck(actual, theoretical, deviation, band, False, "within the band")
