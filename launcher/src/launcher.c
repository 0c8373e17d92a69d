/* Launcher creation and teardown: options, the store, the device, the
 * compile pool, statistics and error messages. The kernels and the launch flow
 * (kernel.c and the files it names) use this file, never the other way round. */
#include "diag.h"
#include "launcher_int.h"
#include "opts.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void kc__errmsg_set(const kc_launcher_t *l, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    kc__diag_vfail(l, 0, fmt, ap);
    va_end(ap);
}

const char *kc_launcher_errmsg(const kc_launcher_t *launcher)
{
    return kc__diag_get(launcher);
}

const char *kc_launcher_create_errmsg(void)
{
    return kc__diag_get(kc__diag_launcher_create);
}

void kc__log(const kc_launcher_t *l, kc_log_level_t level, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;

    if (!l->log || level > l->log_level)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    l->log(l->log_user, level, msg);
}

kc_store_t *kc_launcher_store(const kc_launcher_t *launcher)
{
    if (!launcher)
        return NULL;
    /* The store is opened at first use: asking for it is a use. The open
     * changes only the launcher's lazily filled fields. */
    kc__launcher_open_store((kc_launcher_t *)launcher);
    return launcher->store;
}

const char *kc_launcher_arch(const kc_launcher_t *launcher)
{
    return launcher ? launcher->arch : "";
}

/* A cache must never fail the user's work: stores that cannot be opened
 * are logged and the launcher runs without them. The stores are opts.store,
 * else the layers of opts.store_dir (a directory or a colon-separated list),
 * else those of KCACHE_PATH, else KCACHE_DIR, else the XDG cache directory
 * (never /tmp: a shared, world-writable cache would let any user plant
 * kernels).
 *
 * kc_launcher_create only reads which stores (the options and the
 * environment, as they are then) into l->store_path; the open itself waits
 * for the first use (kc__launcher_open_store: the first kc_kernel_get or
 * kc_launcher_store). A process that creates a launcher early, or never
 * launches, does not pay for it there, and a launcher that will never
 * launch maps nothing. With a remote tier the store is opened at once,
 * as the remote needs to know whether it is writable. */
static void store_failed(kc_launcher_t *l, int rc)
{
    kc__log(l, KC_LOG_WARN, "kcache: cannot open a store: %s (%s); running without one",
            kc_strerror(rc), kc_store_open_errmsg());
}

static void open_store_now(kc_launcher_t *l)
{
    /* A damaged store file is set aside and replaced by a fresh store
     * (kcache/store.h); the warnings logged below say so. */
    kc_store_opts_t so = KC_STORE_OPTS_INIT;
    /* Mapped read-only until the first write: a process whose launches
     * all hit the store never sets up LMDB's writer. */
    so.flags = KC_STORE_SET_ASIDE_DAMAGED | KC_STORE_LAZY_WRITE;
    int rc = kc_layers_open(l->store_path, &so, &l->layers);
    free(l->store_path);
    l->store_path = NULL;
    if (rc != KC_OK) {
        store_failed(l, rc);
        l->layers = NULL;
        return;
    }
    if (*kc_layers_warnings(l->layers))
        kc__log(l, KC_LOG_WARN, "kcache: store layers skipped or set aside:\n%s",
                kc_layers_warnings(l->layers));
    l->store = kc_layers_writable(l->layers);
    if (!l->store)
        l->store = kc_layers_store(l->layers, 0);
}

void kc__launcher_open_store(kc_launcher_t *l)
{
    if (atomic_load_explicit(&l->store_ready, memory_order_acquire))
        return;
    pthread_mutex_lock(&l->store_mu);
    if (!atomic_load_explicit(&l->store_ready, memory_order_relaxed)) {
        if (l->store_path)
            open_store_now(l);
        atomic_store_explicit(&l->store_ready, 1, memory_order_release);
    }
    pthread_mutex_unlock(&l->store_mu);
}

/* Which stores (into l->store_path), or a borrowed one at once. */
static void choose_store(kc_launcher_t *l, const kc_launcher_opts_t *opts)
{
    int rc;

    if (opts->no_store)
        return;
    if (opts->store) {
        rc = kc_layers_wrap(opts->store, &l->layers);
        if (rc != KC_OK) {
            store_failed(l, rc);
            l->layers = NULL;
            return;
        }
        l->store = kc_layers_store(l->layers, 0);
        return;
    }
    if (opts->store_dir && opts->store_dir[0]) {
        if (!(l->store_path = strdup(opts->store_dir)))
            store_failed(l, KC_ENOMEM);
        return;
    }
    rc = kc_layers_default_path(&l->store_path);
    if (rc != KC_OK)
        store_failed(l, rc);
}

/* The remote tier, if one is named and there is a writable layer to pull
 * into. A URL that cannot be read is logged and ignored. */
static void open_remote(kc_launcher_t *l, const kc_launcher_opts_t *opts)
{
    const char *url = opts->remote_url ? opts->remote_url : getenv("KCACHE_REMOTE");

    if (opts->no_remote || !url || !*url)
        return;
    kc__launcher_open_store(l);
    if (!l->store || kc_store_is_readonly(l->store)) {
        kc__log(l, KC_LOG_WARN,
                "kcache: remote tier %s not used: no writable store to pull into", url);
        return;
    }
    if (kc_remote_open(url, NULL, &l->remote) != KC_OK) {
        kc__log(l, KC_LOG_WARN, "kcache: remote tier not used: %s",
                kc_remote_errmsg(NULL));
        return;
    }
    const char *q = getenv("KCACHE_REMOTE_QUEUE");
    char *e = NULL;
    unsigned long v = q && *q ? strtoul(q, &e, 10) : 0;
    l->wb_max = e && !*e && v > 0 && v < 1000000 ? (unsigned)v : 1024;
}

void kc__remote_account(kc_launcher_t *l)
{
    kc_remote_stats_t now;

    if (!l->remote || !l->store)
        return;
    /* The snapshot under the lock: two threads accounting at once must not
     * subtract a newer snapshot from an older one. */
    pthread_mutex_lock(&l->remote_mu);
    kc_remote_stats(l->remote, &now);
    kc_store_count(l->store, KC_COUNTER_REMOTE_PUSHES,
                   now.pushes - l->remote_seen.pushes);
    kc_store_count(l->store, KC_COUNTER_REMOTE_PULLS, now.pulls - l->remote_seen.pulls);
    kc_store_count(l->store, KC_COUNTER_REMOTE_REJECTED,
                   now.rejected - l->remote_seen.rejected);
    kc_store_count(l->store, KC_COUNTER_REMOTE_TIMEOUTS,
                   now.timeouts - l->remote_seen.timeouts);
    kc_store_count(l->store, KC_COUNTER_REMOTE_ERRORS,
                   now.errors - l->remote_seen.errors);
    kc_store_count(l->store, KC_COUNTER_REMOTE_UNTRUSTED,
                   now.untrusted - l->remote_seen.untrusted);
    l->remote_seen = now;
    pthread_mutex_unlock(&l->remote_mu);
}

typedef struct push_task {
    kc_launcher_t *l;
    kc_rec_kind_t kind;
    kc_key_t key;
} push_task_t;

/* A pool task: copy a published tuning's chain, or a build, to the remote. */
static void push_task(void *arg)
{
    push_task_t *t = arg;
    kc_launcher_t *l = t->l;
    int rc = t->kind == KC_REC_TUNING
                 ? kc_remote_push(l->remote, l->store, &t->key)
                 : kc_remote_push_build(l->remote, l->store, &t->key);
    if (rc != KC_OK)
        kc__remote_failed(l, t->kind == KC_REC_TUNING ? "push" : "push build", rc);
    kc__remote_account(l);
    atomic_fetch_sub(&l->wb_pending, 1);
    free(t);
}

void kc__remote_push_later(kc_launcher_t *l, kc_rec_kind_t kind, const kc_key_t *key)
{
    push_task_t *t;

    if (!l->remote || !l->store)
        return;
    if (atomic_fetch_add(&l->wb_pending, 1) >= l->wb_max) {
        atomic_fetch_sub(&l->wb_pending, 1);
        kc_store_count(l->store, KC_COUNTER_REMOTE_DROPS, 1);
        kc__log(l, KC_LOG_DEBUG,
                "kcache: remote tier: %u pushes queued; this one is dropped", l->wb_max);
        return;
    }
    if (!(t = malloc(sizeof(*t)))) {
        atomic_fetch_sub(&l->wb_pending, 1);
        kc_store_count(l->store, KC_COUNTER_REMOTE_DROPS, 1);
        return;
    }
    *t = (push_task_t){l, kind, *key};
    if (kc__pool_submit(l->pool, push_task, t) != KC_OK) {
        atomic_fetch_sub(&l->wb_pending, 1);
        kc_store_count(l->store, KC_COUNTER_REMOTE_DROPS, 1);
        free(t);
    }
}

void kc__remote_failed(kc_launcher_t *l, const char *what, int rc)
{
    int first = atomic_exchange(&l->remote_warned, 1) == 0;
    kc__log(l, first ? KC_LOG_WARN : KC_LOG_DEBUG, "kcache: remote tier: %s: %s (%s)%s",
            what, kc_strerror(rc), kc_remote_errmsg(l->remote),
            first ? "; going on without it, and retrying later" : "");
}

static int open_device(kc_launcher_t *l, const kc_launcher_opts_t *opts)
{
    int rc;

    switch (opts->device) {
    case KC_DEVICE_CUDA: {
        char why[KC__DIAG_SIZE] = "";
        rc = kc__device_cuda_open(opts->ordinal, &l->dev, why, sizeof(why));
        if (rc != KC_OK)
            return kc__diag_fail(kc__diag_launcher_create, rc, "%s", why);
        break;
    }
    case KC_DEVICE_SIM:
        if (!opts->sim) {
            kc__diag_fail(kc__diag_launcher_create, 0, "KC_DEVICE_SIM needs opts.sim");
            return KC_EINVAL;
        }
        rc = kc__device_sim_open(opts->sim, &l->dev);
        if (rc != KC_OK) {
            kc__diag_fail(kc__diag_launcher_create, 0,
                          "cannot open the simulation device: %s", kc_strerror(rc));
            return rc;
        }
        break;
    case KC_DEVICE_NONE:
        if (!opts->arch || !opts->arch[0]) {
            kc__diag_fail(kc__diag_launcher_create, 0,
                          "KC_DEVICE_NONE needs opts.arch (e.g. \"sm_90\")");
            return KC_EINVAL;
        }
        return KC_OK;
    default:
        kc__diag_fail(kc__diag_launcher_create, 0, "unknown device kind %d",
                      (int)opts->device);
        return KC_EINVAL;
    }
    rc = l->dev->ops->info(l->dev, &l->info);
    if (rc != KC_OK) {
        kc__diag_fail(kc__diag_launcher_create, 0, "cannot query the device: %s",
                      kc__device_errmsg(l->dev));
        return rc;
    }
    return KC_OK;
}

/* A pool task: kc_store_warm on every layer, off the caller's path. */
static void warm_store(void *arg)
{
    kc_launcher_t *l = arg;
    for (size_t i = 0; i < kc_layers_count(l->layers); i++)
        kc_store_warm(kc_layers_store(l->layers, i));
}

void kc__launcher_warm_once(kc_launcher_t *l, int may_start_thread)
{
    /* Only a launcher that can launch reads cubins on its critical path. */
    if (!l->dev || !l->layers || l->no_warmup || atomic_exchange(&l->warm_started, 1))
        return;
    /* Run on the caller it would only move the first hit's costs earlier
     * on the same thread: with no thread to take it, it waits for a later
     * registration. */
    int rc = may_start_thread ? kc__pool_submit(l->pool, warm_store, l)
                              : kc__pool_submit_idle(l->pool, warm_store, l);
    if (rc == KC_EBUSY)
        atomic_store(&l->warm_started, 0);
    else if (rc != KC_OK)
        warm_store(l);
}

/* The bound on loaded modules: the option, else KCACHE_MAX_MODULES, each a
 * fixed bound (0 from KC_MODULES_UNBOUNDED or KCACHE_MAX_MODULES=0: none);
 * else the automatic one, KC_MODULES_AUTO_START growing to at most
 * KC_MODULES_AUTO_MAX (*cap). A value that is not a number is ignored. */
static unsigned max_modules(const kc_launcher_opts_t *opts, unsigned *cap)
{
    *cap = 0;
    if (opts->max_modules)
        return opts->max_modules == KC_MODULES_UNBOUNDED ? 0 : opts->max_modules;
    const char *v = getenv("KCACHE_MAX_MODULES");
    char *end = NULL;
    unsigned long n = v && *v ? strtoul(v, &end, 10) : 0;
    if (v && *v && !*end && n < KC_MODULES_UNBOUNDED)
        return (unsigned)n;
    *cap = KC_MODULES_AUTO_MAX;
    return KC_MODULES_AUTO_START;
}

int kc_launcher_create(const kc_launcher_opts_t *opts, kc_launcher_t **out)
{
    kc_launcher_opts_t o;
    kc_launcher_t *l = NULL;
    int rc;

    kc__diag_release(kc__diag_launcher_create);
    if (!out)
        return KC_EINVAL;
    *out = NULL;
    if (kc__opts_read(&o, sizeof(o), opts) != KC_OK) {
        kc__diag_fail(kc__diag_launcher_create, 0,
                      "kc_launcher_create: opts->size is %zu, this library's is %zu "
                      "(use KC_LAUNCHER_OPTS_INIT)",
                      opts->size, sizeof(o));
        return KC_EINVAL;
    }
    opts = &o;
    l = calloc(1, sizeof(*l));
    if (!l) {
        rc = KC_ENOMEM;
        goto fail;
    }
    pthread_mutex_init(&l->lock, NULL);
    pthread_mutex_init(&l->tune_lock, NULL);
    pthread_mutex_init(&l->prefetch_lock, NULL);
    pthread_mutex_init(&l->remote_mu, NULL);
    pthread_mutex_init(&l->store_mu, NULL);
    pthread_mutex_init(&l->resident_mu, NULL);
    l->max_modules = max_modules(opts, &l->max_modules_cap);
    l->bounded = l->max_modules != 0;
    l->kind = opts->device;
    l->log = opts->log;
    l->log_user = opts->log_user;
    l->log_level = opts->log_level;
    l->no_prefetch = opts->no_prefetch;
    l->no_warmup = opts->no_warmup;
    l->contention = opts->contention;
    l->lease_ttl_ms = opts->lease_ttl_ms ? opts->lease_ttl_ms : 60000;
    l->lease_wait_ms = opts->lease_wait_ms ? opts->lease_wait_ms : 30000;
    l->tune = (kc__tune_opts_t){
        .warmup = opts->warmup ? opts->warmup : 2,
        .budget_ms = opts->budget_ms > 0 ? opts->budget_ms : 25.0,
        .min_reps = opts->min_reps ? opts->min_reps : 5,
        .max_reps = opts->max_reps ? opts->max_reps : 200,
        .no_l2_flush = opts->no_l2_flush,
    };
    if (l->tune.min_reps > l->tune.max_reps)
        l->tune.min_reps = l->tune.max_reps;

    rc = open_device(l, opts);
    if (rc != KC_OK)
        goto fail;
    snprintf(l->arch, sizeof(l->arch), "%s",
             opts->arch && opts->arch[0] ? opts->arch : l->info.arch);
    if (!l->arch[0]) {
        rc = KC_EINVAL;
        kc__diag_fail(kc__diag_launcher_create, 0,
                      "the device reports no arch; set opts.arch");
        goto fail;
    }
    if (!l->dev)
        snprintf(l->info.arch, sizeof(l->info.arch), "%.15s", l->arch);

    rc = kc__pool_create(opts->compile_threads, &l->pool);
    if (rc != KC_OK) {
        kc__diag_fail(kc__diag_launcher_create, 0, "cannot start the compile threads: %s",
                      kc_strerror(rc));
        goto fail;
    }
    choose_store(l, opts);
    open_remote(l, opts);
    *out = l;
    return KC_OK;
fail:
    kc__launcher_free(l);
    return rc;
}

/* Everything but the kernels, which kernel.c frees first: the device, the
 * stores, the remote tier. */
void kc__launcher_free(kc_launcher_t *l)
{
    if (!l)
        return;
    /* The pool runs what is queued (pushes included) before it stops. */
    kc__pool_destroy(l->pool);
    kc__remote_account(l);
    if (l->dev)
        l->dev->ops->destroy(l->dev);
    /* Layers close the stores they opened; a borrowed store is only
     * flushed. */
    if (l->store)
        kc_store_flush(l->store);
    kc_layers_close(l->layers);
    kc_remote_close(l->remote);
    kc__index_each(&l->prefetch_index, free);
    kc__index_free(&l->prefetch_index);
    pthread_mutex_destroy(&l->prefetch_lock);
    kc__index_free(&l->by_identity);
    kc__index_free(&l->by_name);
    free(l->store_path);
    pthread_mutex_destroy(&l->store_mu);
    pthread_mutex_destroy(&l->remote_mu);
    pthread_mutex_destroy(&l->lock);
    pthread_mutex_destroy(&l->tune_lock);
    free(l->ring);
    pthread_mutex_destroy(&l->resident_mu);
    free(l);
}
