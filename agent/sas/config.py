"""Per-machine polling configuration (every field can come from the TOML config)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields

from ..polling import PollOptions

DEFAULT_METER_CODES: tuple[int, ...] = (
    0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x0B, 0x0C, 0x0D, 0x0E, 0x15, 0x16, 0x1C, 0x24,
)
"""coin in/out, jackpot, hand-paid and cancelled credits, games played/won/lost, bills, current
credits, ticket in/out (cents and counts), machine-paid paytable win, total drop."""


@dataclass(frozen=True)
class PollConfig(PollOptions):
    """A SAS machine's polling; the link and back-off options (``poll_interval``, ``link_down_after``,
    ``probe_interval``, ``probe_max_interval``, ``command_timeout``) are :class:`agent.polling.PollOptions`'."""

    poll_interval: float = 0.2               # general-poll cadence ([S602] §2.3.3: ≥ 200 ms)
    fast_poll_interval: float | None = 0.04  # used when LP A0 allows 40 ms; None: never
    link_down_after: int = 5                 # consecutive unanswered polls → LinkDown
    retries: int = 2                         # immediate repeats of a garbled/unanswered poll
    rte: bool = True                         # enable real-time event reporting (LP 0E) if the EGM ACKs
    liveness_interval: float = 1.0           # RTE mode: a long poll when nothing answered for this long
    identity: bool = True                    # read 1F/54/51/56/53/A0 on every link-up
    meter_interval: float = 900.0            # scheduled meter snapshots (s)
    meter_codes: tuple[int, ...] = DEFAULT_METER_CODES
    meter_poll: str = "auto"                 # auto (6F, then 2F, then 1C) or one of 6F, 2F, 1C
    clock_interval: float = 86400.0          # LP 7E read + LP 7F set (s); 0 disables
    probe_interval: float = 0.5              # first wait between probes while the link is down
    probe_max_interval: float = 5.0          # back-off cap
    command_timeout: float = 5.0             # how long a command may wait for the line

    @classmethod
    def from_mapping(cls, data: Mapping[str, object]) -> PollConfig:
        """Build from a TOML table, ignoring keys that belong to other parts of the config."""
        names = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in names}
        if "meter_codes" in kwargs:
            kwargs["meter_codes"] = tuple(kwargs["meter_codes"])  # type: ignore[arg-type]
        return cls(**kwargs)  # type: ignore[arg-type]
