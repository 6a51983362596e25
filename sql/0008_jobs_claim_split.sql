-- Claims take ready pending jobs and running jobs whose lease expired, in (run_at, id)
-- order. One index for both made a claim step over every running job, and with stale
-- statistics (a large outbox transaction just committed) PostgreSQL read every ready
-- job and sorted them, once per claim. Two indexes, each matching one half of the
-- claim: the pending half walks its index in order and stops after the batch.
DROP INDEX sp_jobs_ready;
CREATE INDEX sp_jobs_pending ON sp_jobs (queue, run_at, id) WHERE state = 'pending';
CREATE INDEX sp_jobs_leased ON sp_jobs (queue, locked_until) WHERE state = 'running';
