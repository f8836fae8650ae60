"""A hall's broker account: what ``hall-central halls add`` prints so the hall can reach HQ's Mosquitto.

The choice (systemd/mosquitto/README.md): one username/password per hall, username = hall ID, so the
one ``pattern`` block of ``hallsync.acl`` (``%u``) confines every hall to its own topics and no ACL
edit is needed per hall. Passwords rather than client certificates because adding or revoking a
hall is then one line in a file plus a reload, with no per-hall PKI to run; TLS still proves HQ's
identity to the hall (the broker's server certificate), and the password travels only inside TLS.

The password-file line is hashed here exactly as ``mosquitto_passwd`` (Mosquitto 2.0) hashes it:
``$7$`` = PBKDF2-HMAC-SHA512, 101 iterations, 12-byte salt, base64. So the operator copies a line
that contains no password to the broker host, and the password itself goes only to the hall.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass

from protocols.sync import check_hall_id

PASSWORD_FILE = "/etc/mosquitto/hallsync/halls.passwd"
HALL_CA_FILE = "/etc/hallsync/hq-ca.pem"
HALL_PASSWORD_FILE = "/etc/hallsync/mqtt-password"
"""Where the hall keeps its broker password; hall-agent.service passes it as ``--mqtt-password-file``."""
DEFAULT_BROKER = "<hq-broker-host>:8883"
_ITERATIONS = 101  # mosquitto_passwd's own default (PW_DEFAULT_ITERATIONS in Mosquitto 2.0)


@dataclass(frozen=True, slots=True)
class BrokerAccount:
    hall: str
    password: str
    password_line: str
    """``hall:$7$…``: append to the broker's password file (the hash, not the password)."""
    agent_url: str
    """The agent's ``mqtt`` setting: TLS, the hall's account (no password: that goes into
    :data:`HALL_PASSWORD_FILE`, so it never shows in ``ps``), HQ's CA."""


def mosquitto_hash(password: str, *, salt: bytes | None = None, iterations: int = _ITERATIONS) -> str:
    """The ``$7$`` hash Mosquitto 2.0's password file holds for ``password``."""
    salt = secrets.token_bytes(12) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def new_account(hall: str, broker: str | None = None) -> BrokerAccount:
    """A fresh random password for ``hall`` (URL- and shell-safe) with its file line and agent URL."""
    check_hall_id(hall)  # [A-Za-z0-9_-]: safe as a username, in a URL and in an ACL pattern
    password = secrets.token_urlsafe(24)
    where = broker or DEFAULT_BROKER
    return BrokerAccount(hall, password, f"{hall}:{mosquitto_hash(password)}",
                         f"mqtts://{hall}@{where}?ca={HALL_CA_FILE}")


def instructions(account: BrokerAccount) -> list[str]:
    """The lines ``halls add`` prints after its result line."""
    return [
        f"broker account: username {account.hall} (the hall ID), password {account.password}",
        f"on the broker host, append to {PASSWORD_FILE} and reload mosquitto (the ACL needs no change):",
        f"  {account.password_line}",
        f"  (or: mosquitto_passwd {PASSWORD_FILE} {account.hall}  and type the password; then "
        "systemctl reload mosquitto)",
        f"on the hall, copy HQ's CA certificate to {HALL_CA_FILE}, write the password alone on one line to "
        f"{HALL_PASSWORD_FILE} (mode 0640 root:hallsync) and set in /etc/hallsync/agent.toml:",
        f'  mqtt = "{account.agent_url}"',
        f"  (hall-agent.service passes --mqtt-password-file {HALL_PASSWORD_FILE})",
    ]
