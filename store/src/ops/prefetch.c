/* kc_store_prefetch_hot: ask the kernel to read the most recently used
 * records' pages ahead, so that a process starting on a cold machine does
 * not fault them in one at a time on its first lookups.
 *
 * The store's map is opened with MDB_NORDAHEAD (core/lmdb_env.h): lookups
 * are random, and readahead around each fault would fill the page cache with
 * neighbours nobody asked for. What a process will want is best guessed from
 * the usage stamps: the records used last are the likeliest to be used
 * again. This walks the usage database, sorts the stamps newest first and,
 * for each stamp's record (a tuning, build, group or blob under that key),
 * madvise(MADV_WILLNEED)s the pages its value lies in, until max_bytes of
 * values are covered. A build brings its blob, and a tuning its winning
 * build (and so that build's blob): a publish stamps the tuning only, not
 * the winning build published with it (ops/publish.c). The B-tree pages leading to them
 * are read on the way (synchronously, but they are few and shared). It changes nothing
 * and returns as soon as the advice is given; the reads happen in the background. */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "store_internal.h"

typedef struct hot {
    kc_key_t key;
    uint64_t last_use;
} hot_t;

typedef struct prefetch_ctx {
    kc__env_t *env;
    uint64_t max_bytes;
    hot_t *hot;
    size_t n, cap;
    uint64_t bytes;   /* value bytes advised */
    uint64_t records; /* records advised */
} prefetch_ctx_t;

static int newest_first(const void *a, const void *b)
{
    uint64_t x = ((const hot_t *)a)->last_use, y = ((const hot_t *)b)->last_use;
    return x < y ? 1 : x > y ? -1 : 0;
}

static int collect(MDB_txn *txn, prefetch_ctx_t *c)
{
    MDB_cursor *cur;
    MDB_val k, v;
    int rc;

    if ((rc = mdb_cursor_open(txn, c->env->dbi[KC_REC_USAGE], &cur)) != 0)
        return rc;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        kc_record_t *rec = NULL;

        if (k.mv_size != sizeof(kc_key_t) ||
            kc_record_decode(v.mv_data, v.mv_size, &rec) != KC_OK)
            continue; /* a damaged stamp: not worth failing a hint for */
        if (rec->kind == KC_REC_USAGE) {
            if (c->n == c->cap) {
                size_t cap = c->cap ? 2 * c->cap : 1024;
                hot_t *h = realloc(c->hot, cap * sizeof(*h));
                if (!h) {
                    kc_free(rec);
                    rc = KC_ENOMEM;
                    break;
                }
                c->hot = h;
                c->cap = cap;
            }
            memcpy(c->hot[c->n].key.b, k.mv_data, sizeof(kc_key_t));
            c->hot[c->n].last_use = rec->u.usage.last_use;
            c->n++;
        }
        kc_free(rec);
    }
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

static void advise(const MDB_val *v)
{
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t start = (uintptr_t)v->mv_data & ~(page - 1);
    uintptr_t end = (uintptr_t)v->mv_data + v->mv_size;

    /* Advice only: a failure changes nothing that is correct. */
    (void)madvise((void *)start, end - start, MADV_WILLNEED);
}

/* Advise the build under key, if any, and its blob. */
static void advise_build(MDB_txn *txn, prefetch_ctx_t *c, const kc_key_t *key)
{
    MDB_val k = kc__key_val(key), v;
    kc_record_t *b = NULL;

    if (mdb_get(txn, c->env->dbi[KC_REC_BUILD], &k, &v) != 0)
        return;
    advise(&v);
    c->bytes += v.mv_size;
    c->records++;
    /* A build's blob is what its launch needs. */
    if (kc_record_decode(v.mv_data, v.mv_size, &b) == KC_OK && b->kind == KC_REC_BUILD) {
        MDB_val bk = kc__key_val(&b->u.build.blob), bv, bt;
        if (kc__blob_value_parts(txn, c->env, &bk, &bv, &bt) == 0) {
            advise(&bv);
            if (bt.mv_size)
                advise(&bt); /* a split blob's tail */
            c->bytes += bv.mv_size + bt.mv_size;
            c->records++;
        }
    }
    kc_free(b);
}

static int prefetch_fn(MDB_txn *txn, void *arg)
{
    static const int kinds[] = {KC_REC_TUNING, KC_REC_BUILD, KC_REC_GROUP, KC_REC_BLOB};
    prefetch_ctx_t *c = arg;
    int rc;

    c->n = 0;
    c->bytes = 0;
    c->records = 0;
    if ((rc = collect(txn, c)) != 0)
        return rc;
    if (c->n)
        qsort(c->hot, c->n, sizeof(*c->hot), newest_first);
    for (size_t i = 0; i < c->n && c->bytes < c->max_bytes; i++) {
        MDB_val k = kc__key_val(&c->hot[i].key), v, t = {0, NULL};
        for (size_t j = 0; j < sizeof(kinds) / sizeof(kinds[0]); j++) {
            if (!kc__env_has_db(c->env, kinds[j]))
                continue;
            if (kinds[j] == KC_REC_BLOB)
                rc = kc__blob_value_parts(txn, c->env, &k, &v, &t);
            else
                rc = mdb_get(txn, c->env->dbi[kinds[j]], &k, &v);
            if (rc == MDB_NOTFOUND)
                continue;
            if (rc != 0)
                return rc;
            if (kinds[j] == KC_REC_BUILD) {
                advise_build(txn, c, &c->hot[i].key);
                break;
            }
            advise(&v);
            if (t.mv_size)
                advise(&t); /* a split blob's tail */
            c->bytes += v.mv_size + t.mv_size;
            c->records++;
            /* A tuning's winning build is what its launch needs next. */
            if (kinds[j] == KC_REC_TUNING) {
                kc_record_t *tr = NULL;
                if (kc_record_decode(v.mv_data, v.mv_size, &tr) == KC_OK &&
                    tr->kind == KC_REC_TUNING)
                    advise_build(txn, c, &tr->u.tuning.winner_build);
                kc_free(tr);
            }
            break;
        }
    }
    return 0;
}

int kc_store_prefetch_hot(kc_store_t *store, uint64_t max_bytes, uint64_t *bytes,
                          uint64_t *records)
{
    prefetch_ctx_t c;
    int rc;

    if (bytes)
        *bytes = 0;
    if (records)
        *records = 0;
    if (!store)
        return KC_EINVAL;
    kc__store_begin_call(store);
    memset(&c, 0, sizeof(c));
    c.env = store->env;
    c.max_bytes = max_bytes ? max_bytes : UINT64_MAX;
    rc = kc__env_read(store->env, prefetch_fn, &c);
    free(c.hot);
    if (rc != 0)
        return kc__store_finish(store, rc, "prefetch");
    if (bytes)
        *bytes = c.bytes;
    if (records)
        *records = c.records;
    return KC_OK;
}
