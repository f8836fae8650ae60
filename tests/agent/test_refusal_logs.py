"""Refused messages from the broker (forged acks, forged commands) are counted, every one, but logged at
most 20 times a minute per kind of refusal: someone flooding an open broker must not fill the hall
mini-PC's journal (issue 16). The next line written says how many similar ones were dropped."""

from __future__ import annotations

from pathlib import Path

from structlog.testing import capture_logs

from agent.commands import CommandHandler
from agent.outbox import Outbox
from agent.replicator import Replicator
from mqttlink import Received, parse_broker_url
from protocols.sync import generate_private_key, topic

from .test_outbox import HALL, T0

MINUTE = 60_000_000


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> int:
        return self.now


async def _nothing(_drafts: list) -> None:
    return None


async def test_a_flood_of_forged_commands_is_counted_and_logged_twenty_times_a_minute(tmp_path: Path) -> None:
    clock = Clock()
    handler = CommandHandler(HALL, generate_private_key(), generate_private_key().public_key(),
                             tmp_path / "commands.db", families=list, append=_nothing, clock=clock)
    with capture_logs() as logs:
        for i in range(500):
            await handler.on_message(b"not a command %d" % i)
        clock.now += MINUTE
        await handler.on_message(b"one more")
    lines = [e for e in logs if e["event"] == "command_refused"]
    assert handler.stats["refused"] == 501
    assert len(lines) == 21
    assert lines[-1]["similar_suppressed"] == 480 and lines[0]["similar_suppressed"] == 0
    handler.store.close()


async def test_a_flood_of_forged_acks_is_counted_and_logged_twenty_times_a_minute(tmp_path: Path) -> None:
    clock = Clock()
    async with Outbox(tmp_path / "outbox.db", HALL) as outbox:
        rep = Replicator(outbox, HALL, generate_private_key(), generate_private_key().public_key(),
                         parse_broker_url("mqtt://127.0.0.1:1"), data_dir=tmp_path, clock=clock)
        with capture_logs() as logs:
            for i in range(300):
                await rep._on_message(Received(topic(HALL, "acks"), b'{"forged": %d}' % i, False, 1))
            await rep._on_message(Received(topic("other-hall", "acks"), b"{}", False, 1))  # another kind of refusal
        lines = [e for e in logs if e["event"] == "central_message_refused"]
        assert rep.stats["refused_messages"] == 301
        assert len(lines) == 21   # 20 of the forged acks, and the other hall's: its own budget
        assert outbox.acked_through == 0
