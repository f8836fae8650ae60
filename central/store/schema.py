"""SQLite schema of the central store (the PostgreSQL backend will carry its own DDL).

Kept to types and constructs both databases share (TEXT, INTEGER as 64-bit, composite primary keys,
``ON CONFLICT … DO UPDATE``), so the two schemas stay the same shape and the same queries read them.
Amounts are INTEGER minor units; times are INTEGER microseconds since the epoch (UTC).
"""

from __future__ import annotations

from typing import Final

SCHEMA_VERSION: Final = 10
"""1: the first schema. 2: hall presence columns (``halls.online``, ``session``, ``status_at``).
3: the ``commands`` table (a new table: ``CREATE TABLE IF NOT EXISTS`` adds it to older files).
4: issue 04's tables — ``audit``, ``catalog_*``, ``batches`` (the halls' signed headers, for export),
``alerts`` and ``monitor_*`` — and two partial indexes on ``events`` (snapshots, integration rows);
all new, so older files gain them unchanged. Events stored before 4 have no batch signature.
5: no per-event device index. ``events_by_device (hall, device, seq)`` cost a random B-tree insert
per event (about 40 % of the writer's SQLite time: ``bench/store_insert.py``); per-device reads now
go through ``devices.last_play_seq`` (the floor), ``device_marks`` (the reconciliation's events money
between meter snapshots, with the running totals in ``devices.money_*``) and partial indexes over the
rare event types. Opening an older file drops the index and fills the new columns and marks from its
events once.
6: per-hall gaming days (``halls.timezone``, ``gaming_day_start``, ``settings_version``; NULL = UTC and
00:00, which is what ``rollups.day`` meant before, so old rows keep their meaning); indexes for period
queries on ``rollups``; ``rollups_hourly`` (per device and local clock hour) and ``device_days`` (per
device and gaming day: money and snapshot count, the reconciliation's rows); ``device_spans`` (per
batch and device). Opening an older file fills the two new tables from its events once and gives each
device one span from seq 1 to its newest event (its old events are read as before).
7: the partial index ``rollups_zero`` over rollup rows that hold only zero-amount events, so a period
read as a month minus its days outside (``sqlhelpers.period_terms``) can tell which all-zero keys the
period really has; older files gain it on open. 8: integration-log and monitor columns. 9:
``devices.identity_seq``. 10: ``rollups_hourly_halls`` (per hall and local clock hour), which the hall's
and the network's hourly chart read instead of every device's hours; filled from ``rollups_hourly``."""

DDL: Final = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS halls (
    id             TEXT PRIMARY KEY,
    public_key_pem TEXT NOT NULL,
    added_at       INTEGER NOT NULL,
    last_seq       INTEGER NOT NULL DEFAULT 0,   -- end of the contiguous prefix stored (0 = none)
    last_hash      TEXT NOT NULL,                -- hash of last_seq (genesis hash when 0)
    online         INTEGER,                      -- the agent's MQTT status (NULL until one arrives)
    session        INTEGER,                      -- the agent's connection counter of that status
    status_at      INTEGER                       -- the status message's ``at``
);
CREATE TABLE IF NOT EXISTS events (
    hall         TEXT NOT NULL,
    seq          INTEGER NOT NULL,
    id           TEXT NOT NULL,
    device       TEXT NOT NULL,
    type         TEXT NOT NULL,
    agent_time   INTEGER NOT NULL,
    device_time  INTEGER,
    central_time INTEGER NOT NULL,
    prev_hash    TEXT NOT NULL,
    hash         TEXT NOT NULL,
    data         TEXT NOT NULL,                  -- canonical JSON of the event's data
    PRIMARY KEY (hall, seq)                      -- idempotence: one row per (hall, seq), ever
);
CREATE INDEX IF NOT EXISTS events_by_time ON events (agent_time);
CREATE TABLE IF NOT EXISTS rollups (
    hall     TEXT NOT NULL,
    device   TEXT NOT NULL,
    game     TEXT NOT NULL,                      -- '' for money outside a game (bills, tickets)
    day      TEXT NOT NULL,                      -- the hall's gaming day of agent_time (YYYY-MM-DD)
    bets     INTEGER NOT NULL DEFAULT 0,
    wins     INTEGER NOT NULL DEFAULT 0,
    rounds   INTEGER NOT NULL DEFAULT 0,
    cash_in  INTEGER NOT NULL DEFAULT 0,
    cash_out INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (hall, device, game, day)
);
CREATE TABLE IF NOT EXISTS devices (
    hall       TEXT NOT NULL,
    id         TEXT NOT NULL,
    kind       TEXT NOT NULL DEFAULT 'unknown',
    online     INTEGER,                          -- NULL until a device.status says
    enabled    INTEGER NOT NULL DEFAULT 1,
    first_seen INTEGER NOT NULL,
    last_seen  INTEGER NOT NULL,                 -- newest agent_time among its events
    last_seq   INTEGER NOT NULL,
    PRIMARY KEY (hall, id)
);
CREATE TABLE IF NOT EXISTS integration_log (
    id     INTEGER PRIMARY KEY AUTOINCREMENT,
    time   INTEGER NOT NULL,
    hall   TEXT,
    device TEXT,
    kind   TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS integration_log_by_hall ON integration_log (hall, id);
CREATE INDEX IF NOT EXISTS integration_log_by_kind ON integration_log (kind, id);
CREATE TABLE IF NOT EXISTS api_keys (
    id          TEXT PRIMARY KEY,
    role        TEXT NOT NULL,
    secret_hash TEXT NOT NULL,                   -- SHA-256 hex of the secret; the key itself is never stored
    halls       TEXT,                            -- JSON array of hall IDs, NULL = every hall
    created_at  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS commands (
    id          TEXT PRIMARY KEY,                -- UUID, also the command's id on the wire
    hall        TEXT NOT NULL,
    device      TEXT,
    action      TEXT NOT NULL,
    game        TEXT,
    params      TEXT NOT NULL,                   -- canonical JSON object
    issued_at   INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    status      TEXT NOT NULL,                   -- pending | sent | applied | failed | expired
    detail      TEXT NOT NULL,
    created_by  TEXT,                            -- API key id (NULL when not created through the API)
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS commands_by_hall ON commands (hall, created_at);
CREATE INDEX IF NOT EXISTS commands_by_status ON commands (status, created_at);
CREATE TABLE IF NOT EXISTS audit (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,   -- append-only: never updated or deleted
    time    INTEGER NOT NULL,
    actor   TEXT NOT NULL,                       -- API key id, or cli:<user>
    action  TEXT NOT NULL,
    target  TEXT NOT NULL,
    before  TEXT,                                -- canonical JSON, NULL when absent
    after   TEXT
);
CREATE INDEX IF NOT EXISTS audit_by_time ON audit (time, id);
-- game catalog (central.catalog): providers, games, desired placements, network-wide rules
CREATE TABLE IF NOT EXISTS catalog_providers (
    id     TEXT PRIMARY KEY,
    name   TEXT NOT NULL,
    status TEXT NOT NULL                         -- active | inactive
);
CREATE TABLE IF NOT EXISTS catalog_games (
    id          TEXT PRIMARY KEY,
    provider    TEXT NOT NULL,                   -- catalog_providers.id
    name        TEXT NOT NULL,
    category    TEXT NOT NULL,
    rtp_bp      INTEGER NOT NULL,                -- theoretical RTP in basis points (9612 = 96.12 %)
    status      TEXT NOT NULL,                   -- active | inactive
    min_bet     INTEGER NOT NULL,                -- minor units per round
    max_bet     INTEGER NOT NULL,
    sas_game_id TEXT NOT NULL DEFAULT '',        -- what a machine reports (LP 1F/53), '' = unknown
    paytable_id TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS catalog_placements (
    hall    TEXT NOT NULL,
    device  TEXT NOT NULL,
    number  INTEGER NOT NULL,                    -- SAS game number on the device
    game    TEXT NOT NULL,                       -- catalog_games.id
    enabled INTEGER NOT NULL,
    PRIMARY KEY (hall, device, number)
);
CREATE TABLE IF NOT EXISTS catalog_rules (
    id         TEXT PRIMARY KEY,
    kind       TEXT NOT NULL,                    -- disable_game | enable_game | max_bet
    params     TEXT NOT NULL,                    -- JSON object
    halls      TEXT,                             -- JSON array of hall IDs, NULL = every hall
    created_by TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    status     TEXT NOT NULL,                    -- active | revoked
    updated_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS catalog_rule_commands (
    rule    TEXT NOT NULL,
    command TEXT NOT NULL,                       -- commands.id
    PRIMARY KEY (rule, command)
);
-- export (issue 04): each stored batch's header as the hall signed it, so an export carries the
-- halls' own signatures over its chain ends
CREATE TABLE IF NOT EXISTS batches (
    hall           TEXT NOT NULL,
    first_seq      INTEGER NOT NULL,
    last_seq       INTEGER NOT NULL,              -- only batches that stored new events: unique per hall
    header         TEXT NOT NULL,                 -- canonical JSON of the signed batch header
    sig            TEXT NOT NULL,                 -- Ed25519 signature, hex, over hallsync/v1/batch LF header
    public_key_pem TEXT NOT NULL,                 -- the hall key registered when it was stored
    stored_at      INTEGER NOT NULL,
    PRIMARY KEY (hall, last_seq)
);
-- monitoring and reconciliation (issue 04: central.monitor, central.reconcile). Partial indexes cover
-- only the rare snapshot and integration events (cheap at ingest); the reconciliation reads them per
-- device. integration_log_by_time serves the monitor's "link errors in the last minutes".
CREATE INDEX IF NOT EXISTS events_snapshots ON events (hall, device, agent_time) WHERE type = 'meters.snapshot';
CREATE INDEX IF NOT EXISTS events_integration ON events (hall, device, seq) WHERE type = 'integration';
CREATE INDEX IF NOT EXISTS integration_log_by_time ON integration_log (time);
CREATE INDEX IF NOT EXISTS events_status ON events (hall, device, seq) WHERE type = 'device.status';
CREATE TABLE IF NOT EXISTS alerts (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    hall       TEXT NOT NULL,
    device     TEXT,                             -- NULL for a hall-wide alert
    kind       TEXT NOT NULL,                    -- hall_offline, door_open, ... (central.monitor.ALERT_KINDS)
    subject    TEXT NOT NULL,                    -- what within the device ('' or a door, a game, a code)
    detail     TEXT NOT NULL,
    raised_at  INTEGER NOT NULL,
    cleared_at INTEGER,                          -- NULL while the condition holds
    acked_by   TEXT,                             -- API key id
    acked_at   INTEGER
);
CREATE INDEX IF NOT EXISTS alerts_open ON alerts (cleared_at, hall);
CREATE INDEX IF NOT EXISTS alerts_by_hall ON alerts (hall, id);
CREATE TABLE IF NOT EXISTS leases (            -- one process of several runs a job alone (central.repos.leases)
    name       TEXT PRIMARY KEY,
    owner      TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS monitor_cursors (
    hall TEXT PRIMARY KEY,
    seq  INTEGER NOT NULL                        -- the monitor has read the hall's events up to here
);
CREATE TABLE IF NOT EXISTS monitor_conditions (
    hall   TEXT NOT NULL,
    device TEXT NOT NULL,
    name   TEXT NOT NULL,                        -- door:<door>, fault, handpay_pending, out_of_service
    since  INTEGER NOT NULL,                     -- agent time it began
    detail TEXT NOT NULL,
    PRIMARY KEY (hall, device, name)
);
-- schema 5: a device's events money (bets, wins, rounds, cash in and out by the reconciliation's rule:
-- ``missed`` records are not events money) counted through each of its meter snapshots, so the money
-- between two snapshots is one subtraction instead of a read of every event in between
CREATE TABLE IF NOT EXISTS device_marks (
    hall     TEXT NOT NULL,
    device   TEXT NOT NULL,
    seq      INTEGER NOT NULL,                   -- a meters.snapshot event of the device
    bets     INTEGER NOT NULL,
    wins     INTEGER NOT NULL,
    rounds   INTEGER NOT NULL,
    cash_in  INTEGER NOT NULL,
    cash_out INTEGER NOT NULL,
    PRIMARY KEY (hall, device, seq)
);
-- schema 6: reports read their period only (GGR over one day costs the same whatever the history)
CREATE INDEX IF NOT EXISTS rollups_by_day ON rollups (day, hall);
CREATE INDEX IF NOT EXISTS rollups_by_hall_day ON rollups (hall, day);
-- rows of zero-amount events only (rare): which keys a subtracted period really has (schema 7)
CREATE INDEX IF NOT EXISTS rollups_zero ON rollups (day, hall)
    WHERE bets = 0 AND wins = 0 AND rounds = 0 AND cash_in = 0 AND cash_out = 0;
CREATE TABLE IF NOT EXISTS rollups_hourly (
    day      TEXT NOT NULL,                      -- the hall's gaming day
    hall     TEXT NOT NULL,
    hour     INTEGER NOT NULL,                   -- UTC microseconds at which the local clock hour began
    device   TEXT NOT NULL,
    bets     INTEGER NOT NULL DEFAULT 0,
    wins     INTEGER NOT NULL DEFAULT 0,
    rounds   INTEGER NOT NULL DEFAULT 0,
    cash_in  INTEGER NOT NULL DEFAULT 0,
    cash_out INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (day, hall, hour, device)
);
CREATE TABLE IF NOT EXISTS rollups_hourly_halls (
    day      TEXT NOT NULL,                      -- the hall's gaming day
    hall     TEXT NOT NULL,
    hour     INTEGER NOT NULL,                   -- UTC microseconds at which the local clock hour began
    bets     INTEGER NOT NULL DEFAULT 0,
    wins     INTEGER NOT NULL DEFAULT 0,
    rounds   INTEGER NOT NULL DEFAULT 0,
    cash_in  INTEGER NOT NULL DEFAULT 0,
    cash_out INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (day, hall, hour)
);
CREATE TABLE IF NOT EXISTS device_days (
    day       TEXT NOT NULL,                     -- the hall's gaming day
    hall      TEXT NOT NULL,
    device    TEXT NOT NULL,
    bets      INTEGER NOT NULL DEFAULT 0,        -- the rollups' money of the device that day (all games)
    wins      INTEGER NOT NULL DEFAULT 0,
    rounds    INTEGER NOT NULL DEFAULT 0,
    cash_in   INTEGER NOT NULL DEFAULT 0,
    cash_out  INTEGER NOT NULL DEFAULT 0,
    snapshots INTEGER NOT NULL DEFAULT 0,        -- its meters.snapshot events that day
    PRIMARY KEY (day, hall, device)
);
CREATE INDEX IF NOT EXISTS device_days_by_device ON device_days (hall, device, day);
-- per-game money per hall-local month (the gaming days' YYYY-MM): a long period sums whole months here
-- and only its partial months' days in rollups, so 90 days read about 3 rows per cell, not 90
CREATE TABLE IF NOT EXISTS rollups_monthly (
    hall     TEXT NOT NULL,
    device   TEXT NOT NULL,
    game     TEXT NOT NULL,
    month    TEXT NOT NULL,                      -- YYYY-MM of the gaming day
    bets     INTEGER NOT NULL DEFAULT 0,
    wins     INTEGER NOT NULL DEFAULT 0,
    rounds   INTEGER NOT NULL DEFAULT 0,
    cash_in  INTEGER NOT NULL DEFAULT 0,
    cash_out INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (hall, device, game, month)
);
CREATE INDEX IF NOT EXISTS rollups_monthly_by_month ON rollups_monthly (month, hall);
-- the provider report's error counts over a period (rare events: cheap at ingest)
CREATE INDEX IF NOT EXISTS events_errors ON events (hall, agent_time) WHERE type = 'game.error';
-- where a device's events are: one span per stored batch and device (its first to its last seq in the
-- batch), so GET /events?hall=&device= reads the device's spans instead of the hall's whole history
-- (schema 5 dropped the per-event device index; this is one row per batch and device, in key order)
CREATE TABLE IF NOT EXISTS device_spans (
    hall      TEXT NOT NULL,
    device    TEXT NOT NULL,
    first_seq INTEGER NOT NULL,
    last_seq  INTEGER NOT NULL,
    PRIMARY KEY (hall, device, first_seq)
);
"""

DEVICE_MONEY_COLUMNS: Final = ("money_bets", "money_wins", "money_rounds", "money_cash_in", "money_cash_out")
"""``devices`` columns (schema 5): the device's events money over all its stored events."""

ADDED_COLUMNS: Final[tuple[tuple[str, str, str], ...]] = (
    ("halls", "online", "INTEGER"),
    ("halls", "session", "INTEGER"),
    ("halls", "status_at", "INTEGER"),
    ("devices", "last_play_seq", "INTEGER"),     # schema 5: its newest play event, NULL before one
    *(("devices", column, "INTEGER") for column in DEVICE_MONEY_COLUMNS),   # schema 5 (NULL = not yet counted)
    ("halls", "timezone", "TEXT"),                 # schema 6: IANA zone, NULL = UTC
    ("halls", "gaming_day_start", "TEXT"),         # schema 6: HH:MM local, NULL = 00:00
    ("halls", "settings_version", "INTEGER"),      # schema 6: bumped on every change of the hall's settings
    ("api_keys", "name", "TEXT"),                  # schema 8: whose key it is, NULL for older keys
    ("api_keys", "expires_at", "INTEGER"),         # schema 8: µs UTC, NULL = no expiry
    ("api_keys", "revoked_at", "INTEGER"),         # schema 8: µs UTC, NULL = not revoked
    ("halls", "state", "TEXT"),                    # schema 8: NULL = active, 'disabled', 'removed'
    ("halls", "state_at", "INTEGER"),              # schema 8: when the state last changed
    ("devices", "identity_seq", "INTEGER"),        # schema 9: its newest device.status identity, NULL before one
)
"""Columns added after schema 1, as (table, column, type): the migration adds whichever an existing
file lacks (``ALTER TABLE … ADD COLUMN``), so old databases keep working. Only nullable columns without
defaults go here, which both SQLite and PostgreSQL add without rewriting the table."""


FILL_HALL_HOURS: Final = (
    "INSERT INTO rollups_hourly_halls (day, hall, hour, bets, wins, rounds, cash_in, cash_out)"
    " SELECT day, hall, hour, SUM(bets), SUM(wins), SUM(rounds), SUM(cash_in), SUM(cash_out)"
    " FROM rollups_hourly GROUP BY day, hall, hour")
"""Schema 10 (PostgreSQL migration 4) on a database that has hourly rollups per device only."""
