-- Each endpoint's rate budget, shared by every replica so a limit holds cluster-wide
-- (store/sql/<dialect>.sql reserve_rate): tat is the GCRA theoretical arrival time (the
-- next free send slot), not_before a receiver's 429 asking every replica to wait,
-- granted the slot count of the last reservation (read back by the reserving
-- statement's RETURNING, which sees only new values). One row per rate-limited endpoint.
CREATE TABLE endpoint_rates (
    namespace text NOT NULL,
    endpoint text NOT NULL,
    tat double precision NOT NULL DEFAULT 0,
    not_before double precision NOT NULL DEFAULT 0,
    granted integer NOT NULL DEFAULT 0,
    PRIMARY KEY (namespace, endpoint)
);
