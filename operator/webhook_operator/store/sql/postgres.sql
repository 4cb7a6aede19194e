-- What only the PostgreSQL store runs (the rest is queries.sql). Replicas share the
-- database, so what SQLite gets from being the only writer is done with locks here
-- (store/postgres.py says which and why). Transaction-level advisory locks use the
-- two-key form with a class of our own as the first key, apart from the migration lock
-- (one-key form) and anything else using advisory locks.

-- name: claim
-- The inner SELECT walks the deliveries_due index in order and locks what it picks,
-- skipping rows other claimers hold. next_attempt_at is returned to restore that order,
-- which RETURNING does not keep; the first columns are Claimed's.
UPDATE deliveries AS d
SET lease_owner = :owner, lease_until = :lease_until
FROM events AS e
WHERE e.id = d.event_id
  AND d.id IN (
      SELECT id
      FROM deliveries
      WHERE status IN ('pending', 'failed')
        AND next_attempt_at <= :now
        AND (lease_until IS NULL OR lease_until <= :now)
      ORDER BY next_attempt_at, id
      LIMIT :limit
      FOR UPDATE SKIP LOCKED
  )
RETURNING d.id, d.event_id, d.namespace, d.app, d.endpoint, e.type, e.payload, d.attempts,
          e.created_at, e.traceparent, d.next_attempt_at;

-- name: next_version
-- Versions come from a sequence, taken under a lock held until commit so they also
-- commit in order: a reader that has seen version N never later finds a newly committed
-- N-1 behind its stats cursor. The materialized CTE takes the lock before nextval runs.
WITH locked AS MATERIALIZED (SELECT pg_advisory_xact_lock(1002, 0))
SELECT nextval('endpoint_state_version') FROM locked;

-- name: lock_idempotency_keys
-- Held until commit, so a concurrent submission with the same key waits, then finds the
-- first one. Taken in the order of the lock ids, the same in every transaction, so two
-- batches with keys in common never wait for each other (a deadlock).
SELECT pg_advisory_xact_lock(1001, lock_id)
FROM (
    SELECT DISTINCT hashtext(lock_key) AS lock_id
    FROM unnest(CAST(:lock_keys AS text[])) AS lock_key
    ORDER BY lock_id
) AS ordered;

-- name: lock_owner
-- Held by the owner's own session for as long as it claims.
SELECT pg_try_advisory_lock(1003, hashtext(:owner));

-- name: register_owner
INSERT INTO lease_owners (owner, started_at, heartbeat_at)
VALUES (:owner, :now, :now)
ON CONFLICT (owner) DO UPDATE SET
    started_at = excluded.started_at,
    heartbeat_at = excluded.heartbeat_at;

-- name: beat
UPDATE lease_owners SET heartbeat_at = :now WHERE owner = :owner;

-- name: reap_owners
-- Owners that are gone (their lock can be taken: the session that held it has ended) or
-- silent. The lock taken here is held until commit, so a gone owner's leases are given
-- back by one transaction only. A row renewed by a concurrent heartbeat is re-read before
-- it is deleted, and kept: its owner is alive after all. A restart of the server drops
-- every lock: a free lock counts only for an owner that has beaten since the server
-- started (and so has taken its lock again), else a live replica would be presumed gone
-- by the first one to beat after the restart.
DELETE FROM lease_owners
WHERE owner <> :owner
  AND (
    heartbeat_at < :stale_before
    OR (
      heartbeat_at >= extract(epoch FROM pg_postmaster_start_time())
      AND pg_try_advisory_xact_lock(1003, hashtext(owner))
    )
  )
RETURNING owner;

-- name: unregister_owner
DELETE FROM lease_owners WHERE owner = :owner;

-- name: release_slots
-- The concurrency slots of every owner in :owners (gone, or shutting down).
DELETE FROM endpoint_slots WHERE owner = ANY(:owners);

-- name: lock_endpoint_slots
-- Held until commit: one owner at a time counts and takes an endpoint's slots.
SELECT pg_advisory_xact_lock(1004, hashtext(:lock_key));

-- name: release_leases
-- The leases of every owner in :owners: the gone ones, or one shutting down. Leases
-- exist only on open deliveries, so this reads the deliveries_due index.
UPDATE deliveries SET lease_owner = NULL, lease_until = NULL
WHERE status IN ('pending', 'failed') AND lease_owner = ANY(:owners);

-- name: activity
-- An app's deliveries per bucket of creation time. The id bound lets the deliveries_app
-- index (namespace, app, id) read only the window; created_at decides exactly.
SELECT floor((d.created_at - :since) / :bucket)::bigint AS slot,
    count(*) FILTER (WHERE d.status = 'delivered') AS delivered,
    count(*) FILTER (WHERE d.status IN ('failed', 'exhausted')) AS failed
FROM deliveries AS d
WHERE d.namespace = :namespace AND d.app = :app AND d.id >= :first_id
  AND d.created_at >= :since AND d.created_at < :now
GROUP BY slot;

-- name: reserve_rate
-- Up to :want send slots of the endpoint's rate budget, shared by every replica (GCRA:
-- slots :interval apart, a burst's worth of :tolerance may start in the past), only those
-- due within :horizon of :now. start is the first free slot; granted and tat are computed
-- from the old row (SET sees old values), and RETURNING reads them back: the slots are
-- tat - granted * :interval onward. One statement, so the row lock makes it atomic.
-- (sqlite.sql has the same with max() and a truncating cast.)
UPDATE endpoint_rates SET
    granted = least(:want, CASE
        WHEN greatest(tat, :now - :tolerance, not_before) <= :now + :horizon
        THEN floor((:now + :horizon - greatest(tat, :now - :tolerance, not_before))
                   / :interval)::integer + 1
        ELSE 0 END),
    tat = greatest(tat, :now - :tolerance, not_before) + :interval * least(:want, CASE
        WHEN greatest(tat, :now - :tolerance, not_before) <= :now + :horizon
        THEN floor((:now + :horizon - greatest(tat, :now - :tolerance, not_before))
                   / :interval)::integer + 1
        ELSE 0 END)
WHERE namespace = :namespace AND endpoint = :endpoint
RETURNING tat, granted, not_before;

-- name: add_events
-- A batch of events and their deliveries in one statement: the rows as two JSON arrays of
-- objects (store/postgres.py: as_json), read back into rows by the server. One round trip
-- and, alone, its own transaction, where a statement per row would wait for the network
-- each time; and JSON is encoded in C, where psycopg adapts arrays in Python. The
-- deliveries' foreign key is checked at the end of the statement, after both inserts.
WITH added AS (
    INSERT INTO events (
        id, namespace, app, type, payload, idempotency_key, delivery_count, created_at,
        traceparent
    )
    SELECT id, namespace, app, type, payload, idempotency_key, delivery_count, created_at,
        traceparent
    FROM json_to_recordset(CAST(:events AS json)) AS e (
        id text, namespace text, app text, type text, payload text, idempotency_key text,
        delivery_count integer, created_at double precision, traceparent text
    )
)
INSERT INTO deliveries (
    id, event_id, namespace, app, endpoint, event_type, status, attempts,
    created_at, updated_at, next_attempt_at
)
SELECT id, event_id, namespace, app, endpoint, event_type, status, 0, now, now, next_attempt_at
FROM json_to_recordset(CAST(:deliveries AS json)) AS d (
    id text, event_id text, namespace text, app text, endpoint text, event_type text,
    status text, now double precision, next_attempt_at double precision
);

-- name: finish
-- A batch of results in one statement (as add_events, rows as JSON): each applies only
-- while `owner` is still the lease holder (nobody claimed the delivery since, even if the
-- lease ran out) and no later attempt was recorded, and only an applied one keeps its
-- attempt. RETURNING says which applied. A delivery appears at most once per batch
-- (postgres.py splits the batch where it would not): UPDATE ... FROM applies one source
-- row per target row.
WITH finished AS (
    UPDATE deliveries AS d
    SET status = r.status,
        attempts = r.attempt,
        next_attempt_at = r.next_attempt_at,
        last_http_status = r.http_status,
        last_error = r.error,
        updated_at = r.now,
        lease_owner = NULL,
        lease_until = NULL
    FROM json_to_recordset(CAST(:finishes AS json)) AS r (
        delivery_id text, owner text, attempt integer, status text,
        next_attempt_at double precision, http_status integer, error text,
        now double precision
    )
    WHERE d.id = r.delivery_id
      AND d.lease_owner = r.owner
      AND d.attempts = r.attempt - 1
      AND d.status IN ('pending', 'failed')
    RETURNING d.id
)
INSERT INTO attempts (
    delivery_id, attempt, namespace, endpoint, started_at, duration_ms,
    http_status, error, response_snippet, success
)
SELECT delivery_id, attempt, namespace, endpoint, started_at, duration_ms,
    http_status, error, response_snippet, success
FROM json_to_recordset(CAST(:attempts AS json)) AS a (
    delivery_id text, attempt integer, namespace text, endpoint text,
    started_at double precision, duration_ms double precision, http_status integer,
    error text, response_snippet text, success boolean
)
WHERE a.delivery_id IN (SELECT id FROM finished)
RETURNING delivery_id;
