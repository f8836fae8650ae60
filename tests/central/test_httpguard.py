"""Issue 16 against a real ``hall-central serve`` over real sockets: slow clients are cut off at the
deadlines, one address cannot hold more than its cap, bad API keys are rate-limited per address.

Other client addresses are real too: Linux routes all of 127.0.0.0/8 to loopback, so a client bound
to 127.0.0.2 reaches central on 127.0.0.1 from a different address.
"""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mqttlink.broker import free_port
from protocols.httpguard import FailureWindow
from tests import promtext

BIN = Path(sys.executable).with_name("hall-central")
OTHER = "127.0.0.2"


def cli(*args: str) -> str:
    done = subprocess.run([str(BIN), *args], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def request(port: int, path: str, key: str | None = None, source: str = "127.0.0.1",
            method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=(source, 0))
    try:
        conn.request(method, path, headers={"Authorization": f"Bearer {key}"} if key else {})
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


@contextmanager
def central(tmp_path: Path, mqtt: str, *flags: str) -> Iterator[tuple[int, str, Path]]:
    """A serving central (port, admin key, its stderr log); stopped with SIGTERM, must exit 0."""
    data, db = tmp_path / "central", str(tmp_path / "central.db")
    cli("keys", "init", "--data-dir", str(data))
    key = cli("apikeys", "create", "--role", "admin", "--db", db)
    port, log = free_port(), tmp_path / "central.log"
    with open(log, "wb") as err:
        proc = subprocess.Popen([str(BIN), "serve", "--data-dir", str(data), "--db", db, "--mqtt", mqtt,
                                 "--http", f"127.0.0.1:{port}", *flags], stderr=err)
    try:
        deadline = time.monotonic() + 20
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                if request(port, "/api/v1/health")[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "central did not answer"
            time.sleep(0.1)
        yield port, key, log
    finally:
        proc.terminate()
        assert proc.wait(20) == 0, log.read_text()
    assert "Traceback" not in log.read_text()


def closed_within(sock: socket.socket, seconds: float) -> tuple[bytes, float]:
    """Read until central closes ``sock`` (bounded by ``seconds``); returns what it sent and how long it took."""
    start = time.monotonic()
    sock.settimeout(seconds)
    got = b""
    try:
        while chunk := sock.recv(4096):
            got += chunk
    except ConnectionResetError:
        pass
    except TimeoutError:
        raise AssertionError(f"still open after {seconds} s; got {got!r}") from None
    return got, time.monotonic() - start


def metrics(port: int) -> dict[str, promtext.ParsedFamily]:
    status, _, body = request(port, "/metrics")
    assert status == 200
    return promtext.parse(body.decode())


def test_slow_clients_are_disconnected_at_the_deadlines(tmp_path: Path, mosquitto) -> None:
    with central(tmp_path, mosquitto.url_text, "--http-header-timeout", "1", "--http-body-timeout", "1") as (
            port, key, _):
        silent = socket.create_connection(("127.0.0.1", port))
        half_headers = socket.create_connection(("127.0.0.1", port))
        half_headers.sendall(b"GET /api/v1/halls HTTP/1.1\r\nHost: central\r\n")  # no blank line: stalls
        half_body = socket.create_connection(("127.0.0.1", port))
        half_body.sendall(b"POST /api/v1/commands HTTP/1.1\r\nHost: central\r\nAuthorization: Bearer " + key.encode()
                          + b"\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n{\"hall\":")
        for sock in (silent, half_headers):
            got, took = closed_within(sock, 8)
            assert got.startswith(b"HTTP/1.1 408 ") and took < 8
        got, _ = closed_within(half_body, 8)
        assert got == b""  # aborted mid-request: no answer, no command
        for sock in (silent, half_headers, half_body):
            sock.close()
        # a client that sends its request at once is not affected, also over a kept-alive connection
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        for _ in range(2):
            conn.request("GET", "/api/v1/halls", headers={"Authorization": f"Bearer {key}"})
            resp = conn.getresponse()
            assert resp.status == 200 and json.loads(resp.read()) == {"rows": []}
        conn.close()
        families, slow = metrics(port), "hallsync_central_http_slow_connections_closed_total"
        assert promtext.value(families, slow, phase="headers") == 2
        assert promtext.value(families, slow, phase="body") == 1
        status, _, body = request(port, "/api/v1/integration-log?kind=command", key)
        assert status == 200 and json.loads(body)["rows"] == []


def test_connection_cap_and_login_rate_limit_per_address(tmp_path: Path, mosquitto) -> None:
    with central(tmp_path, mosquitto.url_text, "--http-max-connections-per-ip", "4") as (port, key, log):
        held = [socket.create_connection(("127.0.0.1", port)) for _ in range(4)]
        extra = socket.create_connection(("127.0.0.1", port))
        got, _ = closed_within(extra, 8)
        assert got.startswith(b"HTTP/1.1 503 ")
        assert request(port, "/api/v1/whoami", key, source=OTHER)[0] == 200  # another address: its own cap
        for sock in held:
            sock.close()
        deadline = time.monotonic() + 10  # central sees the closes asynchronously
        while True:
            try:
                if request(port, "/api/v1/whoami", key)[0] == 200:
                    break
            except (ConnectionResetError, http.client.RemoteDisconnected):
                pass
            assert time.monotonic() < deadline, "the address stayed at its cap after its connections closed"
            time.sleep(0.05)

        bad = "hsk_nope_" + "x" * 40
        statuses = [request(port, "/api/v1/whoami", bad)[0] for _ in range(20)]
        assert statuses == [401] * 20
        status, headers, body = request(port, "/api/v1/whoami", bad)
        assert status == 429 and json.loads(body)["error"]["code"] == "too_many_requests"
        assert 1 <= int(headers["Retry-After"]) <= 60
        # during the lockout even a good key from that address is refused unchecked (no oracle)...
        assert request(port, "/api/v1/whoami", key)[0] == 429
        # ...while other addresses are unaffected, good key or bad
        assert request(port, "/api/v1/whoami", key, source=OTHER)[0] == 200
        assert request(port, "/api/v1/whoami", bad, source=OTHER)[0] == 401
        assert request(port, "/api/v1/health")[0] == 200  # public routes need no key

        families = metrics(port)
        assert promtext.value(families, "hallsync_central_http_connections_refused_total") == 1
        assert promtext.value(families, "hallsync_central_api_logins_failed_total") == 21
        assert promtext.value(families, "hallsync_central_api_logins_rate_limited_total") == 2
    text = log.read_text()
    assert bad not in text and key not in text
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    failed = [x["client"] for x in lines if x.get("event") == "api_login_failed"]
    limited = [x["client"] for x in lines if x.get("event") == "api_login_rate_limited"]
    assert failed == ["127.0.0.1", OTHER] and limited == ["127.0.0.1"]  # one line each, not 21


def test_failure_window_ends_and_is_per_key() -> None:
    window = FailureWindow(limit=3, window=60.0)
    assert [window.failure("a", 0.0) for _ in range(3)] == ["first", "counted", "locked"]
    assert window.retry_after("a", 0.5) == 60 and window.retry_after("b", 0.5) is None
    assert window.retry_after("a", 59.2) == 1 and window.refused("a") == 2
    assert window.retry_after("a", 60.0) is None  # the window ended: a fresh start
    assert window.failure("a", 60.0) == "first" and window.retry_after("a", 60.0) is None
