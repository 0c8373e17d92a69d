/* Walking the records of one kind or of every kind, and resolving a key
 * prefix to the one record it names. */
#include <string.h>

#include "store_internal.h"

/* The kinds to visit for kind (0: every kind that has a key, in kind order),
 * as far as the store has their databases. */
static void kind_range(int kind, int *first, int *last)
{
    *first = kind ? kind : KC_REC_KIND_MIN;
    *last = kind ? kind : KC_REC_KIND_MAX;
}

static int kind_visited(const kc__env_t *env, int kind)
{
    return kc__kind_has_key(kind) && kc__env_has_db(env, kind);
}

/* Read a kc_key_t from a key in the map; 0 for a key of another size. */
static int key_from_val(const MDB_val *k, kc_key_t *key)
{
    if (k->mv_size != sizeof(key->b))
        return 0;
    memcpy(key->b, k->mv_data, sizeof(key->b));
    return 1;
}

typedef struct iter_ctx {
    kc__env_t *env;
    int kind;
    kc_store_iter_fn fn;
    void *user;
    int stopped; /* the callback's non-zero value, in ret */
    int ret;
    kc__blob_buf_t buf; /* split blobs, joined */
} iter_ctx_t;

static int iter_fn(MDB_txn *txn, void *arg)
{
    iter_ctx_t *c = arg;
    int first, last;

    kind_range(c->kind, &first, &last);
    for (int kind = first; kind <= last; kind++) {
        MDB_cursor *cur;
        MDB_val k, v;
        if (!kind_visited(c->env, kind))
            continue;
        int rc = mdb_cursor_open(txn, c->env->dbi[kind], &cur);

        if (rc != 0)
            return rc;
        for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
             rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
            kc_key_t key;
            if (!key_from_val(&k, &key))
                continue;
            /* A split blob is given whole; one whose tail is missing as its
             * head, which no record check passes. */
            if (kind == KC_REC_BLOB) {
                rc = kc__blob_value_join(txn, c->env, &k, &v, &c->buf);
                if (rc != 0 && rc != KC_ECORRUPT)
                    break;
            }
            int ret = c->fn(c->user, (kc_rec_kind_t)kind, &key, v.mv_data, v.mv_size);
            if (ret != 0) {
                c->stopped = 1;
                c->ret = ret;
                break;
            }
        }
        mdb_cursor_close(cur);
        if (c->stopped)
            return 0;
        if (rc != MDB_NOTFOUND)
            return rc;
    }
    return 0;
}

int kc_store_iterate(kc_store_t *store, int kind, kc_store_iter_fn fn, void *user)
{
    iter_ctx_t c;
    int rc;

    if (!store || !fn)
        return KC_EINVAL;
    kc__store_begin_call(store);
    if (kind != 0 && !kc__kind_has_key(kind))
        return kc__store_fail(store, KC_EINVAL, "iterate: invalid record kind %d", kind);
    c = (iter_ctx_t){store->env, kind, fn, user, 0, 0, {NULL, 0}};
    rc = kc__env_read(store->env, iter_fn, &c);
    kc__blob_buf_free(&c.buf);
    if (rc != 0)
        return kc__store_finish(store, rc, "iterate");
    return c.stopped ? c.ret : KC_OK;
}

typedef struct find_ctx {
    kc__env_t *env;
    int kind;
    const kc_key_prefix_t *prefix;
    int matches;
    kc_rec_kind_t kind_out;
    kc_key_t key_out;
} find_ctx_t;

static int find_fn(MDB_txn *txn, void *arg)
{
    find_ctx_t *c = arg;
    int first, last;

    kind_range(c->kind, &first, &last);
    c->matches = 0;
    for (int kind = first; kind <= last && c->matches < 2; kind++) {
        MDB_cursor *cur;
        MDB_val k = kc__key_val(&c->prefix->key), v;
        if (!kind_visited(c->env, kind))
            continue;
        int rc = mdb_cursor_open(txn, c->env->dbi[kind], &cur);

        if (rc != 0)
            return rc;
        /* Keys sort as bytes, and the prefix's unused digits are zero, so
         * the first key at or after it is the first that can match. */
        for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0 && c->matches < 2;
             rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
            kc_key_t key;
            if (!key_from_val(&k, &key))
                continue;
            if (!kc_key_prefix_match(c->prefix, &key))
                break;
            c->matches++;
            c->kind_out = (kc_rec_kind_t)kind;
            c->key_out = key;
        }
        mdb_cursor_close(cur);
        if (rc != 0 && rc != MDB_NOTFOUND)
            return rc;
    }
    return 0;
}

int kc_store_find(kc_store_t *store, int kind, const kc_key_prefix_t *prefix,
                  kc_rec_kind_t *kind_out, kc_key_t *key_out)
{
    find_ctx_t c;
    char hex[KC_KEY_HEX_LEN + 1];
    int rc;

    if (!store || !prefix)
        return KC_EINVAL;
    kc__store_begin_call(store);
    if (kind != 0 && !kc__kind_has_key(kind))
        return kc__store_fail(store, KC_EINVAL, "find: invalid record kind %d", kind);
    memset(&c, 0, sizeof(c));
    c.env = store->env;
    c.kind = kind;
    c.prefix = prefix;
    rc = kc__env_read(store->env, find_fn, &c);
    if (rc != 0)
        return kc__store_finish(store, rc, "find");
    kc_key_to_hex(&prefix->key, hex);
    hex[prefix->nibbles < KC_KEY_HEX_LEN ? prefix->nibbles : KC_KEY_HEX_LEN] = '\0';
    if (c.matches == 0)
        return kc__store_fail(store, KC_ENOTFOUND, "no record matches %s", hex);
    if (c.matches > 1)
        return kc__store_fail(store, KC_EAMBIGUOUS, "%s matches more than one record",
                              hex);
    if (kind_out)
        *kind_out = c.kind_out;
    if (key_out)
        *key_out = c.key_out;
    return KC_OK;
}
