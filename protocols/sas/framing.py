"""SAS framing in both directions, whole-frame and incremental.

Host → EGM: a general poll is one byte ``80|addr``; a long poll is ``addr cmd`` (type R) or
``addr cmd [len] data CRC`` (types S, M, G). The first byte carries the wakeup bit; transports add it
(see ``wire.py``), so frames here are plain bytes.

EGM → host: a general-poll reply is one exception byte (or, in RTE mode, ``addr FF code data CRC``);
a long-poll reply is ``addr cmd [len] data CRC``, an ACK (``addr``), a NACK (``addr|80``), busy
(``addr 00``) or, in RTE mode, an event in the RTE form. An EGM that lost the link chirps: its
address with the wakeup bit.

What a lone address byte means (notes/sas-protocol.md §1.2.1, §3.1, §3.6, §4.2) is decided by
:class:`ReplyReader` only once the line is idle, because the same byte starts an RTE event, a data
reply and busy: after a long poll that is ACKed it is the ACK; after a general poll it is *not* an
exception code equal to the address (see :class:`AddressEcho`) unless the host expects legacy
replies and that value is a defined exception code.

Incremental parsers take 9-bit characters (``wire.WAKEUP`` set where marked) and say when a message
is complete, so a transport can answer or stop waiting at once instead of waiting out a gap.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import longpolls as lp
from .crc import append_crc, strip_crc
from .errors import FrameError, SASError
from .exceptions import EXCEPTION_NAMES, RTE_DATA_LENGTH, RteData, decode_rte_data, encode_rte_data
from .wire import WAKEUP

RTE_MARKER = 0xFF
BUSY = 0x00
NACK_BIT = 0x80
MAX_ADDRESS = 0x7F


def _check_address(address: int, allow_broadcast: bool = False) -> None:
    low = 0 if allow_broadcast else 1
    if not low <= address <= MAX_ADDRESS:
        raise FrameError(f"SAS address {address} is outside {low}..127")


# ---- whole frames, host → EGM ------------------------------------------------------------------------

def encode_general_poll(address: int) -> bytes:
    _check_address(address)
    return bytes((0x80 | address,))


def encode_long_poll(address: int, message: lp.Message) -> bytes:
    """The long poll as it goes on the wire, without the wakeup marking."""
    _check_address(address, allow_broadcast=True)
    cls = type(message)
    if lp.REQUESTS.get(cls.COMMAND) is not cls:
        raise FrameError(f"{cls.__name__} is not a registered long-poll request")
    payload = message.payload()
    if cls.KIND == "R" and not payload:
        return bytes((address, cls.COMMAND))
    head = bytes((address, cls.COMMAND))
    if cls.VARIABLE:
        if len(payload) > 255:
            raise FrameError("long-poll payload over 255 bytes")
        head += bytes((len(payload),))
    return append_crc(head + payload)


def _body(frame: bytes, variable: bool, crc: bool) -> bytes:
    if crc:
        frame = strip_crc(frame)
    if variable:
        if len(frame) < 3 or frame[2] != len(frame) - 3:
            raise FrameError(f"length byte does not match a frame of {len(frame)} bytes")
        return frame[3:]
    return frame[2:]


def decode_long_poll(frame: bytes) -> tuple[int, lp.Message]:
    """(address, request) of a complete host long poll; raises SASError on anything wrong."""
    if len(frame) < 2:
        raise FrameError("long poll shorter than address and command")
    address, cmd = frame[0], frame[1]
    cls = lp.REQUESTS.get(cmd)
    if cls is None:
        raise FrameError(f"unsupported long poll {cmd:02X}")
    crc = not (cls.KIND == "R" and lp.payload_size(cls) == 0)
    expected = request_length(frame[:3]) if crc else 2
    if expected is not None and expected != len(frame):
        raise FrameError(f"LP {cmd:02X} frame has {len(frame)} bytes, expected {expected}")
    return address, cls.from_payload(_body(frame, cls.VARIABLE, crc))


def request_length(head: bytes) -> int | None:
    """Total length of a host long poll from its first bytes; None if more bytes are needed.

    Raises FrameError for a command we do not know (so the caller can skip it)."""
    if len(head) < 2:
        return None
    cls = lp.REQUESTS.get(head[1])
    if cls is None:
        raise FrameError(f"unsupported long poll {head[1]:02X}")
    if cls.VARIABLE:
        return 3 + head[2] + 2 if len(head) >= 3 else None
    size = lp.payload_size(cls) or 0
    if cls.KIND == "R" and size == 0:
        return 2
    return 2 + size + 2


# ---- whole frames, EGM → host -----------------------------------------------------------------------

def encode_response(address: int, message: lp.Message) -> bytes:
    _check_address(address)
    cls = type(message)
    if lp.RESPONSES.get(cls.COMMAND) is not cls:
        raise FrameError(f"{cls.__name__} is not a registered long-poll response")
    payload = message.payload()
    head = bytes((address, cls.COMMAND))
    if cls.VARIABLE:
        head += bytes((len(payload),))
    return append_crc(head + payload)


def encode_ack(address: int) -> bytes:
    _check_address(address)
    return bytes((address,))


def encode_nack(address: int) -> bytes:
    _check_address(address)
    return bytes((address | NACK_BIT,))


def encode_busy(address: int) -> bytes:
    _check_address(address)
    return bytes((address, BUSY))


def encode_rte_event(address: int, code: int, data: RteData | None = None) -> bytes:
    _check_address(address)
    raw = encode_rte_data(data)
    if len(raw) != RTE_DATA_LENGTH.get(code, 0):
        raise FrameError(f"RTE event {code:02X} cannot carry {len(raw)} data bytes")
    return append_crc(bytes((address, RTE_MARKER, code)) + raw)


def decode_response(frame: bytes, address: int | None = None) -> lp.Message:
    """A complete ``addr cmd [len] data CRC`` reply → its message."""
    if len(frame) < 4:
        raise FrameError(f"reply of {len(frame)} bytes is too short")
    if not 1 <= frame[0] <= MAX_ADDRESS:
        # Only an EGM at 1..127 answers a long poll: 0 is broadcast and bit 7 is the wakeup bit,
        # so a reply "from 156" is a corrupt frame, not a machine to book money for.
        raise FrameError(f"reply from address {frame[0]}, outside 1..127")
    if address is not None and frame[0] != address:
        raise FrameError(f"reply from address {frame[0]}, expected {address}")
    cls = lp.RESPONSES.get(frame[1])
    if cls is None:
        raise FrameError(f"no reply layout for command {frame[1]:02X}")
    return cls.from_payload(_body(frame, cls.VARIABLE, True))


def decode_wrapped_response(reply: lp.MultiDenomReply) -> lp.Message:
    """The reply a B0 preamble wrapped (``message`` holds command, [len], data)."""
    if not reply.message:
        raise FrameError("B0 reply wraps nothing")
    cls = lp.RESPONSES.get(reply.message[0])
    if cls is None:
        raise FrameError(f"no reply layout for wrapped command {reply.message[0]:02X}")
    body = reply.message[1:]
    if cls.VARIABLE:
        if not body or body[0] != len(body) - 1:
            raise FrameError("wrapped reply length byte does not match")
        body = body[1:]
    return cls.from_payload(body)


def wrap_request(message: lp.Message) -> bytes:
    """A request as the ``message`` of a B0 preamble: command, [len], data."""
    payload = message.payload()
    cls = type(message)
    return bytes((cls.COMMAND,)) + (bytes((len(payload),)) if cls.VARIABLE else b"") + payload


def unwrap_request(wrapped: bytes) -> lp.Message:
    cls = lp.REQUESTS.get(wrapped[0]) if wrapped else None
    if cls is None:
        raise FrameError("B0 preamble wraps an unknown or empty command")
    body = wrapped[1:]
    if cls.VARIABLE:
        if not body or body[0] != len(body) - 1:
            raise FrameError("wrapped request length byte does not match")
        body = body[1:]
    return cls.from_payload(body)


def wrap_response(message: lp.Message) -> bytes:
    return wrap_request(message)


# ---- what an EGM hears (incremental) ----------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class GeneralPoll:
    address: int


@dataclass(frozen=True, slots=True)
class LongPollFrame:
    """A complete long poll: ``frame`` is the bytes on the wire (CRC included when it has one)."""

    address: int
    command: int
    frame: bytes

    def decode(self) -> lp.Message:
        return decode_long_poll(self.frame)[1]

    @property
    def ack_key(self) -> bytes:
        """What implied ACK/NACK compares: two bytes, five under a B0 preamble (Monaco)."""
        return self.frame[:5] if self.command == 0xB0 else self.frame[:2]


@dataclass(frozen=True, slots=True)
class Unsupported:
    """A long poll with a command we do not implement: an EGM stays silent ([S602] §4.4)."""

    address: int
    command: int


@dataclass(frozen=True, slots=True)
class Garbled:
    """Bytes that could not be framed (an interrupted message, noise); ``address`` if known."""

    address: int | None
    reason: str
    raw: bytes


HostMessage = GeneralPoll | LongPollFrame | Unsupported | Garbled


class HostMessageFramer:
    """9-bit characters from the host → complete host messages, for an EGM.

    With marks (the default) a character carrying the wakeup bit starts a message; a partial message
    cut by a new wakeup byte is reported as garbled. In ``structural`` mode there are no marks: while
    idle any byte starts a message, a byte ≥ 80 is a general poll, and the command byte implies the
    length; :meth:`gap` (an idle line) drops whatever was partial.
    """

    def __init__(self, structural: bool = False) -> None:
        self.structural = structural
        self._buf = bytearray()
        self._need: int | None = None
        self._skipping = False
        self.noise = 0  # characters heard while idle that started nothing

    def gap(self) -> list[HostMessage]:
        out: list[HostMessage] = []
        if self._buf:
            out.append(Garbled(self._buf[0], "message cut short by an idle line", bytes(self._buf)))
        self._reset()
        return out

    def _reset(self) -> None:
        self._buf.clear()
        self._need = None
        self._skipping = False

    def feed(self, characters: list[int]) -> list[HostMessage]:
        out: list[HostMessage] = []
        for ch in characters:
            wake = bool(ch & WAKEUP) if not self.structural else not self._buf and not self._skipping
            value = ch & 0xFF
            if wake:
                if self._buf:
                    out.append(Garbled(self._buf[0], "message cut short by a new address byte", bytes(self._buf)))
                self._reset()
                if value & 0x80:
                    out.append(GeneralPoll(value & 0x7F))
                    continue
                self._buf.append(value)
                continue
            if self._skipping or not self._buf:
                self.noise += not self._skipping
                continue
            self._buf.append(value)
            if self._need is None:
                try:
                    self._need = request_length(bytes(self._buf))
                except FrameError:
                    out.append(Unsupported(self._buf[0], self._buf[1]))
                    self._buf.clear()
                    self._skipping = True
                    continue
            if self._need is not None and len(self._buf) >= self._need:
                frame = bytes(self._buf)
                out.append(LongPollFrame(frame[0], frame[1], frame))
                self._reset()
        return out


# ---- what a host hears (incremental) ----------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class ExceptionReply:
    """A general-poll reply in the legacy form: the exception code (00 = no activity).

    In RTE mode it means the EGM left RTE mode (a power cycle does that)."""

    code: int


@dataclass(frozen=True, slots=True)
class RteEvent:
    """An event in the RTE form ``addr FF code data CRC``."""

    code: int
    data: RteData | None


@dataclass(frozen=True, slots=True)
class Ack:
    pass


@dataclass(frozen=True, slots=True)
class Nack:
    pass


@dataclass(frozen=True, slots=True)
class Busy:
    pass


@dataclass(frozen=True, slots=True)
class Reply:
    """A decoded long-poll reply."""

    message: lp.Message


@dataclass(frozen=True, slots=True)
class Chirp:
    """The EGM's own address with the wakeup bit: it lost the link and wants to be polled."""

    address: int


@dataclass(frozen=True, slots=True)
class AddressEcho:
    """The EGM's address alone, unmarked, answering a general poll: the EGM is there, nothing happened.

    No exception is carried. In RTE mode an EGM answers a general poll with an event or with silence
    (notes §3.6), so a lone address is one of: a chirp whose wakeup bit was lost (structural framing,
    a UART that cannot mark), a late ACK of an earlier long poll (LP 0E after a restart on a loaded
    line), or an EGM that acknowledges an empty RTE poll with its address. Outside RTE mode the byte
    is an exception code only if SAS defines that code; addresses 01–10 (hex), for example, are not
    codes, so a lone ``01`` was never "exception 01". Reporting the echo as an exception made an
    agent restart show ``device.status`` "unknown exception 01" (issue 12).
    """

    address: int


EgmReply = ExceptionReply | RteEvent | Ack | Nack | Busy | Reply | Chirp | AddressEcho


class ReplyReader:
    """Reads the EGM's answer to one poll, character by character.

    ``command`` None means the poll was a general poll. :meth:`feed` returns the reply once it is
    complete and raises :class:`SASError` for bytes no valid reply starts with, or a bad CRC.
    :meth:`gap` tells the reader that the line went idle and decides what an address alone was.

    ``rte`` is what the host *believes*; the EGM may disagree (an agent restarts while the EGM stays
    in RTE mode; a power cycle drops the EGM out of it). So the reader never decides on a byte equal
    to the address before it knows what follows: ``addr FF code data CRC`` is an RTE event whatever
    the host believes (``FF`` is no reply's command, and the CRC guards it), and only an idle line
    makes the address an ACK (long poll) or an :class:`AddressEcho` (general poll). A lone byte that
    is not the address answering a general poll is a legacy exception code, in RTE mode too (the
    EGM left RTE mode). The one value left ambiguous is a legacy exception code equal to the
    EGM's own address (addresses 11 hex and up): with ``rte`` False it is taken as that exception,
    with ``rte`` True as an echo (the EGM's next legacy reply then shows it left RTE mode).
    """

    def __init__(self, address: int, command: int | None, rte: bool = False) -> None:
        self.address = address
        self.command = command
        self.rte = rte
        self._buf = bytearray()
        self._need: int | None = None

    @property
    def started(self) -> bool:
        return bool(self._buf)

    def gap(self) -> EgmReply | None:
        """The line went idle: the reply so far, if it is a whole one (only an address alone can be)."""
        if bytes(self._buf) != bytes((self.address,)):
            return None
        if self.command is None:
            if not self.rte and self.address in EXCEPTION_NAMES:
                return ExceptionReply(self.address)   # legacy mode: a defined code that equals the address
            return AddressEcho(self.address)
        return Ack() if lp.is_acked(self.command) else None

    def feed(self, characters: list[int]) -> EgmReply | None:
        for ch in characters:
            if ch & WAKEUP:
                if (ch & 0x7F) == self.address and not self._buf:
                    return Chirp(self.address)
                raise FrameError(f"marked byte {ch & 0xFF:02X} in a reply")
            reply = self._feed_one(ch)
            if reply is not None:
                return reply
        return None

    def _feed_one(self, value: int) -> EgmReply | None:
        buf = self._buf
        buf.append(value)
        if len(buf) == 1:
            if self.command is None and value != self.address:
                # A legacy exception code (in RTE mode: the EGM dropped out of it, as after a power
                # cycle). Our address instead may start an RTE event: wait for what follows.
                return ExceptionReply(value)
            if self.command is not None and value == self.address | NACK_BIT:
                return Nack()
            if value != self.address:
                raise FrameError(f"reply starts with {value:02X}, expected address {self.address:02X}")
            return None   # an ACK or an echo only once the line is idle (gap); else more follows
        if len(buf) == 2:
            second = buf[1]
            if second == BUSY:
                return Busy()
            if second == RTE_MARKER:
                return None   # an RTE event, even where the host believed RTE was off
            if self.command is None or second != self.command:
                raise FrameError(f"reply to LP {self.command!r} carries command {second:02X}")
            cls = lp.RESPONSES.get(second)
            if cls is None:
                raise FrameError(f"LP {second:02X} has no data reply")
            if not cls.VARIABLE:
                self._need = 2 + (lp.payload_size(cls) or 0) + 2
        elif len(buf) == 3:
            if buf[1] == RTE_MARKER:
                self._need = 3 + RTE_DATA_LENGTH.get(buf[2], 0) + 2
            elif self._need is None:
                self._need = 3 + buf[2] + 2
        if self._need is not None and len(buf) >= self._need:
            frame = bytes(buf)
            if frame[1] == RTE_MARKER:
                body = strip_crc(frame)
                return RteEvent(body[2], decode_rte_data(body[2], body[3:]))
            return Reply(decode_response(frame, self.address))
        return None


def decode_reply(frame: bytes, address: int, command: int | None, rte: bool = False) -> EgmReply:
    """A whole reply in one go (tests, captures)."""
    reader = ReplyReader(address, command, rte)
    reply = reader.feed(list(frame))
    if reply is None:
        reply = reader.gap()
    if reply is None:
        raise FrameError(f"incomplete reply {frame.hex(' ')}")
    return reply


__all__ = [
    "Ack", "AddressEcho", "Busy", "Chirp", "EgmReply", "ExceptionReply", "Garbled", "GeneralPoll", "HostMessage",
    "HostMessageFramer", "LongPollFrame", "Nack", "Reply", "ReplyReader", "RteEvent", "SASError",
    "Unsupported", "decode_long_poll", "decode_reply", "decode_response", "decode_wrapped_response",
    "encode_ack", "encode_busy", "encode_general_poll", "encode_long_poll", "encode_nack",
    "encode_response", "encode_rte_event", "request_length", "unwrap_request", "wrap_request",
    "wrap_response",
]
