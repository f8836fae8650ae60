"""The README lists the event types an API user can filter on: the list must stay the protocol's."""

from __future__ import annotations

import re
from pathlib import Path

from protocols.sync import EVENT_TYPES, MONEY_TYPES

README = Path(__file__).resolve().parents[1] / "README.md"


def _listed(after: str, until: str) -> set[str]:
    text = README.read_text(encoding="utf-8")
    start = text.index(after)
    return set(re.findall(r"`([a-z]+(?:\.[a-z]+)?)`", text[start + len(after):text.index(until, start)]))


def test_the_readme_lists_every_event_type_and_the_money_types() -> None:
    assert _listed("Event types (", "Money types carry") == set(EVENT_TYPES)
    assert _listed("`currency`: ", "\n\n") == set(MONEY_TYPES)
