"""Shared test set-up: the repo's vectors live in ../shared beside the checkout."""

from __future__ import annotations

import errno
import json
import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"


@pytest.fixture(scope="session")
def sas_vectors() -> dict:
    path = SHARED / "vectors" / "sas.json"
    if not path.exists():
        pytest.fail(f"SAS vectors not found at {path}: ../shared must sit beside the checkout")
    return json.loads(path.read_text())


@pytest.fixture
def mosquitto(tmp_path):
    """A real Mosquitto on a free loopback port, killed at the end (tests may kill/restart it)."""
    from mqttlink.broker import Mosquitto, find_mosquitto

    if find_mosquitto() is None:
        pytest.fail("mosquitto is not installed: .ci/run installs it with apt-get (apt-get install mosquitto)")
    broker = Mosquitto(tmp_path / "broker")
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def postgres():
    """A private PostgreSQL cluster for the whole run (tests.pgcluster): started on first use, stopped and
    deleted at the end. Tests make their own databases in it."""
    from tests.pgcluster import PgCluster

    try:
        cluster = PgCluster().start()
    except RuntimeError as exc:
        pytest.fail(str(exc))
    yield cluster
    cluster.stop()


@pytest.fixture
def small_fs(tmp_path: Path):
    """A 2 MiB tmpfs, so the disk really fills (needs root, as in CI)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (CI runs as root)")
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {res.stderr.strip()}")
    try:
        yield mnt
    finally:
        if subprocess.run(["umount", str(mnt)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def fill(path: Path) -> None:
    """Write ``path`` until the filesystem has no byte left."""
    with open(path, "wb", buffering=0) as fh:
        for size in (65536, 4096, 512, 1):
            try:
                while True:
                    fh.write(b"\0" * size)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
        os.fsync(fh.fileno())


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Give every item a node id of its own. Schemathesis names its per-operation items
    ``test[GET /health]`` but leaves all of them the function's node id; pytest-xdist keys its work by
    node id, so it would run one of the 32 operations and report the suite green."""
    seen: dict[str, int] = {}
    for item in items:
        seen[item.nodeid] = seen.get(item.nodeid, 0) + 1
    for item in items:
        if seen[item.nodeid] > 1 and item.parent is not None:
            item._id = type(item._id).parse(f"{item.parent.nodeid}::{item.name}")  # pytest 9's NodeId
    ids = [item.nodeid for item in items]
    assert len(ids) == len(set(ids)), "two tests share a node id: give them distinct names or ids"
