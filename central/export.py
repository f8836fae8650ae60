"""Regulatory export: the events of a period in one file that a regulator can verify offline.

What one export file holds (format ``hallsync-export/1``)
--------------------------------------------------------
Every line but the last is data; the last line is the **manifest**. Two encodings of the same content:

* ``jsonl`` — one event per line, in wire form (the canonical JSON the hall hashed, plus ``hash`` and
  ``central_time``), ordered by hall, then seq.
* ``csv`` — RFC 4180 (CRLF, quoted when needed); a header row :data:`CSV_COLUMNS`, then one event per
  row: ``device_time`` empty when the device gave none, ``data`` the event's canonical JSON object, and
  the three times again as RFC 3339 UTC (``*_utc``, :data:`CSV_TIME_COLUMNS`) for people.

The last line is ``{"manifest": M, "sig": S}`` (jsonl) or the two-field row ``#manifest,<that JSON>``
(csv). ``S`` is central's Ed25519 signature (hex) over ``hallsync/v1/export`` LF canonical(M). ``M``
names the period, who exported it and when, central's public key, and the data: SHA-256 and length of
every byte before the manifest line, the number of events, and per hall: first/last seq, count, the
chain's two ends (the ``prev_hash`` before the first event, the ``hash`` of the last), the hall's public
key (PEM) and fingerprint — the key its batch was verified with when stored; ``registered_fingerprint``
is the key registered now, which differs after a key replacement — and the hall's own signature: the
signed header of the batch that stored the period's last event (as the hall signed it, kept by the
ingest in the ``batches`` table) plus the ``tail`` — the hall's events after the period up to that
batch's end, so the chain reaches the signed ``last_hash``. Tail events are evidence only, not part of
the period. Events stored before central kept batch headers have ``signature: null``: the verifier
then refuses the hall unless told ``--allow-unsigned`` (central's signature is all that vouches for them).

CSV is as verifiable as JSON lines: its ``data`` column holds the canonical JSON the hall hashed and the
other columns the remaining hashed fields, so the verifier rebuilds the exact hashed object from a row.

Which events: per hall, the first to the last event whose ``agent_time`` is in ``[from, to)``, and every
event between them (seqs are gap-free, so an agent clock that stepped back cannot punch holes into an
export). Halls in scope with no event in the period are listed with ``events: 0`` ("no activity").

What verifying proves (:mod:`central.export_verify`, ``hall-central export verify FILE``)
------------------------------------------------------------------------------------------
1. Each event's hash, recomputed from its canonical encoding, matches: no field of it was changed.
2. Within each hall the seqs are consecutive and each ``prev_hash`` is the previous ``hash``: nothing was
   removed, inserted or reordered.
3. The hall's signature over the batch header verifies with the hall's key, and the chain runs from the
   period's events through the tail to the signed ``last_hash``: the events are the hall's own, as it
   sent them (central cannot have forged or altered them).
4. Central's signature over the manifest verifies (with ``--central-pub``: under the key you trust), and
   the data's SHA-256, length, counts and chain ends equal the manifest's: nobody edited, cut or
   appended to the file after export.

Memory: writing pages through the store by (hall, seq) and verifying reads line by line, so both hold
one page (or line) plus one summary per hall, whatever the period's size.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import importlib.metadata
import io
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

import msgspec

from central.repos import HasExport, HasHalls
from central.repos.export import ExportRow
from central.repos.ingest import SignedHeader
from protocols.sync import (
    VERSION,
    SyncError,
    canonical_bytes,
    fingerprint,
    public_key_from_pem,
    public_key_to_pem,
)
from protocols.sync.keys import Ed25519PrivateKey
from protocols.sync.signing import sign

FORMAT: Final = "hallsync-export/1"
FORMATS: Final = ("jsonl", "csv")
MEDIA_TYPES: Final = {"jsonl": "application/x-ndjson", "csv": "text/csv; charset=utf-8"}
CSV_HASHED_COLUMNS: Final = ("hall", "seq", "id", "device", "type", "device_time", "agent_time", "central_time",
                             "prev_hash", "hash", "v", "data")
"""The columns that rebuild the hashed event (times as integer µs, exactly as hashed). Files written before
the readable times were added have only these; the verifier still takes them."""
CSV_TIME_COLUMNS: Final = ("device_time_utc", "agent_time_utc", "central_time_utc")
"""The same three times as ISO 8601 / RFC 3339 UTC for people and spreadsheets (issue 16). Not hashed, so
the verifier checks each equals its µs column: a readable time cannot be edited to mislead."""
CSV_COLUMNS: Final = CSV_HASHED_COLUMNS + CSV_TIME_COLUMNS
CSV_MANIFEST_MARK: Final = "#manifest"
EXPORT_CONTEXT: Final = "export"
"""Signature domain of the manifest: ``hallsync/v1/export``; no other message can be replayed as one."""
BATCH_CONTEXT: Final = "batch"
"""The domain the halls sign batch headers under (:mod:`protocols.sync.batch`)."""
MAX_TAIL: Final = 10_000
"""At most this many events after the period are carried to reach a hall signature (a batch's size)."""
PAGE_SIZE: Final = 1000

CSV_HEADER: Final = (",".join(CSV_COLUMNS) + "\r\n").encode()
CSV_HEADER_HASHED_ONLY: Final = (",".join(CSV_HASHED_COLUMNS) + "\r\n").encode()
_DECODE: Final = msgspec.json.Decoder()
_EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


class ExportError(Exception):
    """The store did not return what it promised (e.g. a hole in a hall's range); the export is void."""


def software_version() -> str:
    try:
        return f"hallsync {importlib.metadata.version('hallsync')}"
    except importlib.metadata.PackageNotFoundError:
        return "hallsync (version unknown)"


def _rfc3339(micros: int) -> str:
    """``2026-01-01T00:00:00.000000Z``, exact (the API's format)."""
    return (_EPOCH + dt.timedelta(microseconds=micros)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _fingerprint_of(pem: str) -> str | None:
    try:
        return fingerprint(public_key_from_pem(pem.encode()))
    except SyncError:
        return None


def parse_instant(text: str) -> int:
    """Microseconds for ``2026-01-01`` (midnight UTC), RFC 3339 with an offset, or integer microseconds."""
    value = text.strip()
    if value.isdigit():
        return int(value)
    try:
        if len(value) == 10:
            when = dt.datetime.combine(dt.date.fromisoformat(value), dt.time(), tzinfo=dt.UTC)
        else:
            when = dt.datetime.fromisoformat(value.replace("z", "Z"))
            if when.tzinfo is None:
                raise ValueError("no offset")
    except ValueError:
        raise ValueError(f"{text!r} is not a date (YYYY-MM-DD, UTC), RFC 3339 time with an offset or integer "
                         f"microseconds") from None
    return (when - _EPOCH) // dt.timedelta(microseconds=1)


# --- writing ----------------------------------------------------------------------------------------
def _wire(row: ExportRow) -> dict[str, Any]:
    """The event in wire form with ``data`` spliced in as the canonical text it was hashed in."""
    return {"v": VERSION, "hall": row.hall, "seq": row.seq, "id": row.id, "device": row.device, "type": row.type,
            "device_time": row.device_time, "agent_time": row.agent_time, "central_time": row.central_time,
            "prev_hash": row.prev_hash, "hash": row.hash, "data": msgspec.Raw(row.data.encode())}


def _csv_line(fields: Iterable[object]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerow(fields)
    return buffer.getvalue().encode()


@dataclass(slots=True)
class HallPart:
    """One hall's part as written (or as read back by the verifier)."""

    hall: str
    events: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    prev_hash: str | None = None
    last_hash: str | None = None


class ExportWriter:
    """The sans-IO writer: rows in, bytes out, and the signed manifest at the end.

    Call :meth:`begin`, then per hall :meth:`start_hall`, :meth:`rows` (any number of pages) and
    :meth:`end_hall`, then :meth:`finish`; send every returned chunk in order.
    """

    def __init__(self, fmt: str) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")
        self.fmt = fmt
        self._sha = hashlib.sha256()
        self._bytes = 0
        self._events = 0
        self._part: HallPart | None = None
        self._halls: list[dict[str, Any]] = []

    def _out(self, chunk: bytes) -> bytes:
        self._sha.update(chunk)
        self._bytes += len(chunk)
        return chunk

    def begin(self) -> bytes:
        return self._out(CSV_HEADER if self.fmt == "csv" else b"")

    def start_hall(self, hall: str) -> None:
        if self._part is not None:
            raise ExportError(f"hall {self._part.hall} was not ended")
        self._part = HallPart(hall)

    def rows(self, rows: Sequence[ExportRow]) -> bytes:
        part = self._part
        if part is None:
            raise ExportError("rows outside a hall")
        chunks = []
        for row in rows:
            if row.hall != part.hall:
                raise ExportError(f"row of hall {row.hall} inside hall {part.hall}")
            if part.last_seq is None:
                part.first_seq, part.prev_hash = row.seq, row.prev_hash
            elif row.seq != part.last_seq + 1 or row.prev_hash != part.last_hash:
                raise ExportError(f"hall {part.hall}: stored seq {row.seq} does not follow seq {part.last_seq}")
            part.last_seq, part.last_hash = row.seq, row.hash
            part.events += 1
            if self.fmt == "jsonl":
                chunks.append(canonical_bytes(_wire(row)) + b"\n")
            else:
                chunks.append(_csv_line((row.hall, row.seq, row.id, row.device, row.type,
                                         "" if row.device_time is None else row.device_time, row.agent_time,
                                         row.central_time, row.prev_hash, row.hash, VERSION, row.data,
                                         "" if row.device_time is None else _rfc3339(row.device_time),
                                         _rfc3339(row.agent_time), _rfc3339(row.central_time))))
        self._events += len(rows)
        return self._out(b"".join(chunks))

    def end_hall(self, *, expected: tuple[int | None, int | None], registered_key_pem: str,
                 signed: SignedHeader | None, tail: Sequence[ExportRow]) -> None:
        """Close the hall's part: check it is the range the store promised, attach the hall's signature."""
        part = self._part
        if part is None:
            raise ExportError("end_hall without start_hall")
        if (part.first_seq, part.last_seq) != expected:
            raise ExportError(f"hall {part.hall}: wrote seq {part.first_seq}..{part.last_seq}, the period holds "
                              f"{expected[0]}..{expected[1]}")
        key_pem = signed.public_key_pem if signed is not None and signed.public_key_pem else registered_key_pem
        entry: dict[str, Any] = {
            "hall": part.hall, "events": part.events, "first_seq": part.first_seq, "last_seq": part.last_seq,
            "prev_hash": part.prev_hash, "last_hash": part.last_hash, "public_key_pem": key_pem,
            "fingerprint": _fingerprint_of(key_pem),
            "registered_fingerprint": _fingerprint_of(registered_key_pem), "signature": None,
        }
        if signed is not None and part.events:
            entry["signature"] = {"header": _DECODE.decode(signed.header), "sig": signed.sig,
                                  "tail": [_DECODE.decode(canonical_bytes(_wire(r))) for r in tail]}
        self._halls.append(entry)
        self._part = None

    def finish(self, key: Ed25519PrivateKey, *, time_from: int, time_to: int, generated_at: int,
               generated_by: str, hall_filter: str | None, scope: Sequence[str] | None) -> tuple[bytes, dict[str, Any]]:
        """The signed manifest line (not part of the hashed data) and the manifest itself."""
        if self._part is not None:
            raise ExportError(f"hall {self._part.hall} was not ended")
        manifest = {
            "format": FORMAT, "encoding": self.fmt, "title": "hallsync regulatory event export",
            "software": software_version(),
            "period": {"from": _rfc3339(time_from), "to": _rfc3339(time_to), "from_us": time_from,
                       "to_us": time_to,
                       "rule": "per hall, the first to the last event with agent_time in [from, to), and every "
                               "event between them"},
            "filter": {"hall": hall_filter, "scope": None if scope is None else list(scope)},
            "generated_at": _rfc3339(generated_at), "generated_at_us": generated_at, "generated_by": generated_by,
            "central": {"fingerprint": fingerprint(key),
                        "public_key_pem": public_key_to_pem(key.public_key()).decode()},
            "data": {"sha256": self._sha.hexdigest(), "bytes": self._bytes, "events": self._events},
            "halls": self._halls,
        }
        body = canonical_bytes(manifest)
        line = canonical_bytes({"manifest": msgspec.Raw(body), "sig": sign(EXPORT_CONTEXT, body, key)})
        if self.fmt == "jsonl":
            return line + b"\n", manifest
        return _csv_line((CSV_MANIFEST_MARK, line.decode())), manifest


class ExportSource(HasExport, HasHalls, Protocol):
    """What :func:`write_export` reads: the export's rows and the halls' keys."""


async def write_export(store: ExportSource, sink: Callable[[bytes], Awaitable[object]], *, fmt: str, time_from: int,
                       time_to: int, key: Ed25519PrivateKey, generated_at: int, generated_by: str,
                       hall: str | None = None, halls: Sequence[str] | None = None,
                       page_size: int = PAGE_SIZE) -> dict[str, Any]:
    """Stream an export to ``sink`` (one awaited call per page) and return its manifest.

    ``hall`` filters to one hall, ``halls`` is the caller's scope (None: every hall). Raises
    :class:`ExportError` if the store is inconsistent; what was sent until then has no manifest, so
    the verifier refuses it.
    """
    writer = ExportWriter(fmt)
    first = writer.begin()
    if first:
        await sink(first)
    for part in await store.export.export_ranges(time_from=time_from, time_to=time_to, hall=hall, halls=halls):
        record = await store.halls.get_hall(part.hall)
        if record is None:
            raise ExportError(f"hall {part.hall} vanished during the export")
        writer.start_hall(part.hall)
        signed: SignedHeader | None = None
        tail: list[ExportRow] = []
        if part.first_seq is not None and part.last_seq is not None:
            async for page in store.export.export_pages(part.hall, part.first_seq, part.last_seq, page_size=page_size):
                await sink(writer.rows(page))
            signed = await store.export.signed_header_covering(part.hall, part.last_seq)
            if signed is not None and signed.last_seq - part.last_seq > MAX_TAIL:
                signed = None  # events stored before central kept signatures: say "unsigned", do not guess
            elif signed is not None and signed.last_seq > part.last_seq:
                tail = await store.export.export_rows(part.hall, after_seq=part.last_seq, through_seq=signed.last_seq,
                                               limit=MAX_TAIL)
        writer.end_hall(expected=(part.first_seq, part.last_seq), registered_key_pem=record.public_key_pem,
                        signed=signed, tail=tail)
    line, manifest = writer.finish(key, time_from=time_from, time_to=time_to, generated_at=generated_at,
                                   generated_by=generated_by, hall_filter=hall, scope=halls)
    await sink(line)
    return manifest
