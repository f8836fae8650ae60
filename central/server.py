"""``hall-central serve``: one process holding the store, the MQTT ingest service and the HTTP API.

Order: open the store → start the HTTP listener (so health answers at once) → start ingest. On
SIGTERM: stop ingest (no new batches), stop HTTP, close the store. Every ack was sent only after its
commit, so stopping at any point loses nothing: unacked batches are published again by the agents.
"""

from __future__ import annotations

import asyncio
import signal
from dataclasses import dataclass
from pathlib import Path

import structlog
from aiohttp import web

from mqttlink import parse_broker_url

from .api import build_app
from .ingest import Ingestor
from .keyfiles import load_private_key
from .service import IngestService, ServiceConfig
from .store import open_store

log = structlog.get_logger("central.server")


@dataclass(frozen=True)
class ServerConfig:
    data_dir: Path
    db: str
    mqtt: str
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    currency: str = "EUR"
    share_group: str = "central"
    client_id: str = "hallsync-central"


def parse_http(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"--http {text!r}: expected HOST:PORT, e.g. 127.0.0.1:8080")
    return host.strip("[]") or "127.0.0.1", int(port)


async def serve(config: ServerConfig, stop: asyncio.Event) -> None:
    key = load_private_key(config.data_dir)
    url = parse_broker_url(config.mqtt)
    store = await open_store(config.db)
    ingest: IngestService | None = None
    runner: web.AppRunner | None = None
    try:
        ingestor = Ingestor(store, key)
        ingest = IngestService(store, ingestor, url, ServiceConfig(share_group=config.share_group,
                                                                   client_id=config.client_id))
        service = ingest
        app = build_app(store, currency=config.currency, presence=lambda: {"ingest": service.status()},
                        command_publisher=ingest.publish_command, central_key=key)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=5.0)  # in-flight requests get 5 s
        await runner.setup()
        site = web.TCPSite(runner, config.http_host, config.http_port)
        await site.start()
        await ingest.start()
        log.warning("central_serving", http=f"http://{config.http_host}:{config.http_port}/api/v1",
                    broker=str(url), db=config.db if "://" not in config.db else config.db.split("@")[-1])
        await stop.wait()
    finally:
        if ingest is not None:
            await ingest.stop()
        if runner is not None:
            await runner.cleanup()
        await store.close()
        log.warning("central_stopped")


def run_forever(config: ServerConfig) -> None:
    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve(config, stop)

    asyncio.run(main())
