-- Traces: a job carries the W3C trace context of the request that started it (see the
-- PostgreSQL twin in ../postgres/).
ALTER TABLE jobs ADD COLUMN traceparent TEXT NOT NULL DEFAULT '';
