#!/usr/bin/env bash
# hallsync's offline installer (install.sh at the top of the bundle scripts/bundle builds): installs
# from the bundle alone, with no network and no package index.
#
#   ./install.sh agent|central [--prefix DIR] [--python PY]
#
# agent:   the hall mini-PC: user hallsync (group dialout for the serial ports), /var/lib/hallsync
#          (0750 hallsync:hallsync), /etc/hallsync/agent.toml and mqtt-password (0640 root:hallsync),
#          devices.toml (0644), hall-agent.service.
# central: HQ: user hallsync-central, /var/lib/hallsync-central (0700), /etc/hallsync/central.toml and
#          central-mqtt-password (0640 root:hallsync-central), hall-central.service; the broker's config
#          is copied to /opt/hallsync/share/mosquitto (systemd/mosquitto/README.md says where it goes).
# Both:    the venv /opt/hallsync/venv (python3 -m venv, then pip --no-index from wheels/),
#          /usr/local/bin/hall-agent and hall-central, /opt/hallsync/README.md. An existing config or
#          password file is never overwritten (an upgrade is this same command with a newer bundle);
#          units are installed but neither enabled nor started: edit the configs first.
# --prefix DIR: install everything below DIR instead of / (a test, or to look at it): no users, no
#          chown, no systemctl, no root needed; modes as above. The units still name /opt/hallsync.
# --python PY: the interpreter for the venv (default python3); it must be the bundle's Python version.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
usage() { echo "usage: $0 agent|central [--prefix DIR] [--python PY]" >&2; exit 2; }
[ $# -ge 1 ] || usage
role=$1; shift
case $role in agent|central) ;; -h|--help) sed -n '2,22p' "$0"; exit 0 ;; *) usage ;; esac
root=""
PY=python3
while [ $# -gt 0 ]; do
    case $1 in
        --prefix) [ $# -ge 2 ] || usage; root=$(mkdir -p "$2" && cd "$2" && pwd); shift 2 ;;
        --python) [ $# -ge 2 ] || usage; PY=$2; shift 2 ;;
        *) usage ;;
    esac
done
say() { echo "install.sh: $*"; }
die() { echo "install.sh: error: $*" >&2; exit 1; }

if [ -z "$root" ] && [ "$(id -u)" -ne 0 ]; then
    die "run as root (sudo $0 $role), or with --prefix DIR to install below DIR"
fi
command -v "$PY" >/dev/null 2>&1 || die "$PY not found: install Debian's python3 (3.11 on Debian 12)"
want=$(sed -n 's/^python \(py[0-9]*\) .*/\1/p' "$here/BUNDLE")
have=$("$PY" -c 'import sys; print(f"py{sys.version_info[0]}{sys.version_info[1]}")')
[ "$want" = "$have" ] || die "this bundle holds wheels for $want but $PY is $have: build one for it (scripts/bundle --python)"
want_arch=$(sed -n 's/^machine //p' "$here/BUNDLE")
have_arch=$("$PY" -c 'import platform; print(platform.machine())')
[ "$want_arch" = "$have_arch" ] || die "this bundle is for $want_arch, this machine is $have_arch"
hallsync_wheel=$(sed -n 's/^wheel //p' "$here/BUNDLE")
pip_wheel=$(cd "$here/wheels" && ls pip-*.whl | head -n 1)

if [ "$role" = agent ]; then user=hallsync; home=/var/lib/hallsync; data_mode=0750
else user=hallsync-central; home=/var/lib/hallsync-central; data_mode=0700; fi

# -- the account the unit runs as (User=/Group=) -------------------------------------------------------
if [ -z "$root" ]; then
    if id -u "$user" >/dev/null 2>&1; then
        say "user $user exists"
    elif [ "$role" = agent ]; then
        useradd --system --user-group --home-dir "$home" --shell /usr/sbin/nologin --groups dialout "$user"
        say "created system user $user (groups $user, dialout)"
    else
        useradd --system --user-group --home-dir "$home" --shell /usr/sbin/nologin "$user"
        say "created system user $user"
    fi
fi

# mkdir_as MODE OWNER:GROUP DIR: with --prefix the owner is left alone (no such user there).
mkdir_as() {
    install -d -m "$1" "$root$3"
    if [ -z "$root" ]; then chown "$2" "$root$3"; fi
}
# file_as MODE OWNER:GROUP SRC DEST: installs DEST only if it does not exist yet (the operator's edits stay).
file_as() {
    if [ -e "$root$4" ]; then
        say "kept $4 (exists)"
        return
    fi
    install -m "$1" "$3" "$root$4"
    if [ -z "$root" ]; then chown "$2" "$root$4"; say "wrote $4 (mode $1 $2): edit it"
    else say "wrote $root$4 (mode $1)"; fi
}

# -- the code: a venv from the bundle's wheels, no index ------------------------------------------------
mkdir_as 0755 root:root /opt/hallsync
venv=$root/opt/hallsync/venv
if [ ! -x "$venv/bin/python" ]; then
    # --without-pip: Debian's python3 lacks ensurepip unless python3-venv is installed; pip comes from
    # the bundle instead (run straight from its wheel), so no Debian package beyond python3 is needed.
    "$PY" -m venv --without-pip "$venv"
    say "created venv /opt/hallsync/venv"
fi
export PIP_CONFIG_FILE=/dev/null PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
# --force-reinstall: the venv ends up with exactly the bundle's versions, also on a same-version rebuild.
"$venv/bin/python" "$here/wheels/$pip_wheel/pip" install --quiet --no-index --find-links "$here/wheels" \
    --force-reinstall "$here/wheels/$pip_wheel" "$here/wheels/$hallsync_wheel"
"$venv/bin/hall-agent" --help >/dev/null && "$venv/bin/hall-central" --help >/dev/null \
    || die "the installed hall-agent/hall-central do not start"
say "installed $hallsync_wheel and its dependencies from the bundle"
install -m 0644 "$here/README.md" "$root/opt/hallsync/README.md"   # the units' Documentation= link
install -d -m 0755 "$root/opt/hallsync/share/examples" "$root/opt/hallsync/share/mosquitto"
install -m 0644 "$here"/examples/*.toml "$root/opt/hallsync/share/examples/"
install -m 0644 "$here"/systemd/mosquitto/* "$root/opt/hallsync/share/mosquitto/"
install -d -m 0755 "$root/usr/local/bin"
for tool in hall-agent hall-central; do  # relative, so the links hold below --prefix too
    ln -sfn ../../../opt/hallsync/venv/bin/$tool "$root/usr/local/bin/$tool"
done

# -- data, configs, password file ----------------------------------------------------------------------
mkdir_as 0755 root:root /etc/hallsync
mkdir_as "$data_mode" "$user:$user" "$home"
if [ "$role" = agent ]; then
    file_as 0640 root:hallsync "$here/examples/agent.toml" /etc/hallsync/agent.toml
    file_as 0644 root:root "$here/examples/devices.toml" /etc/hallsync/devices.toml
    file_as 0640 root:hallsync /dev/null /etc/hallsync/mqtt-password
else
    file_as 0640 root:hallsync-central "$here/examples/central.toml" /etc/hallsync/central.toml
    file_as 0640 root:hallsync-central /dev/null /etc/hallsync/central-mqtt-password
fi

# -- the unit ------------------------------------------------------------------------------------------
unit=hall-$role.service
install -d -m 0755 "$root/etc/systemd/system"
install -m 0644 "$here/systemd/$unit" "$root/etc/systemd/system/$unit"
say "installed /etc/systemd/system/$unit"
if [ -z "$root" ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    systemctl daemon-reload
fi

if [ "$role" = agent ]; then
    cat <<EOF
install.sh: next (README.md, "On the hall mini-PC"):
  sudo -u hallsync hall-agent keys init --data-dir /var/lib/hallsync   # send hall.pub to HQ
  copy HQ's hq-ca.pem and central.pub to /etc/hallsync/ (mode 0644)
  edit /etc/hallsync/agent.toml, devices.toml, and mqtt-password (the password halls add printed)
  systemctl enable --now hall-agent && hall-agent status --data-dir /var/lib/hallsync
EOF
else
    cat <<EOF
install.sh: next (README.md, "At HQ"):
  the broker: apt-get install mosquitto, then /opt/hallsync/share/mosquitto/README.md (TLS, accounts)
  sudo -u hallsync-central hall-central keys init --data-dir /var/lib/hallsync-central
  edit /etc/hallsync/central.toml and central-mqtt-password (central's broker password)
  systemctl enable --now hall-central
EOF
fi
