-- The lease epoch of the scheduler that last wrote a job or a task: every fenced write
-- records the epoch it was fenced with, so which scheduler did what can be read back (a
-- stale scheduler's write would carry an older epoch than its successor's). NULL: written
-- before this column existed. The SQLite twin in ../sqlite/ must describe the same data.
ALTER TABLE jobs ADD COLUMN epoch bigint;
ALTER TABLE job_tasks ADD COLUMN epoch bigint;
