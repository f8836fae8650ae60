"""The line owner: immediate repeats, implied ACKs across polls, serialization of many callers."""

from __future__ import annotations

import asyncio
import time

from agent.sas.line import ACK_POLL, SasLine
from agent.sas.transaction import Outcome, Timing, TransactionResult
from agent.transport.memory import MemoryTransport
from firmware_sim.egm import Egm
from protocols.sas import framing, wire
from protocols.sas import longpolls as lp
from protocols.sas.exceptions import GameEndedData, GameStartedData

from .memegm import LateHost, MemoryEgm, ScriptedEgm, Withheld, late_pair, pair

T = Timing(response_timeout=0.03, gap_timeout=0.01)
GP1 = framing.encode_general_poll(1)


async def _setup(script: list) -> tuple[SasLine, ScriptedEgm]:
    host, dev = late_pair()
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


async def test_a_late_answer_waiting_unread_when_a_different_poll_goes_out_is_taken() -> None:
    """RTE mode: a general poll's answer (a game start) arrives after the response timeout, which in
    RTE mode reads as "nothing happened". It is in the input before the next poll, a long poll,
    goes out. That poll ACKs the event to the EGM, which then forgets it. The line used to clear
    the input before each poll and drop the event, so a busy agent lost games that only a later
    meter read could restore, as ``missed``. The late event is now read from the input, confirmed
    once by that poll, and reported as late. The long poll's own late answer is read before any
    repeat."""
    start = framing.encode_rte_event(1, 0x7E, GameStartedData(5, 105, 0, 0))
    credits = framing.encode_response(1, lp.CurrentCredits(7))
    line, egm = await _setup([start, credits])
    assert isinstance(line.transport, LateHost)
    line.transport.late = True
    confirmed: list[TransactionResult] = []
    try:
        res = await line.poll(1, GP1, None, rte=True, quiet_ok=True, on_confirmed=confirmed.append)
        assert res.outcome is Outcome.TIMEOUT
        poll = framing.encode_long_poll(1, lp.SendCurrentCredits())
        res = await line.poll(1, poll, 0x1A, rte=True, on_confirmed=confirmed.append)
        assert res.reply == framing.Reply(lp.CurrentCredits(7))
        assert [(r.reply, r.late) for r in confirmed] == [(framing.RteEvent(0x7E, GameStartedData(5, 105, 0, 0)),
                                                           True)]
        assert _sent(line) == [GP1, poll], "the credits were read before any repeat"
        assert line.late_answers == 2 and line.response_timeout > T.response_timeout
    finally:
        await line.stop()
        await egm.stop()


async def test_a_poll_given_up_whose_answers_wait_unread_is_answered_once_before_the_sync_poll() -> None:
    """Legacy mode: a general poll asked three times, all three answers (the EGM's 7F and the two
    repeats the repeated poll asks for) late, so the poll is given up and the coordinator sends a
    sync poll, which ACKs the 7F to the EGM. The first answer counts once; the two copies are
    dropped; the next poll gets the EGM's next answer."""
    line, egm = await _setup([Withheld(b"\x7f"), Withheld(b"\x7f"), Withheld(b"\x7f"), b"\x00"])
    confirmed: list[int] = []

    def on(result: TransactionResult) -> None:
        confirmed.append(result.reply.code)   # type: ignore[union-attr]

    try:
        res = await line.poll(1, GP1, None, on_confirmed=on)
        assert res.outcome is Outcome.TIMEOUT and len(res.attempts) == 3
        await egm.release()   # all three answers reach the input after the poll was given up
        await line.sync()
        assert confirmed == [0x7F]
        res = await line.poll(1, GP1, None, on_confirmed=on)
        assert res.reply == framing.ExceptionReply(0)
        assert confirmed == [0x7F] and line.late_answers == 1 and line.late_copies == 2
    finally:
        await line.stop()
        await egm.stop()


async def test_a_foreign_reply_in_a_polls_window_counts_that_polls_answer_as_still_coming() -> None:
    """A slow line: a general poll's window holds the late answer to an earlier long poll (a reply to
    another command: garbled for this poll). The repeat then gets the general poll's own late answer,
    a game start, and the EGM, taking the repeat for a NACK, sends the game start once more. That copy
    used to be counted as the next game start (bets counted twice); it is known as a copy now."""
    credits = framing.encode_response(1, lp.CurrentCredits(7))
    start = framing.encode_rte_event(1, 0x7E, GameStartedData(7, 343, 0, 0))
    end = framing.encode_rte_event(1, 0x7F, GameEndedData(0))
    line, egm = await _setup([credits, start, start, end])
    confirmed: list[int] = []

    def on(result: TransactionResult) -> None:
        confirmed.append(result.reply.code)   # type: ignore[union-attr]

    try:
        res = await line.poll(1, GP1, None, rte=True, quiet_ok=True, on_confirmed=on)
        assert [a.outcome for a in res.attempts] == [Outcome.GARBLED, Outcome.REPLY]
        assert isinstance(res.reply, framing.RteEvent) and res.reply.code == 0x7E
        res = await line.poll(1, GP1, None, rte=True, quiet_ok=True, on_confirmed=on)
        assert isinstance(res.reply, framing.RteEvent) and res.reply.code == 0x7F
        assert line.late_copies == 1
        await line.poll(1, GP1, None, rte=True, quiet_ok=True, on_confirmed=on)
        assert confirmed == [0x7E, 0x7F]
    finally:
        await line.stop()
        await egm.stop()


async def _rte_rig() -> tuple[MemoryTransport, Egm, MemoryEgm]:
    """The simulator's EGM in RTE mode over the in-process pair, its loop broken after 0.2 s of
    silence (an agent restart takes longer than that on any machine, and 5 s is the default)."""
    host, dev = pair()
    egm = Egm(1, seed=1, pace=0)
    sim = MemoryEgm(dev, egm)
    sim.responder.config.chirp_after = 0.2
    await sim.start()
    return host, egm, sim


async def _drain_to_won_game_end(line: SasLine, egm: Egm, got: list[framing.EgmReply]) -> None:
    """Poll until the EGM is quiet, play one won game, poll until its 7F is held unconfirmed."""
    def on(result: TransactionResult) -> None:
        assert result.reply is not None
        got.append(result.reply)

    await line.sync(1)
    for _ in range(50):
        res = await line.poll(1, GP1, None, rte=True, quiet_ok=True, on_confirmed=on)
        if res.outcome is Outcome.TIMEOUT or res.reply == framing.ExceptionReply(0):
            break
    egm.set_rte(True)
    assert egm.insert_bill(1)
    egm.play_game(5, win=40)
    for _ in range(50):
        res = await line.poll(1, GP1, None, rte=True, quiet_ok=True, on_confirmed=on)
        if isinstance(res.reply, framing.RteEvent) and res.reply.code == 0x7F:
            assert res.reply.data == GameEndedData(40)
            return
    raise AssertionError(f"no 7F from the EGM: {got}")


async def _line_holding_a_won_game_end() -> tuple[MemoryTransport, MemoryEgm, SasLine, list[framing.EgmReply]]:
    """A started line whose last reply, still unconfirmed, is a won game's 7F; ``got``: what it confirmed."""
    host, egm, sim = await _rte_rig()
    got: list[framing.EgmReply] = []
    line = SasLine(host, T)
    await line.start()
    await _drain_to_won_game_end(line, egm, got)
    return host, sim, line, got


def _won_game_ends(got: list[framing.EgmReply]) -> list[framing.EgmReply]:
    return [r for r in got if isinstance(r, framing.RteEvent) and r.code == 0x7F]


async def _next_agent_polls(host: MemoryTransport, sim: MemoryEgm, got: list[framing.EgmReply]) -> None:
    """The restarted agent: a new line on the same port after the EGM's loop broke."""
    deadline = time.monotonic() + 10
    while not sim.responder.link_broken:
        assert time.monotonic() < deadline, "the EGM never noticed the silence"
        await asyncio.sleep(0.01)
    line = SasLine(host, T)
    await line.start()
    try:
        await line.sync(1)
        for _ in range(10):
            await line.poll(1, GP1, None, rte=True, quiet_ok=True,
                            on_confirmed=lambda r: got.append(r.reply))  # type: ignore[arg-type]
    finally:
        await line.stop()


async def test_a_reply_held_at_stop_is_acked_so_the_restarted_agent_does_not_get_it_again() -> None:
    """Chaos seed 7: a 7F held at a graceful stop was confirmed without the poll that ACKs it; the
    EGM kept it, and after the restart's loop break sent it again: one round (and its win) twice."""
    host, sim, line, got = await _line_holding_a_won_game_end()
    try:
        assert _won_game_ends(got) == [], "held, not yet confirmed"
        await line.stop()
        assert len(_won_game_ends(got)) == 1, "confirmed at stop, once its ACK went out"
        assert _sent(line)[-1] == ACK_POLL
        await _next_agent_polls(host, sim, got)
        assert len(_won_game_ends(got)) == 1, f"the won game's end counted twice: {got}"
    finally:
        await sim.stop()


async def test_a_reply_whose_ack_cannot_go_out_is_left_to_the_egm_and_taken_once_later() -> None:
    """The port fails under the line at stop: the ACK never reaches the EGM, so the reply is not
    confirmed (confirmed, it would arrive again); the restarted agent gets it from the EGM, once."""
    host, sim, line, got = await _line_holding_a_won_game_end()
    try:
        await host.close()   # unplugged: the line still thinks the port is open
        await line.stop()
        assert _won_game_ends(got) == []
        await host.open()
        await _next_agent_polls(host, sim, got)
        assert len(_won_game_ends(got)) == 1, f"the won game's end lost or counted twice: {got}"
    finally:
        await sim.stop()


async def test_a_stop_during_the_poll_that_acks_a_reply_still_delivers_that_reply() -> None:
    """The poll that ACKs a held reply is on the wire when the agent stops, its own answer not yet
    in: the EGM has dropped the reply, so it must be delivered (else it is lost to the events)."""
    host, dev = pair()
    egm = ScriptedEgm(dev, 1, [b"\x11", None])
    await egm.start()
    line = SasLine(host, Timing(response_timeout=30, gap_timeout=0.01))
    await line.start()
    confirmed: list[int] = []
    try:
        await line.poll(1, GP1, None, on_confirmed=lambda r: confirmed.append(r.reply.code))
        credits = framing.encode_long_poll(1, lp.SendCurrentCredits())
        waiting = asyncio.create_task(line.poll(1, credits, 0x1A))
        deadline = time.monotonic() + 10
        while credits not in _sent(line):
            assert time.monotonic() < deadline, "the ACKing poll never went out"
            await asyncio.sleep(0.01)
        assert confirmed == [0x11], "delivered once its ACK was written, before the answer"
        await line.stop()
        assert confirmed == [0x11], "and not again at stop"
    finally:
        waiting.cancel()   # its caller is gone at a real stop (coordinators stop first)
        await egm.stop()


async def test_a_reply_held_across_a_freeze_the_egm_takes_for_a_loop_break_is_taken_once() -> None:
    """Chaos seed 7: the agent frozen (SIGSTOP) longer than the EGM's loop-break time with a 7F in
    hand; on waking, its next poll confirmed that 7F although the EGM no longer counted any poll as
    its ACK and sent it again — one round twice. Held across such a silence, it is left to the EGM."""
    host, dev = pair()
    egm = Egm(1, seed=1, pace=0)
    sim = MemoryEgm(dev, egm)
    sim.responder.config.chirp_after = 0.3
    await sim.start()
    got: list[framing.EgmReply] = []
    line = SasLine(host, T, held_expiry=0.2)
    await line.start()
    try:
        await _drain_to_won_game_end(line, egm, got)
        deadline = time.monotonic() + 10
        while not sim.responder.link_broken:   # the agent is frozen: nothing goes out
            assert time.monotonic() < deadline, "the EGM never noticed the silence"
            await asyncio.sleep(0.01)
        await line.sync(1)
        for _ in range(10):
            await line.poll(1, GP1, None, rte=True, quiet_ok=True,
                            on_confirmed=lambda r: got.append(r.reply))  # type: ignore[arg-type]
        assert len(_won_game_ends(got)) == 1, f"the won game's end lost or counted twice: {got}"
    finally:
        await line.stop()
        await sim.stop()
