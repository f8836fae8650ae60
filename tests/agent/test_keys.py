"""``hall-agent keys init`` as an installer runs it: files, modes, PEM, refusal to overwrite."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from agent.keys import KeyFileError, init_keys, load_private_key
from protocols.sync import fingerprint, private_key_from_pem, public_key_from_pem

AGENT = str(Path(sys.executable).parent / "hall-agent")


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([AGENT, *args], capture_output=True, text=True, timeout=30)


def test_keys_init_writes_a_0600_key_pair_and_prints_the_fingerprint(tmp_path: Path) -> None:
    data = tmp_path / "data"
    res = run("keys", "init", "--data-dir", str(data))
    assert res.returncode == 0, res.stderr
    key, pub = data / "hall.key", data / "hall.pub"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    private = private_key_from_pem(key.read_bytes())
    public = public_key_from_pem(pub.read_bytes())
    assert public.public_bytes_raw() == private.public_key().public_bytes_raw()
    assert key.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS#8
    assert res.stdout.strip().splitlines()[-1] == fingerprint(public)
    assert sorted(p.name for p in data.iterdir()) == ["hall.key", "hall.pub"]  # no temp files left


def test_keys_init_refuses_to_overwrite_unless_forced(tmp_path: Path) -> None:
    assert run("keys", "init", "--data-dir", str(tmp_path)).returncode == 0
    first = (tmp_path / "hall.key").read_bytes()
    res = run("keys", "init", "--data-dir", str(tmp_path))
    assert res.returncode == 2
    assert res.stderr.startswith("hall-agent: error: ") and "already exists" in res.stderr and "--force" in res.stderr
    assert (tmp_path / "hall.key").read_bytes() == first
    res = run("keys", "init", "--data-dir", str(tmp_path), "--force")
    assert res.returncode == 0
    assert (tmp_path / "hall.key").read_bytes() != first
    assert stat.S_IMODE((tmp_path / "hall.key").stat().st_mode) == 0o600


def test_keys_init_refuses_when_only_the_public_key_exists(tmp_path: Path) -> None:
    (tmp_path / "hall.pub").write_text("registered elsewhere")
    with pytest.raises(KeyFileError):
        init_keys(tmp_path)


def test_key_mode_is_0600_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        files = init_keys(tmp_path)
    finally:
        os.umask(old)
    assert stat.S_IMODE(files.private.stat().st_mode) == 0o600


def test_load_private_key_refuses_a_readable_key(tmp_path: Path) -> None:
    files = init_keys(tmp_path)
    assert fingerprint(load_private_key(files.private)) == files.fingerprint
    files.private.chmod(0o644)
    with pytest.raises(KeyFileError, match="0644"):
        load_private_key(files.private)
    with pytest.raises(KeyFileError, match="not found"):
        load_private_key(tmp_path / "missing.key")


def test_keys_help_and_missing_action() -> None:
    assert run("keys", "init", "--help").returncode == 0
    res = run("keys")
    assert res.returncode == 2 and "init" in res.stderr
