-- Held deliveries older than their endpoint's holdFor become 'expired': a new status for
-- the CHECK constraint (0001 declared it inline, so PostgreSQL named it
-- deliveries_status_check). Adding it reads the table once under the migration's lock;
-- every row passes, the old constraint being narrower.
ALTER TABLE deliveries DROP CONSTRAINT deliveries_status_check;
ALTER TABLE deliveries ADD CONSTRAINT deliveries_status_check
    CHECK (status IN ('pending', 'failed', 'delivered', 'exhausted', 'held', 'cancelled',
                      'expired'));
