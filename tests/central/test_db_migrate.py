"""``hall-central db migrate``: an HQ's SQLite store moved into PostgreSQL, compared, and serving on.

A real SQLite file built through real ingest (several halls and batches, commands, catalog, API keys,
audit), the run's private PostgreSQL cluster (tests/pgcluster.py), and the real CLI entry.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import itertools
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from central import audit
from central.apikeys import authenticate, create_api_key
from central.cli import main
from central.ingest import Ingestor
from central.repos import Repositories
from central.repos.audit import AuditEntry
from central.repos.catalog import CatalogGame, Placement, Provider, RuleRecord
from central.repos.commands import CommandRecord
from central.repos.ingest import LogEntry
from central.store import migrate as migration
from central.store import open_sqlite, open_store
from central.store.pg_db import PgConn
from protocols.sync.gamingday import DayRule
from protocols.sync.keys import Ed25519PrivateKey

from .builders import T0, FakeHall
from .conftest import StepClock, fresh_pg_database

BATCH = 40
_names = itertools.count(1)


class Hq:
    """A SQLite HQ with three halls, each holding all but its last batch."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.halls = [FakeHall(f"hall-{n:02d}", seed=n) for n in (1, 2, 3)]
        self.keys: dict[str, str] = {}
        self.clock = StepClock()

    async def build(self, central_key: Ed25519PrivateKey) -> None:
        store = await open_sqlite(self.path)
        try:
            ingestor = Ingestor(store, central_key, self.clock)
            for hall in self.halls:
                assert await store.halls.add_hall(hall.hall, hall.public_pem, now=T0) == "added"
                hall.play(200)
                for _, _, payload in hall.batches(BATCH)[:-1]:
                    assert (await ingestor.handle(hall.topic, payload)).status == "stored"
            await store.halls.set_day_rule("hall-02", DayRule("Europe/Vienna", "06:00"), now=T0 + 1)
            await self._admin_rows(store)
        finally:
            await store.close()

    async def _admin_rows(self, store: Repositories) -> None:
        for role, halls in (("admin", None), ("technician", ("hall-01",))):
            key_id, key = await create_api_key(store.halls, role, halls, now=T0, name=f"{role} key")
            self.keys[key_id] = key
            await audit.apikey_created(store.audit, actor=audit.cli_actor(), time=T0 + 5, key_id=key_id, role=role,
                                       halls=halls, name=f"{role} key")
        for n, hall in enumerate(("hall-01", "hall-02", "hall-01")):
            await store.commands.add_command(CommandRecord(
                id=f"00000000-0000-4000-8000-00000000000{n}", hall=hall, device="egm-001", action="disable_game",
                game="g-poker", params={"why": f"test {n}"}, issued_at=T0 + n, expires_at=T0 + 10**9,
                status="pending", detail="issued", created_by=None, created_at=T0 + n, updated_at=T0 + n))
        await store.commands.update_command("00000000-0000-4000-8000-000000000000", "sent", "published", T0 + 9)
        await store.catalog.put_provider(Provider("acme", "Acme Gaming"))
        await store.catalog.put_game(CatalogGame("poker", "acme", "Poker", "card", 9800, "active", 10, 500, "PK", "P1"))
        await store.catalog.replace_placements("hall-01", "egm-001", [Placement("hall-01", "egm-001", 1, "poker")])
        await store.catalog.add_rule(RuleRecord("rule-1", "max_bet", {"game": "poker", "max_bet": 200}, ("hall-01",),
                                                "cli:test", T0, "active", T0))
        await store.catalog.add_rule_commands("rule-1", ["00000000-0000-4000-8000-000000000000"])
        await store.audit.add_audit(AuditEntry(time=T0 + 7, actor="cli:test", action="catalog.rule",
                                               target="rule/rule-1", after={"kind": "max_bet"}))
        await store.ingest.log([LogEntry("resend", "asked for 1..40", T0 + 8, "hall-03")])
        assert await store.leases.acquire("monitor", "old-process", now=T0, ttl_us=10**6)


@pytest.fixture
async def hq(tmp_path: Path, central_key: Ed25519PrivateKey) -> Hq:
    built = Hq(tmp_path / "central.db")
    await built.build(central_key)
    return built


async def cli(*argv: str) -> int:
    """The real entry point (it runs its own event loop: on a thread beside the test's)."""
    return await asyncio.to_thread(main, list(argv))


async def answers(store: Repositories, key_ids: list[str]) -> dict[str, Any]:
    """What users read from a store: reports, events paged per device, commands, audit, keys, catalog."""
    out: dict[str, Any] = {"halls": [(h.id, h.last_seq, h.last_hash, h.timezone, h.gaming_day_start)
                                     for h in await store.halls.halls()]}
    for group in ("device", "hall", "day", "game", "network"):
        out[f"ggr {group}"] = [r.as_dict() for r in await store.reports.ggr(group)]
    out["ggr hall-02 one day"] = [r.as_dict() for r in await store.reports.ggr(
        "device", day_from=dt.date(2026, 1, 1), day_to=dt.date(2026, 1, 1), hall="hall-02")]
    out["hourly"] = await store.reports.hourly(day=dt.date(2026, 1, 1), hall="hall-01")
    for device in ("egm-001", "egm-002", "egm-003"):
        pages, after = [], None
        while page := await store.ingest.events(hall="hall-01", device=device, after_seq=after, limit=17):
            pages.append(page)
            after = page[-1]["seq"]
        out[f"events {device}"] = pages
    out["commands"] = await store.commands.commands()
    out["command counts"] = await store.commands.command_counts()
    out["audit"] = await store.audit.audit()
    out["keys"] = await store.halls.api_keys()
    out["catalog"] = (await store.catalog.catalog_providers(), await store.catalog.catalog_games(),
                      await store.catalog.placements(), await store.catalog.rules())
    out["integration log"] = await store.ingest.integration_log(limit=1000)
    out["devices"] = await store.devices.devices()
    out["key records"] = [await store.halls.api_key(k) for k in key_ids]
    assert all(out["key records"])
    return out


async def test_migrate_keeps_every_answer_and_postgresql_serves_on(
        hq: Hq, pg_template: str, central_key: Ed25519PrivateKey, capsys: pytest.CaptureFixture[str]) -> None:
    source = await open_sqlite(hq.path)
    before = await answers(source, list(hq.keys))
    await source.close()
    async with fresh_pg_database(pg_template, migrated=False) as url:
        assert await cli("db", "migrate", "--from", f"sqlite:{hq.path}", "--to", url) == 0
        printed = capsys.readouterr().out
        assert "DIFFERS" not in printed and "all equal" in printed
        for hall in hq.halls:
            last = (len(hall.events) - 1) // BATCH * BATCH
            assert f"chain end {hall.hall}: seq {last} hash {hall.events[last - 1].hash}  ok" in printed
        store = await open_store(url)
        try:
            assert await answers(store, list(hq.keys)) == before
            for key in hq.keys.values():
                assert await authenticate(store.halls, key, now=T0 + 10) is not None
            await _serves_on(store, hq, central_key, before)
        finally:
            await store.close()


async def _serves_on(store: Repositories, hq: Hq, central_key: Ed25519PrivateKey, before: dict[str, Any]) -> None:
    """The next batch of a hall is stored and chained on PostgreSQL; an old one is a duplicate; new rows
    of identity tables get fresh ids."""
    ingestor = Ingestor(store, central_key, hq.clock)
    hall = hq.halls[0]
    first, last, payload = hall.batches(BATCH)[-1]
    moved = await store.halls.get_hall(hall.hall)
    assert moved is not None and moved.last_seq == first - 1   # the chain end moved with the hall
    assert (await ingestor.handle(hall.topic, payload)).status == "stored"
    record = await store.halls.get_hall(hall.hall)
    assert record is not None and (record.last_seq, record.last_hash) == (last, hall.events[-1].hash)
    old = hall.batch(1, BATCH)
    assert (await ingestor.handle(hall.topic, old)).status == "duplicate"
    events = await store.ingest.events(hall=hall.hall, limit=1000)
    assert [e["seq"] for e in events] == list(range(1, last + 1))
    ggr = {r.key: r for r in await store.reports.ggr("hall")}
    assert ggr[hall.hall].bets == hall.total.bets and ggr[hall.hall].wins == hall.total.wins

    top_audit = max(e.id or 0 for e in before["audit"])
    new_id = await store.audit.add_audit(AuditEntry(time=T0 + 99, actor="cli:test", action="after.move", target="x"))
    assert new_id > top_audit
    await store.commands.add_command(CommandRecord(
        id="00000000-0000-4000-8000-0000000000ff", hall="hall-03", device=None, action="disable_game",
        game="g-poker", params={}, issued_at=T0, expires_at=T0 + 10**9, status="pending", detail="issued",
        created_by=None, created_at=T0 + 100, updated_at=T0 + 100))   # its integration-log row takes a new id
    assert (await store.commands.commands(hall="hall-03"))[0].id.endswith("0ff")


async def _hall_count(url: str) -> int:
    store = await open_store(url)
    try:
        return len(await store.halls.halls())
    finally:
        await store.close()


async def test_a_target_holding_data_is_refused_and_left_as_it_was(
        hq: Hq, pg_template: str, capsys: pytest.CaptureFixture[str]) -> None:
    async with fresh_pg_database(pg_template, migrated=False) as url:
        store = await open_store(url)
        await store.halls.add_hall("already-here", hq.halls[0].public_pem, now=T0)
        await store.close()
        assert await cli("db", "migrate", "--from", str(hq.path), "--to", url) == 1
        err = capsys.readouterr().err
        assert "not empty" in err and "halls" in err and "nothing was written" in err
        store = await open_store(url)
        try:
            assert [h.id for h in await store.halls.halls()] == ["already-here"]
            assert await store.ingest.events(limit=10) == []
        finally:
            await store.close()


async def test_a_table_the_migration_does_not_know_fails_it(
        hq: Hq, pg_template: str, capsys: pytest.CaptureFixture[str]) -> None:
    with contextlib.closing(sqlite3.connect(hq.path)) as con:
        con.execute("CREATE TABLE loyalty_points (player TEXT PRIMARY KEY, points INTEGER NOT NULL)")
        con.execute("INSERT INTO loyalty_points VALUES ('p1', 10)")
        con.commit()
    async with fresh_pg_database(pg_template, migrated=False) as url:
        assert await cli("db", "migrate", "--from", f"sqlite:{hq.path}", "--to", url) == 1
        assert "loyalty_points" in capsys.readouterr().err
        assert await _hall_count(url) == 0


async def test_a_difference_after_the_copy_rolls_everything_back(
        hq: Hq, pg_template: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """One event's data changed on its way in: the digest names the table, the target stays empty."""
    real = PgConn.copy_rows

    async def tampering(self: PgConn, table: str, columns: Any, rows: Any) -> None:
        rows = list(rows)
        if table == "events":
            data = columns.index("data")
            rows[3] = (*rows[3][:data], rows[3][data].replace("EUR", "USD"), *rows[3][data + 1:])
        await real(self, table, columns, rows)

    monkeypatch.setattr(PgConn, "copy_rows", tampering)
    async with fresh_pg_database(pg_template, migrated=False) as url:
        with pytest.raises(migration.MigrationMismatch) as caught:
            await migration.migrate_sqlite_to_postgres(str(hq.path), url)
        assert [c.what for c in caught.value.report.differences] == ["content events"]
        assert "DIFFERS: content events" in "\n".join(caught.value.report.lines())
        assert await _hall_count(url) == 0


async def test_from_and_to_are_checked(tmp_path: Path, pg_template: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert await cli("db", "migrate", "--from", str(tmp_path / "none.db"), "--to", f"{pg_template}/x") == 1
    assert "no SQLite database" in capsys.readouterr().err
    assert not (tmp_path / "none.db").exists()
    assert await cli("db", "migrate", "--from", str(tmp_path / "none.db"), "--to", str(tmp_path / "b.db")) == 2
    assert migration.sqlite_source("sqlite:////abs/x.db") == "/abs/x.db"
    assert migration.sqlite_source("sqlite:rel/x.db") == migration.sqlite_source("sqlite:///rel/x.db") == "rel/x.db"


async def test_a_sqlite_file_of_a_newer_build_is_refused(
        tmp_path: Path, pg_template: str, capsys: pytest.CaptureFixture[str]) -> None:
    await (await open_sqlite(tmp_path / "newer.db")).close()
    with contextlib.closing(sqlite3.connect(tmp_path / "newer.db")) as con:
        con.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
        con.commit()
    assert await cli("db", "migrate", "--from", str(tmp_path / "newer.db"), "--to", f"{pg_template}/unused") == 1
    assert "newer than this build" in capsys.readouterr().err
