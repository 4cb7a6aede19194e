-- The W3C trace context a producer sent with the event (see
-- migrations/postgres/0005_event_traceparent.sql).
ALTER TABLE events ADD COLUMN traceparent TEXT;
