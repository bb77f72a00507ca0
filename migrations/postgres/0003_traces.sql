-- Traces: a job carries the W3C trace context of the request that started it, so the
-- spans of its work (on any node, after any failover) join that request's trace. Empty for
-- jobs the schedule fired. The SQLite twin in ../sqlite/ must describe the same data.
ALTER TABLE jobs ADD COLUMN traceparent text NOT NULL DEFAULT '';
