#include "pool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#include "forkgen.h"
#include "kcache/errors.h"

#define POOL_MAX_THREADS 256

typedef struct task {
    struct task *next;
    kc__task_fn fn;
    void *arg;
    /* A run_all call's countdown, or NULL for a task from kc__pool_submit,
     * whose node the pool frees after running it. */
    size_t *remaining;
} task_t;

/* Threads start when work needs them, not at create: a launcher that only
 * hits the store never starts one. The caller of submit or run_all starts a
 * thread only when no thread is idle or starting; a thread that takes a task
 * while more are queued than threads idle starts the next one before it
 * runs its task. So a burst of tasks (a kernel's candidates) grows the pool
 * from within, and the caller, whose next step may be the process's first
 * launch, pays for one pthread_create at most. pthread_create runs with the
 * pool's lock released: under load, or while another thread is in dlopen
 * (NVRTC's load takes milliseconds), it can take that long. */
struct kc__pool {
    pthread_mutex_t mu;
    pthread_cond_t work;    /* a task was queued, or the pool is stopping */
    pthread_cond_t done;    /* a run_all countdown moved */
    pthread_cond_t started; /* a thread being started is started (or failed) */
    task_t *head, *tail;
    size_t queued; /* tasks in the queue */
    int stopping;
    /* The most threads it starts; for a pool sized by the CPUs, 0 until
     * its first thread starts. */
    unsigned max_threads;
    unsigned n_slots;  /* slots of threads taken (started, starting or failed) */
    unsigned n_live;   /* threads started: threads[0 .. n_live) */
    unsigned starting; /* pthread_create calls in progress */
    unsigned idle;     /* threads waiting for work, or starting */
    pthread_t threads[POOL_MAX_THREADS];
    _Atomic unsigned gen; /* the fork generation of its threads (pool_use) */
};

static void pool_sync_init(kc__pool_t *pool)
{
    pthread_mutex_init(&pool->mu, NULL);
    pthread_cond_init(&pool->work, NULL);
    pthread_cond_init(&pool->done, NULL);
    pthread_cond_init(&pool->started, NULL);
}

/* A pool used in a forked child (forkgen.h): its threads stayed in the
 * parent, and one of them may have held its lock at the fork. So at its
 * first use in the child its lock and conditions are made anew and it
 * counts no thread: it starts its own as tasks need them. Tasks queued at
 * the fork stay queued, and run in the child too; tasks that were running
 * on the parent's threads do not finish in the child. */
static int pool_adopt(void *arg)
{
    kc__pool_t *pool = arg;
    pool_sync_init(pool);
    pool->n_slots = pool->n_live = pool->starting = pool->idle = 0;
    return 0;
}

static void pool_use(kc__pool_t *pool)
{
    kc__fork_adopt(&pool->gen, pool_adopt, pool);
}

/* The CPUs this process may run on (its affinity: a container's cpuset, a
 * taskset), at most 16; the online CPUs where the affinity is unknown.
 * Asked when the first thread starts, not at create: glibc answers the
 * online count by reading a sysfs file, and a launcher that never compiles
 * need not ask at all. */
static unsigned auto_size(void)
{
    cpu_set_t set;
    long n = 0;
    if (sched_getaffinity(0, sizeof(set), &set) == 0)
        n = CPU_COUNT(&set);
    if (n < 1)
        n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > 16 ? 16 : (unsigned)n;
}

static unsigned size_locked(kc__pool_t *pool)
{
    if (pool->max_threads == 0)
        pool->max_threads = auto_size();
    return pool->max_threads;
}

static void push_locked(kc__pool_t *pool, task_t *t)
{
    t->next = NULL;
    if (pool->tail)
        pool->tail->next = t;
    else
        pool->head = t;
    pool->tail = t;
    pool->queued++;
}

static task_t *pop_locked(kc__pool_t *pool)
{
    task_t *t = pool->head;
    if (t) {
        pool->head = t->next;
        if (!pool->head)
            pool->tail = NULL;
        pool->queued--;
    }
    return t;
}

/* Take t out of the queue, wherever it is. */
static void unlink_locked(kc__pool_t *pool, task_t *t)
{
    task_t *prev = NULL;
    for (task_t *x = pool->head; x; prev = x, x = x->next) {
        if (x != t)
            continue;
        if (prev)
            prev->next = x->next;
        else
            pool->head = x->next;
        if (pool->tail == x)
            pool->tail = prev;
        pool->queued--;
        return;
    }
}

/* Runs t with the lock released and retakes it. */
static void run_task_locked(kc__pool_t *pool, task_t *t)
{
    pthread_mutex_unlock(&pool->mu);
    t->fn(t->arg);
    pthread_mutex_lock(&pool->mu);
    if (t->remaining) {
        if (--*t->remaining == 0)
            pthread_cond_broadcast(&pool->done);
    } else {
        free(t);
    }
}

static int spawn_locked(kc__pool_t *pool);

static void *worker(void *arg)
{
    kc__pool_t *pool = arg;
    pthread_mutex_lock(&pool->mu);
    pool->idle--; /* counted idle by spawn_locked until here */
    for (;;) {
        task_t *t = pop_locked(pool);
        if (t) {
            /* More tasks than idle threads: start one more first. */
            if (pool->queued > pool->idle)
                spawn_locked(pool);
            run_task_locked(pool, t);
            continue;
        }
        if (pool->stopping)
            break;
        pool->idle++;
        pthread_cond_wait(&pool->work, &pool->mu);
        pool->idle--;
    }
    pthread_mutex_unlock(&pool->mu);
    return NULL;
}

/* Under the lock: start one thread if the pool may grow, with the lock
 * released around pthread_create. Returns whether one started. A thread
 * that cannot be started is not an error: the started ones (or, with none,
 * the caller) run the tasks; its slot is not reused. */
static int spawn_locked(kc__pool_t *pool)
{
    if (pool->stopping || pool->n_slots >= size_locked(pool))
        return 0;
    /* Only a pool with threads needs looking after in a forked child:
     * forks are counted from the process's first pool thread on. */
    kc__fork_watch();
    pool->n_slots++;
    pool->starting++;
    pool->idle++; /* counted idle until it runs: it takes a task without waiting */
    pthread_mutex_unlock(&pool->mu);
    pthread_t th;
    int ok = pthread_create(&th, NULL, worker, pool) == 0;
    pthread_mutex_lock(&pool->mu);
    if (ok) {
        pool->threads[pool->n_live++] = th;
    } else {
        pool->idle--;
    }
    if (--pool->starting == 0)
        pthread_cond_broadcast(&pool->started);
    return ok;
}

/* Under the lock, for a caller that queued work: start a thread only if no
 * thread is idle or starting (those take the work, and start more). */
static void grow_locked(kc__pool_t *pool)
{
    if (pool->idle == 0 && pool->starting == 0)
        spawn_locked(pool);
}

int kc__pool_create(unsigned n_threads, kc__pool_t **out)
{
    *out = NULL;
    if (n_threads > POOL_MAX_THREADS)
        return KC_EINVAL;

    kc__pool_t *pool = calloc(1, sizeof(*pool));
    if (!pool)
        return KC_ENOMEM;
    pool_sync_init(pool);
    kc__fork_mark(&pool->gen);
    pool->max_threads = n_threads;
    *out = pool;
    return KC_OK;
}

void kc__pool_destroy(kc__pool_t *pool)
{
    if (!pool)
        return;
    pool_use(pool);
    pthread_mutex_lock(&pool->mu);
    pool->stopping = 1;
    pthread_cond_broadcast(&pool->work);
    /* A thread being started gets its slot filled before it is joined. */
    while (pool->starting)
        pthread_cond_wait(&pool->started, &pool->mu);
    pthread_mutex_unlock(&pool->mu);
    for (unsigned i = 0; i < pool->n_live; i++)
        pthread_join(pool->threads[i], NULL);
    /* With no thread ever started, tasks submitted meanwhile still run. */
    pthread_mutex_lock(&pool->mu);
    for (task_t *t; (t = pop_locked(pool));)
        run_task_locked(pool, t);
    pthread_mutex_unlock(&pool->mu);
    pthread_cond_destroy(&pool->started);
    pthread_cond_destroy(&pool->done);
    pthread_cond_destroy(&pool->work);
    pthread_mutex_destroy(&pool->mu);
    free(pool);
}

/* Queue fn(arg). may_start: start a thread if none is idle or starting
 * (KC_ENOMEM when none could: the caller runs it); else only queue it for
 * a thread already started (KC_EBUSY when there is none). Started threads
 * leave only at destroy, so a queued task is always taken. */
static int submit(kc__pool_t *pool, kc__task_fn fn, void *arg, int may_start)
{
    if (!pool || !fn)
        return KC_EINVAL;
    pool_use(pool);
    task_t *t = malloc(sizeof(*t));
    if (!t)
        return KC_ENOMEM;
    *t = (task_t){.fn = fn, .arg = arg};
    pthread_mutex_lock(&pool->mu);
    if (!may_start && (pool->n_live == 0 || pool->stopping)) {
        pthread_mutex_unlock(&pool->mu);
        free(t);
        return KC_EBUSY;
    }
    push_locked(pool, t);
    if (may_start)
        grow_locked(pool);
    if (pool->n_live == 0 && pool->starting == 0) {
        /* No thread could start: the caller runs it. */
        unlink_locked(pool, t);
        pthread_mutex_unlock(&pool->mu);
        free(t);
        return KC_ENOMEM;
    }
    pthread_cond_signal(&pool->work);
    pthread_mutex_unlock(&pool->mu);
    return KC_OK;
}

int kc__pool_submit(kc__pool_t *pool, kc__task_fn fn, void *arg)
{
    return submit(pool, fn, arg, 1);
}

int kc__pool_submit_idle(kc__pool_t *pool, kc__task_fn fn, void *arg)
{
    return submit(pool, fn, arg, 0);
}

unsigned kc__pool_size(kc__pool_t *pool)
{
    if (!pool)
        return 0;
    pool_use(pool);
    pthread_mutex_lock(&pool->mu);
    unsigned n = size_locked(pool);
    pthread_mutex_unlock(&pool->mu);
    return n;
}

unsigned kc__pool_started(kc__pool_t *pool)
{
    if (!pool)
        return 0;
    pool_use(pool);
    pthread_mutex_lock(&pool->mu);
    unsigned n = pool->n_live;
    pthread_mutex_unlock(&pool->mu);
    return n;
}

int kc__pool_run_all(kc__pool_t *pool, kc__task_fn fn, void *const *args, size_t n)
{
    if (!fn || (n && !args))
        return KC_EINVAL;
    if (!pool) {
        for (size_t i = 0; i < n; i++)
            fn(args[i]);
        return KC_OK;
    }
    if (n == 0)
        return KC_OK;
    pool_use(pool);
    /* All nodes up front, so a failed allocation queues nothing. */
    task_t *tasks = calloc(n, sizeof(*tasks));
    if (!tasks)
        return KC_ENOMEM;
    size_t remaining = n;
    pthread_mutex_lock(&pool->mu);
    for (size_t i = 0; i < n; i++) {
        tasks[i].fn = fn;
        tasks[i].arg = args[i];
        tasks[i].remaining = &remaining;
        push_locked(pool, &tasks[i]);
    }
    grow_locked(pool);
    pthread_cond_broadcast(&pool->work);
    /* The caller helps instead of only waiting: a run_all from inside a
     * pool task then cannot deadlock a pool whose workers all wait. */
    while (remaining > 0) {
        task_t *t = pop_locked(pool);
        if (t)
            run_task_locked(pool, t);
        else
            pthread_cond_wait(&pool->done, &pool->mu);
    }
    pthread_mutex_unlock(&pool->mu);
    free(tasks);
    return KC_OK;
}
