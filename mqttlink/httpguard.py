"""A guard in front of an aiohttp listener: header and body deadlines, and a per-address connection cap.

Why: aiohttp has no header or body read timeout (only ``keepalive_timeout`` for idle connections, an
hour by default), so a client sending half a request held its socket and handler forever, and one
address could open thousands (issue 16). This module lives beside the MQTT adapter because it is
I/O shared by the agent and central, which never import each other; the counting is the sans-IO
:mod:`protocols.httpguard`.

How: :class:`GuardedSite` is an aiohttp ``TCPSite`` whose protocol factory wraps each aiohttp
connection handler in :class:`_Guarded`, which sees the socket's events first:

* opening: the address's connection count goes up; past the cap the socket gets a ``503`` and is
  closed before aiohttp sees it;
* a connection opening, or its first byte after an answered request: a header deadline starts; the
  application's handler being called (headers complete) stops it and starts a body deadline if the
  body has not fully arrived; the handler finishing returns the connection to idle (aiohttp's own
  ``keepalive_timeout`` closes idle ones);
* a missed header deadline answers ``408`` and closes; a missed body deadline aborts the connection
  (the handler may be mid-answer, so nothing more is written).

Counters (``stats``) are read by the owner's metrics at scrape time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import structlog
from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from protocols.httpguard import DEFAULT_LIMITS, ConnectionCap, Limits

log = structlog.get_logger("httpguard")

KEEPALIVE_TIMEOUT = 75.0
"""Seconds an idle keep-alive connection is kept (aiohttp's default is 3630): pass it to the runner."""

_TIMEOUT_408 = b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
_BUSY_503 = (b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nRetry-After: 1\r\n"
             b"Content-Length: 0\r\n\r\n")


class HttpGuard:
    """Limits for one listener and what they did: ``stats`` counts ``closed_slow_headers``,
    ``closed_slow_body`` and ``refused`` connections."""

    def __init__(self, limits: Limits = DEFAULT_LIMITS) -> None:
        self.limits = limits
        self.cap = ConnectionCap(limits.max_per_ip)
        self.stats = {"closed_slow_headers": 0, "closed_slow_body": 0, "refused": 0}
        self._conns: dict[RequestHandler, _Guarded] = {}
        self._attached: web.Server | None = None

    def factory(self, server: web.Server) -> Callable[[], asyncio.Protocol]:
        """The protocol factory for ``loop.create_server``: ``server``'s handlers, guarded."""
        if self._attached is not server:
            inner_handler = server.request_handler

            async def handle(request: web.BaseRequest) -> web.StreamResponse:
                conn = self._conns.get(request.protocol)
                if conn is not None:
                    conn.request_started(request)
                try:
                    return await inner_handler(request)
                except ConnectionResetError:
                    if request.transport is not None and not request.transport.is_closing():
                        raise
                    # the client is gone (or was cut off here) while its body was read: nothing can be
                    # answered, and aiohttp would log this as an error with a traceback
                    return web.Response(status=408)
                finally:
                    if conn is not None:
                        conn.request_done()

            server.request_handler = handle  # read by each connection handler when it is created
            self._attached = server
        return lambda: _Guarded(self, server())


class _Guarded(asyncio.Protocol):
    """One connection: aiohttp's handler inside, deadlines and the cap outside."""

    def __init__(self, guard: HttpGuard, inner: RequestHandler) -> None:
        self.guard, self.inner = guard, inner
        self.transport: asyncio.Transport | None = None
        self.ip = ""
        self.admitted = False
        self.idle = False
        self.timer: asyncio.TimerHandle | None = None

    # -- events from the transport ---------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.ip = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        if not self.guard.cap.acquire(self.ip):
            self.guard.stats["refused"] += 1
            log.info("http_connection_refused", client=self.ip, limit=self.guard.cap.limit)
            transport.write(_BUSY_503)
            transport.close()
            return
        self.admitted = True
        self.guard._conns[self.inner] = self
        self._arm(self.guard.limits.header_timeout, "headers")  # a silent connection counts too
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if not self.admitted:
            return
        if self.idle:  # first byte of the next request on a kept-alive connection
            self.idle = False
            self._arm(self.guard.limits.header_timeout, "headers")
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        if self.admitted:
            self.inner.eof_received()  # aiohttp's handler keeps the transport open itself
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if not self.admitted:
            return
        self.admitted = False
        self.guard.cap.release(self.ip)
        self.guard._conns.pop(self.inner, None)
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    # -- events from aiohttp (HttpGuard.factory's handler) ----------------------------------------
    def request_started(self, request: web.BaseRequest) -> None:
        self.idle = False
        if request.content.is_eof():
            self._disarm()
        else:
            self._arm(self.guard.limits.body_timeout, "body", request)

    def request_done(self) -> None:
        self._disarm()
        self.idle = True

    # -- deadlines -------------------------------------------------------------------------------
    def _arm(self, seconds: float, phase: str, request: web.BaseRequest | None = None) -> None:
        self._disarm()
        if seconds > 0:
            self.timer = asyncio.get_running_loop().call_later(seconds, self._expired, phase, request)

    def _disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _expired(self, phase: str, request: Any) -> None:
        self.timer = None
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if phase == "body" and request is not None and request.content.is_eof():
            return  # arrived in full; the handler is just slow to read it
        self.guard.stats[f"closed_slow_{phase}"] += 1
        log.info("http_slow_client_closed", client=self.ip, phase=phase)
        if phase == "headers":
            transport.write(_TIMEOUT_408)
            transport.close()
        else:
            transport.abort()


class GuardedSite(web.BaseSite):
    """``web.TCPSite`` with ``guard`` in front of every connection (``port`` is the bound port)."""

    __slots__ = ("_guard", "_host", "_port")

    def __init__(self, runner: web.BaseRunner, host: str, port: int, guard: HttpGuard) -> None:
        super().__init__(runner)
        self._guard, self._host, self._port = guard, host, port

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self._port}"

    @property
    def port(self) -> int:
        return self._port

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None, "runner.setup() first"
        self._server = await asyncio.get_running_loop().create_server(
            self._guard.factory(server), self._host, self._port, backlog=self._backlog)
        if self._server.sockets:
            self._port = int(self._server.sockets[0].getsockname()[1])
