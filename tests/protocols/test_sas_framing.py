"""Framers and the implied ACK/NACK rule, as an EGM and a host see the line."""

from __future__ import annotations

import datetime as dt

import pytest

from protocols.sas import ackstate, clock, framing, wire
from protocols.sas import crc as crc_mod
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


def test_reply_reader_rejects_strangers() -> None:
    with pytest.raises(FrameError):
        framing.decode_reply(framing.encode_response(4, lp.CurrentCredits(5)), 3, 0x1A)
    with pytest.raises(FrameError):
        framing.decode_reply(framing.encode_response(3, lp.CurrentCredits(5)), 3, 0x54)


# ---- a lone address byte (issue 12): what it means depends on the poll, the mode and what follows ----

Read = tuple[framing.EgmReply | None, framing.EgmReply | None]


def _read(wire_bytes: str, address: int, command: int | None, rte: bool) -> Read:
    """(what feed() returned, what gap() returned after it) for bytes on the wire, one at a time."""
    reader = framing.ReplyReader(address, command, rte)
    fed = None
    for byte in bytes.fromhex(wire_bytes):
        assert fed is None, "reply reported complete before its last byte"
        fed = reader.feed([byte])
    return fed, (reader.gap() if fed is None else None)


def test_a_lone_address_after_an_rte_general_poll_is_an_echo_not_exception_01() -> None:
    # RTE mode, nothing queued: silence, an unmarked chirp, a late ACK or an ACK-like echo -> "01".
    assert _read("01", 1, None, rte=True) == (None, framing.AddressEcho(1))
    # ... also where the address is a defined code (0x17 = AC power applied): RTE events come as
    # "17 FF code ..", so "17" alone is the echo of address 0x17.
    assert _read("17", 0x17, None, rte=True) == (None, framing.AddressEcho(0x17))


def test_a_lone_address_after_a_legacy_general_poll_is_an_exception_only_if_sas_defines_it() -> None:
    # 01..10 are no exception codes: "01" from EGM 1 is its address echoed (chirp without mark, late ACK).
    assert _read("01", 1, None, rte=False) == (None, framing.AddressEcho(1))
    assert _read("10", 0x10, None, rte=False) == (None, framing.AddressEcho(0x10))
    # 11 is "slot door opened": in legacy mode EGM 0x11 reports it with exactly this byte.
    assert _read("11", 0x11, None, rte=False) == (None, framing.ExceptionReply(0x11))
    # Any other single byte is the exception at once (no wait for the idle line).
    assert _read("11", 1, None, rte=False) == (framing.ExceptionReply(0x11), None)
    assert _read("00", 1, None, rte=False) == (framing.ExceptionReply(0x00), None)
    assert _read("81", 1, None, rte=False) == (framing.ExceptionReply(0x81), None)   # hopper low, not NACK


def test_a_legacy_code_while_rte_was_expected_means_the_egm_left_rte_mode() -> None:
    assert _read("17", 1, None, rte=True) == (framing.ExceptionReply(0x17), None)
    assert _read("00", 1, None, rte=True) == (framing.ExceptionReply(0x00), None)


def test_an_rte_event_is_read_whole_where_the_host_believed_rte_off() -> None:
    """After an agent restart the EGM is still in RTE mode while the new agent polls in legacy mode:
    the event is read whole (with its data), not cut to an exception 01 and an unread tail."""
    event = framing.encode_rte_event(1, 0x7F, GameEndedData(40))
    assert event.hex(" ") == "01 ff 7f 00 00 00 40 " + event[-2:].hex(" ")
    assert _read(event.hex(), 1, None, rte=False) == (framing.RteEvent(0x7F, GameEndedData(40)), None)
    # the same for a long poll, ACKed (LP 0E) or with data (LP 1A): "01" is not an ACK yet
    assert _read(event.hex(), 1, 0x0E, rte=False) == (framing.RteEvent(0x7F, GameEndedData(40)), None)
    assert _read(event.hex(), 1, 0x1A, rte=False) == (framing.RteEvent(0x7F, GameEndedData(40)), None)
    door = framing.encode_rte_event(1, 0x11)
    assert _read(door.hex(), 1, None, rte=False) == (framing.RteEvent(0x11, None), None)


def test_an_ack_is_decided_by_the_idle_line_in_either_mode() -> None:
    for rte in (False, True):
        assert _read("05", 5, 0x01, rte) == (None, framing.Ack())
        assert _read("05", 5, 0x1A, rte) == (None, None)            # LP 1A is never ACKed: cut short
        assert _read("85", 5, 0x1A, rte) == (framing.Nack(), None)
        assert _read("05 00", 5, 0x1A, rte) == (framing.Busy(), None)
    with pytest.raises(FrameError):
        framing.ReplyReader(1, None).feed([1, 0x1A])               # a general poll has no data reply


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


@pytest.mark.parametrize("address", [0, 0x80, 0x9C, 0xFF])
def test_a_reply_from_an_address_sas_cannot_have_is_refused(address: int) -> None:
    """``9c 11 …`` once decoded as total coin-in from "address 156"; SAS addresses are 1..127."""
    good = framing.encode_response(0x1C, lp.RESPONSES[0x11].from_payload(bytes.fromhex("73357700")))
    frame = crc_mod.append_crc(bytes((address,)) + crc_mod.strip_crc(good)[1:])
    with pytest.raises(FrameError, match=r"outside 1\.\.127"):
        framing.decode_response(frame)


def test_the_reported_frame_from_address_156_is_refused() -> None:
    with pytest.raises(FrameError, match="address 156"):
        framing.decode_response(bytes.fromhex("9c1158733577b259"))
