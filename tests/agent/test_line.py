"""The line owner: immediate repeats, implied ACKs across polls, serialization of many callers."""

from __future__ import annotations

import asyncio

from agent.sas.line import ACK_POLL, SasLine
from agent.sas.transaction import Outcome, Timing, TransactionResult
from protocols.sas import framing, wire
from protocols.sas import longpolls as lp
from protocols.sas.exceptions import GameEndedData, GameStartedData

from .memegm import ScriptedEgm, pair

T = Timing(response_timeout=0.03, gap_timeout=0.01)
GP1 = framing.encode_general_poll(1)


async def _setup(script: list) -> tuple[SasLine, ScriptedEgm]:
    host, dev = pair()
    egm = ScriptedEgm(dev, 1, script)
    await egm.start()
    line = SasLine(host, T)
    await line.start()
    return line, egm


def _sent(line: SasLine) -> list[bytes]:
    return [bytes(c & 0xFF for c in chars) for chars in line.transport.sent]  # type: ignore[attr-defined]


async def test_garbled_reply_repeats_the_same_poll_immediately() -> None:
    good = framing.encode_response(1, lp.CurrentCredits(7))
    line, egm = await _setup([good[:-1] + b"\x00", good])
    try:
        frame = framing.encode_long_poll(1, lp.SendCurrentCredits())
        res = await line.poll(1, frame, 0x1A)
        assert [a.outcome for a in res.attempts] == [Outcome.GARBLED, Outcome.REPLY]
        assert res.reply == framing.Reply(lp.CurrentCredits(7))
        assert _sent(line)[-2:] == [frame, frame], "the repeat is the very same poll, nothing between"
    finally:
        await line.stop()
        await egm.stop()


async def test_exception_confirmed_only_when_a_different_poll_goes_out() -> None:
    line, egm = await _setup([b"\x11", b"\x00"])
    confirmed: list[int] = []
    try:
        res = await line.poll(1, GP1, None, on_confirmed=lambda r: confirmed.append(r.reply.code))
        assert res.reply == framing.ExceptionReply(0x11) and confirmed == []
        await line.poll(1, GP1, None)
        # the same general poll again would be a NACK: the line ACKs with a poll to address 0 first
        assert _sent(line)[-2:] == [ACK_POLL, GP1]
        assert confirmed == [0x11]
    finally:
        await line.stop()
        await egm.stop()


async def test_no_ack_poll_needed_after_no_activity() -> None:
    line, egm = await _setup([b"\x00", b"\x00"])
    try:
        await line.poll(1, GP1, None)
        await line.poll(1, GP1, None)
        assert _sent(line) == [GP1, GP1]
    finally:
        await line.stop()
        await egm.stop()


async def test_many_callers_are_serialized() -> None:
    line, egm = await _setup([b"\x00"] * 20)
    try:
        results = await asyncio.gather(*(line.poll(1, GP1, None) for _ in range(20)))
        assert all(r.reply == framing.ExceptionReply(0) for r in results)
        assert all(len(chars) == 1 and chars[0] & wire.WAKEUP for chars in line.transport.sent)  # type: ignore[attr-defined]
    finally:
        await line.stop()
        await egm.stop()


async def test_late_answers_to_a_poll_given_up_unanswered_are_taken_once() -> None:
    """A poll asked three times and never answered in time is answered three times, late: the EGM
    repeats its event for each repeat. The first answer is taken (the next poll ACKs it to the EGM);
    the two copies after it are dropped and their poll asked again, until the EGM's real answer."""
    start = framing.encode_rte_event(1, 0x7E, GameStartedData(5, 105, 0, 0))
    end = framing.encode_rte_event(1, 0x7F, GameEndedData(0))
    line, egm = await _setup([None, None, None, start, start, start, end, None])
    confirmed: list[int] = []

    def on(result: TransactionResult) -> None:
        confirmed.append(getattr(result.reply, "code", -1))

    try:
        credits = framing.encode_long_poll(1, lp.SendCurrentCredits())
        res = await line.poll(1, credits, 0x1A, rte=True, on_confirmed=on)
        assert res.outcome is Outcome.TIMEOUT and len(res.attempts) == 3
        res = await line.poll(1, GP1, None, rte=True, quiet_ok=True, on_confirmed=on)
        assert isinstance(res.reply, framing.RteEvent) and res.reply.code == 0x7E
        res = await line.poll(1, GP1, None, rte=True, quiet_ok=True, on_confirmed=on)
        assert isinstance(res.reply, framing.RteEvent) and res.reply.code == 0x7F
        assert len(res.attempts) == 3 and line.late_copies == 2
        await line.poll(1, GP1, None, rte=True, quiet_ok=True, on_confirmed=on)
        assert confirmed == [0x7E, 0x7F]
    finally:
        await line.stop()
        await egm.stop()
