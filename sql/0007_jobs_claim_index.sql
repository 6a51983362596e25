-- Claims order ready jobs by (run_at, id) within a queue; with this index a claim reads
-- the next few entries instead of sorting every job that shares one run_at (an outbox
-- transaction gives all its jobs the same one).
DROP INDEX sp_jobs_ready;
CREATE INDEX sp_jobs_ready ON sp_jobs (queue, run_at, id) WHERE state IN ('pending', 'running');
ALTER TABLE sp_jobs SET (autovacuum_vacuum_scale_factor = 0.02, autovacuum_analyze_scale_factor = 0.02);
