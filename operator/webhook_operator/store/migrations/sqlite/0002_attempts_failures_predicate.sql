-- The failed-attempts index with PostgreSQL's predicate (NOT success), so one stats
-- statement (sql/queries.sql select_stats) reads it on both databases: SQLite uses a
-- partial index only when the query repeats its predicate as written.
DROP INDEX attempts_failures;
CREATE INDEX attempts_failures ON attempts (namespace, endpoint, started_at) WHERE NOT success;
