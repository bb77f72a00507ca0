-- The scheduler's lease and job columns; see ../postgres/0002_scheduler.sql.

CREATE TABLE leases (
    name       TEXT    PRIMARY KEY,
    holder     TEXT    NOT NULL,
    epoch      INTEGER NOT NULL CHECK (epoch > 0),
    expires_at INTEGER NOT NULL  -- milliseconds since the Unix epoch, database clock
);

ALTER TABLE jobs ADD COLUMN product TEXT NOT NULL DEFAULT '';
ALTER TABLE jobs ADD COLUMN phase TEXT NOT NULL DEFAULT 'training'
    CHECK (phase IN ('training', 'forecasting', 'done'));
ALTER TABLE jobs ADD COLUMN slot TEXT;
CREATE UNIQUE INDEX jobs_slot ON jobs (slot);
CREATE INDEX jobs_active ON jobs (state) WHERE state IN ('pending', 'running');
