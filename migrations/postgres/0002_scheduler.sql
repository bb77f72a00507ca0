-- The scheduler: a lease that fences the cluster singleton, and what a job needs to resume
-- on another node. The SQLite twin in ../sqlite/ must describe the same data.

-- Named leases. The holder renews before `expires_at`; anyone may take an expired lease, and
-- every take bumps `epoch`, so a writer holding an older epoch is refused (fencing).
CREATE TABLE leases (
    name       text        PRIMARY KEY,
    holder     text        NOT NULL,
    epoch      bigint      NOT NULL CHECK (epoch > 0),
    expires_at bigint      NOT NULL  -- milliseconds since the Unix epoch, database clock
);

-- The product a job trains, the phase it is in, and the schedule slot that fired it (a
-- slot fires at most one job, whichever scheduler fires it).
ALTER TABLE jobs ADD COLUMN product text NOT NULL DEFAULT '';
ALTER TABLE jobs ADD COLUMN phase text NOT NULL DEFAULT 'training'
    CHECK (phase IN ('training', 'forecasting', 'done'));
ALTER TABLE jobs ADD COLUMN slot text;
CREATE UNIQUE INDEX jobs_slot ON jobs (slot);
CREATE INDEX jobs_active ON jobs (state) WHERE state IN ('pending', 'running');
