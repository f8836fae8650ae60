"""Schemathesis against the served OpenAPI document: no generated request may make central fail.

The server is the real one (``hall-central serve`` with a real Mosquitto and a database that holds a
registered hall and its ingested events), so every route runs its real store queries; the document is
the one central serves. Once on a SQLite file, once on PostgreSQL (whose types refuse what SQLite takes:
a NUL in text, an integer past 64 bits), each with half the example budget (CI time). Every operation
gets valid and invalid requests (Schemathesis' positive and negative modes) with an admin key, and the
only check is the issue's: no 5xx, ever. (Response shapes are pinned by each route's own tests.)
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from central.api import PREFIX, document
from central.store import open_store
from mqttlink.broker import Mosquitto, find_mosquitto, free_port

from .builders import FakeHall
from .conftest import BACKENDS, empty_db_url

BIN = Path(sys.executable).parent
schema = schemathesis.openapi.from_dict(document())


def _cli(*args: str) -> str:
    done = subprocess.run([str(BIN / args[0]), *args[1:]], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


async def _fill(db: str, hall: FakeHall) -> None:
    store = await open_store(db)
    try:
        events = hall.play(400)
        result = await store.ingest.ingest_events(hall.hall, events, central_time=events[-1].agent_time)
        assert result.status == "stored"
    finally:
        await store.close()


@pytest.fixture(scope="module", params=BACKENDS)
def server(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    """(base URL, admin key) of a running ``hall-central serve`` on each backend."""
    if find_mosquitto() is None:
        pytest.fail("mosquitto is not installed: .ci/run installs it with apt-get")
    work = tmp_path_factory.mktemp("schemathesis")
    broker = Mosquitto(work / "broker")
    broker.start()
    db = empty_db_url(request.param, work, request)
    pub = work / "hall.pub"
    hall = FakeHall("hall-st", seed=5)   # one per server: a hall's events go on from where it stopped
    pub.write_text(hall.public_pem)
    _cli("hall-central", "keys", "init", "--data-dir", str(work / "central"))
    _cli("hall-central", "halls", "add", hall.hall, "--public-key", str(pub), "--db", db)
    asyncio.run(_fill(db, hall))
    key = _cli("hall-central", "apikeys", "create", "--role", "admin", "--db", db)
    port = free_port()
    log = (work / "central.log").open("w")
    proc = subprocess.Popen([str(BIN / "hall-central"), "serve", "--data-dir", str(work / "central"), "--db", db,
                             "--mqtt", broker.url_text, "--http", f"127.0.0.1:{port}"],
                            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    base = f"http://127.0.0.1:{port}{PREFIX}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=2) as resp:
                    if json.load(resp)["status"] == "ok":
                        break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError((work / "central.log").read_text()[-3000:]) from None
                time.sleep(0.1)
        yield base, key
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        broker.stop()
        errors = [line for line in (work / "central.log").read_text().splitlines() if "api_error" in line]
        assert not errors, errors[:3]   # an unexpected exception is logged even if answered


@schema.parametrize()
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_generated_request_makes_central_fail(case: schemathesis.Case, server: tuple[str, str]) -> None:
    base, key = server
    case.call_and_validate(base_url=base, headers={"Authorization": f"Bearer {key}"}, checks=[not_a_server_error],
                           timeout=20)
