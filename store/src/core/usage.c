/* Usage stamps (for LRU) and persistent counters. Both are buffered in the
 * handle and written together, by kc_store_flush, a publish or close, the
 * handle's flusher thread, or at process exit. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "deadline.h"
#include "store_internal.h"
#include "wire.h"

/* Usage stamps are flushed on their own once this many are buffered, so
 * that a long-running process holds a bounded amount of them: by the
 * store's flusher thread, off the caller's path. The buffer is bounded at
 * USAGE_MAX_PENDING distinct stamps: past it, while the flusher is behind
 * (another process holds the write lock, a slow disk), a stamp for a key
 * not buffered yet is dropped and counted (KC_COUNTER_USAGE_DROPPED); a
 * hit never waits for a write. Only where no flusher can run (it could not
 * be started) does the caller flush, at that bound; a forked child starts
 * its own (handles_after_fork_in_child). */
#define USAGE_AUTOFLUSH 4096
#define USAGE_MAX_PENDING (4 * USAGE_AUTOFLUSH)

/* At process exit, buffered stamps and counters of every open handle are
 * handed to its flusher, and the exit waits for them at most this long in
 * all (a write lock held elsewhere must not hold the process up). */
#define USAGE_EXIT_FLUSH_MS 1000

static const char *const counter_names[KC_COUNTER_COUNT_] = {
    "hits",
    "misses",
    "corrupt",
    "bytes_stored",
    "publishes",
    "compiles",
    "tunes",
    "evictions",
    "miss_no_tuning",
    "miss_build_unusable",
    "compile_us_saved",
    "tune_us_saved",
    "usage_dropped",
    "remote_pushes",
    "remote_pulls",
    "remote_drops",
    "remote_rejected",
    "remote_timeouts",
    "remote_errors",
    "remote_untrusted",
    "damaged_set_aside",
};

const char *kc_counter_name(int counter)
{
    if (counter < 0 || counter >= KC_COUNTER_COUNT_)
        return NULL;
    return counter_names[counter];
}

/* ---- counters in the meta database ----------------------------------------- */

/* The meta record that holds counter. */
static void counter_meta_name(int counter, char name[64])
{
    snprintf(name, 64, "counter.%s", counter_names[counter]);
}

int kc__counter_read(MDB_txn *txn, kc__env_t *env, int counter, uint64_t *value)
{
    char name[64];
    uint8_t buf[8];
    size_t len = 0;
    int rc;

    counter_meta_name(counter, name);
    rc = kc__meta_read(txn, env, name, buf, sizeof(buf), &len);
    *value = 0;
    if (rc == MDB_NOTFOUND)
        return 0;
    if (rc != 0)
        return rc;
    if (len != 8)
        return KC_ECORRUPT;
    *value = kc__load_u64le(buf);
    return 0;
}

static int counters_add(MDB_txn *txn, kc__env_t *env, const uint64_t *delta)
{
    for (int c = 0; c < KC_COUNTER_COUNT_; c++) {
        char name[64];
        uint8_t buf[8];
        uint64_t value;
        int rc;

        if (delta[c] == 0)
            continue;
        /* A damaged counter restarts from zero rather than blocking every
         * flush after it. */
        rc = kc__counter_read(txn, env, c, &value);
        if (rc == KC_ECORRUPT || rc == KC_EVERSION)
            value = 0;
        else if (rc != 0)
            return rc;
        kc__store_u64le(buf, value + delta[c]);
        counter_meta_name(c, name);
        rc = kc__meta_write(txn, env, name, buf, sizeof(buf), 0);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* ---- the table of buffered stamps ------------------------------------------- */

static size_t usage_hash(uint8_t kind, const kc_key_t *key)
{
    uint64_t h = kc__load_u64le(key->b) ^ kc__load_u64le(key->b + 8);
    return (size_t)((h ^ kind) * 0x9E3779B97F4A7C15ULL >> 17);
}

static kc__usage_ent_t *usage_slot(kc__usage_tab_t *t, uint8_t kind, const kc_key_t *key)
{
    size_t mask = t->cap - 1;
    for (size_t i = usage_hash(kind, key) & mask;; i = (i + 1) & mask) {
        kc__usage_ent_t *e = &t->ent[i];
        if (e->kind == 0 || (e->kind == kind && memcmp(e->key.b, key->b, 16) == 0))
            return e;
    }
}

/* Add a stamp (or merge one back), growing the table as needed. */
static int usage_add(kc__usage_tab_t *t, uint8_t kind, const kc_key_t *key,
                     uint64_t last_use, uint64_t uses)
{
    if ((t->len + 1) * 4 > t->cap * 3) {
        kc__usage_tab_t bigger = {NULL, t->cap ? t->cap * 2 : 64, 0};
        bigger.ent = calloc(bigger.cap, sizeof(*bigger.ent));
        if (!bigger.ent)
            return KC_ENOMEM;
        for (size_t i = 0; i < t->cap; i++) {
            if (t->ent[i].kind) {
                *usage_slot(&bigger, t->ent[i].kind, &t->ent[i].key) = t->ent[i];
                bigger.len++;
            }
        }
        free(t->ent);
        *t = bigger;
    }
    kc__usage_ent_t *e = usage_slot(t, kind, key);
    if (e->kind == 0) {
        e->kind = kind;
        e->key = *key;
        t->len++;
    }
    if (last_use > e->last_use)
        e->last_use = last_use;
    e->uses += uses;
    return KC_OK;
}

/* ---- writing what is pending ------------------------------------------------ */

int kc__usage_stamp(MDB_txn *txn, kc__env_t *env, const kc_key_t *key, uint64_t last_use,
                    uint64_t uses)
{
    kc_record_t rec = {.kind = KC_REC_USAGE, .version = KC_RECORD_VERSION};
    kc_record_t *old = NULL;
    MDB_val k = kc__key_val(key), v;
    int rc;

    rc = mdb_get(txn, env->dbi[KC_REC_USAGE], &k, &v);
    if (rc == 0 && kc_record_decode(v.mv_data, v.mv_size, &old) == KC_OK &&
        old->kind == KC_REC_USAGE) {
        rec.u.usage = old->u.usage;
    } else if (rc != 0 && rc != MDB_NOTFOUND) {
        return rc;
    }
    kc_free(old);
    if (last_use > rec.u.usage.last_use)
        rec.u.usage.last_use = last_use;
    rec.u.usage.uses += uses;
    return kc__txn_put_record(txn, env->dbi[KC_REC_USAGE], &k, &rec, 0);
}

void kc__pending_take(kc_store_t *st, kc__pending_t *out)
{
    pthread_mutex_lock(&st->pending_lock);
    *out = st->pending;
    memset(&st->pending, 0, sizeof(st->pending));
    pthread_mutex_unlock(&st->pending_lock);
}

void kc__pending_restore(kc_store_t *st, kc__pending_t *p)
{
    pthread_mutex_lock(&st->pending_lock);
    for (int c = 0; c < KC_COUNTER_COUNT_; c++)
        st->pending.counters[c] += p->counters[c];
    for (size_t i = 0; i < p->usage.cap; i++) {
        const kc__usage_ent_t *e = &p->usage.ent[i];
        if (e->kind)
            usage_add(&st->pending.usage, e->kind, &e->key, e->last_use, e->uses);
    }
    pthread_mutex_unlock(&st->pending_lock);
    free(p->usage.ent);
    memset(p, 0, sizeof(*p));
}

static int pending_empty(const kc__pending_t *p)
{
    if (p->usage.len)
        return 0;
    for (int c = 0; c < KC_COUNTER_COUNT_; c++)
        if (p->counters[c])
            return 0;
    return 1;
}

int kc__pending_write(MDB_txn *txn, kc__env_t *env, const kc__pending_t *p,
                      const uint64_t *extra)
{
    uint64_t delta[KC_COUNTER_COUNT_];
    int rc;

    for (size_t i = 0; i < p->usage.cap; i++) {
        const kc__usage_ent_t *e = &p->usage.ent[i];
        if (e->kind &&
            (rc = kc__usage_stamp(txn, env, &e->key, e->last_use, e->uses)) != 0)
            return rc;
    }
    for (int c = 0; c < KC_COUNTER_COUNT_; c++)
        delta[c] = p->counters[c] + (extra ? extra[c] : 0);
    return counters_add(txn, env, delta);
}

/* ---- the public calls ------------------------------------------------------- */

static void *flusher_main(void *arg)
{
    kc_store_t *st = arg;

    pthread_mutex_lock(&st->pending_lock);
    for (;;) {
        while (!st->flush_wanted && !st->flusher_stop)
            pthread_cond_wait(&st->flush_cv, &st->pending_lock);
        if (st->flusher_stop)
            break;
        st->flush_wanted = 0;
        pthread_mutex_unlock(&st->pending_lock);
        /* A failure leaves the stamps pending (kc_store_flush restores
         * them): the next request, a publish or close tries again. */
        kc_store_flush(st);
        pthread_mutex_lock(&st->pending_lock);
    }
    pthread_mutex_unlock(&st->pending_lock);
    return NULL;
}

/* Ask the flusher for a flush, starting it on first use. Returns 0 when it
 * will flush, -1 when it cannot (the caller flushes). Under pending_lock. */
static int request_flush_locked(kc_store_t *st)
{
    if (!st->flusher_started) {
        if (pthread_create(&st->flusher, NULL, flusher_main, st) != 0)
            return -1;
        st->flusher_started = 1;
    }
    st->flush_wanted = 1;
    pthread_cond_signal(&st->flush_cv);
    return 0;
}

void kc__usage_flusher_stop(kc_store_t *st)
{
    pthread_mutex_lock(&st->pending_lock);
    int started = st->flusher_started;
    st->flusher_stop = 1;
    pthread_cond_signal(&st->flush_cv);
    pthread_mutex_unlock(&st->pending_lock);
    if (started)
        pthread_join(st->flusher, NULL);
}

/* Whether a stamp for (kind, key) would take a new slot of a full buffer. */
static int usage_full_for(const kc__usage_tab_t *t, uint8_t kind, const kc_key_t *key)
{
    if (t->len < USAGE_MAX_PENDING)
        return 0;
    return usage_slot((kc__usage_tab_t *)t, kind, key)->kind == 0;
}

int kc_store_touch(kc_store_t *store, kc_rec_kind_t kind, const kc_key_t *key)
{
    int inline_flush = 0;
    size_t len;
    int rc = KC_OK;

    if (!store || !key)
        return KC_EINVAL;
    kc__store_begin_call(store);
    if (!kc__kind_has_key(kind) || kind == KC_REC_USAGE)
        return kc__store_fail(store, KC_EINVAL, "touch: invalid record kind %d",
                              (int)kind);
    if (store->readonly)
        return KC_OK;
    pthread_mutex_lock(&store->pending_lock);
    if (usage_full_for(&store->pending.usage, (uint8_t)kind, key) &&
        request_flush_locked(store) == 0) {
        /* The flusher is behind: drop this stamp rather than wait. */
        store->pending.counters[KC_COUNTER_USAGE_DROPPED]++;
        pthread_mutex_unlock(&store->pending_lock);
        return KC_OK;
    }
    rc = usage_add(&store->pending.usage, (uint8_t)kind, key, kc__now_s(), 1);
    len = store->pending.usage.len;
    if (rc == KC_OK && len >= USAGE_AUTOFLUSH && !store->flush_wanted)
        inline_flush = request_flush_locked(store) != 0;
    if (len >= USAGE_MAX_PENDING && request_flush_locked(store) != 0)
        inline_flush = 1;
    pthread_mutex_unlock(&store->pending_lock);
    if (rc != KC_OK)
        return kc__store_fail(store, rc, "touch: out of memory");
    if (inline_flush)
        return kc_store_flush(store);
    return KC_OK;
}

void kc_store_count(kc_store_t *store, kc_counter_t counter, uint64_t delta)
{
    if (!store || (int)counter < 0 || counter >= KC_COUNTER_COUNT_)
        return;
    pthread_mutex_lock(&store->pending_lock);
    store->pending.counters[counter] += delta;
    pthread_mutex_unlock(&store->pending_lock);
}

typedef struct flush_ctx {
    kc__env_t *env;
    const kc__pending_t *pending;
} flush_ctx_t;

static int flush_fn(MDB_txn *txn, void *arg)
{
    flush_ctx_t *c = arg;
    return kc__pending_write(txn, c->env, c->pending, NULL);
}

int kc_store_flush(kc_store_t *store)
{
    kc__pending_t p;
    int rc;

    if (!store)
        return KC_EINVAL;
    kc__store_begin_call(store);
    pthread_mutex_lock(&store->pending_lock);
    p = store->pending;
    memset(&store->pending, 0, sizeof(store->pending));
    store->flushes_running++;
    pthread_mutex_unlock(&store->pending_lock);
    rc = 0;
    if (!store->readonly && !pending_empty(&p)) {
        flush_ctx_t c = {store->env, &p};
        rc = kc__env_write(store->env, flush_fn, &c);
    }
    if (rc != 0)
        kc__pending_restore(store, &p);
    else
        free(p.usage.ent);
    pthread_mutex_lock(&store->pending_lock);
    store->flushes_running--;
    pthread_cond_broadcast(&store->flushed_cv);
    pthread_mutex_unlock(&store->pending_lock);
    if (rc != 0)
        return kc__store_finish(store, rc, "flush");
    return KC_OK;
}

/* ---- the flush at process exit ---------------------------------------------- */

static pthread_mutex_t open_lock = PTHREAD_MUTEX_INITIALIZER;
static kc_store_t *open_head;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

/* In a forked child, every open handle becomes the child's: its locks and
 * conditions made anew (a thread of the parent may have held one at the
 * fork; only the forking thread came along), no flusher (it stayed in the
 * parent: the child starts its own when it needs one), no flush or group
 * commit under way, and nothing buffered: the stamps and counter deltas
 * buffered at the fork are the parent's to write (the table is left, not
 * freed, as malloc's state is the parent's too). The environment under it
 * is opened afresh at its first use (lmdb_env.c, env_adopt). */
static void handles_after_fork_in_child(void)
{
    pthread_mutex_init(&open_lock, NULL);
    for (kc_store_t *st = open_head; st; st = st->open_next) {
        pthread_mutex_init(&st->pending_lock, NULL);
        pthread_cond_init(&st->flush_cv, NULL);
        pthread_cond_init(&st->flushed_cv, NULL);
        memset(&st->pending, 0, sizeof(st->pending));
        st->flusher_started = 0;
        st->flush_wanted = 0;
        st->flushes_running = 0;
    }
}

static void install_atfork(void)
{
    pthread_atfork(NULL, NULL, handles_after_fork_in_child);
}

void kc__usage_register(kc_store_t *st)
{
    pthread_once(&atfork_once, install_atfork);
    pthread_mutex_lock(&open_lock);
    st->open_prev = NULL;
    st->open_next = open_head;
    if (open_head)
        open_head->open_prev = st;
    open_head = st;
    pthread_mutex_unlock(&open_lock);
}

void kc__usage_unregister(kc_store_t *st)
{
    pthread_mutex_lock(&open_lock);
    if (st->open_prev)
        st->open_prev->open_next = st->open_next;
    else if (open_head == st)
        open_head = st->open_next;
    if (st->open_next)
        st->open_next->open_prev = st->open_prev;
    st->open_prev = st->open_next = NULL;
    pthread_mutex_unlock(&open_lock);
}

/* A handle's buffered stamps and counters, handed to its flusher; waits
 * until they are written or the deadline passes. Under open_lock, so no
 * handle is closed meanwhile. */
static void flush_one_at_exit(kc_store_t *st, const struct timespec *deadline)
{
    if (st->readonly)
        return;
    pthread_mutex_lock(&st->pending_lock);
    if (!pending_empty(&st->pending) && !st->flusher_stop &&
        request_flush_locked(st) == 0) {
        while (!pending_empty(&st->pending) || st->flush_wanted || st->flushes_running) {
            if (pthread_cond_timedwait(&st->flushed_cv, &st->pending_lock, deadline) ==
                ETIMEDOUT)
                break;
        }
    }
    pthread_mutex_unlock(&st->pending_lock);
}

/* Runs at exit() and when the library is unloaded. A handle closed by the
 * program has flushed already; this covers those left open. */
__attribute__((destructor)) static void flush_open_stores_at_exit(void)
{
    struct timespec deadline =
        kc__deadline_after(CLOCK_REALTIME, (uint64_t)USAGE_EXIT_FLUSH_MS * 1000000u);

    /* Timed: exit() may run while another thread of the process, stopped
     * with it, holds the lock. */
    if (pthread_mutex_timedlock(&open_lock, &deadline) != 0)
        return;
    for (kc_store_t *st = open_head; st; st = st->open_next)
        flush_one_at_exit(st, &deadline);
    pthread_mutex_unlock(&open_lock);
}

static int zero_fn(MDB_txn *txn, void *arg)
{
    kc__env_t *env = arg;

    for (int c = 0; c < KC_COUNTER_COUNT_; c++) {
        char name[64];
        MDB_val k;
        int rc;

        counter_meta_name(c, name);
        k.mv_data = name;
        k.mv_size = strlen(name);
        rc = mdb_del(txn, env->dbi[KC_REC_META], &k, NULL);
        if (rc != 0 && rc != MDB_NOTFOUND)
            return rc;
    }
    return 0;
}

int kc_store_counters_zero(kc_store_t *store)
{
    int rc;

    if (!store)
        return KC_EINVAL;
    kc__store_begin_call(store);
    if ((rc = kc__store_check_writable(store, "zero counters")) != KC_OK)
        return rc;
    /* Deltas buffered before the reset belong to the period it ends. */
    pthread_mutex_lock(&store->pending_lock);
    memset(store->pending.counters, 0, sizeof(store->pending.counters));
    pthread_mutex_unlock(&store->pending_lock);
    rc = kc__env_write(store->env, zero_fn, store->env);
    if (rc != 0)
        return kc__store_finish(store, rc, "zero counters");
    return KC_OK;
}
