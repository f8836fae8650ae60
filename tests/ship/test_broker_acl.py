"""HQ's broker as shipped (systemd/mosquitto/): real Mosquitto, real TLS, real password file and ACL.

The broker runs the shipped ``hallsync.conf`` and ``hallsync.acl`` unchanged except for file paths
and ports (a throwaway CA made per test run, free loopback ports). The clients are paho sessions
pumped by hand (MQTT 5 and 3.1.1), because what is checked is exactly what the broker answers: the
CONNACK, the SUBACK and (MQTT 5) the PUBACK reason codes, and what a subscriber really receives.
"""

from __future__ import annotations

import contextlib
import ssl
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from protocols.sync import MAX_MESSAGE_BYTES, MAX_PACKET_BYTES, shared_subscription, subscription, topic

from .conftest import CENTRAL_USER, SHIPPED, HqBroker
from .pki import make_pki

NOT_AUTHORIZED = 0x87  # MQTT 5 reason code, in CONNACK, SUBACK and PUBACK
_OPEN: list[mqtt.Client] = []


@pytest.fixture(autouse=True)
def _close_sessions() -> Iterator[None]:
    yield
    while _OPEN:
        client = _OPEN.pop()
        with contextlib.suppress(Exception):
            client.disconnect()
            client.loop(0.01)
        sock = client.socket()
        if sock is not None:
            sock.close()


# -- a hand-pumped paho session ------------------------------------------------------------------------

@dataclass
class Session:
    """One MQTT client; ``pump`` runs its network loop in this thread until a condition holds."""

    client: mqtt.Client
    connack: ReasonCode | None = None
    disconnected: bool = False
    pubacks: dict[int, ReasonCode] = field(default_factory=dict)
    subacks: dict[int, list[ReasonCode]] = field(default_factory=dict)
    received: list[tuple[str, bytes]] = field(default_factory=list)

    def pump(self, done: Callable[[], bool], timeout: float = 5.0, *others: Session) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if done():
                return True
            for s in (self, *others):
                s.client.loop(0.02)
        return done()

    def publish(self, name: str, payload: bytes, *, retain: bool = False) -> ReasonCode:
        info = self.client.publish(name, payload, qos=1, retain=retain)
        assert self.pump(lambda: info.mid in self.pubacks or self.disconnected), f"no PUBACK for {name}"
        return self.pubacks.get(info.mid, ReasonCode(mqtt.PacketTypes.PUBACK, "Unspecified error"))

    def subscribe(self, flt: str) -> ReasonCode:
        _, mid = self.client.subscribe(flt, qos=1)
        assert self.pump(lambda: mid in self.subacks), f"no SUBACK for {flt}"
        return self.subacks[mid][0]


def session(hq: HqBroker, user: str | None, password: str | None = None, *, port: int | None = None,
            v5: bool = True, tls: bool = True, ca: Path | None = None, client_id: str = "",
            will: tuple[str, bytes] | None = None) -> Session:
    """Connect and wait for the CONNACK (or the connection's end); look at ``connack``."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id or f"t-{user}-{time.monotonic_ns()}",
                         protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311, reconnect_on_failure=False)
    s = Session(client)
    _OPEN.append(client)
    client.on_connect = lambda c, u, flags, rc, props: setattr(s, "connack", rc)
    client.on_disconnect = lambda c, u, flags, rc, props: setattr(s, "disconnected", True)
    client.on_publish = lambda c, u, mid, rc, props: s.pubacks.__setitem__(mid, rc)
    client.on_subscribe = lambda c, u, mid, rcs, props: s.subacks.__setitem__(mid, list(rcs))
    client.on_message = lambda c, u, msg: s.received.append((msg.topic, bytes(msg.payload)))
    if user is not None:
        client.username_pw_set(user, password)
    if will is not None:
        client.will_set(will[0], will[1], qos=1, retain=True)
    if tls:
        client.tls_set_context(ssl.create_default_context(cafile=str(ca or hq.pki.ca_cert)))
    client.connect("127.0.0.1", port or hq.hall_port, keepalive=30)
    s.pump(lambda: s.connack is not None or s.disconnected, 5.0)
    return s


def hall(hq: HqBroker, name: str, **kw: object) -> Session:
    s = session(hq, name, hq.passwords[name], **kw)  # type: ignore[arg-type]
    assert s.connack is not None and not s.connack.is_failure, s.connack
    return s


def central(hq: HqBroker, client_id: str = "") -> Session:
    s = session(hq, CENTRAL_USER, hq.passwords[CENTRAL_USER], port=hq.central_port, client_id=client_id)
    assert s.connack is not None and not s.connack.is_failure, s.connack
    return s


# -- who may connect -----------------------------------------------------------------------------------

@pytest.mark.parametrize("v5", [True, False], ids=["mqtt5", "mqtt311"])
def test_unauthenticated_and_wrong_password_clients_are_refused(hq: HqBroker, v5: bool) -> None:
    for user, password in ((None, None), ("hall-a", "wrong-password"), ("hall-a", hq.passwords["hall-b"]),
                           ("nobody", "x")):
        s = session(hq, user, password, v5=v5)
        assert s.connack is not None and s.connack.is_failure, (user, s.connack)
        assert s.connack.value in (NOT_AUTHORIZED, 0x86, 5, 4), (user, s.connack)  # not authorised / bad login
        assert s.pump(lambda s=s: s.disconnected, 2.0)


def test_plain_tcp_is_refused_on_the_tls_listeners(hq: HqBroker) -> None:
    for port in (hq.hall_port, hq.central_port):
        s = session(hq, "hall-a", hq.passwords["hall-a"], port=port, tls=False)
        assert s.pump(lambda s=s: s.disconnected, 3.0), "the broker kept a plain-TCP connection open"
        assert s.connack is None or s.connack.is_failure, "a plain-TCP client got a CONNACK"


def test_a_hall_refuses_a_broker_its_ca_did_not_certify(hq: HqBroker, tmp_path: Path) -> None:
    other = make_pki(tmp_path / "other-ca")
    with pytest.raises(ssl.SSLCertVerificationError):
        session(hq, "hall-a", hq.passwords["hall-a"], ca=other.ca_cert)


def test_central_account_only_on_the_internal_listener_and_halls_only_on_theirs(hq: HqBroker) -> None:
    s = session(hq, CENTRAL_USER, hq.passwords[CENTRAL_USER], port=hq.hall_port)
    assert s.connack is not None and s.connack.is_failure
    s = session(hq, "hall-a", hq.passwords["hall-a"], port=hq.central_port)
    assert s.connack is not None and s.connack.is_failure


# -- what a hall may publish and read --------------------------------------------------------------------

def test_hall_publishes_its_own_topics_and_cannot_publish_as_another_hall(hq: HqBroker) -> None:
    hq_side = central(hq)
    assert hq_side.subscribe(shared_subscription("central", "batches")).value == 1  # granted QoS 1
    assert hq_side.subscribe(shared_subscription("central", "command-results")).value == 1
    assert hq_side.subscribe(subscription("status")).value == 1
    a = hall(hq, "hall-a")
    forged = a.publish(topic("hall-b", "batches"), b"forged batch")
    forged_result = a.publish(topic("hall-b", "command-results"), b"forged result")
    forged_status = a.publish(topic("hall-b", "status"), b'{"online": false}', retain=True)
    for rc in (forged, forged_result, forged_status):
        assert rc.value == NOT_AUTHORIZED, rc
    for kind, payload in (("batches", b"batch a"), ("command-results", b"result a"), ("status", b"online a")):
        assert a.publish(topic("hall-a", kind), payload, retain=kind == "status").value == 0
    want = {(topic("hall-a", k), p) for k, p in (("batches", b"batch a"), ("command-results", b"result a"),
                                                  ("status", b"online a"))}
    assert hq_side.pump(lambda: want <= set(hq_side.received), 5.0, a), hq_side.received
    # the forged ones went first on the same connection: had the broker routed them, they would be here
    assert not [m for m in hq_side.received if "/hall-b/" in m[0]], hq_side.received


def test_mqtt311_hall_publishing_as_another_hall_is_dropped(hq: HqBroker) -> None:
    """MQTT 3.1.1 has no PUBACK reason code: the broker acks and drops; central must never see it."""
    hq_side = central(hq)
    hq_side.subscribe(shared_subscription("central", "batches"))
    a = hall(hq, "hall-a", v5=False)
    a.publish(topic("hall-b", "batches"), b"forged")
    a.publish(topic("hall-a", "batches"), b"own")
    assert hq_side.pump(lambda: (topic("hall-a", "batches"), b"own") in hq_side.received, 5.0, a)
    assert hq_side.received == [(topic("hall-a", "batches"), b"own")]


@pytest.mark.parametrize("v5", [True, False], ids=["mqtt5", "mqtt311"])
def test_hall_reads_only_its_own_acks_commands_resends_and_standing_data(hq: HqBroker, v5: bool) -> None:
    """Mosquitto's acl_file grants every SUBACK and checks ``read`` on each message it would deliver
    (live and retained); so what counts is what arrives: B's messages never reach hall A, even
    through a subscription to B's exact topics or a wildcard over every hall."""
    a = hall(hq, "hall-a", v5=v5)
    kinds = ("acks", "commands", "resend", "standing")
    for kind in kinds:
        assert a.subscribe(topic("hall-a", kind)).value == 1
        a.subscribe(topic("hall-b", kind))
        a.subscribe(subscription(kind))
    hq_side = central(hq)
    for kind in kinds:  # B's first: had they been routed, they would arrive first
        retain = kind in ("commands", "standing")
        assert hq_side.publish(topic("hall-b", kind), f"for b {kind}".encode(), retain=retain).value == 0
        assert hq_side.publish(topic("hall-a", kind), f"for a {kind}".encode()).value == 0
    want = {(topic("hall-a", k), f"for a {k}".encode()) for k in kinds}
    assert a.pump(lambda: want <= set(a.received), 5.0, hq_side), a.received
    assert set(a.received) == want, a.received
    late = hall(hq, "hall-a", v5=v5, client_id="late")  # a retained message of B's is not served either
    late.subscribe(topic("hall-b", "commands"))
    late.subscribe(topic("hall-b", "standing"))
    late.subscribe(topic("hall-a", "acks"))
    hq_side.publish(topic("hall-a", "acks"), b"barrier")
    assert late.pump(lambda: bool(late.received), 5.0, hq_side)
    assert late.received == [(topic("hall-a", "acks"), b"barrier")]


def test_hall_cannot_publish_central_topics_nor_read_anything_else(hq: HqBroker) -> None:
    a = hall(hq, "hall-a")
    for kind in ("acks", "commands", "resend", "standing"):  # only central may say "acked" or give orders
        assert a.publish(topic("hall-a", kind), b"self-ack").value == NOT_AUTHORIZED
    for flt in ("#", "$SYS/#", subscription("batches"), shared_subscription("central", "batches"),
                subscription("status"), topic("hall-a", "acks")):
        a.subscribe(flt)
    b = hall(hq, "hall-b")
    for kind in ("batches", "status", "command-results"):
        assert b.publish(topic("hall-b", kind), b"b data", retain=kind == "status").value == 0
    hq_side = central(hq)
    hq_side.publish(topic("hall-a", "acks"), b"barrier")
    assert a.pump(lambda: bool(a.received), 5.0, b, hq_side)
    a.pump(lambda: False, 0.3, b, hq_side)
    assert set(a.received) == {(topic("hall-a", "acks"), b"barrier")}, a.received


def test_hall_cannot_take_over_another_halls_session_by_client_id(hq: HqBroker) -> None:
    """Client id = username on the halls' listener: hall A asking for B's client id gets its own."""
    b = hall(hq, "hall-b", client_id="hall-b")
    b.subscribe(topic("hall-b", "commands"))
    a = hall(hq, "hall-a", client_id="hall-b")
    a.pump(lambda: False, 0.5, b)
    assert not b.disconnected, "hall A kicked hall B off by reusing its client id"
    hq_side = central(hq)
    hq_side.publish(topic("hall-b", "commands"), b"for b")
    assert b.pump(lambda: (topic("hall-b", "commands"), b"for b") in b.received, 5.0, a, hq_side)


def test_last_will_reaches_central_as_retained_status(hq: HqBroker) -> None:
    a = hall(hq, "hall-a", will=(topic("hall-a", "status"), b'{"online": false}'))
    a.client.socket().close()  # vanish without DISCONNECT, as a power cut would
    watcher = central(hq)
    watcher.subscribe(subscription("status"))
    assert watcher.pump(lambda: (topic("hall-a", "status"), b'{"online": false}') in watcher.received, 10.0)


def test_a_will_on_another_halls_status_is_never_published(hq: HqBroker) -> None:
    """Mosquitto accepts the CONNECT but checks the will's topic when it fires: a forged
    "hall B went offline" never reaches central, while hall A's own will does (and comes later)."""
    watcher = central(hq)
    watcher.subscribe(subscription("status"))
    forged = session(hq, "hall-a", hq.passwords["hall-a"], client_id="x",
                     will=(topic("hall-b", "status"), b'{"online": false}'))
    forged.client.socket().close()
    time.sleep(0.2)
    own = hall(hq, "hall-a", client_id="y", will=(topic("hall-a", "status"), b'{"online": false}'))
    own.client.socket().close()
    assert watcher.pump(lambda: bool(watcher.received), 10.0)
    assert watcher.received == [(topic("hall-a", "status"), b'{"online": false}')]


def test_central_processes_share_the_batches(hq: HqBroker) -> None:
    """Two central processes (one account, own client ids) split the halls' batches: each batch once."""
    workers = [central(hq, "hallsync-central-1"), central(hq, "hallsync-central-2")]
    for w in workers:
        assert w.subscribe(shared_subscription("central", "batches")).value == 1
    a, b = hall(hq, "hall-a"), hall(hq, "hall-b")
    sent = set()
    for i in range(10):
        for h, name in ((a, "hall-a"), (b, "hall-b")):
            assert h.publish(topic(name, "batches"), f"{name} {i}".encode()).value == 0
            sent.add((topic(name, "batches"), f"{name} {i}".encode()))
    got = lambda: [m for w in workers for m in w.received]  # noqa: E731
    assert workers[0].pump(lambda: len(got()) >= len(sent), 10.0, workers[1])
    workers[0].pump(lambda: False, 0.3, workers[1])
    assert sorted(got()) == sorted(sent)  # every batch exactly once across the group
    assert all(w.received for w in workers)  # and both processes got work


# -- how big a message may be ----------------------------------------------------------------------------

def test_the_largest_legitimate_message_passes_and_a_bigger_packet_is_cut_off(hq: HqBroker) -> None:
    """Issue 16: the shipped ``max_packet_size`` is MAX_PACKET_BYTES. A hall's payload of MAX_MESSAGE_BYTES
    reaches central; a packet beyond the limit gets the hall disconnected and is never delivered (MQTT
    3.1.1: the limit cannot be announced, so this is the broker enforcing it, not the client)."""
    assert f"\nmax_packet_size {MAX_PACKET_BYTES}\n" in (SHIPPED / "hallsync.conf").read_text()
    hq_side = central(hq)
    hq_side.subscribe(shared_subscription("central", "batches"))
    a = hall(hq, "hall-a", v5=False)
    largest = b"x" * MAX_MESSAGE_BYTES
    assert a.publish(topic("hall-a", "batches"), largest).value == 0
    assert hq_side.pump(lambda: len(hq_side.received) == 1, 20.0, a)
    assert hq_side.received[0] == (topic("hall-a", "batches"), largest)
    a.client.publish(topic("hall-a", "batches"), b"y" * (MAX_PACKET_BYTES + 1), qos=1)
    assert a.pump(lambda: a.disconnected, 20.0, hq_side), "the broker took an oversize packet"
    assert "Client hall-a disconnected due to oversize packet" in hq.broker.log_path.read_text()
    b = hall(hq, "hall-b", v5=False)  # nothing of it was routed: central's next message is hall-b's
    assert b.publish(topic("hall-b", "batches"), b"after").value == 0
    assert hq_side.pump(lambda: len(hq_side.received) == 2, 5.0, b)
    assert hq_side.received[1] == (topic("hall-b", "batches"), b"after")
