"""The MQTT adapter against a real Mosquitto: QoS 1 round trips, reconnect, wills, fail-fast publishes."""

from __future__ import annotations

import asyncio
import contextlib
import sys

import pytest

from mqttlink import LinkDown, MqttLink, Received, parse_broker_url


class Inbox:
    def __init__(self) -> None:
        self.items: list[Received] = []
        self.changed = asyncio.Event()

    async def __call__(self, msg: Received) -> None:
        self.items.append(msg)
        self.changed.set()

    async def wait_for(self, n: int, timeout: float = 10.0) -> list[Received]:
        async def loop() -> None:
            while len(self.items) < n:
                self.changed.clear()
                await self.changed.wait()
        await asyncio.wait_for(loop(), timeout)
        return self.items


@contextlib.asynccontextmanager
async def running(link: MqttLink):
    task = asyncio.create_task(link.run())
    try:
        assert await link.wait_connected(10), "link did not connect"
        yield link
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def test_parse_broker_url() -> None:
    u = parse_broker_url("mqtt://127.0.0.1:1884")
    assert (u.host, u.port, u.tls) == ("127.0.0.1", 1884, False)
    s = parse_broker_url("mqtts://hall%2F1:p%40ss@hq.example")
    assert (s.host, s.port, s.tls, s.username, s.password) == ("hq.example", 8883, True, "hall/1", "p@ss")
    assert "p@ss" not in str(s)
    for bad in ("http://x", "mqtt://", "mqtt://h:99999", "mqtt://h/path"):
        with pytest.raises(ValueError):
            parse_broker_url(bad)


async def test_publish_subscribe_in_order(mosquitto) -> None:
    inbox = Inbox()
    sub = MqttLink(mosquitto.url, client_id="t-sub", handler=inbox, subscriptions=["t/#"])
    pub = MqttLink(mosquitto.url, client_id="t-pub", handler=Inbox())
    async with running(sub), running(pub):
        await asyncio.gather(*(pub.publish("t/a", str(i).encode()) for i in range(200)))
        got = await inbox.wait_for(200)
    assert sorted(int(m.payload) for m in got) == list(range(200))
    assert pub.stats.published == 200
    assert all(m.topic == "t/a" and m.qos == 1 for m in got)


async def test_publish_fails_fast_when_down_and_link_reconnects(mosquitto) -> None:
    inbox = Inbox()
    link = MqttLink(mosquitto.url, client_id="t-re", handler=inbox, subscriptions=["r/#"], backoff_max=0.5)
    async with running(link):
        mosquitto.kill()
        for _ in range(200):
            if not link.connected:
                break
            await asyncio.sleep(0.02)
        assert not link.connected
        with pytest.raises(LinkDown):
            await link.publish("r/x", b"lost?")
        mosquitto.start()
        assert await link.wait_connected(15)
        await link.publish("r/x", b"after")
        got = await inbox.wait_for(1)
    assert got[-1].payload == b"after"
    assert link.stats.connects == 2 and link.stats.disconnects == 1


async def test_persistent_session_queues_while_away(mosquitto) -> None:
    """A QoS 1 message published while the subscriber is away reaches it after it reconnects."""
    inbox = Inbox()
    sub = MqttLink(mosquitto.url, client_id="t-away", handler=inbox, subscriptions=["q/#"])
    pub = MqttLink(mosquitto.url, client_id="t-pub2", handler=Inbox())
    async with running(sub):
        pass
    async with running(pub):
        await pub.publish("q/1", b"while away")
    async with running(sub):
        got = await inbox.wait_for(1)
    assert got[0].payload == b"while away"


DYING_CLIENT = """
import asyncio, sys
from mqttlink import MqttLink, Will, parse_broker_url

async def main():
    async def ignore(msg):
        pass
    link = MqttLink(parse_broker_url(sys.argv[1]), client_id="t-will", handler=ignore,
                    will=lambda: Will("p/status", b"offline 1"))
    task = asyncio.create_task(link.run())
    await link.wait_connected(10)
    await link.publish("p/status", b"online", retain=True)
    print("up", flush=True)
    await asyncio.sleep(60)

asyncio.run(main())
"""


async def test_will_is_published_when_the_client_vanishes(mosquitto) -> None:
    """SIGKILL the client process: the broker publishes its retained will, and keeps it for newcomers."""
    watcher = Inbox()
    async with running(MqttLink(mosquitto.url, client_id="t-watch", handler=watcher, subscriptions=["p/#"])):
        proc = await asyncio.create_subprocess_exec(sys.executable, "-c", DYING_CLIENT, mosquitto.url_text,
                                                    stdout=asyncio.subprocess.PIPE)
        assert proc.stdout is not None
        while (line := await asyncio.wait_for(proc.stdout.readline(), 20)) != b"up\n":
            assert line, "the client exited before connecting"
        await watcher.wait_for(1)
        proc.kill()
        await proc.wait()
        got = await watcher.wait_for(2, timeout=30)
    assert [m.payload for m in got] == [b"online", b"offline 1"]
    late = Inbox()
    async with running(MqttLink(mosquitto.url, client_id="t-late", handler=late, subscriptions=["p/#"])):
        retained = await late.wait_for(1)
    assert retained[0].payload == b"offline 1" and retained[0].retain


async def test_a_failing_handler_does_not_stop_the_link(mosquitto) -> None:
    seen: list[bytes] = []

    async def handler(msg: Received) -> None:
        seen.append(msg.payload)
        if msg.payload == b"bad":
            raise ValueError("boom")

    link = MqttLink(mosquitto.url, client_id="t-h", handler=handler, subscriptions=["h/#"])
    async with running(link):
        await link.publish("h/1", b"bad")
        await link.publish("h/1", b"good")
        for _ in range(200):
            if len(seen) == 2:
                break
            await asyncio.sleep(0.02)
    assert seen == [b"bad", b"good"]
    assert link.stats.handler_errors == 1 and link.stats.connects == 1


@pytest.mark.parametrize("url", ["mqtt://hall-01:s3cret-Pw@:1883", "mqtt://hall-01:s3cret-Pw@host:99999",
                                 "mqtt://hall-01:s3cret-Pw@host:1883/path", "http://hall-01:s3cret-Pw@host"])
def test_a_bad_broker_url_is_named_without_its_password(url: str) -> None:
    """The error goes to logs and terminals: it shows the URL with the password masked."""
    with pytest.raises(ValueError) as err:
        parse_broker_url(url)
    assert "s3cret-Pw" not in str(err.value) and "hall-01:***@" in str(err.value)


async def test_a_failing_will_callback_does_not_end_the_link(mosquitto) -> None:
    """A callback that raises (the agent's will saves a session number: ENOSPC on a full disk) costs one
    connection attempt; the link backs off and connects, instead of its task dying for good."""
    from mqttlink import Will

    calls = 0

    def will() -> Will:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise OSError(28, "No space left on device")
        return Will("t/will", b"gone", 1, False)

    link = MqttLink(mosquitto.url, client_id="will-fails-once", handler=Inbox(), will=will,
                    backoff_initial=0.05)
    async with running(link):
        assert calls >= 2 and link.connected
        assert "No space left" in (link.stats.last_error or "")
