"""The hall's Ed25519 signing key on disk: ``DIR/hall.key`` (PKCS#8 PEM, mode 0600) and ``DIR/hall.pub``.

The private key signs every batch the hall sends, so it is created with mode 0600 from the first
byte (never chmod-ed after being written world-readable), written to a temporary file, fsynced and
renamed into place, so a crash leaves either no key or a whole one. An existing key is never
replaced unless asked (``force``): replacing it would orphan the registration at HQ, which would
then reject every batch. PEM encoding and fingerprints come from ``protocols.sync``.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from protocols.sync import (
    fingerprint,
    generate_private_key,
    private_key_from_pem,
    private_key_to_pem,
    public_key_to_pem,
)
from protocols.sync.keys import Ed25519PrivateKey

KEY_FILE = "hall.key"
PUB_FILE = "hall.pub"


class KeyFileError(Exception):
    """A key file exists when it should not, is missing, or is readable by others."""


@dataclass(frozen=True)
class KeyFiles:
    """Where ``keys init`` wrote the pair, and the public key's fingerprint."""

    private: Path
    public: Path
    fingerprint: str


def write_atomically(path: Path, data: bytes, mode: int) -> None:
    """Replace ``path`` with ``data`` so a crash leaves the old file or the new one, never half of one."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.fchmod(fd, mode)  # the umask may have narrowed it; never widened, but be exact
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make the rename itself durable
    finally:
        os.close(dir_fd)


def init_keys(data_dir: str | os.PathLike[str], *, force: bool = False) -> KeyFiles:
    """Create a new key pair in ``data_dir`` (created 0700 if missing); refuse to overwrite."""
    directory = Path(data_dir)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    private, public = directory / KEY_FILE, directory / PUB_FILE
    existing = [p for p in (private, public) if p.exists()]
    if existing and not force:
        raise KeyFileError(f"{existing[0]} already exists; keep it, or pass --force to replace it "
                           f"(HQ must then register the new public key)")
    key = generate_private_key()
    write_atomically(private, private_key_to_pem(key), 0o600)
    write_atomically(public, public_key_to_pem(key.public_key()), 0o644)
    return KeyFiles(private, public, fingerprint(key))


def load_private_key(path: str | os.PathLike[str]) -> Ed25519PrivateKey:
    """Load the hall key, refusing a file that group or others may read (as ssh does)."""
    path = Path(path)
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        pem = path.read_bytes()
    except FileNotFoundError:
        raise KeyFileError(f"{path} not found; create it with 'hall-agent keys init --data-dir DIR'") from None
    if mode & 0o077:
        raise KeyFileError(f"{path} has mode {mode:04o}; a signing key must be 0600 (chmod 600 {path})")
    return private_key_from_pem(pem)
