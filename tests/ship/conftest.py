"""The ``hq`` fixture: HQ's broker as shipped in systemd/mosquitto/, on free loopback ports.

The shipped ``hallsync.conf`` and ``hallsync.acl`` run unchanged except for file paths and ports;
TLS uses a throwaway CA made for the test. Halls' password lines are the ones ``hall-central halls
add`` prints (hashed by central.brokeraccount); central's line is made by Mosquitto's own
``mosquitto_passwd``, so both ways an operator may fill the files are exercised.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from central.brokeraccount import new_account
from mqttlink.broker import Mosquitto, find_mosquitto, free_port
from tests import waits

from .pki import Pki, make_pki

SHIPPED = Path(__file__).resolve().parents[2] / "systemd" / "mosquitto"
CENTRAL_USER = "hq.central"


@dataclass
class HqBroker:
    broker: Mosquitto
    pki: Pki
    hall_port: int
    central_port: int
    passwords: dict[str, str]
    directory: Path


def render_shipped_config(directory: Path, hall_port: int, central_port: int) -> str:
    text = (SHIPPED / "hallsync.conf").read_text()
    for old, new in (("/etc/mosquitto/hallsync/", f"{directory}/"),
                     ("listener 8884 127.0.0.1\n", f"listener {central_port} 127.0.0.1\n"),
                     ("listener 8883\n", f"listener {hall_port} 127.0.0.1\n")):
        assert old in text, f"hallsync.conf no longer has {old!r}: update this test's rendering"
        text = text.replace(old, new)
    return text


def wait_listening(port: int, broker: Mosquitto, timeout: float = 10.0) -> None:
    def listens() -> bool:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True

    try:
        waits.until_sync(listens, f"mosquitto to listen on port {port}", timeout=timeout, interval=0.02,
                         ignore=(OSError,))
    except AssertionError:
        broker.stop()
        pytest.fail(f"mosquitto did not listen on port {port}; see {broker.log_path}")


@pytest.fixture
def hq(tmp_path: Path) -> Iterator[HqBroker]:
    with start_hq(tmp_path, make_pki) as broker:
        yield broker


@contextmanager
def start_hq(tmp_path: Path, pki_maker: Callable[[Path], Pki]) -> Iterator[HqBroker]:
    """The shipped broker with the certificate files ``pki_maker(directory)`` writes into ``directory``."""
    if find_mosquitto() is None:
        pytest.fail("mosquitto is not installed: .ci/run installs it with apt-get (apt-get install mosquitto)")
    passwd_tool = shutil.which("mosquitto_passwd")
    if passwd_tool is None:
        pytest.fail("mosquitto_passwd is missing (Debian package mosquitto ships it)")
    directory = tmp_path / "etc"
    directory.mkdir(parents=True, exist_ok=True)
    pki = pki_maker(directory)
    shutil.copy(SHIPPED / "hallsync.acl", directory / "hallsync.acl")
    # Halls: the lines `hall-central halls add` prints (hashed by us); central: Mosquitto's own tool.
    passwords: dict[str, str] = {}
    lines = []
    for hall in ("hall-a", "hall-b"):
        account = new_account(hall)
        passwords[hall] = account.password
        lines.append(account.password_line)
    (directory / "halls.passwd").write_text("\n".join(lines) + "\n")
    passwords[CENTRAL_USER] = "central-secret"
    subprocess.run([passwd_tool, "-c", "-b", str(directory / "central.passwd"), CENTRAL_USER, "central-secret"],
                   check=True, capture_output=True, timeout=30)
    hall_port = central_port = free_port()
    while central_port == hall_port:
        central_port = free_port()
    broker = Mosquitto(tmp_path / "broker", port=hall_port,
                       config_text=render_shipped_config(directory, hall_port, central_port))
    broker.start()  # returns once the halls' listener answers; mosquitto opens the next one just after
    wait_listening(central_port, broker)
    try:
        yield HqBroker(broker, pki, hall_port, central_port, passwords, directory)
    finally:
        broker.stop()
