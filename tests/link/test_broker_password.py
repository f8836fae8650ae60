"""The broker password from a file or the environment (issue 16): which source wins, and what is refused.

``mqttlink.broker_url`` is what ``hall-agent run`` and ``hall-central serve`` both call; the last tests
run both commands to see the refusals reach the operator (exit 2) without the password in them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mqttlink import PASSWORD_ENV, broker_url

BIN = Path(sys.executable).parent
SECRET = "s3cret-Pw"


def password_file(tmp_path: Path, content: str | bytes, mode: int = 0o640, name: str = "mqtt-password") -> Path:
    path = tmp_path / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    path.chmod(mode)
    return path


def test_the_file_wins_over_the_variable_and_the_url_keeps_its_own_alone(tmp_path: Path) -> None:
    pw = password_file(tmp_path, SECRET + "\n")
    assert broker_url("mqtt://hall-01@hq:1883", password_file=pw, env_password="from-env").password == SECRET
    url = broker_url("mqtts://hall-01@hq", env_password="from-env")
    assert (url.username, url.password, url.tls, url.port) == ("hall-01", "from-env", True, 8883)
    assert broker_url("mqtt://hall-01:in-url@hq").password == "in-url"
    assert broker_url("mqtt://hq").password is None
    assert SECRET not in str(broker_url("mqtt://hall-01@hq", password_file=pw))  # the log form


@pytest.mark.parametrize(("content", "expected"), [(SECRET, SECRET), (SECRET + "\n", SECRET),
                                                   (SECRET + "\r\n", SECRET), (" spaced pw ", " spaced pw ")])
def test_the_file_holds_the_password_with_one_trailing_newline_stripped(tmp_path: Path, content: str,
                                                                         expected: str) -> None:
    assert broker_url("mqtt://u@hq", password_file=password_file(tmp_path, content)).password == expected


@pytest.mark.parametrize(("content", "mode", "message"), [
    ("", 0o640, "is empty"),
    ("\n", 0o600, "is empty"),
    (SECRET + "\nsecond line\n", 0o640, "more than one line"),
    (SECRET + "\n\n", 0o640, "more than one line"),
    (SECRET, 0o644, "open to other users"),
    (SECRET, 0o642, "open to other users"),
    (b"\xff" + SECRET.encode(), 0o640, "not UTF-8"),
])
def test_a_bad_password_file_is_refused_without_showing_the_password(tmp_path: Path, content: str | bytes,
                                                                     mode: int, message: str) -> None:
    pw = password_file(tmp_path, content, mode)
    with pytest.raises(ValueError, match=message) as err:
        broker_url("mqtt://u@hq", password_file=pw)
    assert str(pw) in str(err.value) and SECRET not in str(err.value)


def test_a_missing_file_a_url_password_too_and_no_user_are_refused(tmp_path: Path) -> None:
    pw = password_file(tmp_path, SECRET)
    cases = [({"password_file": tmp_path / "nope"}, "mqtt://u@hq", "cannot read password file .*nope"),
             ({"password_file": tmp_path}, "mqtt://u@hq", "cannot read password file .*: Is a directory"),
             ({"password_file": os.devnull}, "mqtt://u@hq", "not a regular file"),
             ({"password_file": pw}, "mqtt://u:old-url-pw@hq", "holds a password and the password file"),
             ({"env_password": SECRET}, "mqtt://u:old-url-pw@hq", f"holds a password and the {PASSWORD_ENV}"),
             ({"password_file": pw}, "mqtt://hq", "needs a username"),
             ({"env_password": ""}, "mqtt://u@hq", f"{PASSWORD_ENV} is set but empty"),
             ({"password_file": 3}, "mqtt://u@hq", "must be a file name")]
    for kwargs, text, message in cases:
        with pytest.raises(ValueError, match=message) as err:
            broker_url(text, **kwargs)  # type: ignore[arg-type]
        assert SECRET not in str(err.value) and "old-url-pw" not in str(err.value), err.value


def run(program: str, *args: str, cwd: Path, env_password: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != PASSWORD_ENV}
    if env_password is not None:
        env[PASSWORD_ENV] = env_password
    return subprocess.run([str(BIN / program), *args], cwd=cwd, capture_output=True, text=True, timeout=30, env=env)


def test_both_commands_refuse_a_bad_password_source_as_a_usage_error(tmp_path: Path) -> None:
    password_file(tmp_path, SECRET, 0o644, "open.pw")
    agent = ["run", "--hall", "h1", "--devices", "d.toml", "--central-key", "c.pub", "--data-dir", "a"]
    central = ["serve", "--data-dir", "d", "--db", "c.db", "--http", "127.0.0.1:0"]
    for program, args in (("hall-agent", agent), ("hall-central", central)):
        missing = run(program, *args, "--mqtt", "mqtt://u@127.0.0.1:1", "--mqtt-password-file", "no.pw", cwd=tmp_path)
        assert missing.returncode == 2 and "cannot read password file no.pw" in missing.stderr, missing.stderr
        open_file = run(program, *args, "--mqtt", "mqtt://u@127.0.0.1:1", "--mqtt-password-file", "open.pw",
                        cwd=tmp_path)
        assert open_file.returncode == 2 and "open.pw is open to other users" in open_file.stderr, open_file.stderr
        both = run(program, *args, "--mqtt", "mqtt://u:old-url-pw@127.0.0.1:1", cwd=tmp_path, env_password=SECRET)
        assert both.returncode == 2 and "remove the password from the URL" in both.stderr, both.stderr
        for done in (missing, open_file, both):
            assert SECRET not in done.stderr + done.stdout and "old-url-pw" not in done.stderr
            assert "Traceback" not in done.stderr


def test_the_config_key_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "agent.toml").write_text('mqtt = "mqtt://u@127.0.0.1:1"\nmqtt_password_file = "cfg.pw"\n')
    (tmp_path / "central.toml").write_text('[serve]\nmqtt = "mqtt://u@127.0.0.1:1"\nmqtt_password_file = "cfg.pw"\n')
    for program, args in (("hall-agent", ["run", "--config", "agent.toml", "--hall", "h1", "--devices", "d.toml",
                                          "--central-key", "c.pub"]),
                          ("hall-central", ["serve", "--config", "central.toml", "--data-dir", "d", "--db", "c.db"])):
        done = run(program, *args, cwd=tmp_path)
        assert done.returncode == 2 and "cannot read password file cfg.pw" in done.stderr, done.stderr
