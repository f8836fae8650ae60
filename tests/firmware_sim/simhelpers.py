"""A scripted host for the responder tests: frames messages the way a real host puts them on a line."""

from __future__ import annotations

from firmware_sim.responder import SasResponder
from protocols.sas import framing
from protocols.sas import longpolls as lp
from protocols.sas.crc import append_crc
from protocols.sas.wire import chars


class ScriptedHost:
    """Sends host messages through the EGM-side framer (as the transport does) and collects replies."""

    def __init__(self, responder: SasResponder, now: float = 0.0) -> None:
        self.responder = responder
        self.framer = framing.HostMessageFramer()
        self.now = now

    def send(self, frame: bytes) -> list[bytes | None]:
        return [self.responder.handle(msg, self.now) for msg in self.framer.feed(chars(frame))]

    def one(self, frame: bytes) -> bytes | None:
        replies = self.send(frame)
        assert len(replies) == 1, replies
        return replies[0]

    def gp(self, address: int) -> bytes | None:
        return self.one(framing.encode_general_poll(address))

    def lp(self, message: lp.Message, address: int = 1, fresh: bool = True) -> bytes | None:
        """A long poll; ``fresh`` first ACKs whatever is pending with a general poll to address 0,
        as a host must between two polls with the same command (same ack key = implied NACK)."""
        if fresh:
            self.sync()
        return self.one(framing.encode_long_poll(address, message))

    def sync(self) -> None:
        """What a host does after link-up: a poll to another address (here the broadcast address)."""
        assert self.one(bytes((0x80,))) is None


def reply_of(data: bytes | None, address: int, command: int | None, rte: bool = False) -> framing.EgmReply:
    assert data is not None, "the EGM stayed silent"
    return framing.decode_reply(data, address, command, rte)


def message_of(data: bytes | None, address: int = 1) -> lp.Message:
    reply = reply_of(data, address, data[1] if data and len(data) > 1 else None)
    assert isinstance(reply, framing.Reply), reply
    return reply.message


__all__ = ["ScriptedHost", "append_crc", "message_of", "reply_of"]
