/* kc_store_recover: salvage the records of a damaged store into a new one.
 *
 * The source file is never mapped: core/lmdb_check.c's scanner reads every
 * page with pread and bounds checks, so no damage can fault this process
 * and no child process is needed. Every leaf entry whose key is a record
 * key and whose value passes kc_record_check is a candidate; candidates
 * are kept in memory, verified as kc_store_put_raw verifies (record checks,
 * derived keys, a blob's hash against its key), and the first good copy per
 * kind and key (a stale copy on a free page is as good as any: it is
 * checked in full) is written raw, in transactions of BATCH records.
 *
 * A split blob (core/blob_value.c) lies in two entries: its head, a blob
 * record cut short of the length its header declares, and its tail, bytes
 * that are no record, under the same key. Such heads and every 16-byte-key
 * entry that is not a record (a tail, perhaps) are collected too, then
 * paired by key and length into whole candidates; a head left without its
 * tail stays a candidate that never verifies, so it is counted damaged and
 * never written truncated. */
#include "kcache/store.h"

#include "kcache/blob.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "grow.h"
#include "lmdb_check.h"
#include "store_internal.h"
#include "wire.h"

typedef struct cand {
    int kind;
    kc_key_t key;
    uint8_t *data;
    size_t len;
    int state; /* 0: unwritten, 1: saved, 2: every copy bad */
} cand_t;

/* Tails are candidates of kind 0: sorted first, never written. */
#define TAIL_KIND 0
/* A tail is a leaf value: no larger than a page. */
#define TAIL_MAX 65536

typedef struct rec_ctx {
    cand_t *c;
    size_t n, cap;
    kc_recover_stats_t *st;
    int oom;
} rec_ctx_t;

static int carried(int kind)
{
    return kind == KC_REC_BLOB || kind == KC_REC_BUILD || kind == KC_REC_TUNING ||
           kind == KC_REC_BINMETA || kind == KC_REC_GROUP;
}

static int kind_of_db(const uint8_t *name, size_t len)
{
    for (int k = KC_REC_KIND_MIN; k <= KC_REC_KIND_MAX; k++) {
        const char *n = kc_rec_kind_name(k);
        if (n && strlen(n) == len && memcmp(n, name, len) == 0)
            return k;
    }
    return 0;
}

/* Add a candidate to c: a copy of a[alen] followed by b[blen] (a split
 * blob's head and tail, joined; blen 0 for a whole value). */
static int cand_add(rec_ctx_t *c, int kind, const uint8_t *key, const void *a,
                    size_t alen, const void *b, size_t blen)
{
    if (kc__grow((void **)&c->c, c->n, &c->cap, sizeof(*c->c), 1024) != 0)
        return KC_ENOMEM;
    cand_t *e = &c->c[c->n];
    if (!(e->data = malloc(alen + blen ? alen + blen : 1)))
        return KC_ENOMEM;
    memcpy(e->data, a, alen);
    if (blen)
        memcpy(e->data + alen, b, blen);
    memcpy(e->key.b, key, sizeof(e->key.b));
    e->kind = kind;
    e->len = alen + blen;
    e->state = 0;
    c->n++;
    return KC_OK;
}

static int scan_fn(const uint8_t *key, size_t klen, const uint8_t *val, size_t vlen,
                   int db, void *arg)
{
    rec_ctx_t *c = arg;
    int kind;

    if (db) {
        kind = kind_of_db(key, klen);
        uint64_t entries = kc__load_u64le(val + 32);
        if (kind && entries > c->st->expected[kind] && entries < ((uint64_t)1 << 40))
            c->st->expected[kind] = entries;
        return 0;
    }
    if (klen != sizeof(kc_key_t))
        return 0;
    if (kc_record_check(val, vlen, &kind, NULL) != KC_OK) {
        MDB_val v = {vlen, (void *)val};
        if (vlen >= 12 && val[4] == KC_REC_BLOB && kc__blob_value_is_head(&v))
            kind = KC_REC_BLOB; /* a split blob's head */
        else if (vlen > 0 && vlen <= TAIL_MAX)
            kind = TAIL_KIND; /* a split blob's tail, perhaps */
        else
            return 0;
    } else if (!carried(kind)) {
        return 0;
    }
    if (cand_add(c, kind, key, val, vlen, NULL, 0) != KC_OK) {
        c->oom = 1;
        return 1;
    }
    return 0;
}

static int cand_cmp(const void *a, const void *b)
{
    const cand_t *x = a, *y = b;
    if (x->kind != y->kind)
        return x->kind < y->kind ? -1 : 1;
    return memcmp(x->key.b, y->key.b, sizeof(x->key.b));
}

/* Whether a candidate is a good record under its key, as kc_store_put_raw
 * judges one (a blob made with a dictionary, which cannot be checked
 * without it, is not taken). */
static int verified(const cand_t *e)
{
    char why[256];
    return kc__record_verify(e->kind, &e->key, e->data, e->len, why, sizeof(why)) ==
           KC_OK;
}

/* Pair every split blob's head with the tails under its key whose length
 * makes it whole, adding each pair as a candidate; c is sorted, and sorted
 * again after. */
static int join_split(rec_ctx_t *c)
{
    size_t n = c->n, tails = 0, added = 0;

    while (tails < n && c->c[tails].kind == TAIL_KIND)
        tails++;
    for (size_t i = tails; i < n && c->c[i].kind <= KC_REC_BLOB; i++) {
        MDB_val v = {c->c[i].len, c->c[i].data};
        size_t want = kc__blob_value_len(&v), lo = 0, hi = tails;
        if (want <= v.mv_size)
            continue;
        while (lo < hi) { /* the first tail at or after the key */
            size_t mid = lo + (hi - lo) / 2;
            if (memcmp(c->c[mid].key.b, c->c[i].key.b, sizeof(kc_key_t)) < 0)
                lo = mid + 1;
            else
                hi = mid;
        }
        for (; lo < tails && memcmp(c->c[lo].key.b, c->c[i].key.b, sizeof(kc_key_t)) == 0;
             lo++) {
            if (c->c[lo].len != want - v.mv_size)
                continue;
            /* cand_add may move c->c: index, never point. */
            cand_t h = c->c[i], t = c->c[lo];
            if (cand_add(c, KC_REC_BLOB, h.key.b, h.data, h.len, t.data, t.len) != KC_OK)
                return KC_ENOMEM;
            added++;
        }
    }
    if (added)
        qsort(c->c, c->n, sizeof(*c->c), cand_cmp);
    return KC_OK;
}

/* Records go in transactions of this many. */
#define BATCH 2048

typedef struct batch_ctx {
    kc__env_t *env;
    cand_t **c;
    size_t n;
} batch_ctx_t;

static int batch_fn(MDB_txn *txn, void *arg)
{
    batch_ctx_t *b = arg;
    for (size_t i = 0; i < b->n; i++) {
        MDB_val k = kc__key_val(&b->c[i]->key), v = {b->c[i]->len, b->c[i]->data};
        int rc = kc__rec_put(txn, b->env, b->c[i]->kind, &k, &v, 0);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* Write the first good copy of each key, in batched transactions. */
static int write_all(kc_store_t *dst, rec_ctx_t *c)
{
    cand_t **good = malloc((c->n ? c->n : 1) * sizeof(*good));
    size_t n_good = 0;
    int rc = 0;

    if (!good)
        return KC_ENOMEM;
    for (size_t i = 0; i < c->n;) {
        size_t j = i;
        cand_t *pick = NULL;
        while (j < c->n && cand_cmp(&c->c[i], &c->c[j]) == 0)
            j++;
        if (c->c[i].kind == TAIL_KIND) { /* tails are written with their heads */
            i = j;
            continue;
        }
        for (size_t k = i; k < j && !pick; k++)
            if (verified(&c->c[k]))
                pick = &c->c[k];
        c->st->found[c->c[i].kind]++;
        if (pick) {
            good[n_good++] = pick;
            c->st->saved[c->c[i].kind]++;
        } else {
            c->st->damaged[c->c[i].kind]++;
        }
        i = j;
    }
    for (size_t i = 0; i < n_good && rc == 0; i += BATCH) {
        batch_ctx_t b = {dst->env, good + i, n_good - i < BATCH ? n_good - i : BATCH};
        rc = kc__env_write(dst->env, batch_fn, &b);
    }
    free(good);
    return rc == 0 ? KC_OK : kc__is_mdb_rc(rc) ? kc__mdb_code(rc) : rc;
}

int kc_store_recover(const char *src_dir, const char *dst_dir, kc_recover_stats_t *out)
{
    char src[PATH_MAX], dst_data[PATH_MAX];
    kc_recover_stats_t local;
    kc_store_t *dst = NULL;
    rec_ctx_t c;
    struct stat sb;
    int fd, rc;

    if (!out)
        out = &local;
    memset(out, 0, sizeof(*out));
    memset(&c, 0, sizeof(c));
    c.st = out;
    if (!src_dir || !dst_dir)
        return kc__store_open_fail(KC_EINVAL, "recover: no source or destination given");
    if (snprintf(src, sizeof(src), "%s/data.mdb", src_dir) >= (int)sizeof(src) ||
        snprintf(dst_data, sizeof(dst_data), "%s/data.mdb", dst_dir) >=
            (int)sizeof(dst_data))
        return kc__store_open_fail(KC_EINVAL, "recover: path too long");
    if (stat(dst_data, &sb) == 0)
        return kc__store_open_fail(
            KC_EEXIST, "%s already holds a store; name a new directory", dst_dir);
    fd = open(src, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &sb) != 0) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        return kc__store_open_fail(kc__mdb_code(e), "%s: %s", src, strerror(e));
    }
    rc = kc__mdb_scan(fd, (uint64_t)sb.st_size, scan_fn, &c, &out->pages);
    close(fd);
    if (c.oom || rc == KC_ENOMEM) {
        rc = kc__store_open_fail(KC_ENOMEM, "out of memory");
        goto out;
    }
    if (c.n)
        qsort(c.c, c.n, sizeof(*c.c), cand_cmp);
    if (join_split(&c) != KC_OK) {
        rc = kc__store_open_fail(KC_ENOMEM, "out of memory");
        goto out;
    }
    rc = kc_store_open(dst_dir, NULL, &dst);
    if (rc != KC_OK)
        goto out; /* kc_store_open wrote the message */
    rc = write_all(dst, &c);
    if (rc == KC_OK)
        rc = kc_store_flush(dst);
    kc_store_close(dst);
    if (rc != KC_OK)
        rc = kc__store_open_fail(rc, "cannot write %s", dst_dir);
out:
    for (size_t i = 0; i < c.n; i++)
        free(c.c[i].data);
    free(c.c);
    return rc;
}
