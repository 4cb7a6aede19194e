-- The delivery service's schema, PostgreSQL flavour (several replicas share it).
-- Times are UNIX epoch seconds (double precision) as in the SQLite schema, so both
-- backends compare the same numbers; ids are sortable (webhook_operator.ids), so
-- "ORDER BY id DESC" is newest first.

-- One row per accepted event. `payload` is the exact body every delivery sends (text,
-- not jsonb: it must go out byte for byte); `delivery_count` is how many deliveries it
-- was accepted with (a duplicate submission answers with it).
CREATE TABLE events (
    id text PRIMARY KEY,
    namespace text NOT NULL,
    app text NOT NULL,
    type text NOT NULL,
    payload text NOT NULL,
    idempotency_key text,
    delivery_count integer NOT NULL,
    created_at double precision NOT NULL
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
    id text PRIMARY KEY,
    event_id text NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    namespace text NOT NULL,
    app text NOT NULL,
    endpoint text NOT NULL,
    event_type text NOT NULL,
    status text NOT NULL
        CHECK (status IN ('pending', 'failed', 'delivered', 'exhausted', 'held', 'cancelled')),
    attempts integer NOT NULL DEFAULT 0,
    created_at double precision NOT NULL,
    updated_at double precision NOT NULL,
    next_attempt_at double precision,
    lease_owner text,
    lease_until double precision,
    last_http_status integer,
    last_error text
);

-- claim and queue_stats: due deliveries in (next_attempt_at, id) order. Partial, so the
-- finished majority of the table is not in it and claim reads it in order, no sort.
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
    delivery_id text NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    attempt integer NOT NULL,
    namespace text NOT NULL,
    endpoint text NOT NULL,
    started_at double precision NOT NULL,
    duration_ms double precision NOT NULL,
    http_status integer,
    error text,
    response_snippet text,
    success boolean NOT NULL,
    PRIMARY KEY (delivery_id, attempt)
);

CREATE INDEX attempts_failures ON attempts (namespace, endpoint, started_at) WHERE NOT success;

-- Delivery state per endpoint. `version` comes from endpoint_state_version and grows on
-- every change: stats_since pages by it.
CREATE TABLE endpoint_states (
    namespace text NOT NULL,
    endpoint text NOT NULL,
    version bigint NOT NULL,
    last_delivery_time double precision,
    last_success_time double precision,
    last_failure_time double precision,
    last_http_status integer,
    last_error text,
    consecutive_failures integer NOT NULL DEFAULT 0,
    disabled_reason text,
    disabled_at double precision,
    enable_token text,
    PRIMARY KEY (namespace, endpoint)
);

CREATE INDEX endpoint_states_version ON endpoint_states (version);

CREATE SEQUENCE endpoint_state_version AS bigint;
