"""Each device's newest identity (the games a machine reports, LP 1F/53/56) comes from the seq ingest
keeps in ``devices.identity_seq`` (schema 9, PostgreSQL migration 3), not from a scan of every
status event: the same answer as the events say, in any batch sizes, within a hall scope, and the
same after an older database is brought forward from its stored events."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from central.ingest import Ingestor
from central.repos import Repositories
from central.store import open_sqlite
from central.store.pg_schema import FILL_IDENTITY_SEQ
from central.store.rollup_tables import fill_identity_seq
from central.store.schema import SCHEMA_VERSION
from protocols.sync import generate_private_key, public_key_to_pem

from . import rawsql
from .builders import T0
from .conftest import StepClock
from .floor_model import Chain, Egm
from .test_catalog import identity

MINUTE = 60_000_000


async def _halls(store: Repositories) -> dict[str, Chain]:
    """Two halls; machines that report their games once, twice (a new paytable), or never, between
    daily clock checks, game selections and errors (the status events a hall sends most)."""
    chains = {name: Chain(name) for name in ("hall-i", "hall-j")}
    for name, chain in chains.items():
        assert await store.halls.add_hall(name, public_key_to_pem(chain.key.public_key()).decode(), now=T0) == "added"
    a, b, c = (Egm(chains["hall-i"], d) for d in ("egm-a", "egm-b", "egm-c"))
    other = Egm(chains["hall-j"], "egm-a")   # the same device ID in another hall
    at = T0
    a.emit("device.status", identity([(1, "FF", "P00196", 1, 100)], [1]), at)
    b.emit("device.status", identity([(2, "PK", "P00298", 1, 100)], [2], serial="SN-B"), at + 1)
    other.emit("device.status", identity([(5, "RL", "P00397", 1, 100)], [], serial="SN-J"), at + 2)
    for day in range(30):
        at += 24 * 60 * MINUTE
        for egm in (a, b, c, other):
            egm.emit("device.status", {"status": "clock", "drift_ms": day, "set": False}, at)
            egm.emit("device.status", {"status": "game_selected", "game": 1, "source": "LP 55"}, at + 1)
            egm.play(10, 0, at + 2)
        if day == 17:   # a new paytable on egm-a: its newest identity from now on
            a.emit("device.status", identity([(1, "FF", "P00200", 1, 100), (3, "PK", "P00298", 1, 50)], [1, 3]),
                   at + 3)
        if day == 20:
            c.emit("game.error", {"code": "20", "name": "general tilt", "category": "tilt"}, at + 4)
    return chains


def _newest(chains: dict[str, Chain]) -> list[tuple[str, str, int, dict[str, Any]]]:
    """What the events say: per (hall, device), its last identity by seq."""
    out: dict[tuple[str, str], tuple[str, str, int, dict[str, Any]]] = {}
    for name, chain in chains.items():
        for e in chain.events:
            if e.type == "device.status" and e.data.get("status") == "identity":
                out[(name, e.device)] = (name, e.device, e.agent_time, e.data)
    return [out[k] for k in sorted(out)]


@pytest.mark.parametrize("size", [1, 7, 500])
async def test_the_newest_identity_of_each_device_in_any_batch_sizes(store: Repositories, size: int) -> None:
    chains = await _halls(store)
    ingestor = Ingestor(store, generate_private_key(), clock=StepClock())
    for chain in chains.values():
        await chain.flush(ingestor, size=size)
    want = _newest(chains)
    assert [(h, d) for h, d, _, _ in want] == [("hall-i", "egm-a"), ("hall-i", "egm-b"), ("hall-j", "egm-a")]
    assert want[0][3]["paytable_id"] == "P00200"   # the later of egm-a's two
    assert await store.catalog.latest_identities() == want
    assert await store.catalog.latest_identities(hall="hall-j") == want[2:]
    assert await store.catalog.latest_identities(halls=["hall-i"]) == want[:2]
    assert await store.catalog.latest_identities(halls=[]) == []
    assert await store.catalog.latest_identities(hall="hall-j", halls=["hall-i"]) == []

    # an older database (before the seq was kept) is filled from its stored events, as its migration does
    database: Any = store.database
    await rawsql.execute(database, "UPDATE devices SET identity_seq = NULL")
    assert await store.catalog.latest_identities() == []
    await rawsql.execute(database, FILL_IDENTITY_SEQ, sqlite=fill_identity_seq)   # migration 3 / schema 9's fill
    assert await store.catalog.latest_identities() == want


async def test_an_older_sqlite_file_gains_the_identity_seqs_when_opened(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    store = await open_sqlite(path)
    try:
        chains = await _halls(store)
        for chain in chains.values():
            await chain.flush(Ingestor(store, generate_private_key(), clock=StepClock()), size=50)
    finally:
        await store.close()
    con = sqlite3.connect(path, isolation_level=None)
    devices = con.execute("SELECT * FROM devices ORDER BY hall, id").fetchall()
    assert sum(1 for row in con.execute("SELECT identity_seq FROM devices") if row[0] is not None) == 3
    con.execute("UPDATE devices SET identity_seq = NULL")   # as schema 8 left it
    con.execute("UPDATE meta SET value = '8' WHERE key = 'schema_version'")
    con.close()
    store = await open_sqlite(path)
    try:
        assert await store.catalog.latest_identities() == _newest(chains)
    finally:
        await store.close()
    con = sqlite3.connect(path)
    try:
        assert con.execute("SELECT * FROM devices ORDER BY hall, id").fetchall() == devices
        assert con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == (str(SCHEMA_VERSION),)
    finally:
        con.close()
