"""Store queries (reports, events, log, devices), API keys, and the backend selection."""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from central.apikeys import KeyNotFound, authenticate, create_api_key, revoke_api_key, rotate_api_key
from central.ingest import Ingestor
from central.repos import Repositories
from central.repos.errors import DuplicateKey, StoreError
from central.repos.halls import HallKeyConflict
from central.store import open_sqlite, open_store, sqlite_path
from central.store.schema import SCHEMA_VERSION

from .builders import T0, FakeHall
from .conftest import register


async def _filled(store: Repositories, ingestor: Ingestor) -> tuple[FakeHall, FakeHall]:
    a, b = FakeHall("hall-a", seed=20), FakeHall("hall-b", seed=21, devices=2)
    await register(store, a, b)
    a.play(300)
    b.play(100)
    for hall in (a, b):
        for _, _, payload in hall.batches(100):
            assert (await ingestor.handle(hall.topic, payload)).status == "stored"
    return a, b


async def test_ggr_groupings_and_filters(store: Repositories, ingestor: Ingestor) -> None:
    a, b = await _filled(store, ingestor)
    halls = {r.key: r for r in await store.reports.ggr("hall")}
    assert halls["hall-a"].ggr == a.total.ggr and halls["hall-b"].bets == b.total.bets
    assert halls["hall-a"].as_dict()["ggr"] == a.total.bets - a.total.wins
    scoped = await store.reports.ggr("device", halls=["hall-b"])
    assert {r.hall for r in scoped} == {"hall-b"} and sum(r.wins for r in scoped) == b.total.wins
    assert await store.reports.ggr("hall", hall="hall-a", halls=["hall-b"]) == []
    days = await store.reports.ggr("day", hall="hall-a")
    first_day = dt.date.fromisoformat(days[0].key)
    only_first = await store.reports.ggr("hall", hall="hall-a", day_from=first_day, day_to=first_day)
    assert only_first[0].bets == days[0].bets
    later = await store.reports.ggr("hall", hall="hall-a", day_from=first_day + dt.timedelta(days=1))
    assert sum(r.bets for r in later) == a.total.bets - days[0].bets
    with pytest.raises(ValueError):
        await store.reports.ggr("provider")


async def test_events_query_pages_and_filters(store: Repositories, ingestor: Ingestor) -> None:
    a, _ = await _filled(store, ingestor)
    page1 = await store.ingest.events(hall="hall-a", limit=50)
    page2 = await store.ingest.events(hall="hall-a", after_seq=page1[-1]["seq"], limit=50)
    assert [e["seq"] for e in page1 + page2] == list(range(1, 101))
    assert page1[0]["hash"] == a.events[0].hash and page1[0]["data"] == a.events[0].data
    assert page1[0]["central_time"] > 0
    bets = await store.ingest.events(hall="hall-a", type="game.bet", limit=10_000)
    assert len(bets) == sum(1 for e in a.events if e.type == "game.bet")
    window = await store.ingest.events(time_from=a.events[10].agent_time, time_to=a.events[20].agent_time,
                                       hall="hall-a")
    assert [e["seq"] for e in window] == list(range(11, 21))
    egm1 = await store.ingest.events(hall="hall-a", device="egm-001", limit=10_000)
    assert {e["device"] for e in egm1} == {"egm-001"}


async def test_devices_are_updated_from_events(store: Repositories, ingestor: Ingestor) -> None:
    a, b = await _filled(store, ingestor)
    devices = await store.devices.devices()
    assert {(d.hall, d.id) for d in devices} == {(h.hall, dev) for h in (a, b) for dev in h.per_device}
    for d in devices:
        assert d.kind == "egm" and d.enabled
        hall = a if d.hall == "hall-a" else b
        mine = [e for e in hall.events if e.device == d.id]
        assert d.last_seen == max(e.agent_time for e in mine) and d.last_seq == mine[-1].seq
    assert [d.hall for d in await store.devices.devices(hall="hall-b")] == ["hall-b", "hall-b"]


async def test_hall_registration(store: Repositories) -> None:
    hall, other = FakeHall("h1"), FakeHall("h2")
    assert await store.halls.add_hall("h1", hall.public_pem, now=T0) == "added"
    assert await store.halls.add_hall("h1", hall.public_pem, now=T0) == "unchanged"
    with pytest.raises(HallKeyConflict):
        await store.halls.add_hall("h1", other.public_pem, now=T0)
    assert await store.halls.add_hall("h1", other.public_pem, now=T0, replace=True) == "replaced"
    (entry,) = await store.ingest.integration_log(kind="manual")
    assert entry.hall == "h1"
    assert [h.id for h in await store.halls.halls()] == ["h1"]
    assert await store.halls.get_hall("nope") is None


async def test_an_api_key_stored_twice_is_the_same_refusal_on_both_backends(store: Repositories) -> None:
    _, key = await create_api_key(store.halls, "viewer", None, now=T0, name="Anna")
    (record,) = await store.halls.api_keys()
    with pytest.raises(DuplicateKey) as refused:
        await store.halls.add_api_key(record)
    # what the CLI prints and the API answers (409) is the backend-neutral text, not the driver's
    assert str(refused.value) == "api_keys: a row with the same key is already stored"
    assert isinstance(refused.value, StoreError) and refused.value.table == "api_keys"
    assert await store.halls.api_keys() == [record] and await authenticate(store.halls, key, now=T0) is not None


async def test_an_api_key_expires_and_a_revoked_one_is_refused_at_once(store: Repositories) -> None:
    hour = 3_600_000_000
    _, key = await create_api_key(store.halls, "viewer", None, now=T0, name="Anna", expires_at=T0 + hour)
    assert (await authenticate(store.halls, key, now=T0 + hour - 1)) is not None
    assert await authenticate(store.halls, key, now=T0 + hour) is None
    (listed,) = await store.halls.api_keys()
    assert (listed.name, listed.state(T0), listed.state(T0 + hour)) == ("Anna", "active", "expired")
    with pytest.raises(ValueError, match="future"):
        await create_api_key(store.halls, "viewer", None, now=T0, expires_at=T0)
    other_id, other = await create_api_key(store.halls, "viewer", None, now=T0)
    before = await revoke_api_key(store.halls, other_id, now=T0 + 5)
    assert before.revoked_at is None and await authenticate(store.halls, other, now=T0 + 5) is None
    assert (await revoke_api_key(store.halls, other_id, now=T0 + 9)).revoked_at == T0 + 5   # the first revocation stays
    with pytest.raises(KeyNotFound):
        await rotate_api_key(store.halls, other_id, now=T0 + 10)
    with pytest.raises(KeyNotFound):
        await revoke_api_key(store.halls, "0" * 16, now=T0)


async def test_api_keys_store_only_a_hash(store: Repositories, backend: str, tmp_path: Path) -> None:
    key_id, key = await create_api_key(store.halls, "regulator", ["hall-a"], now=T0)
    record = await authenticate(store.halls, key, now=T0)
    assert record is not None and (record.role, record.halls) == ("regulator", ("hall-a",))
    assert await authenticate(store.halls, key[:-1] + ("A" if key[-1] != "A" else "B"), now=T0) is None
    assert await authenticate(store.halls, "hsk_0000000000000000_" + "x" * 43, now=T0) is None
    assert await authenticate(store.halls, "Bearer nonsense", now=T0) is None
    with pytest.raises(ValueError):
        await create_api_key(store.halls, "root", None, now=T0)
    for scope in (None, []):   # a technician reads its halls only (design.md): no network-wide technician
        with pytest.raises(ValueError, match="needs its halls"):
            await create_api_key(store.halls, "technician", scope, now=T0)
    secret = key.split("_", 2)[2]   # hsk_<id>_<secret>; the secret itself may hold "_"
    if backend == "sqlite":
        with sqlite3.connect(tmp_path / "central.db") as con:
            dump = "\n".join(con.iterdump())
    else:   # every row of every table, as text
        db: Any = store.database
        tables = [r[0] for r in await db.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
        dump = "\n".join([str(tuple(row)) for table in tables for row in await db.fetch(f"SELECT * FROM {table}")])
    assert key_id in dump and secret not in dump


async def test_backend_selection(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="cannot connect to PostgreSQL"):   # a URL is PostgreSQL, not a path
        await open_store("postgresql://central@127.0.0.1:1/hallsync")
    assert sqlite_path("sqlite:////var/x.db") == "/var/x.db"
    assert sqlite_path("sqlite:///x.db") == "x.db"
    store = await open_store(str(tmp_path / "x.db"))
    await store.close()
    con = sqlite3.connect(tmp_path / "x.db")
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    con.close()


@pytest.mark.parametrize(("stored", "incoming", "accepted"), [
    (None, (True, 1, 100), True),                 # first status
    (None, (False, 0, 100), True),
    ((True, 1, 100), (True, 1, 100), False),      # redelivered retained message: not news
    ((True, 1, 100), (True, 1, 150), True),       # newer in the same session
    ((True, 1, 100), (True, 1, 99), False),       # older in the same session
    ((True, 1, 100), (False, 1, 50), True),       # the session's own will (built at connect time)
    ((True, 1, 100), (False, 1, 150), True),      # a graceful offline
    ((False, 1, 100), (True, 1, 150), False),     # offline ended the session
    ((False, 1, 100), (False, 1, 150), False),
    ((True, 2, 100), (False, 1, 200), False),     # a stale will after a reconnect
    ((True, 2, 100), (True, 1, 200), False),
    ((False, 2, 100), (True, 3, 50), True),       # a new session, whatever its clock says
    ((True, 2, 100), (False, 3, 50), True),
])
async def test_set_presence_ordering(store: Repositories, stored: tuple[bool, int, int] | None,
                                     incoming: tuple[bool, int, int], accepted: bool) -> None:
    await store.halls.add_hall("h1", FakeHall("h1").public_pem, now=T0)
    if stored is not None:
        assert await store.halls.set_presence("h1", online=stored[0], session=stored[1], at=stored[2])
    online, session, at = incoming
    assert await store.halls.set_presence("h1", online=online, session=session, at=at) is accepted
    record = await store.halls.get_hall("h1")
    assert record is not None
    assert (record.online, record.session, record.status_at) == (incoming if accepted else stored)
    assert [h.online for h in await store.halls.halls()] == [record.online]


async def test_set_presence_of_an_unregistered_hall_changes_nothing(store: Repositories) -> None:
    assert await store.halls.set_presence("ghost", online=True, session=1, at=T0) is False
    assert await store.halls.halls() == []


_SCHEMA_1_HALLS = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE halls (id TEXT PRIMARY KEY, public_key_pem TEXT NOT NULL, added_at INTEGER NOT NULL,
                    last_seq INTEGER NOT NULL DEFAULT 0, last_hash TEXT NOT NULL);
INSERT INTO meta VALUES ('schema_version', '1');
"""


async def test_schema_1_file_is_migrated_additively(tmp_path: Path) -> None:
    hall = FakeHall("old-hall")
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as con:
        con.executescript(_SCHEMA_1_HALLS)
        con.execute("INSERT INTO halls VALUES ('old-hall', ?, ?, 7, 'abc')", (hall.public_pem, T0))
    con.close()
    for expected in ((None, None, None), (True, 1, T0)):  # the second open finds it migrated already
        store = await open_sqlite(path)
        try:
            record = await store.halls.get_hall("old-hall")
            assert record is not None and (record.last_seq, record.last_hash) == (7, "abc")
            assert (record.online, record.session, record.status_at) == expected
            await store.halls.set_presence("old-hall", online=True, session=1, at=T0)
        finally:
            await store.close()
    fresh = await open_sqlite(tmp_path / "fresh.db")
    await fresh.close()

    def columns(db: Path) -> list[tuple[str, str]]:
        con = sqlite3.connect(db)
        try:
            return sorted((r[1], r[2]) for r in con.execute("PRAGMA table_info(halls)"))
        finally:
            con.close()

    assert columns(path) == columns(tmp_path / "fresh.db")
    con = sqlite3.connect(path)
    version = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0]
    assert version == str(SCHEMA_VERSION) == "10"
    con.close()


async def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    await (await open_sqlite(path)).close()
    con = sqlite3.connect(path)
    con.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    con.commit()
    con.close()
    with pytest.raises(StoreError, match="newer than this build"):
        await open_sqlite(path)
