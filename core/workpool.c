/* workpool.c — a fixed set of pthreads taking jobs from one queue; finished jobs are
 * handed back to the loop through an event activated from the worker thread
 * (libevent is made thread-aware with evthread_use_pthreads in main). */
#include "workpool.h"
#include "util.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

struct job {
	sp_work_fn *work, *done;
	void *arg;
	struct job *next;
};

struct sp_workpool {
	pthread_mutex_t lock;
	pthread_cond_t wake;
	struct job *queue, *queue_tail, *finished;
	struct event *finished_ev;
	pthread_t *threads;
	int nthreads;
	bool stopping;
};

static void *thread_main(void *arg)
{
	struct sp_workpool *pool = arg;
	pthread_mutex_lock(&pool->lock);
	for (;;) {
		while (!pool->queue && !pool->stopping)
			pthread_cond_wait(&pool->wake, &pool->lock);
		if (!pool->queue)
			break; /* stopping and nothing left */
		struct job *j = pool->queue;
		pool->queue = j->next;
		if (!pool->queue)
			pool->queue_tail = NULL;
		pthread_mutex_unlock(&pool->lock);
		j->work(j->arg);
		pthread_mutex_lock(&pool->lock);
		j->next = pool->finished;
		pool->finished = j;
		event_active(pool->finished_ev, EV_READ, 0);
	}
	pthread_mutex_unlock(&pool->lock);
	return NULL;
}

static void run_finished(struct sp_workpool *pool)
{
	pthread_mutex_lock(&pool->lock);
	struct job *list = pool->finished;
	pool->finished = NULL;
	pthread_mutex_unlock(&pool->lock);
	/* The list is newest first; run in completion order. */
	struct job *rev = NULL;
	while (list) {
		struct job *n = list->next;
		list->next = rev;
		rev = list;
		list = n;
	}
	while (rev) {
		struct job *n = rev->next;
		rev->done(rev->arg);
		free(rev);
		rev = n;
	}
}

static void finished_cb(evutil_socket_t fd, short what, void *arg)
{
	run_finished(arg);
}

struct sp_workpool *sp_workpool_new(struct event_base *base, int threads)
{
	struct sp_workpool *pool = sp_calloc(1, sizeof(*pool));
	pthread_mutex_init(&pool->lock, NULL);
	pthread_cond_init(&pool->wake, NULL);
	pool->finished_ev = event_new(base, -1, 0, finished_cb, pool);
	pool->threads = sp_calloc((size_t)threads, sizeof(pthread_t));
	for (int i = 0; i < threads; i++)
		if (pthread_create(&pool->threads[i], NULL, thread_main, pool) == 0)
			pool->nthreads++;
	if (pool->nthreads == 0) {
		sp_workpool_free(pool);
		return NULL;
	}
	return pool;
}

void sp_workpool_free(struct sp_workpool *pool)
{
	if (!pool)
		return;
	pthread_mutex_lock(&pool->lock);
	pool->stopping = true;
	pthread_cond_broadcast(&pool->wake);
	pthread_mutex_unlock(&pool->lock);
	for (int i = 0; i < pool->nthreads; i++)
		pthread_join(pool->threads[i], NULL);
	run_finished(pool);
	event_free(pool->finished_ev);
	pthread_cond_destroy(&pool->wake);
	pthread_mutex_destroy(&pool->lock);
	free(pool->threads);
	free(pool);
}

int sp_workpool_submit(struct sp_workpool *pool, sp_work_fn *work, sp_work_fn *done, void *arg)
{
	if (!pool || !work || !done)
		return -1;
	struct job *j = sp_calloc(1, sizeof(*j));
	j->work = work;
	j->done = done;
	j->arg = arg;
	pthread_mutex_lock(&pool->lock);
	if (pool->queue_tail)
		pool->queue_tail->next = j;
	else
		pool->queue = j;
	pool->queue_tail = j;
	pthread_cond_signal(&pool->wake);
	pthread_mutex_unlock(&pool->lock);
	return 0;
}
