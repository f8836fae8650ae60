"""Issue 16: the offline installer (scripts/bundle, install.sh) as a casino's IT person would use it.

The bundle is built once for this module (with the package index: about 25 s here) and installed
into a temporary root with ``install.sh ... --prefix`` inside a network namespace with no network
(``unshare -n``) when this machine allows one, so any attempt to download fails the install; pip
runs with ``--no-index`` either way. The installed tools run from the installed venv, with no
PYTHONPATH and away from this checkout, so they prove the wheels hold everything.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tarfile
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent.cli import build_parser as agent_parser
from agent.cli_ops import _options as agent_options
from agent.modbus.poller import load_modbus_devices
from agent.sas.poller import load_devices
from central.cli import DEFAULTS as CENTRAL_DEFAULTS
from central.cli import build_parser as central_parser
from central.cli import resolve as central_resolve

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
pytestmark = pytest.mark.timeout(900)  # the module's fixture builds and installs the bundle (about a minute)


def clean_env() -> dict[str, str]:
    """The environment of an operator's shell: no PYTHONPATH pointing into this checkout, no venv."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep)
                                  if not p.startswith(str(Path(sys.executable).parent)))
    return env


def offline() -> list[str]:
    """``unshare -n`` (a namespace with only a down loopback) when this machine lets us make one."""
    tool = shutil.which("unshare")
    if tool and subprocess.run([tool, "-n", "true"], capture_output=True).returncode == 0:
        return [tool, "-n"]
    return []


@dataclass
class Installed:
    tarball: Path
    bundle: Path
    root: Path
    logs: dict[str, str]

    @property
    def bin(self) -> Path:
        return self.root / "opt/hallsync/venv/bin"


def install(bundle: Path, role: str, root: Path) -> str:
    done = subprocess.run([*offline(), str(bundle / "install.sh"), role, "--prefix", str(root),
                           "--python", shutil.which("python3") or "python3"],
                          capture_output=True, text=True, timeout=600, env=clean_env(), cwd=root.parent)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    base = tmp_path_factory.mktemp("bundle")
    built = subprocess.run([str(REPO / "scripts/bundle"), "--python", sys.executable, "--out", str(base / "dist")],
                           capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stdout + built.stderr
    tarball = Path(built.stdout.strip().splitlines()[-1])
    with tarfile.open(tarball) as tar:
        tar.extractall(base / "unpacked", filter="data")
    bundle = base / "unpacked" / tarball.name.removesuffix(".tar.gz")
    root = base / "root"
    logs = {"agent": install(bundle, "agent", root)}
    # An operator edits the agent's config, then installs central on the same machine and re-runs the
    # agent's install (an upgrade): neither may overwrite the edit.
    (root / "etc/hallsync/agent.toml").write_text('hall = "hall-edited"\n')
    (root / "etc/hallsync/mqtt-password").write_text("s3cret\n")
    logs["central"] = install(bundle, "central", root)
    logs["agent-again"] = install(bundle, "agent", root)
    return Installed(tarball, bundle, root, logs)


def test_the_bundle_is_one_tarball_with_wheels_for_every_dependency(installed: Installed) -> None:
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    tag = f"py{sys.version_info[0]}{sys.version_info[1]}"
    assert installed.tarball.name.startswith(f"hallsync-bundle-{version}-{tag}-")
    wheels = {w.name.split("-")[0].lower().replace("_", "-") for w in (installed.bundle / "wheels").glob("*.whl")}
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    for requirement in ["hallsync", "pip", *project["dependencies"]]:
        name = requirement.split("=")[0].split(">")[0].split("<")[0].split("[")[0].strip().lower()
        assert name.replace("_", "-") in wheels, f"no wheel for {name} in the bundle"
    for path in ("install.sh", "README.md", "LICENSE", "systemd/hall-agent.service", "systemd/hall-central.service",
                 "systemd/mosquitto/hallsync.conf", "systemd/mosquitto/hallsync.acl", "systemd/mosquitto/README.md",
                 "examples/agent.toml", "examples/central.toml", "examples/devices.toml"):
        assert (installed.bundle / path).is_file(), path
    assert "pytest" not in wheels and "playwright" not in wheels  # no test extras on a hall


def test_offline_install_runs_the_installed_tools_from_the_venv(installed: Installed, tmp_path: Path) -> None:
    for tool in ("hall-agent", "hall-central"):
        for where in (installed.bin / tool, installed.root / "usr/local/bin" / tool):
            done = subprocess.run([str(where), "--help"], capture_output=True, text=True, timeout=60,
                                  env=clean_env(), cwd=tmp_path)
            assert done.returncode == 0 and done.stdout.startswith(f"usage: {tool}"), done.stdout + done.stderr
    where = subprocess.run([str(installed.bin / "python"), "-c",
                            "import agent, central.dashboard, importlib.metadata as m; print(agent.__file__); "
                            "print(central.dashboard.__file__); print(m.metadata('hallsync')['License-Expression'])"],
                           capture_output=True, text=True, timeout=60, env=clean_env(), cwd=tmp_path)
    agent_file, dashboard_file, license_expression = where.stdout.split()
    assert Path(agent_file).is_relative_to(installed.root / "opt/hallsync/venv"), agent_file
    assert list(Path(dashboard_file).parent.glob("*.html")), "the dashboard's static files are not in the wheel"
    assert license_expression == "Apache-2.0"  # the SPDX string, not setuptools' deprecated table
    assert (installed.bin / "pip").exists()  # pip came from the bundle: later upgrades work offline too


def test_install_lays_out_the_modes_the_readme_states(installed: Installed) -> None:
    def mode(path: str) -> int:
        return stat.S_IMODE((installed.root / path).stat().st_mode)

    assert mode("var/lib/hallsync") == 0o750
    assert mode("var/lib/hallsync-central") == 0o700
    assert mode("etc/hallsync") == 0o755
    assert mode("etc/hallsync/agent.toml") == 0o640 and mode("etc/hallsync/mqtt-password") == 0o640
    assert mode("etc/hallsync/devices.toml") == 0o644
    assert mode("etc/hallsync/central.toml") == 0o640 and mode("etc/hallsync/central-mqtt-password") == 0o640
    for unit in ("hall-agent.service", "hall-central.service"):
        assert (installed.root / "etc/systemd/system" / unit).read_text() == (REPO / "systemd" / unit).read_text()
    assert (installed.root / "opt/hallsync/share/mosquitto/hallsync.conf").is_file()


def test_reinstalling_keeps_the_operators_config(installed: Installed) -> None:
    assert (installed.root / "etc/hallsync/agent.toml").read_text() == 'hall = "hall-edited"\n'
    assert (installed.root / "etc/hallsync/mqtt-password").read_text() == "s3cret\n"
    assert "kept /etc/hallsync/agent.toml (exists)" in installed.logs["agent-again"]


def test_installed_units_pass_systemd_analyze_verify(installed: Installed, tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (Debian package systemd)")
    for name in ("hall-agent.service", "hall-central.service"):
        # The unit as installed, pointed at the venv below the prefix (where the binaries really are).
        text = (installed.root / "etc/systemd/system" / name).read_text()
        assert "/opt/hallsync/venv/bin/" in text
        unit = tmp_path / name
        unit.write_text(text.replace("/opt/hallsync/venv/bin/", f"{installed.bin}/"))
        done = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60,
                              cwd=tmp_path)
        about_unit = [line for line in (done.stdout + done.stderr).splitlines() if name in line]
        assert done.returncode == 0 and not about_unit, done.stdout + done.stderr


# -- the example configs, read by the real loaders (no bundle needed) ---------------------------------------

def option_dests(parser: object, *path: str) -> set[str]:
    """The argparse dests of one (sub)command: the keys a --config file may hold for it."""
    import argparse

    current = parser
    for name in path:
        sub = next(a for a in current._actions if isinstance(a, argparse._SubParsersAction))  # type: ignore[attr-defined]
        current = sub.choices[name]
    return {a.dest for a in current._actions if a.dest not in ("help", "config")}  # type: ignore[attr-defined]


def test_example_agent_config_and_devices_parse_with_the_agents_loaders() -> None:
    config = EXAMPLES / "agent.toml"
    keys = set(tomllib.loads(config.read_text()))
    assert keys <= option_dests(agent_parser(), "run"), "agent.toml holds keys hall-agent run does not read"
    opts = agent_options(agent_parser().parse_args(["run", "--config", str(config)]), "run")
    assert opts["hall"] == "hall-01" and opts["devices"] == "/etc/hallsync/devices.toml"
    assert opts["mqtt"].startswith("mqtts://hall-01@") and "?ca=/etc/hallsync/hq-ca.pem" in opts["mqtt"]
    assert opts["central_key"] == "/etc/hallsync/central.pub"
    assert [(d.id, d.port, d.address) for d in load_devices(EXAMPLES / "devices.toml")] == [
        ("egm-001", "/dev/ttyS0", 1), ("egm-002", "/dev/ttyS0", 2)]
    [terminal] = load_modbus_devices(EXAMPLES / "devices.toml")
    assert (terminal.id, terminal.endpoint.host, terminal.endpoint.port) == ("term-01", "10.0.0.21", 502)


def test_example_central_config_parses_with_centrals_loader() -> None:
    config = EXAMPLES / "central.toml"
    data = tomllib.loads(config.read_text())
    known = set().union(*CENTRAL_DEFAULTS.values())
    top = {k for k, v in data.items() if not isinstance(v, dict)}
    assert top <= known and set(data["serve"]) <= set(CENTRAL_DEFAULTS["serve"])
    assert set(data["halls"]["add"]) <= set(CENTRAL_DEFAULTS["halls.add"])
    serve = central_resolve("serve", central_parser().parse_args(["serve", "--config", str(config),
                                                                  "--data-dir", "/var/lib/hallsync-central"]))
    assert serve["db"] == "/var/lib/hallsync-central/central.db"
    assert serve["mqtt"] == "mqtts://hq.central@127.0.0.1:8884?ca=/etc/hallsync/hq-ca.pem"
    assert serve["http"] == "0.0.0.0:8080"
    add = central_resolve("halls.add", central_parser().parse_args(["halls", "add", "hall-01", "--config", str(config),
                                                                    "--public-key", "hall-01.pub"]))
    assert add["broker"] == "hq.example.com:8883" and add["db"] == serve["db"]
