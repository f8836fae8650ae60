"""Issue 16: the openssl commands systemd/mosquitto/README.md gives a casino's IT person, run as written.

The block between ``<!-- pki:begin -->`` and ``<!-- pki:end -->`` makes HQ's CA and the broker's
certificate; only its ``SAN=`` line changes (to ``localhost``, the name this test connects to). The
shipped broker then serves that certificate, and a hall checks it against ``hq-ca.pem`` exactly as
the agent does (``mqtts://…?ca=``), with a password set by hand as the README says
(``mosquitto_passwd -b``, then a reload).
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
import urllib.parse
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from mqttlink import MqttLink, parse_broker_url
from protocols.sync import topic

from .conftest import SHIPPED, start_hq
from .pki import Pki, make_pki
from .test_mqtts import Inbox

README = SHIPPED / "README.md"


def documented_commands() -> str:
    text = README.read_text()
    block = text.split("<!-- pki:begin -->", 1)[1].split("<!-- pki:end -->", 1)[0]
    script = block.split("```sh\n", 1)[1].rsplit("```", 1)[0]
    assert "SAN=DNS:hq.example.com\n" in script, "the README's SAN line changed: update this test"
    return script.replace("SAN=DNS:hq.example.com\n", "SAN=DNS:localhost\n")


def readme_pki(directory: Path) -> Pki:
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", documented_commands()], cwd=directory,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "server.pem: OK" in done.stdout
    return Pki(directory / "hq-ca.pem", directory / "server.pem", directory / "server.key")


async def connect(url: str, timeout: float) -> bool:
    """Whether a hall's link with this URL gets connected within ``timeout`` (it retries every 0.2 s)."""
    link = MqttLink(parse_broker_url(url), client_id="x", handler=Inbox(), backoff_max=0.2)
    task = asyncio.create_task(link.run())
    try:
        if not await link.wait_connected(timeout):
            return False
        await link.publish(topic(parse_broker_url(url).username or "", "status"), b"{}")
        return True
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_the_readmes_openssl_commands_give_a_broker_halls_can_verify(tmp_path: Path) -> None:
    with start_hq(tmp_path, readme_pki) as hq:
        ca = hq.pki.ca_cert
        assert ca.name == "hq-ca.pem" and (ca.parent / "hq-ca.key").stat().st_mode & 0o077 == 0
        # The name is in the SAN (clients that ignore the CN need it), the certificate is for a server
        # only, and the CA can sign nothing but end certificates.
        server = x509.load_pem_x509_certificate(hq.pki.server_cert.read_bytes())
        assert server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
            x509.DNSName) == ["localhost"]
        assert server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value == x509.ExtendedKeyUsage(
            [ExtendedKeyUsageOID.SERVER_AUTH])
        assert not server.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        authority = x509.load_pem_x509_certificate(ca.read_bytes())
        constraints = authority.extensions.get_extension_for_class(x509.BasicConstraints).value
        assert constraints.ca and constraints.path_length == 0
        # A hall's password set by hand, as the README says: mosquitto_passwd -b (no -c), then reload.
        password = subprocess.run(["openssl", "rand", "-base64", "24"], capture_output=True, text=True,
                                  check=True, timeout=30).stdout.strip()
        subprocess.run([shutil.which("mosquitto_passwd") or "mosquitto_passwd", "-b",
                        str(hq.directory / "halls.passwd"), "hall-c", password],
                       check=True, capture_output=True, timeout=30)
        hq.broker.proc.send_signal(signal.SIGHUP)
        # base64 may hold "/" and "+": in a URL the password is percent-encoded (in the hall's
        # password file, where the README puts it, it stays as it is)
        url = f"mqtts://hall-c:{urllib.parse.quote(password, safe='')}@localhost:{hq.hall_port}?ca={ca}"
        # The reload is asynchronous: the link retries until the broker knows the new account.
        assert await connect(url, 10), f"hall-c could not connect over TLS; see {hq.broker.log_path}"
        assert await connect(f"mqtts://hall-a:{hq.passwords['hall-a']}@localhost:{hq.hall_port}?ca={ca}", 10)
        # The same broker is refused by a hall trusting another CA, and under a name not in the SAN.
        other = make_pki(tmp_path / "other")
        assert not await connect(f"mqtts://hall-a:{hq.passwords['hall-a']}@localhost:{hq.hall_port}"
                                 f"?ca={other.ca_cert}", 2)
        assert not await connect(f"mqtts://hall-a:{hq.passwords['hall-a']}@127.0.0.1:{hq.hall_port}?ca={ca}", 2)
