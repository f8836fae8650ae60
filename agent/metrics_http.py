"""The agent's ``/metrics`` listener (``hall-agent run --metrics HOST:PORT``): one small aiohttp app.

Owned by :class:`agent.runtime.HallAgent`: started with the agent, stopped with it; aiohttp's
runner owns the handler tasks and ``stop`` cancels them (bounded). A scrape only renders what the
agent already holds in memory (no database call, no await), so it cannot hold up the serial pollers
for more than the rendering itself.

Slow or hoarding clients are cut off by :mod:`mqttlink.httpguard` with its default limits (10 s for
the headers, 64 connections per address; a scrape has no body): a scraper that stalls must not hold
sockets of the agent for an hour.

No authentication: bind it to loopback (the default examples) or to the hall's management network.
The page names devices and counts, never money or keys.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import structlog
from aiohttp import web

from mqttlink.httpguard import KEEPALIVE_TIMEOUT, GuardedSite, HttpGuard
from protocols.httpguard import DEFAULT_LIMITS, Limits
from protocols.metrics import CONTENT_TYPE

log = structlog.get_logger("agent.metrics")

PATH = "/metrics"


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:9464`` for IPv6) → (host, port); ValueError says what is wrong."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"--metrics {text!r}: expected HOST:PORT, e.g. 127.0.0.1:9464")
    return host.strip("[]"), int(port)


class MetricsServer:
    """Serves ``render()`` at ``GET /metrics`` on ``host:port`` (port 0: any free port, see ``port``)."""

    def __init__(self, host: str, port: int, render: Callable[[], str], limits: Limits = DEFAULT_LIMITS) -> None:
        self.host = host
        self.port = port
        self._render = render
        self._runner: web.AppRunner | None = None
        self.guard = HttpGuard(limits)

    async def start(self) -> None:
        """Listen; raises OSError when the address is taken or not ours."""
        app = web.Application()
        app.router.add_get(PATH, self._scrape)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0, keepalive_timeout=KEEPALIVE_TIMEOUT)
        await runner.setup()
        site = GuardedSite(runner, self.host, self.port, self.guard)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = site.port  # the bound port when 0 was asked for
        log.info("metrics_listening", url=f"http://{self.host}:{self.port}{PATH}")

    async def stop(self, timeout: float = 5.0) -> None:
        runner, self._runner = self._runner, None
        if runner is None:
            return
        try:
            async with asyncio.timeout(timeout):
                await runner.cleanup()
        except TimeoutError:
            log.error("metrics_server_did_not_stop", timeout_s=timeout)

    async def _scrape(self, request: web.Request) -> web.Response:
        try:
            body = self._render()
        except Exception:  # a bug in one collector must not take the agent down; the log says which
            log.exception("metrics_render_failed")
            return web.Response(status=500, text="metrics could not be rendered; see the agent's log\n")
        return web.Response(body=body.encode(), headers={"Content-Type": CONTENT_TYPE})
