"""``hall-central serve``: one process holding the store, the MQTT ingest service and the HTTP API.

Order: open the store → start the HTTP listener (so health answers at once) → start ingest. On
SIGTERM: stop ingest (no new batches), stop HTTP, close the store. Every ack was sent only after its
commit, so stopping at any point loses nothing: unacked batches are published again by the agents.
The alert monitor (central.monitor) starts after ingest and stops first; a tick it was in the middle of
is rolled back by its transaction and done again at the next start.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web

from mqttlink import BrokerUrl, parse_broker_url
from mqttlink.httpguard import KEEPALIVE_TIMEOUT, GuardedSite, HttpGuard
from protocols.httpguard import DEFAULT_LIMITS, DEFAULT_LOGIN_FAILURES, DEFAULT_LOGIN_WINDOW, Limits

from .api import build_app
from .api.loginguard import LoginThrottle
from .ingest import Ingestor
from .keyfiles import load_private_key
from .metrics import CentralMetrics
from .metrics import install as install_metrics
from .monitor import DEFAULTS as ALERT_DEFAULTS
from .monitor import Monitor, Thresholds
from .process_roles import PROCESS_ROLES
from .service import IngestService, ServiceConfig
from .standing import StandingPublisher
from .store import open_store
from .verify_pool import VerifyPool

log = structlog.get_logger("central.server")


@dataclass(frozen=True)
class ServerConfig:
    data_dir: Path
    db: str
    mqtt: str | BrokerUrl
    """The broker: a URL, or one already parsed with its password added (mqttlink.broker_url, the CLI)."""
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    currency: str = "EUR"
    share_group: str | None = "central"
    """None: no shared subscription (``--no-shared-subscription``; see ServiceConfig.share_group)."""
    client_id: str = "hallsync-central"
    metrics_token: str | None = None
    """Bearer token ``GET /metrics`` requires; None: loopback clients only (see central.metrics)."""
    monitor_interval: float = 15.0
    """Seconds between two evaluations of the alert list (central.monitor); 0: no monitor in this process.
    Of several processes serving one database only the holder of the ``monitor`` lease evaluates."""
    role: str = "all"
    """Which parts this process runs (see :data:`central.process_roles.PROCESS_ROLES`). An ``api``
    process's MQTT link only publishes (commands, standing data); an ``ingest`` or ``monitor`` process
    answers only ``GET /api/v1/health`` and ``/metrics`` over HTTP."""
    gap_grace: float = 1.0
    """Seconds a batch ahead of its predecessor waits (buffered) for another worker to store that
    predecessor before the resend request (central.ingest.Ingestor.gap_grace)."""
    alert_thresholds: Thresholds = ALERT_DEFAULTS
    verify_processes: int = 1
    """Child processes that decode, verify and stage big batches (central.verify_pool); 0: threads of this
    process instead (the GIL then serves the store writer and the verifying in turns)."""
    http_limits: Limits = DEFAULT_LIMITS
    """Header and body deadlines and the per-address connection cap of the HTTP listener (mqttlink.httpguard)."""
    login_failures: int = DEFAULT_LOGIN_FAILURES
    """Bad API keys per client address within ``login_window`` seconds before it gets 429 (0: no limit)."""
    login_window: float = DEFAULT_LOGIN_WINDOW


def parse_http(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"--http {text!r}: expected HOST:PORT, e.g. 127.0.0.1:8080")
    return host.strip("[]") or "127.0.0.1", int(port)


async def serve(config: ServerConfig, stop: asyncio.Event) -> None:
    if config.role not in PROCESS_ROLES:
        raise ValueError(f"role {config.role!r} is not one of {', '.join(PROCESS_ROLES)}")
    ingesting, api = config.role in ("all", "ingest"), config.role in ("all", "api")
    monitoring = config.role in ("all", "monitor") and config.monitor_interval > 0
    key = load_private_key(config.data_dir)
    url = config.mqtt if isinstance(config.mqtt, BrokerUrl) else parse_broker_url(config.mqtt)
    store = await open_store(config.db)
    ingest: IngestService | None = None
    runner: web.AppRunner | None = None
    monitor: Monitor | None = None
    pool: VerifyPool | None = None
    standing: StandingPublisher | None = None
    try:
        if ingesting and config.verify_processes > 0:
            pool = VerifyPool(config.verify_processes)
            await pool.start()
        ingestor = Ingestor(store, key, preparer=pool, gap_grace=config.gap_grace)
        ingest = IngestService(store, ingestor, url, ServiceConfig(share_group=config.share_group,
                                                                   client_id=config.client_id, ingest=ingesting,
                                                                   persistent_session=config.role == "all"))
        service = ingest
        standing = StandingPublisher(store, key, ingest.publish_retained)
        if ingesting:
            ingest.on_online = standing.wake
        throttle = LoginThrottle(config.login_failures, config.login_window)
        presence = {"role": config.role}
        if api:
            app = build_app(store, currency=config.currency,
                            presence=lambda: {**presence, "ingest": service.status()},
                            command_publisher=ingest.publish_command, central_key=key,
                            on_hall_settings=standing.publish, login_throttle=throttle)
        else:
            app = _health_only(lambda: {**presence, "ingest": service.status()}, config.role)
        guard = HttpGuard(config.http_limits)
        metrics = CentralMetrics(store)
        metrics.http_guard, metrics.login_throttle = guard, throttle
        if ingesting:
            metrics.service, ingest.metrics = ingest, metrics
        install_metrics(app, metrics, token=config.metrics_token)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=5.0,  # in-flight requests get 5 s
                               keepalive_timeout=KEEPALIVE_TIMEOUT)
        await runner.setup()
        site = GuardedSite(runner, config.http_host, config.http_port, guard)
        await site.start()
        if ingesting or api:
            await ingest.start()
            standing.start()
        if monitoring:
            monitor = Monitor(store, thresholds=config.alert_thresholds, interval=config.monitor_interval,
                              lease_owner=f"{config.client_id}@{socket.gethostname()}:{os.getpid()}")
            monitor.start()
        log.info("central_serving", role=config.role, http=f"http://{config.http_host}:{config.http_port}/api/v1",
                 broker=str(url), db=config.db if "://" not in config.db else config.db.split("@")[-1],
                 ingest=ingesting, api=api, monitor=monitoring)
        await stop.wait()
    finally:
        if standing is not None:
            await standing.stop()
        if monitor is not None:
            await monitor.stop()
        if ingest is not None:
            await ingest.stop()
        if pool is not None:
            await pool.stop()
        if runner is not None:
            await runner.cleanup()
        await store.close()
        log.info("central_stopped")


def _health_only(presence: Callable[[], Mapping[str, Any]], role: str) -> web.Application:
    """The HTTP side of an ``ingest`` or ``monitor`` process: health for the load balancer and systemd
    checks, and (installed by the caller) ``/metrics``; the API itself is the ``api`` processes'."""

    @web.middleware
    async def elsewhere(request: web.Request, handler: Any) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPNotFound:
            return web.json_response({"error": {"code": "not_found", "message": (
                f"this hall-central process has --role {role}: the API is served by the processes with "
                "--role api (or all); here only GET /api/v1/health and /metrics")}}, status=404)

    app = web.Application(middlewares=[elsewhere])

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "presence": dict(presence())})

    app.router.add_get("/api/v1/health", health)
    return app


GIL_SWITCH_INTERVAL_S = 0.0005
"""How long a thread waiting for the GIL waits before asking the holder to let go (CPython's default is
5 ms). Central's store writer gives up the GIL around every SQLite statement and must take it back
afterwards, while the ingest worker thread decodes and verifies the next batch in Python: with the
default, each statement of an ingest could wait up to 5 ms (profiled: a quarter of the writer's wall
time). A tenth of that keeps the writer moving at the price of more frequent thread switches."""


def run_forever(config: ServerConfig) -> None:
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve(config, stop)

    asyncio.run(main())
