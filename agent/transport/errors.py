"""Transport errors a technician can act on: each message says what to check."""

from __future__ import annotations


class TransportError(OSError):
    """The serial line or pty cannot be used; ``str()`` is a one-line, actionable message."""


class PortNotFound(TransportError):
    """The configured path does not exist (cable, adapter, wrong name, simulator not running)."""


class PortPermission(TransportError):
    """The path exists but this user may not open it (dialout group, udev rule)."""


class PortClosed(TransportError):
    """The peer went away (pty master closed) or the port was closed under us."""


def describe_open_error(path: str, exc: OSError) -> TransportError:
    """Turn an ``open()`` failure into the error class and wording a technician needs."""
    import errno

    if exc.errno in (errno.ENOENT, errno.ENODEV, errno.ENXIO):
        return PortNotFound(f"port {path} not found: check the cable/USB adapter and the path "
                            f"(ls -l /dev/serial/by-id/), or that the simulator is running")
    if exc.errno in (errno.EACCES, errno.EPERM):
        return PortPermission(f"permission denied on {path}: add this user to the 'dialout' group "
                              f"(sudo usermod -aG dialout $USER, then log in again) or fix the udev rule")
    if exc.errno == errno.EBUSY:
        return TransportError(f"port {path} is busy: another program (a running hall-agent?) holds it")
    return TransportError(f"cannot open {path}: {exc.strerror or exc}")
