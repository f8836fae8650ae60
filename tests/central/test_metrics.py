"""``GET /metrics`` on a real ``serve`` (real SQLite or PostgreSQL, real Mosquitto, real HTTP): signed batches go in
over the broker, and the scrape says what an operator checks — events stored per hall equal to what
the hall sent, each refused or replayed batch under its outcome, the chain end per hall equal to
``/halls``, commands by status — in a body a strict parser accepts. And who may scrape."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest

from central.apikeys import create_api_key
from central.keyfiles import init_keys
from central.server import ServerConfig, serve
from central.store import open_store
from mqttlink import MqttLink, Received
from mqttlink.broker import free_port
from protocols.sync import VERSION, Status, encode_status, generate_private_key, topic
from tests import promtext

from .builders import T0, FakeHall


@asynccontextmanager
async def running_central(tmp_path: Path, mqtt: str, *, db: str | None = None, host: str = "127.0.0.1",
                          token: str | None = None) -> AsyncIterator[str]:
    """``serve`` in this process; yields its base URL once the API answers and ingest is connected
    (or at once when ``mqtt`` names no broker)."""
    data = tmp_path / "central"
    if not (data / "central.key").exists():
        init_keys(data)
    port = free_port()
    stop = asyncio.Event()
    task = asyncio.create_task(serve(ServerConfig(data_dir=data, db=db or str(tmp_path / "central.db"), mqtt=mqtt,
                                                  http_host=host, http_port=port, metrics_token=token), stop))
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(200):
                assert not task.done(), task.exception()
                try:
                    async with http.get(f"{base}/api/v1/health") as resp:
                        body = await resp.json()
                        if resp.status == 200 and (body["presence"]["ingest"]["connected"] or "127.0.0.1:1" in mqtt):
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)
            else:
                raise AssertionError("central did not come up")
        yield base
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)


async def scrape(base: str, headers: dict[str, str] | None = None) -> dict[str, promtext.ParsedFamily]:
    async with aiohttp.ClientSession() as http, http.get(f"{base}/metrics", headers=headers or {}) as resp:
        assert resp.status == 200, await resp.text()
        assert resp.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
        return promtext.parse(await resp.text())


async def publisher(url) -> tuple[MqttLink, asyncio.Task[None]]:
    async def ignore(msg: Received) -> None:
        pass

    link = MqttLink(url, client_id="test-halls", handler=ignore)
    task = asyncio.create_task(link.run())
    assert await link.wait_connected(10)
    return link, task


def batches_total(families: dict[str, promtext.ParsedFamily]) -> float:
    return sum(promtext.series(families, "hallsync_central_batches_total").values())


async def test_scrape_counts_what_the_halls_sent(tmp_path: Path, mosquitto, db_url: str) -> None:
    h1, h2 = FakeHall("h1", seed=1), FakeHall("h2", seed=2)
    h1.play(120)
    h2.play(60)
    store = await open_store(db_url)
    for hall in (h1, h2):
        assert await store.halls.add_hall(hall.hall, hall.public_pem, now=T0) == "added"
    _, admin = await create_api_key(store.halls, "admin", None, now=T0)
    await store.close()
    n1, n2 = len(h1.events), len(h2.events)
    cut = n2 // 2

    async with running_central(tmp_path, mosquitto.url_text, db=db_url) as base:
        link, task = await publisher(mosquitto.url)
        try:
            sent = 0
            for _, _, payload in h1.batches(50):                    # stored
                await link.publish(h1.topic, payload)
                sent += 1
            await link.publish(h1.topic, h1.batch(1, 50))           # a replay: duplicate
            await link.publish(h2.topic, h2.batch(cut + 1, n2))     # ahead of the chain: gap (buffered)
            await link.publish(h2.topic, h2.batch(1, cut))          # closes the gap: stores both
            forger = generate_private_key()
            await link.publish(h2.topic, h2.batch(1, cut, key=forger))  # signed by someone else: rejected
            ghost = FakeHall("ghost", seed=3)
            ghost.play(5)
            await link.publish(ghost.topic, ghost.batch(1, len(ghost.events)))  # unregistered: rejected
            await link.publish(topic("h1", "batches"), b"not json")  # format_error, known hall
            fork = FakeHall("h1", seed=99, key=h1.key)               # h1's key, another history: a fork
            fork.play(10)
            await link.publish(fork.topic, fork.batch(1, 10))
            sent += 7
            await link.publish(topic("h1", "status"), encode_status(Status(v=VERSION, hall="h1", online=True,
                                                                             session=1, at=T0 + 5_000_000), h1.key),
                               retain=True)
            auth = {"Authorization": f"Bearer {admin}"}
            async with aiohttp.ClientSession() as http:
                async with http.post(f"{base}/api/v1/commands", headers=auth,
                                     json={"hall": "h1", "device": "egm-001", "action": "disable_machine"}) as resp:
                    assert resp.status == 202, await resp.text()
                async with http.get(f"{base}/api/v1/halls") as resp:
                    assert resp.status == 401                        # counted by route and status
                families: dict[str, promtext.ParsedFamily] = {}
                for _ in range(200):
                    families = await scrape(base)
                    if batches_total(families) >= sent and promtext.series(families, "hallsync_central_hall_online"):
                        break
                    await asyncio.sleep(0.05)
                async with http.get(f"{base}/api/v1/halls", headers=auth) as resp:
                    halls = {row["id"]: row for row in (await resp.json())["rows"]}
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    v = promtext.value
    assert batches_total(families) == sent
    # every event each hall sent is stored once, whatever came twice or out of order
    assert v(families, "hallsync_central_events_ingested_total", hall="h1") == n1
    assert v(families, "hallsync_central_events_ingested_total", hall="h2") == n2
    assert v(families, "hallsync_central_hall_last_seq", hall="h1") == halls["h1"]["last_seq"] == n1
    assert v(families, "hallsync_central_hall_last_seq", hall="h2") == halls["h2"]["last_seq"] == n2
    assert v(families, "hallsync_central_batches_total", hall="h1", outcome="stored") == len(h1.batches(50))
    assert v(families, "hallsync_central_batches_total", hall="h1", outcome="duplicate") == 1
    assert v(families, "hallsync_central_batches_total", hall="h1", outcome="format_error") == 1
    assert v(families, "hallsync_central_batches_total", hall="h1", outcome="conflict") == 1
    assert v(families, "hallsync_central_batches_total", hall="h2", outcome="gap") == 1
    assert v(families, "hallsync_central_batches_total", hall="h2", outcome="stored") == 1
    assert v(families, "hallsync_central_batches_total", hall="h2", outcome="rejected") == 1
    # a hall nobody registered does not get its own series (a forged topic could name any hall)
    assert v(families, "hallsync_central_batches_total", hall="_unknown", outcome="rejected") == 1
    assert not any(dict(labels).get("hall") == "ghost"
                   for labels in promtext.series(families, "hallsync_central_batches_total"))
    # one latency observation per batch that stored something; one processing time per batch
    stored_batches = len(h1.batches(50)) + 1
    assert v(families, "hallsync_central_ingest_latency_seconds_count") == stored_batches
    assert v(families, "hallsync_central_batch_processing_seconds_count") == sent
    assert v(families, "hallsync_central_halls") == 2
    assert v(families, "hallsync_central_halls_online") == 1
    assert v(families, "hallsync_central_hall_online", hall="h1") == 1
    assert v(families, "hallsync_central_hall_last_status_timestamp_seconds", hall="h1") == (T0 + 5_000_000) / 1e6
    assert v(families, "hallsync_central_commands", status="sent") == 1
    assert v(families, "hallsync_central_commands", status="applied") == 0
    assert v(families, "hallsync_central_http_requests_total", route="/api/v1/halls", method="GET",
             status="401") == 1
    assert v(families, "hallsync_central_http_requests_total", route="/api/v1/commands", method="POST",
             status="202") == 1
    assert v(families, "hallsync_central_mqtt_connected") == 1
    assert v(families, "hallsync_central_store_errors_total", operation="ingest") == 0


def _non_loopback_address() -> str | None:
    """An address of this machine other than loopback (so a client connecting to it is not local)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # no packet is sent for a UDP connect
            address = s.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") else address


async def test_without_a_token_only_loopback_may_scrape(tmp_path: Path) -> None:
    async with running_central(tmp_path, "mqtt://127.0.0.1:1", host="0.0.0.0") as base:
        families = await scrape(base)                         # from 127.0.0.1
        assert promtext.value(families, "hallsync_central_halls") == 0
        address = _non_loopback_address()
        if address is None:
            pytest.skip("this machine has no non-loopback address to scrape from")
        port = base.rsplit(":", 1)[1]
        async with aiohttp.ClientSession() as http, http.get(f"http://{address}:{port}/metrics") as resp:
            assert resp.status == 403
            assert (await resp.json())["error"]["code"] == "forbidden"


async def test_with_a_token_the_scraper_must_present_it(tmp_path: Path) -> None:
    async with running_central(tmp_path, "mqtt://127.0.0.1:1", token="s3cret-scrape") as base:
        async with aiohttp.ClientSession() as http:
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic s3cret-scrape"}):
                async with http.get(f"{base}/metrics", headers=headers) as resp:
                    assert resp.status == 401, headers          # loopback is not enough once a token is set
                    assert (await resp.json())["error"]["code"] == "unauthorized"
        families = await scrape(base, {"Authorization": "Bearer s3cret-scrape"})
        assert promtext.value(families, "hallsync_central_mqtt_connected") == 0   # no broker there
        # the API's own keys are unaffected by the metrics token
        async with aiohttp.ClientSession() as http, http.get(f"{base}/api/v1/halls",
                                                             headers={"Authorization": "Bearer s3cret-scrape"}) as r:
            assert r.status == 401


def test_the_token_can_come_from_the_config_file_and_a_flag_wins(tmp_path: Path) -> None:
    from central.cli import build_parser, resolve

    config = tmp_path / "central.toml"
    config.write_text('db = "c.db"\n[serve]\ndata_dir = "d"\nmqtt = "mqtt://127.0.0.1:1883"\n'
                      'metrics_token = "from-file"\n')
    args = build_parser().parse_args(["serve", "--config", str(config)])
    assert resolve("serve", args)["metrics_token"] == "from-file"
    args = build_parser().parse_args(["serve", "--config", str(config), "--metrics-token", "from-flag"])
    assert resolve("serve", args)["metrics_token"] == "from-flag"
