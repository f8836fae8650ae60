"""Central's signing key pair on disk: ``central.key`` (PKCS#8 PEM, mode 0600) and ``central.pub``.

Central signs acks, resend requests and commands; an ack lets an agent prune its outbox, so this
private key is as sensitive as the money it protects: created with 0600 from the first byte (no
window where it is world-readable) and never overwritten by accident.
"""

from __future__ import annotations

import os
from pathlib import Path

from protocols.sync import generate_private_key, private_key_from_pem, private_key_to_pem, public_key_to_pem
from protocols.sync.keys import Ed25519PrivateKey

PRIVATE_NAME = "central.key"
PUBLIC_NAME = "central.pub"


class KeyFileError(Exception):
    """A key file that exists when it should not, or is missing or unreadable."""


def init_keys(data_dir: Path, *, force: bool = False) -> tuple[Path, Path]:
    """Create the key pair in ``data_dir``; refuse to replace existing files unless ``force``."""
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    data_dir.chmod(0o700)   # central's own directory: its private key and, usually, every hall's money
    private_path, public_path = data_dir / PRIVATE_NAME, data_dir / PUBLIC_NAME
    if not force:
        for path in (private_path, public_path):
            if path.exists():
                raise KeyFileError(f"{path} exists; use --force to replace it (agents trusting the old key "
                                   "will then refuse central's acks)")
    key = generate_private_key()
    _write(private_path, private_key_to_pem(key), 0o600)
    _write(public_path, public_key_to_pem(key.public_key()), 0o644)
    return private_path, public_path


def _write(path: Path, data: bytes, mode: int) -> None:
    """Write atomically with ``mode`` set at creation (temp file + fsync + rename)."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def load_private_key(data_dir: Path) -> Ed25519PrivateKey:
    """Read ``central.key`` from ``data_dir``."""
    path = data_dir / PRIVATE_NAME
    try:
        pem = path.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"cannot read {path}: {exc.strerror}; run `hall-central keys init`") from None
    return private_key_from_pem(pem)
