"""hallsync sync protocol v1: events, hash chain, signed batches, acks, resends, commands, presence.

Sans-IO: bytes in, messages out. No sockets, files or clocks; every time is passed in by the caller.
Every decoder raises only :class:`SyncError` subclasses on bad input. This docstring is the spec.

Canonical encoding (what is hashed and signed)
----------------------------------------------
1. JSON (RFC 8259) in UTF-8, no BOM, no insignificant whitespace (separators ``,`` and ``:``).
2. Object members sorted by key, ascending by code point. Every key in this protocol is ASCII
   (data keys match ``[A-Za-z0-9_.:-]{1,64}``), so that is plain byte order in any language.
3. Strings: ``"`` → ``\\"``, ``\\`` → ``\\\\``; U+0008/0009/000A/000C/000D → ``\\b \\t \\n \\f \\r``; other
   U+0000..U+001F → ``\\u00xx`` (lower-case hex); everything else, ``/``, DEL and non-ASCII included,
   as literal UTF-8. Lone surrogates are not representable and are refused.
4. Numbers are integers only, in signed 64-bit range: ``-?(0|[1-9][0-9]*)``, no fraction, exponent,
   ``+`` or ``-0``. Floats are refused everywhere. ``true``, ``false``, ``null`` as usual; arrays in order.
5. Equivalently: Python's ``json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
   .encode()`` on the allowed values (tests hold the implementation to it).

Scalars: times are integer microseconds since 1970-01-01T00:00:00Z (UTC, ``0 ≤ t < 2**63``); ``seq``
is ``1 ≤ seq < 2**63``; hashes are 64 lower-case hex digits; signatures 128 lower-case hex digits
(raw 64-byte Ed25519); ``id`` is a lower-case hyphenated UUID; hall IDs ``[A-Za-z0-9_-]{1,64}``;
device and game IDs ``[A-Za-z0-9_.:-]{1,64}``; ``v`` is 1 (any other value: :class:`UnsupportedVersion`).

Events and the chain
--------------------
Hashed fields (all always present): ``v, seq, id, hall, device, type, device_time`` (int or null),
``agent_time, data, prev_hash``. ``hash`` = hex SHA-256 of the canonical encoding of exactly that
object. ``central_time`` (set by central) and ``hash`` itself are not hashed. The event with seq 1
has ``prev_hash`` = 64 × ``0`` (:data:`GENESIS_HASH`); every next event has ``seq`` + 1 and
``prev_hash`` = the previous ``hash``. The wire form of an event is the hashed object plus ``hash``
(plus ``central_time`` once set), keys sorted. ``type`` is one of :data:`EVENT_TYPES`.

``data`` (and a command's ``params``): a JSON object; values str, int, bool, null, arrays, objects,
nested ≤ 16 deep. Money is integer minor units: any top-level key ``amount`` or ``*_amount`` is an
int ≥ 0; with ``amount`` comes ``currency`` (ISO 4217, ``[A-Z]{3}``). The types in
:data:`MONEY_TYPES` must carry ``amount`` and ``currency``; ``meters.snapshot`` must carry ``meters``,
a non-empty object of meter name → int ≥ 0. Each type's known keys and their types are
:mod:`.vocabulary`'s structs (a key it names with another type makes the event malformed).

Signatures
----------
Ed25519 over ``b"hallsync/v1/" + context + b"\\n" + canonical(body)``; the context separates kinds:
``batch`` (body = batch header), ``ack``, ``resend``, ``command`` (signed by central),
``command-result`` and ``status`` (signed by the hall). Keys are PEM: PKCS#8 private, SubjectPublicKeyInfo public.

Messages (wire forms; receivers accept any key order and recompute canonical bytes themselves)
-------------------------------------------------------------------------------------------
No payload exceeds ``MAX_MESSAGE_BYTES`` (16 MiB): central refuses a bigger one unread, the brokers'
``max_packet_size`` is ``MAX_PACKET_BYTES``, and the agent splits batches to stay below it.

* batch: ``{"events":[event…],"header":H,"sig":S}``, H = ``{v, hall, first_seq, last_seq, count,
  prev_hash, last_hash, created_at}``; ``prev_hash`` is the hash before ``first_seq``, ``last_hash``
  the hash of ``last_seq``; 1..10000 events, contiguous, of ``hall``, with ``central_time`` absent.
  A replay is identified by (hall, first_seq, last_seq, last_hash).
* signed envelope ``{"body":B,"sig":S}`` for ack ``{v, hall, acked_through_seq, last_hash,
  created_at}``, resend ``{v, hall, from_seq, to_seq, reason, created_at}``, command ``{v, id, hall,
  device, action, game, params, issued_at, expires_at}`` and command result ``{v, id, hall, status,
  detail, at}``; a command is refused beyond the agent's skew and lifetime bounds
  (:func:`command_out_of_bounds`).
* status (signed envelope, context ``status``, by the hall; retained, the MQTT last will):
  ``{v, hall, online, session, at}``; central refuses a session more than :data:`MAX_SESSION_JUMP`
  above the last it accepted.
* standing data (signed envelope, context ``standing``, retained): ``{v, hall, version, issued_at,
  timezone, gaming_day_start}`` (:mod:`.standing`); the agent refuses a version older than it holds.
* topics: ``hallsync/v1/halls/{hall}/{batches|acks|resend|commands|command-results|status|standing}``.
"""

from .acks import Ack, ResendRequest, decode_ack, decode_resend, encode_ack, encode_resend
from .batch import (
    MAX_BATCH_EVENTS,
    MAX_MESSAGE_BYTES,
    MAX_PACKET_BYTES,
    Batch,
    BatchHeader,
    decode_batch,
    encode_batch,
    encode_batch_stored,
    events_within_limit,
    peek_seq_range,
    verify_batch,
)
from .canonical import canonical_bytes, signing_input
from .commands import (
    ACTIONS,
    MAX_CLOCK_SKEW_SECONDS,
    MAX_COMMAND_LIFETIME_SECONDS,
    RESULT_STATUSES,
    Command,
    CommandResult,
    command_expired,
    command_out_of_bounds,
    decode_command,
    decode_command_result,
    encode_command,
    encode_command_result,
)
from .errors import (
    BadSignature,
    BadTopic,
    BrokenChain,
    HallMismatch,
    InvalidKey,
    Malformed,
    SyncError,
    UnsupportedVersion,
)
from .events import (
    EVENT_TYPES,
    Event,
    StoredEvent,
    UnsealedEvent,
    canonical_event_bytes,
    chain_hash,
    decode_event,
    encode_event,
    seal,
    seal_many,
    stored_event,
    verify_chain,
)
from .fields import GENESIS_HASH, VERSION
from .keys import (
    fingerprint,
    generate_private_key,
    private_key_from_pem,
    private_key_to_pem,
    public_key_from_pem,
    public_key_to_pem,
)
from .presence import MAX_SESSION_JUMP, Status, decode_status, encode_status
from .topics import TOPIC_KINDS, check_hall_id, parse_topic, shared_subscription, subscription, topic
from .vocabulary import MONEY_TYPES

__all__ = [
    "ACTIONS", "EVENT_TYPES", "GENESIS_HASH", "MAX_BATCH_EVENTS", "MAX_CLOCK_SKEW_SECONDS",
    "MAX_COMMAND_LIFETIME_SECONDS", "MAX_MESSAGE_BYTES", "MAX_PACKET_BYTES", "MAX_SESSION_JUMP", "MONEY_TYPES",
    "RESULT_STATUSES", "TOPIC_KINDS", "VERSION",
    "Ack", "BadSignature", "BadTopic", "Batch", "BatchHeader", "BrokenChain", "Command", "CommandResult", "Event",
    "HallMismatch", "InvalidKey", "Malformed", "ResendRequest", "Status", "StoredEvent", "SyncError", "UnsealedEvent",
    "UnsupportedVersion", "canonical_bytes", "canonical_event_bytes", "chain_hash", "check_hall_id", "command_expired",
    "command_out_of_bounds", "decode_ack", "decode_batch", "decode_command", "decode_command_result", "decode_event",
    "decode_resend", "decode_status", "encode_ack", "encode_batch", "encode_batch_stored", "encode_command",
    "encode_command_result", "encode_event", "encode_resend", "encode_status", "events_within_limit", "fingerprint",
    "generate_private_key",
    "parse_topic", "peek_seq_range", "private_key_from_pem", "private_key_to_pem", "public_key_from_pem",
    "public_key_to_pem", "seal", "seal_many",
    "shared_subscription", "signing_input", "stored_event", "subscription", "topic", "verify_batch", "verify_chain",
]
