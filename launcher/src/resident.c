/* The launcher's bound on loaded modules. The driver's cuModuleLoadData
 * gets slower with every module a context holds (BENCHMARKS.md: 13x at
 * 16,384), so a launcher keeps at most max_modules of the modules it
 * loaded from the store; past it, a pool task unloads the least recently
 * launched (a clock over the ring of resident kept entries: a launch sets
 * an entry's reference bit, the hand clears it, and unloads an entry found
 * clear), and a later launch loads its module again from the store.
 *
 * Unloading one entry (retire):
 *   1. under k->mu, LIVE -> RETIRING, noting the generation;
 *   2. wait until no launch holds a pin (launches pin before they read the
 *      function and check the state after: kc__pin);
 *   3. under k->mu, if the entry is still RETIRING in that generation (a
 *      launch may have taken it back meanwhile), take its module and mark
 *      it UNLOADED; then cuModuleUnload outside every lock, which waits
 *      for the module's queued GPU work (docs/GPU.md).
 * The task unloads down to 1/64 below the bound (low_mark), so one runs per
 * bound/64 loads. The bound is soft: modules in use are taken back, and a
 * pass that unloads none ends the task until the next load past the bound.
 *
 * Unless fixed (an option or KCACHE_MAX_MODULES), the bound is automatic:
 * it starts at KC_MODULES_AUTO_START, low enough that a process streaming
 * through thousands of new kernels keeps the driver fast, and doubles (up
 * to KC_MODULES_AUTO_MAX) when modules it unloaded are launched again, an
 * eighth of the bound of them since it last changed: a working set larger
 * than the bound would otherwise load many of its modules again on every
 * round. Lock order: k->mu, then resident_mu.
 */
#include "kernel_int.h"

#include <sched.h>
#include <stdlib.h>

/* At most this many victims are chosen per pass of the hand. */
#define BATCH 64

int kc__resident_add(kc_launcher_t *l, kept_t *m)
{
    int ok = 1;

    pthread_mutex_lock(&l->resident_mu);
    if (l->n_ring == l->ring_cap) {
        size_t cap = l->ring_cap ? l->ring_cap * 2 : 64;
        kept_t **grown = realloc(l->ring, cap * sizeof(*grown));
        if (grown) {
            l->ring = grown;
            l->ring_cap = cap;
        } else {
            ok = 0;
        }
    }
    if (ok)
        l->ring[l->n_ring++] = m;
    pthread_mutex_unlock(&l->resident_mu);
    return ok;
}

/* Unload m's module if no launch takes it back first. Returns whether it
 * did. */
static int retire(kc_launcher_t *l, kept_t *m)
{
    kc_kernel_t *k = m->k;
    unsigned gen, spins = 0, nap = 1;
    void *module;

    pthread_mutex_lock(&k->mu);
    if (atomic_load(&m->state) != KEPT_LIVE) {
        pthread_mutex_unlock(&k->mu);
        return 0;
    }
    gen = m->gen;
    atomic_store(&m->state, KEPT_RETIRING);
    pthread_mutex_unlock(&k->mu);

    /* A pin lasts one launch call: microseconds. A launch that finds it
     * RETIRING takes it back (kc__pin_slow): then it stays. */
    while (atomic_load(&m->pins) != 0) {
        if (atomic_load(&m->state) != KEPT_RETIRING)
            return 0;
        if (++spins < 64)
            sched_yield();
        else
            nap_ms(&nap);
    }

    pthread_mutex_lock(&k->mu);
    if (atomic_load(&m->state) != KEPT_RETIRING || m->gen != gen) {
        pthread_mutex_unlock(&k->mu);
        return 0;
    }
    module = m->module;
    m->module = NULL;
    atomic_store_explicit(&m->fn, NULL, memory_order_relaxed);
    atomic_store(&m->state, KEPT_UNLOADED);
    pthread_mutex_unlock(&k->mu);
    l->dev->ops->module_unload(l->dev, module);
    return 1;
}

/* Under resident_mu: up to max victims by the clock, from the loaded
 * entries whose reference bit is clear (the hand clears the bits it
 * passes). Two turns of the hand find every unpinned loaded entry. */
static size_t choose_locked(kc_launcher_t *l, kept_t **victims, size_t max)
{
    size_t n = 0;

    for (size_t step = 0; step < 2 * l->n_ring && n < max; step++) {
        kept_t *m = l->ring[l->hand];
        l->hand = (l->hand + 1) % l->n_ring;
        if (atomic_load(&m->state) != KEPT_LIVE)
            continue;
        if (atomic_exchange_explicit(&m->used, 0, memory_order_relaxed))
            continue;
        victims[n++] = m;
    }
    return n;
}

/* Under resident_mu: where an unload task stops, 1/64 of the bound below
 * it (a batch of 16 at 1024): unloads in batches of 64 held up the next
 * load by 1-4 ms on an H100, one at a time cost every load about 80 us
 * more (BENCHMARKS.md, "Issue 13, eleventh pass"). */
static size_t low_mark(const kc_launcher_t *l)
{
    return l->max_modules - (l->max_modules + 63) / 64;
}

/* The pool task: unload until the loaded count is back at the low mark,
 * or until a pass unloads none (nothing unused to choose, or every victim
 * taken back by a launch: in use); the next load past the bound queues it
 * again. */
static void unload_task(void *arg)
{
    kc_launcher_t *l = arg;
    size_t done = 1;
    uint64_t unloaded = 0;
    kept_t *victims[BATCH];

    pthread_mutex_lock(&l->resident_mu);
    /* The low mark is read again each pass: the automatic bound may have
     * grown meanwhile. */
    while (done && l->n_loaded > low_mark(l)) {
        size_t want = l->n_loaded - low_mark(l);
        size_t n = choose_locked(l, victims, want < BATCH ? want : BATCH);
        pthread_mutex_unlock(&l->resident_mu);
        done = 0;
        for (size_t i = 0; i < n; i++)
            done += (size_t)retire(l, victims[i]);
        pthread_mutex_lock(&l->resident_mu);
        l->n_loaded -= done;
        unloaded += done;
    }
    unsigned bound = l->max_modules;
    l->unloading = 0;
    pthread_mutex_unlock(&l->resident_mu);
    if (unloaded)
        kc__log(l, KC_LOG_DEBUG, "kcache: unloaded %llu modules (max_modules %u)",
                (unsigned long long)unloaded, bound);
}

void kc__resident_loaded(kc_launcher_t *l, int reloaded)
{
    unsigned raised = 0;
    int start;

    pthread_mutex_lock(&l->resident_mu);
    l->n_loaded++;
    /* The automatic bound: modules launched again after their unload show
     * a working set larger than the bound (a program that launches more
     * kernels in a loop than it would reload every one, round after
     * round); a stream of new kernels reloads none and keeps it low. */
    if (reloaded && l->max_modules_cap && l->max_modules < l->max_modules_cap &&
        ++l->reloads >= l->max_modules / 8) {
        l->max_modules = l->max_modules * 2 < l->max_modules_cap ? l->max_modules * 2
                                                                 : l->max_modules_cap;
        l->reloads = 0;
        raised = l->max_modules;
    }
    start = l->n_loaded > l->max_modules && !l->unloading;
    if (start)
        l->unloading = 1;
    pthread_mutex_unlock(&l->resident_mu);
    if (raised)
        kc__log(l, KC_LOG_INFO,
                "kcache: modules unloaded by the bound were launched again; the bound on "
                "loaded modules is now %u (KCACHE_MAX_MODULES sets a fixed one)",
                raised);
    if (start && kc__pool_submit(l->pool, unload_task, l) != KC_OK) {
        /* No thread to run it: the next load past the bound tries again. */
        pthread_mutex_lock(&l->resident_mu);
        l->unloading = 0;
        pthread_mutex_unlock(&l->resident_mu);
    }
}
