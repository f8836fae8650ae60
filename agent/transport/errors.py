"""Transport errors a technician can act on: each message says what to check."""

from __future__ import annotations


class TransportError(OSError):
    """The serial line or pty cannot be used; ``str()`` is a one-line, actionable message."""


class PortNotFound(TransportError):
    """The configured path does not exist (cable, adapter, wrong name, simulator not running)."""


class PortPermission(TransportError):
    """The path exists but this user may not open it (dialout group, udev rule)."""


class NotASerialPort(TransportError):
    """The path exists but is a file, a directory or another non-tty device: a wrong --port / port =."""


PORT_SETTING = "--port / devices.toml"
"""Where a SAS port path comes from, named in the messages: the diag flag or the agent's devices file."""


def not_a_serial_port(path: str, what: str, where: str = PORT_SETTING) -> NotASerialPort:
    return NotASerialPort(f"{path} is not a serial port (it is {what}; a serial port is a tty device such as "
                          f"/dev/ttyUSB0 or /dev/ttyS0): check {where}")


def check_serial_path(path: str, where: str = PORT_SETTING) -> None:
    """Refuse, before any open, a path that cannot be a serial port: missing, a regular file or a
    directory. pyserial and termios would otherwise answer with an ioctl error nobody can act on."""
    import os
    import stat

    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise describe_open_error(path, exc, where) from exc
    if stat.S_ISDIR(mode):
        raise not_a_serial_port(path, "a directory", where)
    if not stat.S_ISCHR(mode):
        raise not_a_serial_port(path, "a regular file" if stat.S_ISREG(mode) else "not a character device", where)


class PortClosed(TransportError):
    """The peer went away (pty master closed) or the port was closed under us."""


def describe_open_error(path: str, exc: OSError, where: str = PORT_SETTING) -> TransportError:
    """Turn an ``open()`` failure into the error class and wording a technician needs."""
    import errno

    if exc.errno in (errno.ENOENT, errno.ENODEV, errno.ENXIO):
        return PortNotFound(f"port {path} not found: check the cable/USB adapter and the serial port path in "
                            f"{where} (ls -l /dev/serial/by-id/), or that the simulator is running")
    if exc.errno in (errno.EACCES, errno.EPERM):
        return PortPermission(f"permission denied on {path}: add this user to the 'dialout' group "
                              f"(sudo usermod -aG dialout $USER, then log in again) or fix the udev rule")
    if exc.errno == errno.ENOTTY:
        return not_a_serial_port(path, "a device that is not a tty", where)
    if exc.errno == errno.EISDIR:
        return not_a_serial_port(path, "a directory", where)
    if exc.errno == errno.EBUSY:
        return TransportError(f"port {path} is busy: another program (a running hall-agent?) holds it")
    return TransportError(f"cannot open {path}: {exc.strerror or exc}")
