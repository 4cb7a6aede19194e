-- The delivery services claiming from this database, one row per running process: its
-- owner name (the lease_owner of its claims) and when it last said it was alive. A row
-- is written after the process has taken the session advisory lock on its name, and is
-- deleted by a clean shutdown or by whoever gives back the leases of a process that is
-- gone (lock free) or silent (heartbeat_at too old). A handful of rows, read whole.
CREATE TABLE lease_owners (
    owner text PRIMARY KEY,
    started_at double precision NOT NULL,
    heartbeat_at double precision NOT NULL
);
