"""The regulatory export as a regulator uses it: a period's events, streamed from a store filled by ingesting
real signed batches, checked offline with ``hall-central export verify`` — and every kind of tampering
(changed amount, deleted or reordered rows, cut file, forged or re-signed manifest, a re-hashed chain)
refused with its own message."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import re
import subprocess
import sys
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest
from aiohttp.test_utils import TestClient, TestServer

from central.api import PREFIX, build_app
from central.apikeys import create_api_key
from central.export import CSV_COLUMNS, CSV_HASHED_COLUMNS, EXPORT_CONTEXT, write_export
from central.export_verify import verify_export
from central.ingest import Ingestor
from central.repos import Repositories
from central.repos.halls import ROLES
from protocols.sync import (
    Event,
    canonical_bytes,
    canonical_event_bytes,
    chain_hash,
    fingerprint,
    generate_private_key,
    public_key_to_pem,
)
from protocols.sync.keys import Ed25519PrivateKey
from protocols.sync.signing import sign
from tests.keys import key_scope

from .builders import T0, FakeHall
from .conftest import db_arg, register

BIN = Path(sys.executable).with_name("hall-central")
BATCH = 64


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN), *args], cwd=cwd, capture_output=True, text=True, timeout=60)


async def ingest(ingestor: Ingestor, *halls: FakeHall) -> None:
    for hall in halls:
        for _, _, payload in hall.batches(BATCH):
            assert (await ingestor.handle(hall.topic, payload)).status == "stored"


@pytest.fixture
async def halls(store: Repositories, ingestor: Ingestor) -> tuple[FakeHall, FakeHall]:
    a, b = FakeHall("hall-a", seed=31), FakeHall("hall-b", seed=32, devices=2)
    await register(store, a, b)
    a.play(400)
    b.play(250)
    await ingest(ingestor, a, b)
    return a, b


def period(a: FakeHall) -> tuple[int, int]:
    """From hall-a's 51st event to its 301st: cuts batches in the middle on both ends."""
    return a.events[50].agent_time, a.events[300].agent_time


def truth(hall: FakeHall, time_from: int, time_to: int) -> list[Event]:
    return [e for e in hall.events if time_from <= e.agent_time < time_to]


def lines_of(body: bytes) -> list[bytes]:
    return body.splitlines(keepends=True)


def manifest_of(body: bytes) -> dict[str, Any]:
    last = lines_of(body)[-1]
    if last.startswith(b"#manifest,"):
        last = next(csv.reader([last.decode()]))[1].encode()
    return json.loads(last)["manifest"]


class Api:
    def __init__(self, client: TestClient, store: Repositories, key: Ed25519PrivateKey) -> None:
        self.client, self.store, self.central_key = client, store, key
        self.keys: dict[tuple[str, tuple[str, ...] | None], str] = {}

    async def export(self, *, role: str = "regulator", halls: tuple[str, ...] | None = None,
                     **query: Any) -> tuple[int, dict[str, str], bytes]:
        if (role, halls) not in self.keys:
            scope = await key_scope(self.store, role, halls)
            self.keys[(role, halls)] = (await create_api_key(self.store.halls, role, scope, now=T0))[1]
        response = await self.client.get(PREFIX + "/export", params={k: str(v) for k, v in query.items()},
                                         headers={"Authorization": f"Bearer {self.keys[(role, halls)]}"})
        return response.status, dict(response.headers), await response.read()


@pytest.fixture
async def api(store: Repositories) -> AsyncIterator[Api]:
    key = generate_private_key()
    app = build_app(store, currency="EUR", clock=lambda: T0 + 10**13, central_key=key)
    async with TestClient(TestServer(app)) as client:
        yield Api(client, store, key)


# --- what an export holds -------------------------------------------------------------------------
async def test_jsonl_export_is_the_period_exactly_as_the_halls_signed_it(
        api: Api, halls: tuple[FakeHall, FakeHall]) -> None:
    a, b = halls
    time_from, time_to = period(a)
    status, headers, body = await api.export(**{"from": time_from, "to": time_to})
    assert status == 200, body
    assert headers["Content-Type"] == "application/x-ndjson" and headers["Transfer-Encoding"] == "chunked"
    assert "attachment" in headers["Content-Disposition"]

    lines = lines_of(body)
    events = [msgspec.json.decode(line, type=Event) for line in lines[:-1]]
    want = truth(a, time_from, time_to) + truth(b, time_from, time_to)
    assert len(want) > 300 and {e.hall for e in want} == {"hall-a", "hall-b"}
    assert [(e.hall, e.seq) for e in events] == [(e.hall, e.seq) for e in want]
    # byte for byte the content each hall hashed; central only added central_time
    assert [canonical_event_bytes(e) for e in events] == [canonical_event_bytes(e) for e in want]
    assert all(e.central_time is not None for e in events)

    manifest = manifest_of(body)
    assert manifest["data"] == {"sha256": hashlib.sha256(b"".join(lines[:-1])).hexdigest(),
                                "bytes": len(b"".join(lines[:-1])), "events": len(want)}
    assert manifest["period"]["from_us"] == time_from and manifest["period"]["to_us"] == time_to
    assert manifest["central"]["fingerprint"] == fingerprint(api.central_key)
    for entry, hall in zip(manifest["halls"], (a, b), strict=True):
        mine = truth(hall, time_from, time_to)
        assert entry["hall"] == hall.hall and entry["events"] == len(mine)
        assert (entry["first_seq"], entry["last_seq"]) == (mine[0].seq, mine[-1].seq)
        assert entry["prev_hash"] == mine[0].prev_hash and entry["last_hash"] == mine[-1].hash
        assert entry["fingerprint"] == fingerprint(hall.key) and entry["public_key_pem"] == hall.public_pem
        # the hall's signature: the header of the batch holding the last event, and the events up to its end
        batch_end = min(-(-mine[-1].seq // BATCH) * BATCH, len(hall.events))
        signed = entry["signature"]
        assert signed["header"]["hall"] == hall.hall and signed["header"]["last_seq"] == batch_end
        assert signed["header"]["last_hash"] == hall.events[batch_end - 1].hash
        assert [t["seq"] for t in signed["tail"]] == list(range(mine[-1].seq + 1, batch_end + 1))

    report = verify_export(io.BytesIO(body), central_public_key=api.central_key.public_key())
    assert report.ok, report.problems


async def test_csv_export_holds_the_same_events_and_verifies(api: Api, halls: tuple[FakeHall, FakeHall]) -> None:
    a, b = halls
    time_from, time_to = period(a)
    status, headers, body = await api.export(format="csv", **{"from": time_from, "to": time_to})
    assert status == 200 and headers["Content-Type"].startswith("text/csv")
    lines = lines_of(body)
    rows = list(csv.DictReader(io.StringIO(b"".join(lines[:-1]).decode())))
    assert tuple(rows[0]) == CSV_COLUMNS
    want = truth(a, time_from, time_to) + truth(b, time_from, time_to)
    assert [(r["hall"], int(r["seq"]), r["hash"]) for r in rows] == [(e.hall, e.seq, e.hash) for e in want]
    bets = [json.loads(r["data"])["amount"] for r in rows if r["type"] == "game.bet"]
    assert bets == [e.data["amount"] for e in want if e.type == "game.bet"]
    assert lines[-1].startswith(b"#manifest,") and manifest_of(body)["encoding"] == "csv"
    report = verify_export(io.BytesIO(body), central_public_key=api.central_key.public_key())
    assert report.ok, report.problems
    # issue 16: the times also as ISO 8601 UTC for a person with a spreadsheet, equal to the hashed µs
    for r in rows:
        for name in ("agent_time", "central_time", "device_time"):
            readable = r[f"{name}_utc"]
            micros = r[name]
            assert readable == ("" if micros == "" else _iso_utc(int(micros))), (name, r)
    assert rows[0]["agent_time_utc"].endswith("Z") and "T" in rows[0]["agent_time_utc"]
    # a readable time edited to mislead (the µs stay) is caught, though it is not hashed
    edited = body.replace(rows[3]["agent_time_utc"].encode(), b"2001-01-01T00:00:00.000000Z", 1)
    caught = verify_export(io.BytesIO(edited), central_public_key=api.central_key.public_key())
    assert not caught.ok and any("agent_time_utc" in p for p in caught.problems)


async def test_a_csv_export_from_before_the_readable_times_still_verifies(api: Api,
                                                                          halls: tuple[FakeHall, FakeHall]) -> None:
    """Files already handed to a regulator have only the hashed columns: they must keep verifying."""
    a, _ = halls
    time_from, time_to = period(a)
    _, _, body = await api.export(format="csv", **{"from": time_from, "to": time_to})
    lines = lines_of(body)
    old = [_csv_row(next(csv.reader([line.decode()]))[:len(CSV_HASHED_COLUMNS)]) for line in lines[:-1]]
    data = b"".join(old)
    outer = json.loads(next(csv.reader([lines[-1].decode()]))[1])
    manifest = outer["manifest"]
    manifest["data"].update(sha256=hashlib.sha256(data).hexdigest(), bytes=len(data))
    signed = canonical_bytes(manifest)
    line = canonical_bytes({"manifest": msgspec.Raw(signed), "sig": sign(EXPORT_CONTEXT, signed, api.central_key)})
    legacy = data + _csv_row(["#manifest", line.decode()])
    assert old[0] == b",".join(c.encode() for c in CSV_HASHED_COLUMNS) + b"\r\n"
    report = verify_export(io.BytesIO(legacy), central_public_key=api.central_key.public_key())
    assert report.ok, report.problems


def _csv_row(fields: list[str]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerow(fields)
    return buffer.getvalue().encode()


def _iso_utc(micros: int) -> str:
    import datetime as dt
    return (dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=micros)).strftime(
        "%Y-%m-%dT%H:%M:%S.%fZ")


async def test_the_writer_streams_one_page_at_a_time(store: Repositories, halls: tuple[FakeHall, FakeHall]) -> None:
    a, b = halls
    time_from, time_to = period(a)
    chunks: list[bytes] = []

    async def sink(chunk: bytes) -> None:
        chunks.append(chunk)

    key = generate_private_key()
    manifest = await write_export(store, sink, fmt="jsonl", time_from=time_from, time_to=time_to, key=key,
                                  generated_at=T0, generated_by="test", page_size=40)
    counts = [len(truth(h, time_from, time_to)) for h in (a, b)]
    assert [len(c.splitlines()) for c in chunks[:-1]] == [
        min(40, n - start) for n in counts for start in range(0, n, 40)]
    assert manifest["data"]["events"] == sum(counts)
    assert verify_export(io.BytesIO(b"".join(chunks)), central_public_key=key.public_key()).ok


async def test_a_period_without_events_says_no_activity(api: Api, halls: tuple[FakeHall, FakeHall]) -> None:
    status, _, body = await api.export(**{"from": "2020-01-01T00:00:00Z", "to": "2020-01-02T00:00:00Z"})
    assert status == 200 and len(lines_of(body)) == 1
    manifest = manifest_of(body)
    assert [(h["hall"], h["events"], h["first_seq"]) for h in manifest["halls"]] == [("hall-a", 0, None),
                                                                                    ("hall-b", 0, None)]
    report = verify_export(io.BytesIO(body), central_public_key=api.central_key.public_key())
    assert report.ok and any("no events" in line for line in report.checked)


async def test_a_replaced_hall_key_does_not_void_older_signatures(
        api: Api, store: Repositories, halls: tuple[FakeHall, FakeHall]) -> None:
    a, _ = halls
    new_key = generate_private_key()
    assert await store.halls.add_hall("hall-a", public_key_to_pem(new_key.public_key()).decode(), now=T0,
                                replace=True) == "replaced"
    status, _, body = await api.export(hall="hall-a", **{"from": period(a)[0], "to": period(a)[1]})
    assert status == 200
    (entry,) = manifest_of(body)["halls"]
    assert entry["fingerprint"] == fingerprint(a.key) and entry["registered_fingerprint"] == fingerprint(new_key)
    assert verify_export(io.BytesIO(body), central_public_key=api.central_key.public_key()).ok


async def test_events_stored_without_a_batch_signature_are_reported_unsigned(
        store: Repositories, api: Api) -> None:
    old = FakeHall("hall-old", seed=5)
    await register(store, old)
    old.play(30)
    result = await store.ingest.ingest_events("hall-old", old.events, central_time=T0)  # as before batches were kept
    assert result.status == "stored"
    status, _, body = await api.export(**{"from": T0, "to": old.events[-1].agent_time + 1})
    assert status == 200
    strict = verify_export(io.BytesIO(body), central_public_key=api.central_key.public_key())
    assert not strict.ok and f"no hall signature covers seq 1..{len(old.events)}" in strict.problems[0]
    lenient = verify_export(io.BytesIO(body), central_public_key=api.central_key.public_key(), allow_unsigned=True)
    assert lenient.ok and "no hall signature" in lenient.notes[-1]


# --- roles, scope and bad requests ----------------------------------------------------------------
@pytest.mark.parametrize("role", ROLES)
async def test_only_admin_and_regulator_export(api: Api, role: str) -> None:
    status, headers, body = await api.export(role=role, **{"from": T0, "to": T0 + 1})
    if role in ("admin", "regulator"):
        assert status == 200 and manifest_of(body)["halls"] == []
    else:
        assert status == 403 and headers["Content-Type"].startswith("application/json")
        assert json.loads(body)["error"]["code"] == "forbidden"


async def test_a_hall_scoped_key_exports_only_its_halls(api: Api, halls: tuple[FakeHall, FakeHall]) -> None:
    a, _ = halls
    time_from, time_to = period(a)
    status, _, body = await api.export(halls=("hall-a",), **{"from": time_from, "to": time_to})
    assert status == 200
    manifest = manifest_of(body)
    assert [h["hall"] for h in manifest["halls"]] == ["hall-a"] and manifest["filter"]["scope"] == ["hall-a"]
    assert {json.loads(line)["hall"] for line in lines_of(body)[:-1]} == {"hall-a"}
    assert verify_export(io.BytesIO(body), central_public_key=api.central_key.public_key()).ok
    status, _, body = await api.export(halls=("hall-a",), hall="hall-b", **{"from": time_from, "to": time_to})
    assert status == 403


@pytest.mark.parametrize(("query", "says"), [
    ({"to": "2026-01-02T00:00:00Z"}, "from and to are required"),
    ({"from": "2026-01-02T00:00:00Z", "to": "2026-01-01T00:00:00Z"}, "must be before"),
    ({"from": "2026-01-01T00:00:00Z", "to": "2026-01-02T00:00:00Z", "format": "xml"}, "format must be one of"),
    ({"from": "soon", "to": "2026-01-02T00:00:00Z"}, "from must be RFC 3339"),
    ({"from": "2026-01-01T00:00:00Z", "to": "2026-01-02T00:00:00Z", "hall": "nowhere"}, "not registered"),
])
async def test_bad_requests_are_json_400_before_any_byte(api: Api, query: dict[str, str], says: str) -> None:
    status, headers, body = await api.export(**query)
    assert status == 400 and headers["Content-Type"].startswith("application/json")
    assert says in json.loads(body)["error"]["message"]


async def test_without_a_signing_key_it_is_503(store: Repositories) -> None:
    key = (await create_api_key(store.halls, "admin", None, now=T0))[1]
    async with TestClient(TestServer(build_app(store, currency="EUR"))) as client:
        response = await client.get(PREFIX + "/export", params={"from": "0", "to": "1"},
                                    headers={"Authorization": f"Bearer {key}"})
        assert response.status == 503 and (await response.json())["error"]["code"] == "unavailable"


# --- hall-central export verify, and tampering ----------------------------------------------------
@pytest.fixture(params=["jsonl", "csv"])
async def exported(request: pytest.FixtureRequest, api: Api, halls: tuple[FakeHall, FakeHall], tmp_path: Path) -> Path:
    a, _ = halls
    time_from, time_to = period(a)
    status, _, body = await api.export(format=request.param, **{"from": time_from, "to": time_to})
    assert status == 200
    (tmp_path / "central.pub").write_bytes(public_key_to_pem(api.central_key.public_key()))
    (tmp_path / f"export.{request.param}").write_bytes(body)
    return tmp_path / f"export.{request.param}"


def verify(path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return cli("export", "verify", str(path), *extra, cwd=path.parent)


def test_verify_passes_and_says_what_it_checked(exported: Path) -> None:
    done = verify(exported, "--central-pub", "central.pub")
    assert done.returncode == 0, done.stderr
    assert "manifest signed by central" in done.stdout and "data SHA-256" in done.stdout
    for hall in ("hall-a", "hall-b"):
        assert f"hall {hall}: " in done.stdout and "every hash recomputed" in done.stdout
        assert f"hall {hall}: signed by the hall's key" in done.stdout
    assert done.stdout.strip().endswith("holds the halls' own events")


def _lines(path: Path) -> list[bytes]:
    return lines_of(path.read_bytes())


def _money_line(lines: list[bytes], nth: int = 10) -> int:
    return [i for i, line in enumerate(lines[:-1]) if b"game.bet" in line][nth]


def _read_manifest(line: bytes) -> dict[str, Any]:
    if line.startswith(b"#manifest,"):
        line = next(csv.reader([line.decode()]))[1].encode()
    return json.loads(line)


def _manifest_line(outer: dict[str, Any], csv_format: bool) -> bytes:
    text = json.dumps(outer, separators=(",", ":"))
    if not csv_format:
        return text.encode() + b"\n"
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerow(("#manifest", text))
    return buffer.getvalue().encode()


def tamper_amount(path: Path) -> None:
    lines = _lines(path)
    i = _money_line(lines)
    changed = re.sub(rb'amount("*):(\d+)', rb'amount\1:1', lines[i], count=1)
    assert changed != lines[i]
    lines[i] = changed
    path.write_bytes(b"".join(lines))


def tamper_delete(path: Path) -> None:
    lines = _lines(path)
    del lines[_money_line(lines)]
    path.write_bytes(b"".join(lines))


def tamper_reorder(path: Path) -> None:
    lines = _lines(path)
    i = _money_line(lines)
    lines[i], lines[i + 1] = lines[i + 1], lines[i]
    path.write_bytes(b"".join(lines))


def tamper_cut(path: Path) -> None:
    path.write_bytes(b"".join(_lines(path)[:-1]))


def tamper_manifest(path: Path) -> None:
    """Raise the manifest's event count without central's key: the signature no longer matches."""
    lines = _lines(path)
    outer = _read_manifest(lines[-1])
    outer["manifest"]["data"]["events"] += 1
    lines[-1] = _manifest_line(outer, path.suffix == ".csv")
    path.write_bytes(b"".join(lines))


@pytest.mark.parametrize(("tamper", "messages"), [
    (tamper_amount, ["hash does not match the event's content", "the file was changed after export"]),
    (tamper_delete, ["missing before line", "rows deleted", "the file holds"]),
    (tamper_reorder, ["rows out of order"]),
    (tamper_cut, ["no manifest on the last line", "cut short"]),
    (tamper_manifest, ["the manifest signature does not verify", "edited or forged"]),
])
def test_each_kind_of_tampering_fails_with_its_message(exported: Path, tamper: Any, messages: list[str]) -> None:
    tamper(exported)
    done = verify(exported, "--central-pub", "central.pub")
    assert done.returncode == 1, done.stdout
    for message in messages:
        assert message in done.stderr, done.stderr
    assert "is NOT a verified export" in done.stderr
    if tamper in (tamper_amount, tamper_delete, tamper_reorder):  # the rows of hall-a were touched
        assert not [line for line in done.stdout.splitlines()
                    if line.startswith("ok: hall hall-a:") and "every hash recomputed" in line]
        assert "ok: hall hall-b: " in done.stdout  # the untouched hall is still reported sound


def forge(path: Path, key: Ed25519PrivateKey) -> None:
    """What a forger with full control of the file (not of the halls' keys) can do: lower an amount, re-hash
    that hall's chain from there on (tail included), fix every count and sum, and re-sign the manifest."""
    lines = _lines(path)
    outer = _read_manifest(lines[-1])
    manifest = outer["manifest"]
    i = _money_line(lines)
    events = [msgspec.json.decode(line, type=Event) for line in lines[:-1]]
    hall = events[i].hall
    entry = next(h for h in manifest["halls"] if h["hall"] == hall)
    prev = events[i].prev_hash
    for j in [j for j in range(i, len(events)) if events[j].hall == hall]:
        e = msgspec.structs.replace(events[j], prev_hash=prev,
                                    data=dict(events[j].data, amount=1) if j == i else events[j].data)
        e = msgspec.structs.replace(e, hash=chain_hash(e))
        prev = e.hash
        lines[j] = canonical_bytes(e) + b"\n"
    entry["last_hash"] = prev
    tail = []
    for t in entry["signature"]["tail"]:
        e = msgspec.structs.replace(msgspec.convert(t, Event), prev_hash=prev)
        e = msgspec.structs.replace(e, hash=chain_hash(e))
        tail.append(json.loads(canonical_bytes(e)))
        prev = e.hash
    entry["signature"]["tail"] = tail
    data_bytes = b"".join(lines[:-1])
    manifest["data"].update(sha256=hashlib.sha256(data_bytes).hexdigest(), bytes=len(data_bytes))
    manifest["central"] = {"fingerprint": fingerprint(key),
                           "public_key_pem": public_key_to_pem(key.public_key()).decode()}
    lines[-1] = _manifest_line({"manifest": manifest, "sig": sign("export", canonical_bytes(manifest), key)}, False)
    path.write_bytes(b"".join(lines))


async def test_a_re_hashed_and_re_signed_file_still_fails_on_the_halls_signature(
        api: Api, halls: tuple[FakeHall, FakeHall], tmp_path: Path) -> None:
    a, _ = halls
    status, _, body = await api.export(**{"from": period(a)[0], "to": period(a)[1]})
    assert status == 200
    path = tmp_path / "export.jsonl"
    path.write_bytes(body)
    (tmp_path / "central.pub").write_bytes(public_key_to_pem(api.central_key.public_key()))
    forge(path, generate_private_key())
    done = verify(path)  # trusting the key inside the file: central's check alone would pass
    assert done.returncode == 1
    assert "ok: manifest signed by central" in done.stdout and "ok: data SHA-256" in done.stdout
    assert "these are not the events the hall sent" in done.stderr, done.stderr
    pinned = verify(path, "--central-pub", "central.pub")
    assert pinned.returncode == 1 and "not the trusted" in pinned.stderr and "does not verify" in pinned.stderr


async def test_cli_export_writes_a_file_that_verifies(
        store: Repositories, halls: tuple[FakeHall, FakeHall], tmp_path: Path) -> None:
    a, b = halls
    assert cli("keys", "init", "--data-dir", "data", cwd=tmp_path).returncode == 0
    time_from, time_to = period(a)
    for fmt in ("csv", "jsonl"):
        done = cli("export", "--db", db_arg(store), "--data-dir", "data", "--from", str(time_from), "--to",
                   str(time_to),
                   "--format", fmt, "--out", f"out.{fmt}", cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        want = truth(a, time_from, time_to) + truth(b, time_from, time_to)
        assert f"{len(want)} events of 2 halls" in done.stdout
        checked = cli("export", "verify", f"out.{fmt}", "--central-pub", "data/central.pub", cwd=tmp_path)
        assert checked.returncode == 0, checked.stderr
        original = (tmp_path / f"out.{fmt}").read_bytes()
        tampered = re.sub(rb'amount("*):(\d+)', rb"amount\1:9\2", original, count=1)
        assert tampered != original
        (tmp_path / f"bad.{fmt}").write_bytes(tampered)
        bad = cli("export", "verify", f"bad.{fmt}", "--central-pub", "data/central.pub", cwd=tmp_path)
        assert bad.returncode == 1 and "hash does not match the event's content" in bad.stderr
    assert not list(tmp_path.glob(".*.partial"))


async def test_cli_export_takes_gaming_days_like_the_reports(
        store: Repositories, halls: tuple[FakeHall, FakeHall], tmp_path: Path) -> None:
    """--from 2026-01-01 --to 2026-01-01 is that whole (UTC, here) gaming day, as /reports/ggr reads it."""
    a, b = halls
    assert cli("keys", "init", "--data-dir", "data", cwd=tmp_path).returncode == 0
    done = cli("export", "--db", db_arg(store), "--data-dir", "data", "--from", "2026-01-01", "--to",
               "2026-01-01",
               "--out", "day.jsonl", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    day = truth(a, T0, T0 + 86_400_000_000) + truth(b, T0, T0 + 86_400_000_000)
    assert manifest_of((tmp_path / "day.jsonl").read_bytes())["data"]["events"] == len(day) > 0


def test_cli_export_refuses_bad_options(tmp_path: Path) -> None:
    for command in (("export",), ("export", "verify")):
        helped = cli(*command, "--help", cwd=tmp_path)
        assert helped.returncode == 0 and "usage: hall-central export" in helped.stdout
    missing = cli("export", "--db", "c.db", cwd=tmp_path)
    assert missing.returncode == 2 and "--data-dir" in missing.stderr
    backwards = cli("export", "--db", "c.db", "--data-dir", "d", "--from", "2026-02-01", "--to", "2026-01-01",
                    "--out", "x", cwd=tmp_path)
    assert backwards.returncode == 2 and "before --to" in backwards.stderr
    instants = cli("export", "--db", "c.db", "--data-dir", "d", "--from", "2026-02-01T00:00:00Z", "--to",
                   "2026-01-01T00:00:00Z", "--out", "x", cwd=tmp_path)
    assert instants.returncode == 2 and "before --to" in instants.stderr
    absent = cli("export", "verify", "nope.jsonl", cwd=tmp_path)
    assert absent.returncode == 1 and "cannot read nope.jsonl" in absent.stderr


class FailingExport:
    """The store's real export repository whose disk 'fails' after the first page of an export."""

    pages = 0

    def __init__(self, real: Any) -> None:
        self._real = real

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    async def export_pages(self, hall: str, first_seq: int, last_seq: int, *,
                           page_size: int = 1000) -> AsyncIterator[list[Any]]:
        after = first_seq - 1
        while after < last_seq:   # the real paging, through the failing export_rows below
            page = await self.export_rows(hall, after_seq=after, through_seq=last_seq, limit=page_size)
            if not page:
                return
            yield page
            after = page[-1].seq

    async def export_rows(self, hall: str, *, after_seq: int, through_seq: int, limit: int) -> list[Any]:
        self.pages += 1
        if self.pages > 1:
            raise OSError("disk I/O error")
        rows: list[Any] = await self._real.export_rows(hall, after_seq=after_seq, through_seq=through_seq,
                                                       limit=limit)
        return rows


async def test_a_failure_mid_stream_breaks_the_transfer_instead_of_ending_it_cleanly(
        tmp_path: Path, store: Repositories, halls: tuple[FakeHall, FakeHall]) -> None:
    a, _ = halls
    failing = dataclasses.replace(store, export=FailingExport(store.export))
    key = (await create_api_key(failing.halls, "regulator", None, now=T0))[1]
    app = build_app(failing, currency="EUR", central_key=generate_private_key())
    async with TestClient(TestServer(app)) as client:
        response = await client.get(PREFIX + "/export", params={"from": "0", "to": str(a.events[-1].agent_time)},
                                    headers={"Authorization": f"Bearer {key}"})
        assert response.status == 200  # the first page was already on its way
        with pytest.raises(aiohttp.ClientPayloadError):
            await response.read()


async def test_memory_does_not_grow_with_the_period(store: Repositories, ingestor: Ingestor) -> None:
    """Six times the events, the same peak: the writer holds a page, never the period."""
    big = FakeHall("hall-big", seed=9)
    await register(store, big)
    big.play(6000)
    for _, _, payload in big.batches(500):
        assert (await ingestor.handle(big.topic, payload)).status == "stored"
    key = generate_private_key()
    peaks, sizes = [], []
    for count in (1000, 6000):  # both end on a batch boundary: no tail either way
        written = 0

        async def sink(chunk: bytes) -> None:
            nonlocal written
            written += len(chunk)

        tracemalloc.start()
        try:
            manifest = await write_export(store, sink, fmt="jsonl", time_from=0,
                                          time_to=big.events[count - 1].agent_time + 1, key=key, generated_at=T0,
                                          generated_by="test", page_size=200)
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
        assert manifest["data"]["events"] == count
        sizes.append(written)
    assert sizes[1] > 5 * sizes[0]
    assert peaks[1] < 1.5 * peaks[0] and peaks[1] < sizes[1] / 3, (peaks, sizes)
