"""The SAS codec, byte for byte against ../shared/vectors/sas.json."""

from __future__ import annotations

import pytest

from protocols.sas import bcd, crc, framing, wire
from protocols.sas import longpolls as lp
from protocols.sas.errors import BCDError, CRCError


def hexbytes(text: str) -> bytes:
    return bytes.fromhex(text)


def test_crc_parameters(sas_vectors: dict) -> None:
    assert crc.crc16_kermit(b"123456789") == int(sas_vectors["crc"]["check_123456789"], 16)


def test_every_frame_vector_crc(sas_vectors: dict) -> None:
    for vec in sas_vectors["frames"]:
        assert crc.append_crc(hexbytes(vec["message"])) == hexbytes(vec["on_wire"]), vec["meaning"]
        assert crc.strip_crc(hexbytes(vec["on_wire"])) == hexbytes(vec["message"])


def test_corrupted_frame_fails_crc(sas_vectors: dict) -> None:
    for vec in sas_vectors["frames"]:
        wire_bytes = bytearray(hexbytes(vec["on_wire"]))
        wire_bytes[1] ^= 0x01
        with pytest.raises(CRCError):
            crc.strip_crc(bytes(wire_bytes))


# Each host vector rebuilt from typed messages, so the layouts (not only the CRC) are checked.
HOST_MESSAGES = {
    "01 01": (1, lp.Shutdown()),
    "01 02": (1, lp.Startup()),
    "01 B0 02 01 11": (1, lp.MultiDenomPreamble(1, framing.wrap_request(lp.SINGLE_METER_REQUESTS[0x11]()))),
    "01 B0 02 01 12": (1, lp.MultiDenomPreamble(1, framing.wrap_request(lp.SINGLE_METER_REQUESTS[0x12]()))),
    "01 0E 01": (1, lp.RealTimeEventReporting(1)),
    "01 0E 00": (1, lp.RealTimeEventReporting(0)),
    "00 7F 06 15 20 25 13 45 30": (0, lp.SetDateTime(6152025, 134530)),
    "01 2F 04 00 00 00 0C": (1, lp.SendSelectedMeters(0, (0x00, 0x0C))),
    "01 09 00 01 01": (1, lp.EnableDisableGame(1, 1)),
}


def test_host_messages_encode_to_vectors(sas_vectors: dict) -> None:
    wire_of = {v["message"]: hexbytes(v["on_wire"]) for v in sas_vectors["frames"]}
    for message, (address, request) in HOST_MESSAGES.items():
        assert framing.encode_long_poll(address, request) == wire_of[message], message
        assert framing.decode_long_poll(wire_of[message]) == (address, request)


def test_host_read_polls_carry_no_crc() -> None:
    assert framing.encode_long_poll(1, lp.SendCurrentCredits()) == hexbytes("01 1A")
    assert framing.encode_long_poll(1, lp.SendSasVersion()) == hexbytes("01 54")
    assert framing.encode_long_poll(1, lp.SendMachineInfo()) == hexbytes("01 1F")


def test_egm_replies_decode_from_vectors() -> None:
    reply = framing.decode_reply(hexbytes("07 54 04 34 30 32 30 E4 B6"), 7, 0x54)
    assert reply == framing.Reply(lp.SasVersion("402", "0"))
    assert framing.encode_response(7, lp.SasVersion("402", "0")) == hexbytes("07 54 04 34 30 32 30 E4 B6")
    credits = framing.decode_reply(hexbytes("01 1A 00 00 12 34 45 2D"), 1, 0x1A)
    assert credits == framing.Reply(lp.CurrentCredits(1234))


def test_bcd_vectors(sas_vectors: dict) -> None:
    for vec in sas_vectors["bcd"]:
        assert bcd.encode_bcd(vec["value"], 4) == hexbytes(vec["bytes"])
        assert bcd.decode_bcd(hexbytes(vec["bytes"])) == vec["value"]
    with pytest.raises(BCDError):
        bcd.encode_bcd(100_000_000, 4)
    with pytest.raises(BCDError):
        bcd.decode_bcd(b"\x1a")


def test_general_poll_vectors(sas_vectors: dict) -> None:
    polls = [v for v in sas_vectors["general_poll"] if "address" in v]
    for vec in polls:
        assert framing.encode_general_poll(vec["address"]) == hexbytes(vec["host_sends"])
        assert wire.chars(hexbytes(vec["host_sends"]))[0] & wire.WAKEUP
    assert framing.decode_reply(b"\x00", 1, None) == framing.ExceptionReply(0x00)
    assert framing.decode_reply(b"\x7e", 1, None) == framing.ExceptionReply(0x7E)


def test_ack_nack_busy_vectors() -> None:
    assert framing.encode_ack(5) == b"\x05"
    assert framing.encode_nack(5) == b"\x85"
    assert framing.encode_busy(5) == b"\x05\x00"
    assert framing.decode_reply(b"\x05", 5, 0x01) == framing.Ack()
    assert framing.decode_reply(b"\x85", 5, 0x1A) == framing.Nack()
    assert framing.decode_reply(b"\x05\x00", 5, 0x1A) == framing.Busy()


def test_pty_wakeup_encoding_vectors(sas_vectors: dict) -> None:
    examples = {e["meaning"]: hexbytes(e["on_pty"]) for e in sas_vectors["pty_wakeup_encoding"]["examples"]}
    assert wire.mark_message(b"\x81") == examples["general poll to address 1"]
    assert wire.mark_message(b"\x01\x1a") == examples["LP 1A to address 1 (address carries the wakeup bit)"]
    assert wire.mark_encode([0xFF]) == examples["a data byte FF without wakeup"]
    decoder = wire.MarkDecoder()
    assert decoder.feed(examples["LP 1A to address 1 (address carries the wakeup bit)"]) == [0x101, 0x1A]
    assert decoder.feed(examples["a data byte FF without wakeup"]) == [0xFF]
