-- The W3C trace context a producer sent with the event (ingest's traceparent header),
-- sent again with every attempt so the producer's trace continues into the receiver.
ALTER TABLE events ADD COLUMN traceparent text;
