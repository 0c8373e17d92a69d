/* A fixed thread pool for parallel compiles. Internal. */
#ifndef KCACHE_POOL_H
#define KCACHE_POOL_H

#include <stddef.h>

typedef struct kc__pool kc__pool_t;
typedef void (*kc__task_fn)(void *arg);

/* n_threads 0: online CPUs, capped at 16. */
int kc__pool_create(unsigned n_threads, kc__pool_t **out);
/* Runs queued tasks to completion, then joins. Accepts NULL. */
void kc__pool_destroy(kc__pool_t *pool);
int kc__pool_submit(kc__pool_t *pool, kc__task_fn fn, void *arg);
unsigned kc__pool_size(const kc__pool_t *pool);

/* Run fn(args[i]) for every i on the pool and wait for all of them. Runs
 * inline when the pool has no threads. */
int kc__pool_run_all(kc__pool_t *pool, kc__task_fn fn, void *const *args, size_t n);

#endif
