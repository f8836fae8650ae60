"""A SAS host that knows only the contract polls a simulated EGM.

Nothing of hallsync's own SAS code is used here: frames are written by hand from the spec, the CRC
is an independent bitwise CRC-16/KERMIT, and the wakeup bit travels as design.md's PARMRK marks
(``FF 00 xx``; a literal ``FF`` is ``FF FF``). If this host can read identity, meters and
exceptions and lock and unlock the machine, so can any third-party host that follows the contract.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import termios
import time
import tty
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def kermit(data: bytes) -> bytes:
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8408 if crc & 1 else crc >> 1
    return bytes((crc & 0xFF, crc >> 8))


def bcd(raw: bytes) -> int:
    return int(raw.hex())


class ContractHost:
    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
        tty.setraw(self.fd)
        termios.tcflush(self.fd, termios.TCIOFLUSH)

    def close(self) -> None:
        os.close(self.fd)

    def send(self, message: bytes) -> None:
        body = message[1:].replace(b"\xff", b"\xff\xff")
        os.write(self.fd, b"\xff\x00" + message[:1] + body)

    def read(self, count: int, timeout: float = 0.5) -> bytes:
        """``count`` reply bytes, with FF FF undone; stops early when the line stays quiet."""
        raw = bytearray()
        deadline = time.monotonic() + timeout
        while True:
            out = bytes(raw).replace(b"\xff\xff", b"\xff")
            half_escape = (len(raw) - len(raw.rstrip(b"\xff"))) % 2 == 1
            if (len(out) >= count and not half_escape) or time.monotonic() > deadline:
                return out
            ready, _, _ = select.select([self.fd], [], [], max(0.0, deadline - time.monotonic()))
            if ready:
                raw += os.read(self.fd, 256)

    def long_poll(self, address: int, command: int, reply_len: int | None) -> bytes:
        """An R-type long poll; ``reply_len`` None means the reply carries a length byte."""
        for _ in range(3):
            self.send(bytes((address, command)))
            head = self.read(3)
            if head[:2] != bytes((address, command)):
                continue
            total = 3 + head[2] + 2 if reply_len is None else 2 + reply_len + 2
            frame = head + self.read(total - len(head))
            frame = frame[:total]
            if len(frame) == total and kermit(frame[:-2]) == frame[-2:]:
                self.send(bytes((0x80 | (address + 1),)))  # a different poll: implied ACK
                self.read(1, timeout=0.05)
                return frame
        raise AssertionError(f"no valid reply to LP {command:02X}")

    def general_poll(self, address: int) -> int | None:
        """One exception; a general poll to address 0 follows, as ArduinoTITO idles, to ACK it
        (repeating the same poll would be an implied NACK and bring the same code again)."""
        self.send(bytes((0x80 | address,)))
        got = self.read(1, timeout=0.1)
        self.send(b"\x80")
        return got[0] if got else None


@pytest.fixture
def egm_port() -> Iterator[str]:
    proc = subprocess.Popen([sys.executable, "-m", "firmware_sim.cli", "egm", "--address", "1", "--pace", "0.2",
                             "--seed", "11"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = proc.stdout.readline()
        assert line, "hall-sim egm printed nothing"
        yield json.loads(line)["port"]
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_contract_host_reads_identity_meters_exceptions_and_locks(egm_port: str) -> None:
    host = ContractHost(egm_port)
    try:
        # Sync rule: after power-up the EGM waits for a poll to another address.
        host.send(b"\x82")
        host.read(1, timeout=0.05)

        ident = host.long_poll(1, 0x1F, 20)
        game_id, paytable, base = ident[2:4], ident[12:18], ident[18:22]
        assert game_id.isascii() and paytable.isascii() and base.isdigit()

        version = host.long_poll(1, 0x54, None)
        assert version[3:6].isdigit(), version

        meters = host.long_poll(1, 0x1C, 32)
        coin_in, coin_out = bcd(meters[2:6]), bcd(meters[6:10])
        games_played = bcd(meters[18:22])
        assert coin_in >= 0 and coin_out >= 0 and games_played >= 0

        codes: set[int] = set()
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline and not {0x7E, 0x7F} <= codes:
            code = host.general_poll(1)
            if code:
                codes.add(code)
            time.sleep(0.2)
        assert {0x7E, 0x7F} <= codes, f"no game started/ended exceptions seen: {sorted(codes)}"

        # Lock: LP 01 with its CRC, ACKed by the address alone.
        host.send(b"\x01\x01" + kermit(b"\x01\x01"))
        assert host.read(1) == b"\x01"
        host.general_poll(1)
        time.sleep(1.0)  # the game in progress may finish
        before = bcd(host.long_poll(1, 0x1C, 32)[18:22])
        time.sleep(1.5)
        after = bcd(host.long_poll(1, 0x1C, 32)[18:22])
        assert after == before, "games were played while the machine was locked"

        host.send(b"\x01\x02" + kermit(b"\x01\x02"))
        assert host.read(1) == b"\x01"
        host.general_poll(1)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            host.general_poll(1)
            time.sleep(0.2)
            if bcd(host.long_poll(1, 0x1C, 32)[18:22]) > after:
                break
        else:
            raise AssertionError("play did not resume after LP 02")
    finally:
        host.close()
