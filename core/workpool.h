/* workpool.h — a few threads for blocking CPU work (argon2id) off the event loop. */
#ifndef SP_CORE_WORKPOOL_H
#define SP_CORE_WORKPOOL_H

#include <event2/event.h>

struct sp_workpool;

/* work runs on a pool thread; done runs afterwards on the loop thread, with the same
 * arg. Neither may be NULL. */
typedef void sp_work_fn(void *arg);

/* Needs evthread_use_pthreads() before the base was created. */
struct sp_workpool *sp_workpool_new(struct event_base *base, int threads);
/* Waits for running work, runs pending done callbacks, joins the threads. */
void sp_workpool_free(struct sp_workpool *pool);
int sp_workpool_submit(struct sp_workpool *pool, sp_work_fn *work, sp_work_fn *done, void *arg);

#endif
