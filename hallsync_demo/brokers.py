"""Which broker the demo runs: the system's Mosquitto if it is installed, else the embedded amqtt.

Mosquitto is what production runs (systemd/mosquitto/), so the demo prefers it; the embedded broker
exists so the demo needs no system package. Either way the broker is a child listening on a free
loopback port, with its files under ``DATA_DIR/broker``.
"""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from mqttlink.broker import Mosquitto, find_mosquitto, free_port

from .children import Child

BrokerChoice = Literal["auto", "mosquitto", "embedded"]


class NoBroker(RuntimeError):
    """The broker asked for cannot run here; the message says what to install."""


@dataclass(frozen=True)
class BrokerPlan:
    kind: Literal["mosquitto", "embedded"]
    child: Child
    port: int
    description: str

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    @property
    def shared_subscriptions(self) -> bool:
        """amqtt has no ``$share``: central then subscribes plainly (one central process only)."""
        return self.kind == "mosquitto"


def embedded_available() -> bool:
    return importlib.util.find_spec("amqtt") is not None


def plan_broker(choice: BrokerChoice, data_dir: Path, *, avoid: int | None = None) -> BrokerPlan:
    """``avoid``: a port already promised to someone else (central's HTTP): a free port now is not
    reserved, so the OS may offer it to us too."""
    workdir = data_dir / "broker"
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    while port == avoid:
        port = free_port()
    mosquitto = find_mosquitto()
    if choice == "mosquitto" or (choice == "auto" and mosquitto is not None):
        if mosquitto is None:
            raise NoBroker("--broker mosquitto: mosquitto is not installed (Debian: apt-get install mosquitto)")
        # mqttlink's Mosquitto writes the loopback config the tests use (as root it adds the user line);
        # the demo runs the binary as its own child so it stops with the others.
        conf = Mosquitto(workdir, port=port, binary=mosquitto)._config()
        child = Child("broker", [mosquitto, "-c", str(conf)], data_dir / "broker.log")
        return BrokerPlan("mosquitto", child, port, f"Mosquitto ({mosquitto})")
    if not embedded_available():
        raise NoBroker("no MQTT broker: install mosquitto (apt-get install mosquitto) or the embedded one "
                       "(pip install 'hallsync[demo]')")
    child = Child("broker", [sys.executable, "-m", "hallsync_demo.embedded_broker", "--port", str(port)],
                  data_dir / "broker.log")
    return BrokerPlan("embedded", child, port, "embedded amqtt (pure Python; no mosquitto found)"
                      if choice == "auto" else "embedded amqtt (pure Python)")
