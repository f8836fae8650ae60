"""``hall-agent diag scan``: which SAS addresses answer on a port.

Each address gets one LP 54 (SAS version and serial), which every EGM answers whatever its RTE
state, with a short timeout and no repeats; a sync poll first satisfies the EGMs' sync rule.
"""

from __future__ import annotations

import json
import sys
import time
from typing import TextIO

from protocols.sas import framing
from protocols.sas import longpolls as lp

from ..diag.errors import EXIT_NO_ANSWER, EXIT_PORT, DiagError
from ..diag.render import table
from ..transport import default_kind, make_transport
from ..transport.errors import TransportError
from .line import SasLine
from .transaction import Outcome, Timing


async def run_scan(port: str, framing_mode: str = "marks", transport: str | None = None,
                   first: int = 1, last: int = 127, timeout: float | None = None, as_json: bool = False,
                   out: TextIO = sys.stdout) -> int:
    kind = transport or default_kind(port)
    per_address = timeout if timeout is not None else 0.02
    line = SasLine(make_transport(port, kind, framing_mode), Timing(per_address, min(per_address, 0.02)))  # type: ignore[arg-type]
    try:
        await line.start()
    except TransportError as exc:
        raise DiagError(str(exc), EXIT_PORT) from exc
    started = time.monotonic()
    found: list[dict[str, object]] = []
    try:
        await line.sync()
        for address in range(first, last + 1):
            msg = lp.SendSasVersion()
            frame = framing.encode_long_poll(address, msg)
            res = await line.poll(address, frame, msg.COMMAND, rte=True, retries=0)
            for _ in range(24):  # a busy machine in RTE mode answers with its events first
                if not isinstance(res.reply, framing.RteEvent):
                    break
                res = await line.poll(address, frame, msg.COMMAND, rte=True, retries=1)
            if res.outcome is Outcome.TIMEOUT:
                continue
            entry: dict[str, object] = {"address": address, "answer": res.outcome.value}
            reply = res.reply
            if isinstance(reply, framing.Reply) and isinstance(reply.message, lp.SasVersion):
                entry.update(sas_version=reply.message.version, serial=reply.message.serial)
            elif isinstance(reply, framing.RteEvent):
                entry.update(note="answered with an RTE event")
            found.append(entry)
    except TransportError as exc:
        raise DiagError(str(exc), EXIT_PORT) from exc
    finally:
        await line.stop()
    elapsed = time.monotonic() - started
    if as_json:
        out.write(json.dumps({"port": port, "scanned": [first, last], "seconds": round(elapsed, 2),
                              "found": found}) + "\n")
    else:
        out.write(f"scanned addresses {first}..{last} on {port} in {elapsed:.1f} s\n")
        if found:
            out.write(table([(str(e["address"]), str(e.get("sas_version", "")), str(e.get("serial", "")),
                              str(e["answer"])) for e in found], ("address", "SAS", "serial", "answer")) + "\n")
    if not found:
        if not as_json:
            out.write("no address answered\n")
        raise DiagError(f"no SAS address answered on {port}: check the cable, that the machines are on, "
                        f"and the framing ({framing_mode})", EXIT_NO_ANSWER)
    return 0
