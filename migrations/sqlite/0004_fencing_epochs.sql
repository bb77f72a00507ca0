-- The lease epoch of the scheduler that last wrote a job or a task (see the PostgreSQL
-- twin in ../postgres/).
ALTER TABLE jobs ADD COLUMN epoch INTEGER;
ALTER TABLE job_tasks ADD COLUMN epoch INTEGER;
