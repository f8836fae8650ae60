"""A reconnecting MQTT link over aiomqtt: subscribe, hand messages to a handler, bounded publishes.

Delivery semantics are the caller's business and stay honest: a publish returns only when the
broker acknowledged it (QoS 1 PUBACK), and raises :class:`LinkDown` if the link was lost first or
the broker did not answer in time. Nothing is queued here across a reconnect; the callers (the
agent's replicator, central's ingest) keep their own durable state and publish again.

Sessions: ``clean_session=False`` with a stable client id makes the broker keep the subscriptions
and queue QoS 1 messages while the client is away (commands to an agent that is reconnecting).
A new aiomqtt client is built for every connection so no half-sent state of a dead connection
(paho's in-flight table) leaks into the next one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import ssl
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import aiomqtt
import structlog

from .url import BrokerUrl

log = structlog.get_logger("mqttlink")


class _AbandonedCallFilter(logging.Filter):
    """aiomqtt logs the broker's late answer to a call we stopped waiting for (a SUBSCRIBE cancelled by
    SIGTERM during connect, a publish that timed out) as an *exception*, with a ``KeyError`` traceback,
    in plain text among our JSON lines. The answer is expected and harmless: it becomes one debug line."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and record.msg.startswith("Unexpected message ID"):
            log.debug("mqtt_late_answer_ignored", detail=record.getMessage())
            return False
        return True


_AIOMQTT_LOG = logging.getLogger("mqttlink.aiomqtt")
_AIOMQTT_LOG.addFilter(_AbandonedCallFilter())

Handler = Callable[["Received"], Awaitable[None]]

_SOCKET_OPTIONS = ((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),)
"""Nagle off: a QoS 1 exchange is small packets answered by small packets, and with Nagle each
PUBACK/ack waits for the peer's delayed TCP ACK (25-30 ms measured), which halved central's ingest
rate (bench/sync_throughput.py: about 20k → 36k events/s with it off)."""


class LinkDown(Exception):
    """The link is not connected, was lost during a publish, or the broker did not acknowledge in time."""


@dataclass(frozen=True, slots=True)
class Received:
    topic: str
    payload: bytes
    retain: bool
    qos: int


@dataclass(frozen=True, slots=True)
class Will:
    """The message the broker publishes for us if we vanish without a clean disconnect."""

    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True


@dataclass(slots=True)
class LinkStats:
    connects: int = 0
    connect_failures: int = 0
    disconnects: int = 0
    published: int = 0
    publish_failures: int = 0
    received: int = 0
    handler_errors: int = 0
    last_error: str | None = None


class MqttLink:
    """One logical MQTT connection that outlives network failures; see the module docstring.

    ``subscriptions``: topic filters (QoS 1) subscribed after every connect.
    ``handler``: awaited for each received message, in arrival order; an exception in it is logged
    and counted, the link goes on (a bad message must not take a hall or HQ offline).
    ``will``: called at every connect, so a will can carry a fresh session counter.
    ``on_connect``: awaited after subscribing (e.g. to publish a retained online status).
    """

    def __init__(
        self,
        url: BrokerUrl,
        *,
        client_id: str,
        handler: Handler,
        subscriptions: Sequence[str] = (),
        clean_session: bool = False,
        will: Callable[[], Will] | None = None,
        on_connect: Callable[[], Awaitable[None]] | None = None,
        max_inflight: int = 20,
        keepalive: int = 20,
        connect_timeout: float = 10.0,
        publish_timeout: float = 10.0,
        backoff_initial: float = 0.2,
        backoff_max: float = 10.0,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        if max_inflight < 1:
            raise ValueError("max_inflight must be >= 1")
        self.url = url
        self.client_id = client_id
        self.handler = handler
        self.subscriptions = tuple(subscriptions)
        self.clean_session = clean_session
        self.will = will
        self.on_connect = on_connect
        self.max_inflight = max_inflight
        self.keepalive = keepalive
        self.connect_timeout = connect_timeout
        self.publish_timeout = publish_timeout
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.tls_context = tls_context
        if url.tls and tls_context is None:  # verifies the broker's name and chain: never switched off
            self.tls_context = ssl.create_default_context(cafile=url.ca_file)
        self.stats = LinkStats()
        self._client: aiomqtt.Client | None = None
        self._lost: asyncio.Future[None] | None = None
        self._up = asyncio.Event()
        self._sem = asyncio.Semaphore(max_inflight)

    # -- state ----------------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._up.is_set()

    async def wait_connected(self, timeout: float) -> bool:
        """True once connected (and subscribed), False if ``timeout`` passed first."""
        try:
            await asyncio.wait_for(self._up.wait(), timeout)
        except TimeoutError:
            return False
        return True

    # -- the connection loop ----------------------------------------------------------------------

    async def run(self) -> None:
        """Connect, serve, reconnect with back-off — until cancelled (then disconnect cleanly)."""
        delay = self.backoff_initial
        while True:
            try:
                connected = await self._serve_once()
            except Exception as exc:   # a callback's failure (will, on_connect, a handler) must not end the link
                self.stats.last_error = repr(exc)
                log.error("mqtt_link_error", broker=str(self.url), client_id=self.client_id, error=repr(exc),
                          note="reconnecting with back-off")
                connected = False
            if connected:
                delay = self.backoff_initial
            pause = delay * random.uniform(0.5, 1.0)
            delay = min(delay * 2, self.backoff_max)
            await asyncio.sleep(pause)

    async def _serve_once(self) -> bool:
        """One connection's life; returns whether it got connected at all."""
        will = self.will() if self.will is not None else None
        client = aiomqtt.Client(
            self.url.host, self.url.port, identifier=self.client_id, clean_session=self.clean_session,
            username=self.url.username, password=self.url.password, keepalive=self.keepalive,
            timeout=self.connect_timeout, max_inflight_messages=self.max_inflight, tls_context=self.tls_context,
            will=None if will is None else aiomqtt.Will(will.topic, will.payload, will.qos, will.retain),
            socket_options=_SOCKET_OPTIONS, logger=_AIOMQTT_LOG,
        )
        client.pending_calls_threshold = self.max_inflight + 10
        got_connected = False
        lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        try:
            async with client:
                got_connected = True
                for flt in self.subscriptions:
                    await client.subscribe(flt, qos=1, timeout=self.connect_timeout)
                self._client, self._lost = client, lost
                self._up.set()
                self.stats.connects += 1
                log.info("mqtt_connected", broker=str(self.url), client_id=self.client_id,
                         subscriptions=list(self.subscriptions))
                if self.on_connect is not None:
                    await self.on_connect()
                async for message in client.messages:
                    self.stats.received += 1
                    await self._dispatch(message)
        except aiomqtt.MqttError as exc:
            self.stats.last_error = str(exc)
            if got_connected:
                self.stats.disconnects += 1
                log.warning("mqtt_disconnected", broker=str(self.url), client_id=self.client_id, error=str(exc))
            else:
                self.stats.connect_failures += 1
                log.warning("mqtt_connect_failed", broker=str(self.url), client_id=self.client_id, error=str(exc))
        except LinkDown as exc:  # on_connect could not publish: the connection died under it
            self.stats.disconnects += 1
            self.stats.last_error = str(exc)
            log.warning("mqtt_disconnected", broker=str(self.url), client_id=self.client_id, error=str(exc))
        finally:
            self._up.clear()
            self._client = self._lost = None
            if not lost.done():
                lost.set_result(None)
        return got_connected

    async def _dispatch(self, message: aiomqtt.Message) -> None:
        payload = message.payload
        if isinstance(payload, str):
            data = payload.encode()
        elif isinstance(payload, bytes | bytearray):
            data = bytes(payload)
        elif payload is None:
            data = b""
        else:
            data = str(payload).encode()
        received = Received(message.topic.value, data, bool(message.retain), int(message.qos))
        try:
            await self.handler(received)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.stats.handler_errors += 1
            log.exception("mqtt_handler_failed", topic=received.topic, error=repr(exc))

    # -- publishing -----------------------------------------------------------------------------------

    async def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False,
                      timeout: float | None = None) -> None:
        """Publish and wait for the broker's acknowledgement (QoS 1); :class:`LinkDown` if it cannot."""
        async with self._sem:
            client, lost = self._client, self._lost
            if client is None or lost is None:
                raise LinkDown("not connected")
            wait = self.publish_timeout if timeout is None else timeout
            task = asyncio.ensure_future(client.publish(topic, payload, qos=qos, retain=retain, timeout=wait))
            try:
                await asyncio.wait({task, lost}, timeout=wait + 1.0, return_when=asyncio.FIRST_COMPLETED)
            except asyncio.CancelledError:
                task.cancel()
                raise
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                    await task
                self.stats.publish_failures += 1
                raise LinkDown("connection lost before the broker acknowledged" if lost.done()
                               else f"no acknowledgement within {wait} s")
            try:
                task.result()
            except aiomqtt.MqttError as exc:
                self.stats.publish_failures += 1
                raise LinkDown(str(exc)) from exc
            self.stats.published += 1


__all__ = ["LinkDown", "LinkStats", "MqttLink", "Received", "Will"]
