"""Central's files hold every hall's money and its signing key: readable by central's user alone."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

from central.store import open_sqlite

from .builders import T0, FakeHall


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_keys_init_makes_the_data_dir_owner_only_even_if_it_existed_open(tmp_path: Path) -> None:
    data = tmp_path / "central"
    data.mkdir(mode=0o755)
    os.chmod(data, 0o755)
    central = str(Path(sys.executable).parent / "hall-central")
    res = subprocess.run([central, "keys", "init", "--data-dir", str(data)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert _mode(data) == 0o700
    assert _mode(data / "central.key") == 0o600


async def test_the_database_and_its_wal_are_owner_only(tmp_path: Path) -> None:
    db = tmp_path / "central.db"
    old_umask = os.umask(0o022)   # what a service gets by default: new files 0644
    try:
        store = await open_sqlite(db)
        try:
            hall = FakeHall("h1")
            await store.halls.add_hall(hall.hall, hall.public_pem, now=T0)
            await store.ingest.ingest_events(hall.hall, hall.play(20), central_time=T0)
            for name in ("central.db", "central.db-wal", "central.db-shm"):
                assert _mode(tmp_path / name) == 0o600, name
        finally:
            await store.close()
    finally:
        os.umask(old_umask)


async def test_an_older_world_readable_database_is_tightened_on_open(tmp_path: Path) -> None:
    db = tmp_path / "central.db"
    store = await open_sqlite(db)
    await store.close()
    os.chmod(db, 0o644)
    store = await open_sqlite(db)
    try:
        assert _mode(db) == 0o600
    finally:
        await store.close()
