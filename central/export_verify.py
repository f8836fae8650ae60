"""Offline verification of an export file (``hall-central export verify``): what :mod:`central.export`
promises, checked without central, the network or the database.

Reads the file line by line, one line ahead (the last line is the manifest), so memory stays flat.
It never stops at the first problem: every check runs and each failure is reported with what it means
(changed, deleted, reordered, cut, forged), at most :data:`MAX_PROBLEMS` of them. What each check
proves is in :mod:`central.export`'s docstring.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Final

import msgspec

from protocols.sync import (
    GENESIS_HASH,
    BatchHeader,
    Event,
    SyncError,
    canonical_bytes,
    decode_event,
    fingerprint,
    public_key_from_pem,
)
from protocols.sync.keys import Ed25519PublicKey
from protocols.sync.signing import verify

from .export import (
    BATCH_CONTEXT,
    CSV_COLUMNS,
    CSV_HASHED_COLUMNS,
    CSV_HEADER,
    CSV_HEADER_HASHED_ONLY,
    CSV_MANIFEST_MARK,
    CSV_TIME_COLUMNS,
    EXPORT_CONTEXT,
    FORMAT,
    HallPart,
    _rfc3339,
)

MAX_PROBLEMS: Final = 50
"""The verifier reports this many problems at most (a broken file would otherwise print one per row)."""

_DECODE: Final = msgspec.json.Decoder()
_HEADER_DECODER: Final = msgspec.json.Decoder(BatchHeader)


@dataclass(slots=True)
class VerifyReport:
    """What :func:`verify_export` checked (``checked``) and what failed (``problems``); ok = no problem."""

    checked: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    manifest: dict[str, Any] | None = None
    dropped: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    def fail(self, message: str) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(message)
        else:
            self.dropped += 1


def _event_from_csv(line: bytes, columns: tuple[str, ...] = CSV_COLUMNS) -> dict[str, Any]:
    """A CSV data row back to the wire-form object (raises ValueError when it is not one, or when a readable
    ``*_utc`` time disagrees with the hashed µs time beside it)."""
    fields = next(csv.reader([line.decode("utf-8")]))
    if len(fields) != len(columns):
        raise ValueError(f"{len(fields)} fields, a row has {len(columns)}")
    row = dict(zip(columns, fields, strict=True))
    for name in CSV_TIME_COLUMNS if columns is CSV_COLUMNS else ():
        micros = row[name.removesuffix("_utc")]
        if row[name] != ("" if micros == "" else _rfc3339(int(micros))):
            raise ValueError(f"{name} {row[name]!r} is not the hashed {name.removesuffix('_utc')} {micros}")
    out: dict[str, Any] = {k: row[k] for k in ("hall", "id", "device", "type", "prev_hash", "hash")}
    for k in ("seq", "agent_time", "central_time", "v"):
        out[k] = int(row[k])
    out["device_time"] = None if row["device_time"] == "" else int(row["device_time"])
    out["data"] = _DECODE.decode(row["data"])
    return out


def _parse_event(line: bytes, fmt: str) -> tuple[dict[str, Any], Event | None, str | None]:
    """(the raw object, the event if its content matches its hash, else the problem). ``fmt`` is
    ``jsonl``, ``csv`` or ``csv-hashed-only`` (a file from before the readable times)."""
    try:
        if fmt == "jsonl":
            obj = _DECODE.decode(line)
        else:
            obj = _event_from_csv(line, CSV_COLUMNS if fmt == "csv" else CSV_HASHED_COLUMNS)
    except (msgspec.DecodeError, ValueError, StopIteration) as exc:
        raise ValueError(f"not an event: {exc}") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("hall"), str) or type(obj.get("seq")) is not int:
        raise ValueError("not an event: no hall and seq")
    try:
        return obj, decode_event(canonical_bytes(obj)), None
    except SyncError as exc:
        return obj, None, str(exc)


@dataclass(slots=True)
class _Reader:
    """Per-line state of the verifier: the running hash and the hall summaries."""

    report: VerifyReport
    fmt: str = "jsonl"
    sha: Any = field(default_factory=hashlib.sha256)
    size: int = 0
    events: int = 0
    halls: list[HallPart] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)
    broken: set[str] = field(default_factory=set)
    """Halls with a problem in their rows (their chain is not reported as checked)."""

    def fail(self, hall: str, message: str) -> None:
        self.broken.add(hall)
        self.report.fail(message)

    def data_line(self, number: int, line: bytes) -> None:
        self.sha.update(line)
        self.size += len(line)
        if number == 1 and line in (CSV_HEADER, CSV_HEADER_HASHED_ONLY):
            self.fmt = "csv" if line == CSV_HEADER else "csv-hashed-only"
            return
        body = line.rstrip(b"\r\n") if self.fmt != "jsonl" else line.rstrip(b"\n")
        try:
            obj, _, problem = _parse_event(body, self.fmt)
        except ValueError as exc:
            self.report.fail(f"line {number}: {exc}")
            return
        self.events += 1
        hall, seq = obj["hall"], obj["seq"]
        where = f"hall {hall} seq {seq} (line {number})"
        if problem is not None:
            self.fail(hall, f"{where}: {problem} — the event was changed after the hall signed it")
        part = self.halls[-1] if self.halls else None
        if part is None or part.hall != hall:
            if hall in self.seen:
                self.fail(hall, f"{where}: hall {hall} appears again after other halls (rows out of order)")
            self.seen.add(hall)
            part = HallPart(hall, first_seq=seq, prev_hash=obj.get("prev_hash"))
            self.halls.append(part)
        elif part.last_seq is not None:
            expected = part.last_seq + 1
            if seq > expected:
                missing = f"seq {expected}" if seq == expected + 1 else f"seq {expected}..{seq - 1}"
                self.fail(hall, f"hall {hall}: {missing} missing before line {number} (rows deleted)")
            elif seq < expected:
                self.fail(hall, f"{where}: comes after seq {part.last_seq} (rows out of order or repeated)")
            elif obj.get("prev_hash") != part.last_hash:
                self.fail(hall, f"{where}: prev_hash does not link to seq {part.last_seq}'s hash (the chain is "
                                f"broken: an event was changed, removed or inserted)")
        part.events += 1
        part.last_seq, part.last_hash = seq, obj.get("hash")


def _parse_manifest(line: bytes, fmt: str) -> tuple[dict[str, Any], str]:
    text = line.rstrip(b"\r\n")
    if fmt != "jsonl":
        fields = next(csv.reader([text.decode("utf-8")]))
        if len(fields) != 2 or fields[0] != CSV_MANIFEST_MARK:
            raise ValueError("the last row is not the manifest row")
        text = fields[1].encode()
    obj = _DECODE.decode(text)
    if not isinstance(obj, dict) or not isinstance(obj.get("manifest"), dict) or not isinstance(obj.get("sig"), str):
        raise ValueError("the last line is not {\"manifest\": {...}, \"sig\": \"...\"}")
    return obj["manifest"], obj["sig"]


def _lines(stream: BinaryIO) -> Iterator[tuple[int, bytes, bool]]:
    """(number, line, is_last) for each line, reading one line ahead."""
    previous: bytes | None = None
    number = 0
    for line in stream:
        if previous is not None:
            yield number, previous, False
        number += 1
        previous = line
    if previous is not None:
        yield number, previous, True


def verify_export(stream: BinaryIO, *, central_public_key: Ed25519PublicKey | None = None,
                  allow_unsigned: bool = False) -> VerifyReport:
    """Check an export file offline (see the module docstring); never raises on a bad file."""
    report = VerifyReport()
    reader = _Reader(report)
    manifest_line: bytes | None = None
    for number, line, last in _lines(stream):
        if last:
            manifest_line = line
        else:
            reader.data_line(number, line)
    if manifest_line is None:
        report.fail("the file is empty: no manifest")
        return report
    try:
        manifest, sig = _parse_manifest(manifest_line, reader.fmt)
    except (ValueError, msgspec.DecodeError, StopIteration, UnicodeDecodeError) as exc:
        report.fail(f"no manifest on the last line ({exc}): the file was cut short or is not a hallsync export")
        return report
    report.manifest = manifest
    _check_central_signature(report, manifest, sig, central_public_key)
    try:
        _check_manifest(report, reader, manifest, allow_unsigned)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        report.fail(f"the manifest lacks or garbles a field ({type(exc).__name__}: {exc})")
    if report.dropped:
        report.problems.append(f"... and {report.dropped} more problems")
    return report


def _check_central_signature(report: VerifyReport, manifest: dict[str, Any], sig: str,
                             trusted: Ed25519PublicKey | None) -> None:
    found = manifest.get("central")
    central: dict[str, Any] = found if isinstance(found, dict) else {}
    named = central.get("fingerprint")
    if trusted is not None:
        key, source = trusted, "the key you gave (--central-pub)"
        if named != fingerprint(trusted):
            report.fail(f"the manifest names central key {named}, not the trusted {fingerprint(trusted)}: it was "
                        f"not exported by that central")
    else:
        try:
            key = public_key_from_pem(str(central.get("public_key_pem", "")).encode())
        except SyncError as exc:
            report.fail(f"the manifest's central public key is unusable: {exc}")
            return
        source = "the key inside the file (pass --central-pub central.pub to pin it)"
        report.notes.append(f"central's key was taken from the file itself ({fingerprint(key)}): compare it with "
                            f"the operator's published central.pub, or pass --central-pub")
    try:
        verify(EXPORT_CONTEXT, canonical_bytes(manifest), sig, key)
    except SyncError:
        report.fail(f"the manifest signature does not verify under {source}: the manifest was edited or forged")
        return
    except Exception as exc:  # a manifest with values canonical encoding refuses
        report.fail(f"the manifest cannot be re-encoded to check its signature: {exc}")
        return
    report.checked.append(f"manifest signed by central {fingerprint(key)}, checked under {source}")


def _check_manifest(report: VerifyReport, reader: _Reader, manifest: dict[str, Any], allow_unsigned: bool) -> None:
    if manifest.get("format") != FORMAT:
        report.fail(f"format {manifest.get('format')!r} is not {FORMAT}")
    encoding = "jsonl" if reader.fmt == "jsonl" else "csv"
    if manifest.get("encoding") != encoding:
        report.fail(f"the manifest says {manifest.get('encoding')}, the data is {encoding}")
    data = manifest["data"]
    digest = reader.sha.hexdigest()
    if data["sha256"] != digest or data["bytes"] != reader.size:
        report.fail(f"the data's SHA-256 is {digest} ({reader.size} bytes), the manifest says {data['sha256']} "
                    f"({data['bytes']} bytes): the file was changed after export")
    else:
        report.checked.append(f"data SHA-256 {digest} ({reader.size} bytes) equals the manifest's")
    if data["events"] != reader.events:
        report.fail(f"the file holds {reader.events} events, the manifest says {data['events']}")
    period = manifest["period"]
    report.checked.append(f"period {period['from']} .. {period['to']} ({period['rule']}), exported "
                          f"{manifest['generated_at']} by {manifest['generated_by']} with {manifest['software']}")
    found = {part.hall: part for part in reader.halls}
    listed = [h["hall"] for h in manifest["halls"]]
    for hall in found:
        if hall not in listed:
            report.fail(f"hall {hall} has events in the file but is not in the manifest")
    order = [h for h in listed if h in found]
    if order != [part.hall for part in reader.halls]:
        report.fail(f"halls appear in the order {[p.hall for p in reader.halls]}, the manifest lists {order}")
    for entry in manifest["halls"]:
        _check_hall(report, entry, found.get(entry["hall"]), entry["hall"] in reader.broken, allow_unsigned)


def _check_hall(report: VerifyReport, entry: dict[str, Any], part: HallPart | None, broken: bool,
                allow_unsigned: bool) -> None:
    hall = entry["hall"]
    if entry["events"] == 0:
        if part is not None:
            report.fail(f"hall {hall}: the manifest says no events, the file holds {part.events}")
        else:
            report.checked.append(f"hall {hall}: no events in the period")
        return
    if part is None:
        report.fail(f"hall {hall}: the manifest lists {entry['events']} events (seq {entry['first_seq']}.."
                    f"{entry['last_seq']}), the file holds none (rows deleted)")
        return
    got = (part.events, part.first_seq, part.last_seq, part.prev_hash, part.last_hash)
    want = (entry["events"], entry["first_seq"], entry["last_seq"], entry["prev_hash"], entry["last_hash"])
    if got != want:
        report.fail(f"hall {hall}: the file holds {part.events} events seq {part.first_seq}..{part.last_seq}, the "
                    f"manifest says {entry['events']} events seq {entry['first_seq']}..{entry['last_seq']} (or "
                    f"other chain ends)")
    elif not broken:
        report.checked.append(f"hall {hall}: {part.events} events, seq {part.first_seq}..{part.last_seq}, every hash "
                              f"recomputed and every link checked")
    if part.first_seq == 1 and part.prev_hash != GENESIS_HASH:
        report.fail(f"hall {hall}: seq 1 does not follow the genesis hash")
    _check_hall_signature(report, entry, allow_unsigned)


def _check_hall_signature(report: VerifyReport, entry: dict[str, Any], allow_unsigned: bool) -> None:
    hall = entry["hall"]
    proof = entry.get("signature")
    if proof is None:
        message = (f"hall {hall}: no hall signature covers seq {entry['first_seq']}..{entry['last_seq']} (stored "
                   f"before central kept batch signatures?): only central vouches for these events")
        if allow_unsigned:
            report.notes.append(message)
        else:
            report.fail(message + " (--allow-unsigned accepts that)")
        return
    try:
        key = public_key_from_pem(str(entry["public_key_pem"]).encode())
    except SyncError as exc:
        report.fail(f"hall {hall}: the hall's public key is unusable: {exc}")
        return
    if fingerprint(key) != entry.get("fingerprint"):
        report.fail(f"hall {hall}: the public key's fingerprint is {fingerprint(key)}, the manifest says "
                    f"{entry.get('fingerprint')}")
    try:
        header = _HEADER_DECODER.decode(canonical_bytes(proof["header"]))
        verify(BATCH_CONTEXT, canonical_bytes(header), proof["sig"], key)
    except SyncError as exc:
        report.fail(f"hall {hall}: the hall's batch signature does not verify under {fingerprint(key)} ({exc})")
        return
    if header.hall != hall:
        report.fail(f"hall {hall}: the signed header belongs to hall {header.hall}")
        return
    seq, last_hash = entry["last_seq"], entry["last_hash"]
    for index, obj in enumerate(proof["tail"]):
        try:
            event = decode_event(canonical_bytes(obj))
        except SyncError as exc:
            report.fail(f"hall {hall}: tail event {index} after the period is not the hall's: {exc}")
            return
        if event.hall != hall or event.seq != seq + 1 or event.prev_hash != last_hash:
            report.fail(f"hall {hall}: tail event seq {event.seq} does not continue the chain from seq {seq}")
            return
        seq, last_hash = event.seq, event.hash
    if header.last_seq != seq or header.last_hash != last_hash:
        report.fail(f"hall {hall}: the chain ends at seq {seq} hash {last_hash[:16]}…, the hall signed seq "
                    f"{header.last_seq} hash {header.last_hash[:16]}…: these are not the events the hall sent")
        return
    tail = len(proof["tail"])
    report.checked.append(f"hall {hall}: signed by the hall's key {fingerprint(key)}: the chain end seq "
                          f"{entry['last_seq']} reaches the hall's signed batch {header.first_seq}..{header.last_seq}"
                          + (f" through {tail} later events (evidence, not in the period)" if tail else ""))
