-- The statements both databases run as written: the delivery service's store, once.
-- Loaded by webhook_operator.store.queries; `:name` parameters (psycopg gets %(name)s).
-- Only what truly differs is in sqlite.sql and postgres.sql: claiming, the endpoint-state
-- version counter, locks and lease owners, and the activity buckets' arithmetic.
--
-- `:version` is the endpoint-state version of the writing transaction, taken from the
-- dialect's counter (sqlite.sql / postgres.sql `next_version`) once per transaction.
-- The status predicates `status IN ('pending', 'failed')` repeat the deliveries_due
-- index's word for word: that is how SQLite knows it may use that partial index.

-- == events ===========================================================================

-- name: find_duplicate
-- The latest event with the same idempotency key in the namespace/app (events_idempotency).
SELECT id, delivery_count
FROM events
WHERE namespace = :namespace
  AND app = :app
  AND idempotency_key = :key
  AND created_at >= :since
ORDER BY created_at DESC
LIMIT 1;

-- (the events and deliveries themselves: add_events, in the dialect files)

-- == results ==========================================================================

-- (a batch of results itself: finish, in the dialect files)

-- name: defer
-- A leased delivery given back unattempted (rate limit), due at :until.
UPDATE deliveries
SET next_attempt_at = :until, lease_owner = NULL, lease_until = NULL
WHERE id = :id AND lease_owner = :owner AND status IN ('pending', 'failed');

-- name: hold
UPDATE deliveries
SET status = 'held', next_attempt_at = NULL, lease_owner = NULL, lease_until = NULL
WHERE id = :id AND lease_owner = :owner AND status IN ('pending', 'failed')
RETURNING namespace, endpoint;

-- name: release_held
-- Every released delivery is due at the same moment, so claim's id tiebreak sends them
-- oldest first.
UPDATE deliveries
SET status = 'pending', next_attempt_at = :now, updated_at = :now
WHERE namespace = :namespace AND endpoint = :endpoint AND status = 'held';

-- name: held_endpoints
-- Endpoints with held deliveries, from the deliveries_held index: what expiry looks at.
SELECT DISTINCT namespace, endpoint FROM deliveries WHERE status = 'held';

-- name: expire_held
-- Held deliveries created before :before give up waiting. Only 'held' rows change, so
-- replicas sweeping at once, or a release racing this, each change a row at most once.
UPDATE deliveries
SET status = 'expired', next_attempt_at = NULL, updated_at = :now
WHERE namespace = :namespace AND endpoint = :endpoint AND status = 'held'
  AND created_at < :before;

-- name: cancel_endpoint
UPDATE deliveries
SET status = 'cancelled', next_attempt_at = NULL, lease_owner = NULL, lease_until = NULL,
    updated_at = :now
WHERE namespace = :namespace AND endpoint = :endpoint AND status IN ('pending', 'failed', 'held');

-- name: open_endpoints
-- Endpoints that still have work queued: at start-up, those deleted meanwhile are cancelled.
SELECT DISTINCT namespace, endpoint FROM deliveries
WHERE status IN ('pending', 'failed', 'held');

-- == endpoint state ===================================================================

-- name: record_attempt_state
-- One attempt's outcome. The inserted row's consecutive_failures is 0 for a success and 1
-- for a failure; an existing row resets or adds one. A disabled endpoint keeps the reason
-- and time it was first disabled with.
INSERT INTO endpoint_states AS s (
    namespace, endpoint, version, last_delivery_time, last_success_time, last_failure_time,
    last_http_status, last_error, consecutive_failures, disabled_reason, disabled_at
)
VALUES (
    :namespace, :endpoint, :version, :ended_at, :success_time, :failure_time,
    :http_status, :error, :failures, :disable_reason, :disabled_at
)
ON CONFLICT (namespace, endpoint) DO UPDATE SET
    version = excluded.version,
    last_delivery_time = excluded.last_delivery_time,
    last_success_time = coalesce(excluded.last_success_time, s.last_success_time),
    last_failure_time = coalesce(excluded.last_failure_time, s.last_failure_time),
    last_http_status = excluded.last_http_status,
    last_error = excluded.last_error,
    consecutive_failures = CASE
        WHEN excluded.consecutive_failures = 0 THEN 0
        ELSE s.consecutive_failures + 1
    END,
    disabled_reason = coalesce(s.disabled_reason, excluded.disabled_reason),
    disabled_at = coalesce(s.disabled_at, excluded.disabled_at);

-- name: disable
INSERT INTO endpoint_states AS s (namespace, endpoint, version, disabled_reason, disabled_at)
VALUES (:namespace, :endpoint, :version, :reason, :now)
ON CONFLICT (namespace, endpoint) DO UPDATE SET
    version = excluded.version,
    disabled_reason = excluded.disabled_reason,
    disabled_at = excluded.disabled_at;

-- name: enable
-- Without a new enable token, the one last acted on stays recorded.
INSERT INTO endpoint_states AS s (namespace, endpoint, version, enable_token)
VALUES (:namespace, :endpoint, :version, :enable_token)
ON CONFLICT (namespace, endpoint) DO UPDATE SET
    version = excluded.version,
    disabled_reason = NULL,
    disabled_at = NULL,
    consecutive_failures = 0,
    enable_token = coalesce(excluded.enable_token, s.enable_token);

-- name: enable_once
-- The enable annotation's value, acted on once across replicas: only a disabled endpoint
-- whose recorded token differs changes (the version lock orders two replicas, and the
-- second finds the token already written).
UPDATE endpoint_states
SET version = :version, disabled_reason = NULL, disabled_at = NULL,
    consecutive_failures = 0, enable_token = :enable_token
WHERE namespace = :namespace AND endpoint = :endpoint
  AND disabled_reason IS NOT NULL
  AND (enable_token IS NULL OR enable_token <> :enable_token);

-- name: touch_state
-- Held or released deliveries change an endpoint's counts without an attempt: a new
-- version makes stats_since report it (with a row, even before its first attempt).
INSERT INTO endpoint_states AS s (namespace, endpoint, version)
VALUES (:namespace, :endpoint, :version)
ON CONFLICT (namespace, endpoint) DO UPDATE SET version = excluded.version;

-- name: select_state
-- The state columns, in rows.state_row's order (also select_disabled, select_stats).
SELECT s.namespace, s.endpoint, s.version, s.last_delivery_time, s.last_success_time,
       s.last_failure_time, s.last_http_status, s.last_error, s.consecutive_failures,
       s.disabled_reason, s.disabled_at, s.enable_token
FROM endpoint_states AS s
WHERE s.namespace = :namespace AND s.endpoint = :endpoint;

-- name: select_disabled
SELECT s.namespace, s.endpoint, s.version, s.last_delivery_time, s.last_success_time,
       s.last_failure_time, s.last_http_status, s.last_error, s.consecutive_failures,
       s.disabled_reason, s.disabled_at, s.enable_token
FROM endpoint_states AS s
WHERE s.disabled_reason IS NOT NULL
ORDER BY s.namespace, s.endpoint;

-- name: select_stats
-- Changed endpoints with their counts (rows.STATE_COUNT_KEYS); each count reads one index
-- range. `NOT a.success` is the attempts_failures index's predicate, word for word.
SELECT s.namespace, s.endpoint, s.version, s.last_delivery_time, s.last_success_time,
       s.last_failure_time, s.last_http_status, s.last_error, s.consecutive_failures,
       s.disabled_reason, s.disabled_at, s.enable_token,
    (SELECT count(*) FROM deliveries AS d
     WHERE d.namespace = s.namespace AND d.endpoint = s.endpoint
       AND d.status = 'delivered' AND d.updated_at >= :since) AS delivered,
    (SELECT count(*) FROM attempts AS a
     WHERE a.namespace = s.namespace AND a.endpoint = s.endpoint
       AND NOT a.success AND a.started_at >= :since) AS failed,
    (SELECT count(*) FROM deliveries AS d
     WHERE d.namespace = s.namespace AND d.endpoint = s.endpoint
       AND d.status = 'exhausted' AND d.updated_at >= :since) AS exhausted,
    (SELECT count(*) FROM deliveries AS d
     WHERE d.namespace = s.namespace AND d.endpoint = s.endpoint
       AND d.status IN ('pending', 'failed')) AS pending,
    (SELECT count(*) FROM deliveries AS d
     WHERE d.namespace = s.namespace AND d.endpoint = s.endpoint
       AND d.status = 'held') AS held,
    (SELECT count(*) FROM deliveries AS d
     WHERE d.namespace = s.namespace AND d.endpoint = s.endpoint
       AND d.status = 'expired' AND d.updated_at >= :since) AS expired
FROM endpoint_states AS s
WHERE s.version > :cursor
ORDER BY s.version;

-- == reading deliveries ===============================================================

-- name: list_deliveries
-- {filters} is built from the fixed conditions in core.list_filters, never from input.
-- The delivery columns, in rows.delivery_row's order (also select_delivery).
SELECT d.id, d.event_id, d.namespace, d.app, d.endpoint, d.event_type, d.status, d.attempts,
       d.created_at, d.updated_at, d.next_attempt_at, d.last_http_status, d.last_error
FROM deliveries AS d
WHERE {filters}
ORDER BY d.id DESC
LIMIT :limit;

-- name: select_delivery
SELECT d.id, d.event_id, d.namespace, d.app, d.endpoint, d.event_type, d.status, d.attempts,
       d.created_at, d.updated_at, d.next_attempt_at, d.last_http_status, d.last_error,
       e.payload
FROM deliveries AS d
JOIN events AS e ON e.id = d.event_id
WHERE d.namespace = :namespace AND d.id = :id;

-- name: select_attempts
SELECT attempt, started_at, duration_ms, http_status, error, response_snippet, success
FROM attempts
WHERE delivery_id = :id
ORDER BY attempt;

-- == resend, replay, housekeeping =====================================================

-- name: copy_delivery
INSERT INTO deliveries (
    id, event_id, namespace, app, endpoint, event_type, status, attempts,
    created_at, updated_at, next_attempt_at
)
SELECT :new_id, event_id, namespace, app, endpoint, event_type, 'pending', 0,
       :now, :now, :now
FROM deliveries
WHERE namespace = :namespace AND id = :id;

-- name: select_replayable
-- {filters} is built from fixed conditions in core.replay (statuses, the optional end).
SELECT id
FROM deliveries
WHERE namespace = :namespace AND endpoint = :endpoint
  AND created_at >= :since
  AND {filters}
ORDER BY id;

-- name: queue_stats
-- One statement, so the numbers come from one snapshot.
SELECT due.count, due.oldest,
    (SELECT count(*) FROM deliveries WHERE status IN ('pending', 'failed')) AS scheduled,
    (SELECT count(*) FROM deliveries WHERE status = 'held') AS held
FROM (
    SELECT count(*) AS count, min(next_attempt_at) AS oldest
    FROM deliveries
    WHERE status IN ('pending', 'failed')
      AND next_attempt_at <= :now
      AND (lease_until IS NULL OR lease_until <= :now)
) AS due;

-- name: purge
-- Deliveries and attempts go with their event (ON DELETE CASCADE).
DELETE FROM events
WHERE created_at < :before
  AND NOT EXISTS (
      SELECT 1 FROM deliveries AS d
      WHERE d.event_id = events.id AND d.status IN ('pending', 'failed', 'held')
  );

-- name: purge_rates
-- Rate budgets unused since :before (an endpoint sending again starts a new one).
DELETE FROM endpoint_rates WHERE tat < :before AND not_before < :before;

-- name: add_endpoint_rate
-- The rate row an endpoint's first reservation needs (reserve_rate updates only).
INSERT INTO endpoint_rates (namespace, endpoint) VALUES (:namespace, :endpoint)
ON CONFLICT (namespace, endpoint) DO NOTHING;

-- name: rate_not_before
-- A receiver's 429: no replica's reservation, nor send to an endpoint without a rate
-- limit, starts before :until (later wins). An upsert: an endpoint without a rate limit
-- has no row until its first 429.
INSERT INTO endpoint_rates AS r (namespace, endpoint, not_before)
VALUES (:namespace, :endpoint, :until)
ON CONFLICT (namespace, endpoint) DO UPDATE SET
    not_before = CASE WHEN r.not_before < excluded.not_before
                 THEN excluded.not_before ELSE r.not_before END;

-- name: slowed_endpoints
-- Endpoints a receiver's 429 holds back until a time after :now: what every replica's
-- endpoint-state owner reads with each refresh (a row per rate-limited or slowed
-- endpoint, and purge_rates drops the old ones: a scan of a small table).
SELECT namespace, endpoint, not_before FROM endpoint_rates WHERE not_before > :now;

-- == concurrency slots ================================================================

-- name: select_slots
-- The other owners' slots of an endpoint: one row per replica at most.
SELECT held, wanted FROM endpoint_slots
WHERE namespace = :namespace AND endpoint = :endpoint AND owner <> :owner;

-- name: set_slots
INSERT INTO endpoint_slots (namespace, endpoint, owner, held, wanted)
VALUES (:namespace, :endpoint, :owner, :held, :wanted)
ON CONFLICT (namespace, endpoint, owner) DO UPDATE SET
    held = excluded.held,
    wanted = excluded.wanted;

-- name: drop_slots
-- An owner that holds and wants nothing of the endpoint keeps no row.
DELETE FROM endpoint_slots
WHERE namespace = :namespace AND endpoint = :endpoint AND owner = :owner;

-- name: slot_contenders
-- Per endpoint, the other owners that hold or want its slots: each owner's share.
SELECT namespace, endpoint, COUNT(*) FROM endpoint_slots
WHERE owner <> :owner AND (held > 0 OR wanted > 0)
GROUP BY namespace, endpoint;
