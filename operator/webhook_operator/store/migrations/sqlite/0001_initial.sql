-- The delivery service's schema, SQLite flavour (one replica owns the file).
-- Times are UNIX epoch seconds (REAL); ids are sortable (webhook_operator.ids), so
-- "ORDER BY id DESC" is newest first.

-- One row per accepted event. `payload` is the exact body every delivery sends;
-- `delivery_count` is how many deliveries it was accepted with (a duplicate submission
-- answers with it, whatever resends were added since).
CREATE TABLE events (
    id TEXT PRIMARY KEY,
    namespace TEXT NOT NULL,
    app TEXT NOT NULL,
    type TEXT NOT NULL,
    payload TEXT NOT NULL,
    idempotency_key TEXT,
    delivery_count INTEGER NOT NULL,
    created_at REAL NOT NULL
);

-- create_event: the latest event with the same key in the namespace/app.
CREATE INDEX events_idempotency ON events (namespace, app, idempotency_key, created_at)
    WHERE idempotency_key IS NOT NULL;

-- purge: events older than the retention period.
CREATE INDEX events_created ON events (created_at);

-- One row per (event, endpoint) delivery, plus one per resend/replay. namespace, app and
-- event_type are copied from the event so listing needs no join. A worker holds a
-- delivery while lease_owner is set and lease_until is in the future.
CREATE TABLE deliveries (
    id TEXT PRIMARY KEY,
    event_id TEXT NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    namespace TEXT NOT NULL,
    app TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    event_type TEXT NOT NULL,
    status TEXT NOT NULL
        CHECK (status IN ('pending', 'failed', 'delivered', 'exhausted', 'held', 'cancelled')),
    attempts INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    next_attempt_at REAL,
    lease_owner TEXT,
    lease_until REAL,
    last_http_status INTEGER,
    last_error TEXT
);

-- claim and queue_stats: due deliveries in (next_attempt_at, id) order. Partial, so the
-- finished majority of the table is not in it; the claim query repeats the predicate
-- word for word, which is how SQLite knows it may use the index.
CREATE INDEX deliveries_due ON deliveries (next_attempt_at, id)
    WHERE status IN ('pending', 'failed');

-- list_deliveries, newest first: by app, and by endpoint.
CREATE INDEX deliveries_app ON deliveries (namespace, app, id);
CREATE INDEX deliveries_endpoint ON deliveries (namespace, endpoint, id);

-- One endpoint's deliveries in one status: stats_since counts, release_held,
-- cancel_endpoint, replay.
CREATE INDEX deliveries_endpoint_status ON deliveries (namespace, endpoint, status, updated_at);

-- queue_stats: held deliveries across every endpoint.
CREATE INDEX deliveries_held ON deliveries (namespace, endpoint) WHERE status = 'held';

-- The foreign key from deliveries (purge cascades through it).
CREATE INDEX deliveries_event ON deliveries (event_id);

-- One row per recorded attempt. namespace/endpoint are copied so failures per endpoint
-- within the stats window are counted from a small partial index.
CREATE TABLE attempts (
    delivery_id TEXT NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    attempt INTEGER NOT NULL,
    namespace TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    started_at REAL NOT NULL,
    duration_ms REAL NOT NULL,
    http_status INTEGER,
    error TEXT,
    response_snippet TEXT,
    success INTEGER NOT NULL,
    PRIMARY KEY (delivery_id, attempt)
);

CREATE INDEX attempts_failures ON attempts (namespace, endpoint, started_at) WHERE success = 0;

-- Delivery state per endpoint. `version` comes from endpoint_state_version and grows on
-- every change: stats_since pages by it.
CREATE TABLE endpoint_states (
    namespace TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    version INTEGER NOT NULL,
    last_delivery_time REAL,
    last_success_time REAL,
    last_failure_time REAL,
    last_http_status INTEGER,
    last_error TEXT,
    consecutive_failures INTEGER NOT NULL DEFAULT 0,
    disabled_reason TEXT,
    disabled_at REAL,
    enable_token TEXT,
    PRIMARY KEY (namespace, endpoint)
);

CREATE INDEX endpoint_states_version ON endpoint_states (version);

-- SQLite has no sequences: a one-row counter, bumped in the writing transaction.
CREATE TABLE endpoint_state_version (value INTEGER NOT NULL);
INSERT INTO endpoint_state_version (value) VALUES (0);
