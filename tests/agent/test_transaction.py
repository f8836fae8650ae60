"""The transaction layer classifies what comes back from the EGM, the way a link test counts it."""

from __future__ import annotations

import pytest

from agent.sas.transaction import Outcome, Timing, transact
from protocols.sas import framing, wire
from protocols.sas import longpolls as lp
from protocols.sas.exceptions import GameEndedData

from .memegm import ScriptedEgm, pair

T = Timing(response_timeout=0.05, gap_timeout=0.02)
GP = framing.encode_general_poll(1)
LP1A = framing.encode_long_poll(1, lp.SendCurrentCredits())


async def run(script: list, frame: bytes = GP, command: int | None = None, rte: bool = False):
    host, dev = pair()
    egm = ScriptedEgm(dev, 1, script)
    await host.open()
    await egm.start()
    try:
        return await transact(host, 1, frame, command, rte, T), host
    finally:
        await egm.stop()


async def test_general_poll_reply_is_the_exception_code() -> None:
    res, host = await run([b"\x11"])
    assert res.outcome is Outcome.REPLY and res.reply == framing.ExceptionReply(0x11)
    assert res.latency is not None and 0 <= res.latency < 0.05
    assert host.sent == [[0x81 | wire.WAKEUP]]  # the wakeup bit on the poll byte


async def test_long_poll_data_reply() -> None:
    res, _ = await run([framing.encode_response(1, lp.CurrentCredits(1234))], LP1A, 0x1A)
    assert res.outcome is Outcome.REPLY
    assert res.reply == framing.Reply(lp.CurrentCredits(1234))


async def test_silence_is_a_timeout() -> None:
    res, _ = await run([None])
    assert res.outcome is Outcome.TIMEOUT and res.latency is None


async def test_bad_crc_is_garbled() -> None:
    good = framing.encode_response(1, lp.CurrentCredits(1234))
    res, _ = await run([good[:-1] + bytes((good[-1] ^ 0xFF,))], LP1A, 0x1A)
    assert res.outcome is Outcome.GARBLED and "CRC" in (res.error or "").upper()


async def test_reply_cut_short_is_garbled() -> None:
    good = framing.encode_response(1, lp.CurrentCredits(1234))
    res, _ = await run([good[:4]], LP1A, 0x1A)
    assert res.outcome is Outcome.GARBLED


@pytest.mark.parametrize(("reply", "outcome"), [
    (bytes((0x81,)), Outcome.NACK), (bytes((0x01, 0x00)), Outcome.BUSY),
    ([0x01 | wire.WAKEUP], Outcome.CHIRP),
])
async def test_nack_busy_chirp(reply: bytes | list[int], outcome: Outcome) -> None:
    res, _ = await run([reply], LP1A, 0x1A)
    assert res.outcome is outcome


async def test_ack_of_a_control_poll() -> None:
    res, _ = await run([b"\x01"], framing.encode_long_poll(1, lp.Shutdown()), 0x01)
    assert res.outcome is Outcome.REPLY and res.reply == framing.Ack()


async def test_rte_event_answering_a_general_poll() -> None:
    event = framing.encode_rte_event(1, 0x7F, GameEndedData(500))
    res, _ = await run([event], rte=True)
    assert res.reply == framing.RteEvent(0x7F, GameEndedData(500))
