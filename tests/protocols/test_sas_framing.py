"""Framers and the implied ACK/NACK rule, as an EGM and a host see the line."""

from __future__ import annotations

import datetime as dt

import pytest

from protocols.sas import ackstate, clock, framing, wire
from protocols.sas import longpolls as lp
from protocols.sas.errors import CRCError, FrameError, SASError
from protocols.sas.exceptions import GameEndedData, GameStartedData


def marked(*frames: bytes) -> list[int]:
    out: list[int] = []
    for frame in frames:
        out += wire.chars(frame)
    return out


def test_framer_splits_a_stream_of_polls() -> None:
    stream = marked(b"\x82", framing.encode_long_poll(1, lp.SendCurrentCredits()), b"\x81",
                    framing.encode_long_poll(1, lp.EnableDisableGame(3, 0)))
    got = framing.HostMessageFramer().feed(stream)
    assert got[0] == framing.GeneralPoll(2)
    assert isinstance(got[1], framing.LongPollFrame) and got[1].decode() == lp.SendCurrentCredits()
    assert got[2] == framing.GeneralPoll(1)
    assert got[3].decode() == lp.EnableDisableGame(3, 0)


def test_framer_reports_a_message_cut_by_a_new_address() -> None:
    full = framing.encode_long_poll(1, lp.EnableDisableGame(3, 0))
    got = framing.HostMessageFramer().feed(marked(full[:3], b"\x81"))
    assert isinstance(got[0], framing.Garbled) and got[0].address == 1
    assert got[1] == framing.GeneralPoll(1)


def test_framer_skips_unsupported_long_polls_until_the_next_address() -> None:
    unknown = bytes((1, 0x99, 0x10, 0x20, 0x30))
    got = framing.HostMessageFramer().feed(marked(unknown, b"\x81"))
    assert got == [framing.Unsupported(1, 0x99), framing.GeneralPoll(1)]


def test_framer_ignores_unmarked_noise_while_idle() -> None:
    framer = framing.HostMessageFramer()
    assert framer.feed([0x01, 0x1A, 0x33]) == []
    assert framer.noise == 3


def test_structural_framer_frames_by_structure_and_gaps() -> None:
    framer = framing.HostMessageFramer(structural=True)
    # saspy style: a general poll to address 2 first, then the long poll to us
    got = framer.feed(list(b"\x82" + framing.encode_long_poll(1, lp.SendSasVersion())))
    assert got[0] == framing.GeneralPoll(2)
    assert got[1].decode() == lp.SendSasVersion()
    assert framer.feed(list(framing.encode_long_poll(1, lp.EnableDisableGame(1, 1))[:4])) == []
    cut = framer.gap()
    assert isinstance(cut[0], framing.Garbled)
    assert framer.feed(list(b"\x81")) == [framing.GeneralPoll(1)]


def test_bad_crc_is_detected_by_the_egm() -> None:
    frame = bytearray(framing.encode_long_poll(1, lp.EnableDisableGame(1, 1)))
    frame[-1] ^= 0xFF
    (heard,) = framing.HostMessageFramer().feed(marked(bytes(frame)))
    with pytest.raises(CRCError):
        heard.decode()


def test_reply_reader_in_rte_mode() -> None:
    event = framing.encode_rte_event(3, 0x7E, GameStartedData(25, 1000, 0, 0))
    # In RTE mode an event may answer a long poll: the host must treat it as an implied NACK.
    assert framing.decode_reply(event, 3, 0x1A, rte=True) == framing.RteEvent(0x7E, GameStartedData(25, 1000, 0, 0))
    ended = framing.encode_rte_event(3, 0x7F, GameEndedData(40))
    assert framing.decode_reply(ended, 3, None, rte=True) == framing.RteEvent(0x7F, GameEndedData(40))
    # An RTE ACK needs the idle line to be told apart from the start of an event.
    reader = framing.ReplyReader(3, 0x01, rte=True)
    assert reader.feed([3]) is None
    assert reader.gap() == framing.Ack()
    # A single legacy byte while RTE was expected: the EGM lost RTE mode (power cycle).
    assert framing.decode_reply(b"\x17", 3, None, rte=True) == framing.ExceptionReply(0x17)


def test_reply_reader_rejects_events_outside_rte_and_strangers() -> None:
    with pytest.raises(FrameError):
        framing.decode_reply(framing.encode_rte_event(3, 0x11), 3, 0x1A)
    with pytest.raises(FrameError):
        framing.decode_reply(framing.encode_response(4, lp.CurrentCredits(5)), 3, 0x1A)
    with pytest.raises(FrameError):
        framing.decode_reply(framing.encode_response(3, lp.CurrentCredits(5)), 3, 0x54)


def test_reply_reader_sees_a_chirp() -> None:
    assert framing.ReplyReader(9, None).feed([9 | wire.WAKEUP]) == framing.Chirp(9)


def test_b0_wraps_and_unwraps() -> None:
    inner = lp.SendExtendedMeters(2, (0x0000, 0x0005))
    wrapped = lp.MultiDenomPreamble(3, framing.wrap_request(inner))
    frame = framing.encode_long_poll(1, wrapped)
    (heard,) = framing.HostMessageFramer().feed(marked(frame))
    assert heard.ack_key == frame[:5]
    assert framing.unwrap_request(heard.decode().message) == inner
    reply = lp.MultiDenomReply(3, framing.wrap_response(lp.ExtendedMeters(2, ((0, 1234), (5, 99)))))
    decoded = framing.decode_reply(framing.encode_response(1, reply), 1, 0xB0)
    assert framing.decode_wrapped_response(decoded.message) == lp.ExtendedMeters(2, ((0, 1234), (5, 99)))


def test_encoders_refuse_bad_values() -> None:
    for bad in (lambda: framing.encode_general_poll(0), lambda: framing.encode_general_poll(128),
                lambda: framing.encode_long_poll(1, lp.EnableDisableGame(10000, 1)),
                lambda: framing.encode_long_poll(1, lp.EnableDisableGame(1, 256)),
                lambda: framing.encode_response(1, lp.SasVersion("60é", "")),
                lambda: framing.encode_response(1, lp.SasVersion("602", "x" * 41))):
        with pytest.raises(SASError):
            bad()


def test_clock_fields() -> None:
    moment = dt.datetime(2025, 6, 15, 13, 45, 30)
    assert clock.to_sas(moment) == (6152025, 134530)
    assert clock.from_sas(6152025, 134530) == moment
    with pytest.raises(FrameError):
        clock.from_sas(13322025, 0)


def test_host_counts_an_exception_only_when_the_next_different_poll_goes_out() -> None:
    host: ackstate.HostAckTracker[int] = ackstate.HostAckTracker()
    assert host.before_send(b"\x81") is None
    host.received(0x51)
    # the reply was garbled on a retry: the same poll must go again, nothing confirmed yet
    assert host.before_send(b"\x81") is None
    host.garbled()
    assert host.must_repeat
    assert host.before_send(b"\x81") is None
    host.received(0x51)
    # a different poll (a long poll) confirms the exception exactly once
    assert host.before_send(b"\x01\x1b") == 0x51
    assert host.before_send(b"\x81") is None


def test_egm_keeps_data_on_repeated_polls_and_commits_on_a_different_one() -> None:
    egm: ackstate.EgmAckTracker[int] = ackstate.EgmAckTracker()
    assert egm.heard(b"\x81", True) == (None, None)
    egm.sent(0x7E, b"\x81")
    for _ in range(5):  # however often the host repeats, the data is not dropped
        assert egm.heard(b"\x81", True) == (None, 0x7E)
    assert egm.heard(b"\x01\x1a", True) == (0x7E, None)
    egm.sent(None, b"\x01\x1a")
    egm.sent(0x7F, b"\x81")
    assert egm.heard(b"\x82", False) == (0x7F, None)  # a poll to another address ACKs too
    egm.sent(0x11, b"\x81")
    assert egm.link_lost() == 0x11
