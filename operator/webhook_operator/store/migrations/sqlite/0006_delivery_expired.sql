-- rebuilds tables
-- Held deliveries older than their endpoint's holdFor become 'expired' (see
-- migrations/postgres/0006_delivery_expired.sql). SQLite cannot change a CHECK constraint
-- in place, so deliveries is rebuilt (the runner turns foreign-key enforcement off around
-- this file, so dropping the old table does not cascade into attempts, and checks every
-- reference before it commits): the same columns in the same order, every row copied,
-- then the indexes of 0001 recreated, word for word.
CREATE TABLE deliveries_new (
    id TEXT PRIMARY KEY,
    event_id TEXT NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    namespace TEXT NOT NULL,
    app TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    event_type TEXT NOT NULL,
    status TEXT NOT NULL
        CHECK (status IN ('pending', 'failed', 'delivered', 'exhausted', 'held', 'cancelled',
                          'expired')),
    attempts INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    next_attempt_at REAL,
    lease_owner TEXT,
    lease_until REAL,
    last_http_status INTEGER,
    last_error TEXT
);

INSERT INTO deliveries_new (
    id, event_id, namespace, app, endpoint, event_type, status, attempts, created_at,
    updated_at, next_attempt_at, lease_owner, lease_until, last_http_status, last_error
)
SELECT id, event_id, namespace, app, endpoint, event_type, status, attempts, created_at,
       updated_at, next_attempt_at, lease_owner, lease_until, last_http_status, last_error
FROM deliveries;

DROP TABLE deliveries;
ALTER TABLE deliveries_new RENAME TO deliveries;

CREATE INDEX deliveries_due ON deliveries (next_attempt_at, id)
    WHERE status IN ('pending', 'failed');
CREATE INDEX deliveries_app ON deliveries (namespace, app, id);
CREATE INDEX deliveries_endpoint ON deliveries (namespace, endpoint, id);
CREATE INDEX deliveries_endpoint_status ON deliveries (namespace, endpoint, status, updated_at);
CREATE INDEX deliveries_held ON deliveries (namespace, endpoint) WHERE status = 'held';
CREATE INDEX deliveries_event ON deliveries (event_id);
