-- Each endpoint's rate budget, shared by every process claiming from the database (see
-- migrations/postgres/0003_endpoint_rates.sql, the same table): tat is the GCRA
-- theoretical arrival time (the next free send slot), not_before a receiver's 429 asking
-- every process to wait, granted the slot count of the last reservation (read back by
-- the reserving statement's RETURNING, which sees only new values).
CREATE TABLE endpoint_rates (
    namespace TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    tat REAL NOT NULL DEFAULT 0,
    not_before REAL NOT NULL DEFAULT 0,
    granted INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (namespace, endpoint)
);
