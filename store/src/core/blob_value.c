/* Blob values as LMDB holds them: whole, or split in two (docs/FORMAT.md,
 * revision 1.4). LMDB stores a value too large for a leaf page in whole
 * overflow pages of its own, so a record of L bytes costs
 * ceil((L + 16) / psize) pages: up to a page of waste. A blob record whose
 * tail past its last whole overflow page is small enough to sit in a leaf
 * is stored split: its head, the first k * psize - 16 bytes, fills k
 * overflow pages of the "blob" database exactly, and the rest goes into
 * the "blobtail" database under the same key, inline in a leaf.
 *
 * A reader knows a head by its length: shorter than the 12 + P + 8 bytes
 * its own header declares. Every read and write of a blob value goes
 * through this file, so nothing above core sees a head. */
#include <string.h>

#include "store_internal.h"
#include "wire.h"

#define REC_HEADER 12  /* magic, kind, version, reserved, payload_len */
#define REC_TRAILER 8  /* the checksum */
#define PAGE_HEADER 16 /* LMDB's PAGEHDRSZ */
#define NODE_HEADER 8  /* LMDB's NODESIZE */

size_t kc__blob_value_len(const MDB_val *v)
{
    const uint8_t *p = v->mv_data;
    size_t declared;

    if (v->mv_size < REC_HEADER || memcmp(p, "KCR\0", 4) != 0)
        return v->mv_size;
    declared = REC_HEADER + (size_t)kc__load_u32le(p + 8) + REC_TRAILER;
    return declared > v->mv_size ? declared : v->mv_size;
}

int kc__blob_value_is_head(const MDB_val *v)
{
    return kc__blob_value_len(v) > v->mv_size;
}

void kc__blob_buf_free(kc__blob_buf_t *buf)
{
    free(buf->p);
    buf->p = NULL;
    buf->cap = 0;
}

int kc__blob_value_join(MDB_txn *txn, kc__env_t *env, const MDB_val *k, MDB_val *v,
                        kc__blob_buf_t *buf)
{
    size_t want = kc__blob_value_len(v);
    MDB_val key = *k, tail;
    int rc;

    if (want == v->mv_size)
        return 0;
    if (!env->has_blobtail)
        return KC_ECORRUPT;
    rc = mdb_get(txn, env->blobtail, &key, &tail);
    if (rc == MDB_NOTFOUND)
        return KC_ECORRUPT; /* a head without its tail */
    if (rc != 0)
        return rc;
    if (tail.mv_size == 0 || v->mv_size + tail.mv_size != want)
        return KC_ECORRUPT;
    if (buf->cap < want) {
        void *p = realloc(buf->p, want);
        if (!p)
            return KC_ENOMEM;
        buf->p = p;
        buf->cap = want;
    }
    memcpy(buf->p, v->mv_data, v->mv_size);
    memcpy((uint8_t *)buf->p + v->mv_size, tail.mv_data, tail.mv_size);
    v->mv_data = buf->p;
    v->mv_size = want;
    return 0;
}

int kc__blob_value_get(MDB_txn *txn, kc__env_t *env, const MDB_val *k, MDB_val *v,
                       kc__blob_buf_t *buf)
{
    MDB_val key = *k;
    int rc = mdb_get(txn, env->dbi[KC_REC_BLOB], &key, v);

    if (rc != 0)
        return rc;
    return kc__blob_value_join(txn, env, k, v, buf);
}

/* The tail of blob k whose head is head, into *tail: 0 bytes for a whole
 * value or a missing tail. An LMDB code. */
static int tail_of(MDB_txn *txn, kc__env_t *env, const MDB_val *k, const MDB_val *head,
                   MDB_val *tail)
{
    MDB_val key = *k;

    tail->mv_size = 0;
    tail->mv_data = NULL;
    if (!kc__blob_value_is_head(head) || !env->has_blobtail)
        return 0;
    int rc = mdb_get(txn, env->blobtail, &key, tail);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

int kc__blob_value_parts(MDB_txn *txn, kc__env_t *env, const MDB_val *k, MDB_val *head,
                         MDB_val *tail)
{
    MDB_val key = *k;
    int rc = mdb_get(txn, env->dbi[KC_REC_BLOB], &key, head);

    if (rc != 0) {
        tail->mv_size = 0;
        tail->mv_data = NULL;
        return rc;
    }
    return tail_of(txn, env, k, head, tail);
}

int kc__blob_value_held(MDB_txn *txn, kc__env_t *env, const MDB_val *k,
                        const MDB_val *head, size_t *held)
{
    MDB_val tail;
    int rc = tail_of(txn, env, k, head, &tail);

    *held = head->mv_size + tail.mv_size;
    return rc;
}

size_t kc__blob_split_head(const kc__env_t *env, size_t key_len, size_t len)
{
    MDB_stat ms;
    size_t psize, nodemax, k, head, tail;

    if (!env->has_blobtail || mdb_env_stat(env->mdb, &ms) != 0)
        return 0;
    psize = ms.ms_psize;
    /* LMDB's me_nodemax: two nodes must fit a page; a leaf node of
     * NODE_HEADER + key + data bytes larger than this goes to overflow. */
    nodemax = (((psize - PAGE_HEADER) / 2) & ~(size_t)1) - sizeof(uint16_t);
    if (NODE_HEADER + key_len + len <= nodemax)
        return 0; /* inline anyway */
    k = (len + PAGE_HEADER) / psize;
    if (k == 0)
        return 0;
    head = k * psize - PAGE_HEADER;
    if (head >= len)
        return 0; /* fills its pages exactly */
    tail = len - head;
    if (NODE_HEADER + key_len + tail > nodemax)
        return 0; /* the tail would take an overflow page of its own */
    return head;
}

/* Raise the store's format to 2 (it holds a split blob), in txn. */
static int format_raise(MDB_txn *txn, kc__env_t *env)
{
    uint8_t buf[4];
    size_t len = 0;
    /* Read here, not through open.c, which calls totals.c, which calls this
     * file: files of core call each other in one direction. */
    int rc = kc__meta_read(txn, env, "format", buf, sizeof(buf), &len);

    if (rc != 0 && rc != MDB_NOTFOUND && rc != KC_ECORRUPT && rc != KC_ETOOBIG)
        return rc;
    if (rc == 0 && len == sizeof(buf) && kc__load_u32le(buf) >= KC__STORE_FORMAT_SPLIT)
        return 0;
    kc__store_u32le(buf, KC__STORE_FORMAT_SPLIT);
    return kc__meta_write(txn, env, "format", buf, sizeof(buf), 0);
}

static int tail_del(MDB_txn *txn, kc__env_t *env, const MDB_val *k)
{
    MDB_val key = *k;
    int rc;

    if (!env->has_blobtail)
        return 0;
    rc = mdb_del(txn, env->blobtail, &key, NULL);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

int kc__blob_value_put(MDB_txn *txn, kc__env_t *env, const MDB_val *k, const MDB_val *v,
                       unsigned flags)
{
    MDB_val key = *k, old, head = *v, tail;
    size_t h = kc__blob_split_head(env, k->mv_size, v->mv_size);
    int rc;

    if (flags & MDB_NOOVERWRITE) {
        rc = mdb_get(txn, env->dbi[KC_REC_BLOB], &key, &old);
        if (rc == 0)
            return MDB_KEYEXIST;
        if (rc != MDB_NOTFOUND)
            return rc;
    }
    if (h) {
        head.mv_size = h;
        tail.mv_size = v->mv_size - h;
        tail.mv_data = (uint8_t *)v->mv_data + h;
        if ((rc = format_raise(txn, env)) != 0)
            return rc;
    }
    if ((rc = mdb_put(txn, env->dbi[KC_REC_BLOB], &key, &head, flags)) != 0)
        return rc;
    if (!h)
        return tail_del(txn, env, k); /* a split value it replaced */
    key = *k;
    return mdb_put(txn, env->blobtail, &key, &tail, 0);
}

int kc__blob_value_del(MDB_txn *txn, kc__env_t *env, const MDB_val *k)
{
    MDB_val key = *k;
    int rc = mdb_del(txn, env->dbi[KC_REC_BLOB], &key, NULL);

    if (rc != 0)
        return rc;
    return tail_del(txn, env, k);
}

int kc__value_put(MDB_txn *txn, kc__env_t *env, int kind, const MDB_val *k, MDB_val *v,
                  unsigned flags)
{
    MDB_val key = *k;

    if (kind == KC_REC_BLOB)
        return kc__blob_value_put(txn, env, k, v, flags);
    return mdb_put(txn, env->dbi[kind], &key, v, flags);
}

int kc__value_del(MDB_txn *txn, kc__env_t *env, int kind, const MDB_val *k)
{
    MDB_val key = *k;

    if (kind == KC_REC_BLOB)
        return kc__blob_value_del(txn, env, k);
    return mdb_del(txn, env->dbi[kind], &key, NULL);
}

int kc__blob_tails_sweep(MDB_txn *txn, kc__env_t *env, uint64_t *removed)
{
    MDB_cursor *cur;
    MDB_val k, v, h;
    int rc;

    if (!env->has_blobtail)
        return 0;
    if ((rc = mdb_cursor_open(txn, env->blobtail, &cur)) != 0)
        return rc;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        MDB_val key = k;
        rc = mdb_get(txn, env->dbi[KC_REC_BLOB], &key, &h);
        if (rc == 0 && kc__blob_value_is_head(&h))
            continue;
        if ((rc != 0 && rc != MDB_NOTFOUND) || (rc = mdb_cursor_del(cur, 0)) != 0)
            break;
        (*removed)++;
    }
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

int kc__blob_tails_stat(MDB_txn *txn, kc__env_t *env, MDB_stat *ms)
{
    if (!env->has_blobtail) {
        memset(ms, 0, sizeof(*ms));
        return 0;
    }
    return mdb_stat(txn, env->blobtail, ms);
}

int kc__tail_walk_open(MDB_txn *txn, kc__env_t *env, kc__tail_walk_t *w)
{
    int rc;

    *w = (kc__tail_walk_t){.cur = NULL, .rc = MDB_NOTFOUND};
    if (!env->has_blobtail)
        return 0;
    if ((rc = mdb_cursor_open(txn, env->blobtail, &w->cur)) != 0)
        return rc;
    w->rc = mdb_cursor_get(w->cur, &w->k, &w->v, MDB_FIRST);
    return w->rc == MDB_NOTFOUND ? 0 : w->rc;
}

/* LMDB's default order of keys: bytes compared, then the shorter first. */
static int key_order(const MDB_val *a, const MDB_val *b)
{
    size_t n = a->mv_size < b->mv_size ? a->mv_size : b->mv_size;
    int c = memcmp(a->mv_data, b->mv_data, n);
    if (c != 0)
        return c;
    return (a->mv_size > b->mv_size) - (a->mv_size < b->mv_size);
}

size_t kc__tail_walk_len(kc__tail_walk_t *w, const MDB_val *key, const MDB_val *v)
{
    int c = -1;

    /* Tails whose head is gone (gc's sweep removes them) are passed by. */
    while (w->rc == 0 && (c = key_order(&w->k, key)) < 0)
        w->rc = mdb_cursor_get(w->cur, &w->k, &w->v, MDB_NEXT);
    return w->rc == 0 && c == 0 ? v->mv_size + w->v.mv_size : v->mv_size;
}

void kc__tail_walk_close(kc__tail_walk_t *w)
{
    if (w->cur)
        mdb_cursor_close(w->cur);
    w->cur = NULL;
}
