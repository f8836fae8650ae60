"""The EGM on a real pty, opened from the test the way a host opens it."""

from __future__ import annotations

import asyncio
import os
import time
import tty

import pytest

from firmware_sim import meters as m
from firmware_sim.egm import Egm, GameConfig
from firmware_sim.faults import Faults
from firmware_sim.pty_egm import PtyEgmServer
from firmware_sim.responder import LinkConfig
from protocols.sas import framing
from protocols.sas import longpolls as lp
from protocols.sas.errors import SASError
from protocols.sas.exceptions import BillAcceptedData
from protocols.sas.wire import MarkDecoder, mark_message

GAMES = [GameConfig(1, denomination=1, max_bet=100, rtp=0.96), GameConfig(2, denomination=5, max_bet=20, rtp=0.94)]
pytestmark = pytest.mark.timeout(30)


class PtyHost:
    """The host end: the slave path opened raw, non-blocking."""

    def __init__(self, path: str, marks: bool = True) -> None:
        self.fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        tty.setraw(self.fd)
        self.marks = marks

    def close(self) -> None:
        os.close(self.fd)

    def write(self, data: bytes) -> None:
        os.write(self.fd, data)

    def send(self, message: bytes) -> None:
        self.write(mark_message(message) if self.marks else message)

    async def read_for(self, seconds: float) -> bytes:
        out = bytearray()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                out += os.read(self.fd, 4096)
            except BlockingIOError:
                await asyncio.sleep(0.002)
        return bytes(out)

    async def read_at_least(self, n: int, timeout: float = 1.0) -> bytes:
        out = bytearray()
        deadline = time.monotonic() + timeout
        while len(out) < n and time.monotonic() < deadline:
            try:
                out += os.read(self.fd, 4096)
            except BlockingIOError:
                await asyncio.sleep(0.001)
        return bytes(out)

    async def poll(self, message: bytes, expect: int, timeout: float = 1.0) -> bytes:
        """Send and read back ``expect`` bytes of reply (unmarked; a chirp in flight is skipped)."""
        self.send(message)
        decoder, chars = MarkDecoder(), []
        deadline = time.monotonic() + timeout
        while len(chars) < expect and time.monotonic() < deadline:
            raw = await self.read_at_least(1, deadline - time.monotonic())
            chars += [c for c in decoder.feed(raw) if not c & 0x100] if self.marks else list(raw)
        return bytes(chars)


async def serve(egm: Egm, **kw: object) -> tuple[PtyEgmServer, PtyHost]:
    server = PtyEgmServer(egm, **kw)  # type: ignore[arg-type]
    path = await server.start()
    host = PtyHost(path, marks=server.framing == "marks")
    host.send(b"\x80")                                   # sync poll (address 0)
    return server, host


CREDITS = framing.encode_long_poll(1, lp.SendCurrentCredits())


async def test_marks_framing_round_trip() -> None:
    egm = Egm(1, GAMES, pace=0)
    server, host = await serve(egm)
    try:
        egm.insert_bill(20)
        assert await host.poll(b"\x81", 1) == b"\x4a"
        host.send(b"\x82")                                # ACK by polling elsewhere
        reply = await host.poll(CREDITS, 8)
        assert framing.decode_reply(reply, 1, 0x1A) == framing.Reply(lp.CurrentCredits(2000))
        assert await host.read_for(0.05) == b""          # nothing else comes
    finally:
        host.close()
        await server.stop()


async def test_marks_double_a_literal_ff_and_leave_replies_unmarked() -> None:
    egm = Egm(1, GAMES, pace=0)
    server, host = await serve(egm)
    try:
        assert await host.poll(framing.encode_long_poll(1, lp.RealTimeEventReporting(1)), 1) == b"\x01"
        egm.insert_bill(5)
        host.send(b"\x82")
        host.send(b"\x81")
        wire = await host.read_at_least(12)
        assert wire[:4] == b"\x01\xff\xff\x4f"           # addr, FF marker doubled, code
        chars = MarkDecoder().feed(wire)
        assert not any(c & 0x100 for c in chars)
        event = framing.decode_reply(bytes(c & 0xFF for c in chars), 1, None, rte=True)
        assert event == framing.RteEvent(0x4F, BillAcceptedData(0, 2, 1))
    finally:
        host.close()
        await server.stop()


async def test_structural_framing_serves_a_host_without_marks() -> None:
    egm = Egm(1, GAMES, pace=0)
    server, host = await serve(egm, framing="structural")
    try:
        egm.insert_bill(10)
        await asyncio.sleep(0.03)
        reply = await host.poll(b"\x82\x01\x1a", 8)       # saspy style: a poll elsewhere, then the LP
        assert framing.decode_reply(reply, 1, 0x1A) == framing.Reply(lp.CurrentCredits(1000))
        await asyncio.sleep(0.03)
        host.write(b"\x01")                              # a message cut short ...
        await asyncio.sleep(0.05)                        # ... by an idle line is dropped
        assert await host.read_for(0.02) == b""
        reply = await host.poll(b"\x83\x01\x1a", 8)
        assert framing.decode_reply(reply, 1, 0x1A) == framing.Reply(lp.CurrentCredits(1000))
    finally:
        host.close()
        await server.stop()


async def test_chirps_after_silence_and_stops_when_polled() -> None:
    egm = Egm(1, GAMES, pace=0)
    server = PtyEgmServer(egm, link=LinkConfig(chirp_after=0.3, chirp_interval=0.1))
    host = PtyHost(await server.start())
    try:
        assert await host.read_for(0.2) == b""
        wire = await host.read_for(0.5)
        chirps = wire.count(b"\xff\x00\x01")
        assert 3 <= chirps <= 6 and wire == b"\xff\x00\x01" * chirps
        assert await host.poll(b"\x81", 1, timeout=0.1) == b""      # sync rule re-armed: ignored
        host.send(b"\x80")
        assert await host.poll(b"\x81", 1) == b"\x00"
        assert await host.read_for(0.2) == b""                       # polled recently: no chirps
    finally:
        host.close()
        await server.stop()


async def test_fault_knobs_corrupt_truncate_drop_and_delay_replies() -> None:
    egm = Egm(1, GAMES, pace=0)
    faults = Faults()
    server, host = await serve(egm, faults=faults)
    try:
        faults.corrupt_replies = 1
        with pytest.raises(SASError):
            framing.decode_reply(await host.poll(CREDITS, 8), 1, 0x1A)
        host.send(b"\x82")
        faults.truncate_replies = 1
        assert len(await host.poll(CREDITS, 8, timeout=0.1)) == 7
        host.send(b"\x82")
        faults.drop_replies = 1
        assert await host.poll(CREDITS, 8, timeout=0.1) == b""
        host.send(b"\x82")
        faults.reply_delay = 0.05
        start = time.monotonic()
        reply = await host.poll(CREDITS, 8)
        assert time.monotonic() - start >= 0.045
        assert framing.decode_reply(reply, 1, 0x1A) == framing.Reply(lp.CurrentCredits(0))
    finally:
        host.close()
        await server.stop()


async def test_dead_link_then_power_cycle_through_the_knobs() -> None:
    egm = Egm(1, GAMES, pace=0)
    faults = Faults()
    server, host = await serve(egm, faults=faults)
    try:
        assert await host.poll(b"\x81", 1) == b"\x00"
        faults.kill_link(0.3)
        assert await host.poll(b"\x81", 1, timeout=0.2) == b""
        await asyncio.sleep(0.15)
        assert await host.poll(b"\x81", 1) == b"\x00"
        faults.request_power_cycle(0.2)
        await asyncio.sleep(0.15)
        assert not egm.powered
        await asyncio.sleep(0.2)
        assert egm.powered
        assert await host.poll(b"\x81", 1, timeout=0.1) == b""      # must re-sync after power-up
        host.send(b"\x80")
        assert await host.poll(b"\x81", 1) == b"\x18"
        host.send(b"\x80")
        assert await host.poll(b"\x81", 1) == b"\x17"
    finally:
        host.close()
        await server.stop()


async def test_host_closing_and_reopening_the_port_keeps_the_line_alive() -> None:
    egm = Egm(1, GAMES, pace=0)
    server, host = await serve(egm)
    try:
        assert await host.poll(b"\x81", 1) == b"\x00"
        host.close()
        await asyncio.sleep(0.05)
        host = PtyHost(server.path or "")
        host.send(b"\x80")
        assert await host.poll(b"\x81", 1) == b"\x00"
    finally:
        host.close()
        await server.stop()


async def test_players_play_their_rounds_and_the_wire_shows_the_meters() -> None:
    egm = Egm(1, GAMES, seed=5, pace=0.02, rounds=15)
    server, host = await serve(egm)
    try:
        await asyncio.wait_for(server.finished.wait(), timeout=10)
        assert egm.truth.rounds == 15
        host.send(b"\x80")
        reply = framing.decode_reply(await host.poll(framing.encode_long_poll(1, lp.SendMeters0F()), 28), 1, 0x0F)
        assert reply == framing.Reply(lp.Meters0F(egm.truth.cash_out, egm.truth.bets, egm.meter(m.COIN_OUT),
                                                  egm.truth.cash_in, egm.meter(m.JACKPOT), 15))
        assert egm.truth.wins == egm.meter(m.COIN_OUT) + egm.meter(m.JACKPOT)
    finally:
        host.close()
        await server.stop()
    assert not server._tasks


async def test_an_egm_set_to_require_its_host_holds_play_until_its_meters_are_first_read() -> None:
    """Play starts at the host's first meter read, where its accounting of the machine starts."""
    egm = Egm(1, GAMES, pace=0.02, rounds=5)
    server = PtyEgmServer(egm, wait_for_host=True)
    path = await server.start()
    host = PtyHost(path)
    try:
        await asyncio.sleep(0.3)                         # fifteen paces: a free machine would have played
        assert egm.meter(m.GAMES_PLAYED) == 0 and not server.finished.is_set()
        host.send(b"\x80")
        assert len(await host.poll(CREDITS, 8)) == 8     # the host's first poll: not yet
        await asyncio.sleep(0.3)
        assert egm.meter(m.GAMES_PLAYED) == 0
        meters = framing.encode_long_poll(1, lp.SendMeters1C())
        assert await host.poll(meters, 2 + lp.payload_size(lp.Meters1C) + 2)   # its first meter read
        host.send(b"\x80")                               # the next poll: the machine sees the host has read
        await asyncio.wait_for(server.finished.wait(), 5)
        assert egm.meter(m.GAMES_PLAYED) == 5
    finally:
        host.close()
        await server.stop()
