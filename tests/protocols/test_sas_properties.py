"""Property tests: every long poll round-trips, and no input makes the codec raise anything but its own error."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.sas import framing, wire
from protocols.sas import longpolls as lp
from protocols.sas.errors import SASError
from protocols.sas.exceptions import (
    BillAcceptedData,
    GameEndedData,
    GameSelectedData,
    GameStartedData,
)
from protocols.sas.fields import (
    BCD,
    Ascii,
    AsciiRest,
    BcdList,
    Binary,
    CodeList,
    MeterValues,
    RawRest,
    layout,
    meter_size_2f,
)

ASCII = st.characters(min_codepoint=0x20, max_codepoint=0x7E)


def strategy_for(codec) -> st.SearchStrategy:
    if isinstance(codec, BCD):
        return st.integers(0, 10 ** (2 * codec.width) - 1)
    if isinstance(codec, Binary):
        return st.integers(0, (1 << (8 * codec.width)) - 1)
    if isinstance(codec, Ascii):
        return st.text(ASCII, min_size=codec.width, max_size=codec.width)
    if isinstance(codec, AsciiRest):
        return st.text(ASCII, max_size=codec.max_width)
    if isinstance(codec, BcdList):
        return st.lists(st.integers(0, 9999), max_size=40).map(tuple)
    if isinstance(codec, CodeList):
        return st.lists(st.integers(0, (1 << (8 * codec.code_width)) - 1), max_size=codec.max_items).map(tuple)
    if isinstance(codec, MeterValues):
        if codec.code_width == 1:
            pair = st.integers(0, 255).flatmap(
                lambda c: st.tuples(st.just(c), st.integers(0, 10 ** (2 * meter_size_2f(c)) - 1)))
        else:
            pair = st.tuples(st.integers(0, 0xFFFF), st.integers(0, 10**18 - 1))
        return st.lists(pair, max_size=10).map(tuple)
    if isinstance(codec, RawRest):
        return st.binary(min_size=1, max_size=60)
    raise AssertionError(f"no strategy for {codec!r}")


def message_strategy(cls: type[lp.Message]) -> st.SearchStrategy:
    return st.builds(cls, **{name: strategy_for(codec) for name, codec in layout(cls)})


REQUEST_CLASSES = sorted(lp.REQUESTS.values(), key=lambda c: c.COMMAND)
RESPONSE_CLASSES = sorted((c for c in lp.RESPONSES.values() if c is not None), key=lambda c: c.COMMAND)

requests = st.sampled_from(REQUEST_CLASSES).flatmap(message_strategy)
responses = st.sampled_from(RESPONSE_CLASSES).flatmap(message_strategy)
addresses = st.integers(1, 127)


@settings(max_examples=400)
@given(addresses, requests)
def test_request_round_trip(address: int, request: lp.Message) -> None:
    frame = framing.encode_long_poll(address, request)
    assert framing.decode_long_poll(frame) == (address, request)
    assert framing.request_length(frame[:3]) == len(frame)


@settings(max_examples=400)
@given(addresses, requests)
def test_request_round_trip_through_marks_and_framer(address: int, request: lp.Message) -> None:
    marked = wire.mark_message(framing.encode_long_poll(address, request))
    framer = framing.HostMessageFramer()
    decoder = wire.MarkDecoder()
    heard = []
    for i in range(len(marked)):  # worst case: one byte per read
        heard += framer.feed(decoder.feed(marked[i:i + 1]))
    assert len(heard) == 1 and isinstance(heard[0], framing.LongPollFrame)
    assert heard[0].decode() == request


@settings(max_examples=400)
@given(addresses, responses)
def test_response_round_trip(address: int, response: lp.Message) -> None:
    frame = framing.encode_response(address, response)
    assert framing.decode_response(frame, address) == response
    reader = framing.ReplyReader(address, response.COMMAND)
    result = None
    for byte in frame:
        assert result is None, "reply reported complete before its last byte"
        result = reader.feed([byte])
    assert result == framing.Reply(response)


rte_events = st.one_of(
    st.tuples(st.just(0x4F), st.builds(BillAcceptedData, st.integers(0, 99), st.integers(0, 99),
                                       st.integers(0, 99_999_999))),
    st.tuples(st.just(0x7E), st.builds(GameStartedData, st.integers(0, 9999), st.integers(0, 99_999_999),
                                       st.integers(0, 255), st.integers(0, 255))),
    st.tuples(st.just(0x7F), st.builds(GameEndedData, st.integers(0, 99_999_999))),
    st.tuples(st.just(0x8C), st.builds(GameSelectedData, st.integers(0, 9999))),
    st.tuples(st.sampled_from([0x11, 0x12, 0x17, 0x18, 0x3A, 0x51]), st.none()),
)


@settings(max_examples=300)
@given(addresses, rte_events, st.sampled_from([None, 0x1A, 0x01]))
def test_rte_event_round_trip(address: int, event: tuple, command: int | None) -> None:
    code, data = event
    frame = framing.encode_rte_event(address, code, data)
    assert framing.decode_reply(frame, address, command, rte=True) == framing.RteEvent(code, data)


@settings(max_examples=1000)
@given(st.binary(max_size=64), addresses, st.sampled_from([None, *sorted(lp.RESPONSES)]), st.booleans())
def test_random_reply_bytes_raise_only_codec_errors(data: bytes, address: int, command: int | None,
                                                    rte: bool) -> None:
    try:
        framing.decode_reply(data, address, command, rte)
    except SASError:
        pass


@settings(max_examples=1000)
@given(st.binary(max_size=64))
def test_random_host_bytes_raise_only_codec_errors(data: bytes) -> None:
    try:
        framing.decode_long_poll(data)
    except SASError:
        pass
    framer = framing.HostMessageFramer()
    for message in framer.feed(wire.MarkDecoder().feed(data)) + framer.gap():
        if isinstance(message, framing.LongPollFrame):
            try:
                message.decode()
            except SASError:
                pass
    structural = framing.HostMessageFramer(structural=True)
    structural.feed(list(data))
    structural.gap()


@settings(max_examples=500)
@given(st.lists(st.integers(0, 0x1FF), max_size=60))
def test_marking_round_trip(characters: list[int]) -> None:
    encoded = wire.mark_encode(characters)
    assert wire.MarkDecoder().feed(encoded) == characters


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 255), st.binary(min_size=1, max_size=40))
def test_every_reply_the_decoder_accepts_comes_from_a_sas_address(address: int, rest: bytes) -> None:
    """A CRC-correct frame is only a reply if its first byte can be an EGM's address (1..127)."""
    from protocols.sas.crc import append_crc

    try:
        framing.decode_response(append_crc(bytes((address,)) + rest))
    except SASError:
        return
    assert 1 <= address <= 0x7F


# --- LP 6F/AF meter widths (issue 16): the machine's width is its choice; the value is what counts ---

def _extended_reply(address: int, game: int, triples: list[tuple[int, int, bytes]]) -> bytes:
    from protocols.sas.bcd import encode_bcd
    from protocols.sas.crc import append_crc

    body = encode_bcd(game, 2) + b"".join(code.to_bytes(2, "little") + bytes((len(v),)) + v
                                          for code, _, v in triples)
    return append_crc(bytes((address, 0x6F, len(body))) + body)


def test_a_monaco_style_nine_byte_meter_decodes_to_its_value() -> None:
    """Monaco answers LP 6F with 9-byte meters (its SendExtendedMeters tests): 1234 credits in 18 digits."""
    frame = _extended_reply(1, 0, [(0x0C, 1234, bytes.fromhex("000000000000001234"))])
    reply = framing.decode_response(frame)
    assert reply.meters == ((0x0C, 1234),)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 0xFFFF), st.integers(0, 10**18 - 1), st.integers(0, 9)), max_size=8),
       st.integers(0, 9999))
def test_any_width_that_holds_the_value_decodes_to_the_value(meters: list[tuple[int, int, int]], game: int) -> None:
    from protocols.sas.bcd import encode_bcd

    triples = []
    for code, value, extra in meters:
        need = max(1, (len(str(value)) + 1) // 2)
        width = min(9, need + extra)
        triples.append((code, value, encode_bcd(value, width)))
    reply = framing.decode_response(_extended_reply(3, game, triples))
    assert reply.meters == tuple((code, value) for code, value, _ in triples)
    # encoding is canonical, and decode∘encode is the identity on the message
    again = framing.decode_response(framing.encode_response(3, reply))
    assert again == reply


def test_a_size_zero_meter_is_not_reported_rather_than_read_as_zero() -> None:
    frame = _extended_reply(1, 0, [(0x00, 0, b""), (0x0C, 500, bytes.fromhex("00000500"))])
    reply = framing.decode_response(frame)
    assert reply.meters == ((0x0C, 500),)
