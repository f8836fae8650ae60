"""The MQTT session counter on a full disk (chaos seed 11): saving it failed with ENOSPC inside the link's
will callback, the link task died and the hall stopped replicating until a restart. The counter now
keeps counting in memory and catches the file up once the disk has room."""

from __future__ import annotations

from pathlib import Path

from agent.replicator import SessionCounter
from tests.conftest import fill


def test_the_counter_keeps_counting_on_a_full_disk_and_saves_once_there_is_room(small_fs: Path) -> None:
    path = small_fs / "mqtt-session"
    counter = SessionCounter(path)
    assert counter.next() == 1
    filler = small_fs / "filler"
    fill(filler)
    assert [counter.next(), counter.next()] == [2, 3]          # no OSError: the link can connect
    assert path.read_text().strip() == "1"                      # not saved while the disk is full
    assert not (small_fs / "mqtt-session.tmp").exists()          # no half-written file left behind
    filler.unlink()
    assert counter.next() == 4
    assert SessionCounter(path).value == 4                       # a restart goes on from the saved number
