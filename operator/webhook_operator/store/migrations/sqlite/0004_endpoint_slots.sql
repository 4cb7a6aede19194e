-- Each endpoint's concurrency slots (see migrations/postgres/0004_endpoint_slots.sql, the
-- same table). One process claims from a SQLite file, so it is the only owner here; the
-- table keeps the two stores one.
CREATE TABLE endpoint_slots (
    namespace TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    owner TEXT NOT NULL,
    held INTEGER NOT NULL,
    wanted INTEGER NOT NULL,
    PRIMARY KEY (namespace, endpoint, owner)
);
