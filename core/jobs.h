/* jobs.h — durable jobs in PostgreSQL and the notification outbox on top of them. */
#ifndef SP_CORE_JOBS_H
#define SP_CORE_JOBS_H

#include <spearhead/plugin.h>

struct sp_core;
struct sp_jobs;

#define SP_JOBS_CHANNEL "sp_jobs"

/* The runner of one worker process: claims jobs of the queues that have handlers,
 * woken by NOTIFY and by a poll timer (NOTIFY is lost while disconnected). */
struct sp_jobs *sp_jobs_new(struct sp_core *core);
/* Stops claiming; running jobs are left to their lease (another worker takes them). */
void sp_jobs_free(struct sp_jobs *jobs);
/* Starts claiming (after plugins registered their handlers). */
void sp_jobs_start(struct sp_jobs *jobs);
/* GET /v1/admin/jobs, POST /v1/admin/jobs/{id}/retry. */
int sp_jobs_register_routes(struct sp_core *core);
int sp_jobs_handle(struct sp_jobs *jobs, struct sp_plugin *owner, const char *queue,
                   int concurrency, sp_job_fn *fn, void *arg);
void sp_jobs_remove_owner(struct sp_jobs *jobs, struct sp_plugin *owner);
int sp_jobs_enqueue(struct sp_core *core, struct sp_db_tx *tx, const char *queue,
                    const json_t *payload, unsigned delay_s, const char *dedupe_key,
                    sp_db_result_fn *cb, void *arg);
void sp_job_finish(struct sp_job *job, enum sp_job_outcome outcome, unsigned retry_s,
                   const char *error);
int sp_job_attempt(const struct sp_job *job);
const char *sp_job_id(const struct sp_job *job);

/* Channels delivering notifications; a channel is served by a job handler on
 * "deliver.<name>". */
int sp_channels_register(struct sp_core *core, struct sp_plugin *owner, const char *name,
                         enum sp_channel_audience audience);
void sp_channels_remove_owner(struct sp_core *core, struct sp_plugin *owner);
/* Appends the names of the person channels to names (a JSON array). */
void sp_channels_list(struct sp_core *core, json_t *names);
/* Writes the notification to the outbox, inside tx when given. */
int sp_notify(struct sp_core *core, struct sp_db_tx *tx, const struct sp_notification *n,
              sp_db_result_fn *cb, void *arg);

#endif
