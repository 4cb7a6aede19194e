-- What only the SQLite store runs (the rest is queries.sql). One process claims from a
-- file (store/sqlite.py), and every write transaction holds the file's write lock from
-- BEGIN IMMEDIATE, so a claim is a plain read followed by the lease updates.

-- name: select_due
-- The oldest due deliveries whose lease is free or expired; the columns are Claimed's.
SELECT d.id, d.event_id, d.namespace, d.app, d.endpoint, e.type, e.payload, d.attempts,
       e.created_at, e.traceparent
FROM deliveries AS d
JOIN events AS e ON e.id = d.event_id
WHERE d.status IN ('pending', 'failed')
  AND d.next_attempt_at <= :now
  AND (d.lease_until IS NULL OR d.lease_until <= :now)
ORDER BY d.next_attempt_at, d.id
LIMIT :limit;

-- name: take_lease
-- The selected deliveries, their ids as one JSON array: one statement, not one per row.
UPDATE deliveries SET lease_owner = :owner, lease_until = :lease_until
WHERE id IN (SELECT value FROM json_each(:ids));

-- name: next_version
-- SQLite has no sequences: a one-row counter, bumped in the writing transaction, which
-- holds the write lock, so versions commit in order.
UPDATE endpoint_state_version SET value = value + 1 RETURNING value;

-- name: release_all_leases
-- At registration every lease is an earlier process's (it held the claim lock).
UPDATE deliveries SET lease_owner = NULL, lease_until = NULL
WHERE status IN ('pending', 'failed') AND lease_owner IS NOT NULL;

-- name: activity
-- An app's deliveries per bucket of creation time. The id bound lets the deliveries_app
-- index (namespace, app, id) read only the window; created_at decides exactly. The slot
-- is never negative, so CAST's truncation is the floor.
SELECT CAST((d.created_at - :since) / :bucket AS INTEGER) AS slot,
    count(*) FILTER (WHERE d.status = 'delivered') AS delivered,
    count(*) FILTER (WHERE d.status IN ('failed', 'exhausted')) AS failed
FROM deliveries AS d
WHERE d.namespace = :namespace AND d.app = :app AND d.id >= :first_id
  AND d.created_at >= :since AND d.created_at < :now
GROUP BY slot;

-- name: release_all_slots
-- At registration every concurrency slot recorded is an earlier process's.
DELETE FROM endpoint_slots;

-- name: release_owner_slots
DELETE FROM endpoint_slots WHERE owner = :owner;

-- name: release_owner_leases
-- A clean shutdown gives back what it did not finish. Leases exist only on open
-- deliveries (every other transition clears them), so this reads the deliveries_due index.
UPDATE deliveries SET lease_owner = NULL, lease_until = NULL
WHERE status IN ('pending', 'failed') AND lease_owner = :owner;

-- name: reserve_rate
-- Up to :want send slots of the endpoint's rate budget (GCRA: slots :interval apart, a
-- burst's worth of :tolerance may start in the past), only those due within :horizon of
-- :now. start is the first free slot; granted and tat are computed from the old row (SET
-- sees old values), and RETURNING reads them back: the slots are tat - granted *
-- :interval onward. The write lock from BEGIN makes it atomic across processes. Written
-- per dialect for max() (greatest()) and the truncating cast (floor()); start is never
-- beyond :now + :horizon where cast, so truncation is the floor.
UPDATE endpoint_rates SET
    granted = min(:want, CASE
        WHEN max(tat, :now - :tolerance, not_before) <= :now + :horizon
        THEN CAST((:now + :horizon - max(tat, :now - :tolerance, not_before)) / :interval
                  AS INTEGER) + 1
        ELSE 0 END),
    tat = max(tat, :now - :tolerance, not_before) + :interval * min(:want, CASE
        WHEN max(tat, :now - :tolerance, not_before) <= :now + :horizon
        THEN CAST((:now + :horizon - max(tat, :now - :tolerance, not_before)) / :interval
                  AS INTEGER) + 1
        ELSE 0 END)
WHERE namespace = :namespace AND endpoint = :endpoint
RETURNING tat, granted, not_before;

-- name: insert_event
-- add_events: executemany of these two, in the caller's transaction or one of its own
-- (a statement per row costs nothing next to the commit on a local file).
INSERT INTO events (
    id, namespace, app, type, payload, idempotency_key, delivery_count, created_at, traceparent
)
VALUES (
    :id, :namespace, :app, :type, :payload, :idempotency_key, :delivery_count, :created_at,
    :traceparent
);

-- name: insert_delivery
INSERT INTO deliveries (
    id, event_id, namespace, app, endpoint, event_type, status, attempts,
    created_at, updated_at, next_attempt_at
)
VALUES (
    :id, :event_id, :namespace, :app, :endpoint, :event_type, :status, 0,
    :now, :now, :next_attempt_at
);

-- name: finish_delivery
-- finish: this for each result, then insert_attempt for those it applied to.
-- Applies only while `owner` is still the lease holder (nobody claimed the delivery since,
-- even if the lease ran out) and no later attempt was recorded: a row count of 0 says
-- the result changes nothing.
UPDATE deliveries
SET status = :status,
    attempts = :attempt,
    next_attempt_at = :next_attempt_at,
    last_http_status = :http_status,
    last_error = :error,
    updated_at = :now,
    lease_owner = NULL,
    lease_until = NULL
WHERE id = :delivery_id
  AND lease_owner = :owner
  AND attempts = :attempt - 1
  AND status IN ('pending', 'failed');

-- name: insert_attempt
INSERT INTO attempts (
    delivery_id, attempt, namespace, endpoint, started_at, duration_ms,
    http_status, error, response_snippet, success
)
VALUES (
    :delivery_id, :attempt, :namespace, :endpoint, :started_at, :duration_ms,
    :http_status, :error, :response_snippet, :success
);
