-- Each endpoint's concurrency slots (maxConcurrency), shared by every replica so the limit
-- holds cluster-wide (delivery/endpoint_slots.py): a row per endpoint and owner that holds
-- slots or wants some. held is what the owner may have in flight, wanted what it waits
-- for beyond that; the sum of held never exceeds the limit, and owners wanting slots cap
-- each other at a fair share. Rows of gone owners are deleted with their leases.
CREATE TABLE endpoint_slots (
    namespace text NOT NULL,
    endpoint text NOT NULL,
    owner text NOT NULL,
    held integer NOT NULL,
    wanted integer NOT NULL,
    PRIMARY KEY (namespace, endpoint, owner)
);
