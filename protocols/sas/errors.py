"""The SAS codec's own errors.

Every malformed input raises a subclass of :class:`SASError` (itself a ``ValueError``) so a poller
can catch exactly the codec's complaints and never mistake a programming error for line noise.
"""


class SASError(ValueError):
    """Anything the SAS codec refuses: bad CRC, bad BCD, wrong length, unknown command."""


class CRCError(SASError):
    """The frame's CRC does not match its contents."""


class BCDError(SASError):
    """A packed-BCD field holds a nibble above 9, or a value does not fit its width."""


class FrameError(SASError):
    """A frame is too short, too long, addressed elsewhere, or otherwise not what was expected."""
