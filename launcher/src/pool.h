/* A thread pool for parallel compiles. Its threads start when tasks need
 * them (a task queued while none is idle starts one, up to the pool's
 * size), so creating a pool starts none. Internal. */
#ifndef KCACHE_POOL_H
#define KCACHE_POOL_H

#include <stddef.h>

typedef struct kc__pool kc__pool_t;
typedef void (*kc__task_fn)(void *arg);

/* n_threads 0: the CPUs the process may run on (sched_getaffinity), at
 * most 16, counted when the first thread starts. */
int kc__pool_create(unsigned n_threads, kc__pool_t **out);
/* Runs queued tasks to completion, then joins. Accepts NULL. */
void kc__pool_destroy(kc__pool_t *pool);
/* KC_ENOMEM when no thread could be started: the caller runs fn. */
int kc__pool_submit(kc__pool_t *pool, kc__task_fn fn, void *arg);
/* Queue fn for the threads already started, starting none: it runs when
 * one of them is free. KC_EBUSY when the pool has no thread (fn is not
 * queued: work that only pays off beside other work is skipped). */
int kc__pool_submit_idle(kc__pool_t *pool, kc__task_fn fn, void *arg);
/* The most threads it will start. */
unsigned kc__pool_size(kc__pool_t *pool);
/* The threads started so far. */
unsigned kc__pool_started(kc__pool_t *pool);

/* Run fn(args[i]) for every i on the pool and wait for all of them; the
 * caller runs tasks too. Runs inline without a pool. */
int kc__pool_run_all(kc__pool_t *pool, kc__task_fn fn, void *const *args, size_t n);

#endif
