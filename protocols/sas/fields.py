"""Field codecs: the building blocks long-poll layouts are declared with.

A layout is a list of dataclass fields, each carrying a codec in its metadata; encoding and decoding
walk that list. Byte order follows the spec: BCD and ASCII most significant first, binary LSB first.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol, TypeVar

from .bcd import decode_bcd, encode_bcd
from .errors import FrameError


class FieldCodec(Protocol):
    def encode(self, value: Any) -> bytes: ...

    def decode(self, buf: bytes, pos: int) -> tuple[Any, int]: ...

    @property
    def size(self) -> int | None:
        """Fixed size in bytes, or None when it depends on the data (only at the end of a layout)."""


def _need(buf: bytes, pos: int, n: int, what: str) -> None:
    if pos + n > len(buf):
        raise FrameError(f"{what}: need {n} bytes at offset {pos}, have {len(buf) - pos}")


@dataclasses.dataclass(frozen=True, slots=True)
class BCD:
    width: int

    @property
    def size(self) -> int:
        return self.width

    def encode(self, value: int) -> bytes:
        return encode_bcd(value, self.width)

    def decode(self, buf: bytes, pos: int) -> tuple[int, int]:
        _need(buf, pos, self.width, "BCD field")
        return decode_bcd(buf[pos:pos + self.width]), pos + self.width


@dataclasses.dataclass(frozen=True, slots=True)
class Binary:
    width: int

    @property
    def size(self) -> int:
        return self.width

    def encode(self, value: int) -> bytes:
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 1 << (8 * self.width):
            raise FrameError(f"{value!r} does not fit in {self.width} binary bytes")
        return value.to_bytes(self.width, "little")

    def decode(self, buf: bytes, pos: int) -> tuple[int, int]:
        _need(buf, pos, self.width, "binary field")
        return int.from_bytes(buf[pos:pos + self.width], "little"), pos + self.width


@dataclasses.dataclass(frozen=True, slots=True)
class Ascii:
    """Fixed-width ASCII; shorter values are padded with spaces on encode and kept as sent on decode."""

    width: int

    @property
    def size(self) -> int:
        return self.width

    def encode(self, value: str) -> bytes:
        raw = value.encode("ascii") if isinstance(value, str) and value.isascii() else None
        if raw is None or len(raw) > self.width:
            raise FrameError(f"{value!r} is not ASCII of at most {self.width} characters")
        return raw.ljust(self.width, b" ")

    def decode(self, buf: bytes, pos: int) -> tuple[str, int]:
        _need(buf, pos, self.width, "ASCII field")
        return _ascii(buf[pos:pos + self.width]), pos + self.width


def _ascii(raw: bytes) -> str:
    try:
        return raw.decode("ascii")
    except UnicodeDecodeError as exc:
        raise FrameError(f"field {raw.hex(' ')} is not ASCII") from exc


@dataclasses.dataclass(frozen=True, slots=True)
class AsciiRest:
    """ASCII running to the end of the payload (LP 54's serial number, 0–40 characters)."""

    max_width: int = 40

    @property
    def size(self) -> None:
        return None

    def encode(self, value: str) -> bytes:
        raw = value.encode("ascii") if isinstance(value, str) and value.isascii() else None
        if raw is None or len(raw) > self.max_width:
            raise FrameError(f"{value!r} is not ASCII of at most {self.max_width} characters")
        return raw

    def decode(self, buf: bytes, pos: int) -> tuple[str, int]:
        if len(buf) - pos > self.max_width:
            raise FrameError(f"ASCII field longer than {self.max_width}")
        return _ascii(buf[pos:]), len(buf)


@dataclasses.dataclass(frozen=True, slots=True)
class BcdList:
    """A count byte (binary) followed by that many BCD items (LP 56's enabled game numbers)."""

    item_width: int = 2

    @property
    def size(self) -> None:
        return None

    def encode(self, value: tuple[int, ...]) -> bytes:
        if len(value) > 255:
            raise FrameError("too many items for a one-byte count")
        return bytes((len(value),)) + b"".join(encode_bcd(v, self.item_width) for v in value)

    def decode(self, buf: bytes, pos: int) -> tuple[tuple[int, ...], int]:
        _need(buf, pos, 1, "list count")
        count = buf[pos]
        pos += 1
        _need(buf, pos, count * self.item_width, "list items")
        items = tuple(decode_bcd(buf[pos + i * self.item_width:pos + (i + 1) * self.item_width])
                      for i in range(count))
        return items, pos + count * self.item_width


@dataclasses.dataclass(frozen=True, slots=True)
class CodeList:
    """Meter codes to the end of the payload: one byte each (LP 2F) or two, LSB first (LP 6F/AF)."""

    code_width: int
    max_items: int

    @property
    def size(self) -> None:
        return None

    def encode(self, value: tuple[int, ...]) -> bytes:
        if len(value) > self.max_items:
            raise FrameError(f"at most {self.max_items} meter codes per request")
        return b"".join(Binary(self.code_width).encode(v) for v in value)

    def decode(self, buf: bytes, pos: int) -> tuple[tuple[int, ...], int]:
        rest = len(buf) - pos
        if rest % self.code_width or rest // self.code_width > self.max_items:
            raise FrameError(f"{rest} bytes is not a list of at most {self.max_items} meter codes")
        codes = tuple(int.from_bytes(buf[i:i + self.code_width], "little")
                      for i in range(pos, len(buf), self.code_width))
        return codes, len(buf)


# Sizes (BCD bytes) of meters in LP 2F replies, by meter code (Table C-7): amounts kept in cents are
# 5 bytes, counts and credit meters 4. LP 6F/AF replies carry the size of each meter explicitly.
METER_SIZES_2F: dict[int, int] = {0x0D: 5, 0x0E: 5, 0xA0: 5, 0xB8: 5}


def meter_size_2f(code: int) -> int:
    return METER_SIZES_2F.get(code, 4)


@dataclasses.dataclass(frozen=True, slots=True)
class MeterValues:
    """(code, value) pairs to the end of the payload.

    ``code_width`` 1 (LP 2F): each value's size comes from Table C-7.
    ``code_width`` 2 (LP 6F/AF): code LSB first, then a size byte (0–9), then that many BCD bytes.

    Widths in LP 6F/AF are the machine's choice, and machines differ: Aristocrat's Monaco answers with
    9-byte (18-digit) meters where 4 bytes would hold the value. So decoding takes any width 1–9 and
    keeps only the value; encoding (the simulator's replies) writes the canonical width, at least 4
    bytes. Decode∘encode is therefore the identity on messages (values), not on bytes — which is all a
    host needs: the CRC is checked on the bytes as received, and a reply is never re-sent. A size of 0
    carries no digits: it is a meter the machine does not report, not a meter reading 0 (reading it
    as 0 would look like a meter reset and move money), so it is left out of the decoded pairs.
    """

    code_width: int

    @property
    def size(self) -> None:
        return None

    def encode(self, value: tuple[tuple[int, int], ...]) -> bytes:
        out = bytearray()
        for code, meter in value:
            out += Binary(self.code_width).encode(code)
            if self.code_width == 1:
                out += encode_bcd(meter, meter_size_2f(code))
            else:
                width = max(4, (len(str(meter)) + 1) // 2)
                if width > 9:
                    raise FrameError(f"meter {code:04X} value {meter} exceeds 18 digits")
                out.append(width)
                out += encode_bcd(meter, width)
        return bytes(out)

    def decode(self, buf: bytes, pos: int) -> tuple[tuple[tuple[int, int], ...], int]:
        items = []
        while pos < len(buf):
            code, pos = Binary(self.code_width).decode(buf, pos)
            if self.code_width == 1:
                width = meter_size_2f(code)
            else:
                _need(buf, pos, 1, "meter size")
                width = buf[pos]
                pos += 1
                if width > 9:
                    raise FrameError(f"meter {code:04X} claims {width} BCD bytes (at most 9)")
            _need(buf, pos, width, f"meter {code:02X}")
            if width:
                items.append((code, decode_bcd(buf[pos:pos + width])))
            pos += width
        return tuple(items), pos


@dataclasses.dataclass(frozen=True, slots=True)
class RawRest:
    """Opaque bytes to the end of the payload (the message a B0 preamble wraps)."""

    @property
    def size(self) -> None:
        return None

    def encode(self, value: bytes) -> bytes:
        return bytes(value)

    def decode(self, buf: bytes, pos: int) -> tuple[bytes, int]:
        return bytes(buf[pos:]), len(buf)


def f(codec: FieldCodec, default: Any = dataclasses.MISSING) -> Any:
    """Declare a dataclass field with its wire codec."""
    if default is dataclasses.MISSING:
        return dataclasses.field(metadata={"codec": codec})
    return dataclasses.field(default=default, metadata={"codec": codec})


Layout = tuple[tuple[str, FieldCodec], ...]
_LAYOUTS: dict[type, Layout] = {}
_SIZES: dict[type, int | None] = {}
T = TypeVar("T")


def layout(cls: type) -> Layout:
    """The (name, codec) pairs of a message class, worked out once per class."""
    found = _LAYOUTS.get(cls)
    if found is None:
        found = _LAYOUTS[cls] = tuple((fld.name, fld.metadata["codec"]) for fld in dataclasses.fields(cls)
                                      if "codec" in fld.metadata)
    return found


def encode_fields(obj: Any) -> bytes:
    return b"".join(codec.encode(getattr(obj, name)) for name, codec in layout(type(obj)))


def decode_fields(cls: type[T], buf: bytes) -> T:
    pos = 0
    values = {}
    for name, codec in layout(cls):
        values[name], pos = codec.decode(buf, pos)
    if pos != len(buf):
        raise FrameError(f"{cls.__name__}: {len(buf) - pos} unexpected trailing bytes")
    return cls(**values)


def fixed_size(cls: type) -> int | None:
    """The payload size of a layout, or None when a field's size depends on the data."""
    if cls not in _SIZES:
        _SIZES[cls] = _fixed_size(layout(cls))
    return _SIZES[cls]


def _fixed_size(fields: Layout) -> int | None:
    total = 0
    for _, codec in fields:
        size = codec.size
        if size is None:
            return None
        total += size
    return total
