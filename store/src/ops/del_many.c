/* kc_store_del_many: delete several records in one write transaction, so
 * that a cascade (cachectl rm --cascade) commits whole or not at all. */
#include "store_internal.h"

typedef struct del_many_ctx {
    kc__env_t *env;
    const kc_rec_kind_t *kinds;
    const kc_key_t *keys;
    size_t n;
    size_t removed; /* set by the last attempt */
} del_many_ctx_t;

/* One record, as kc_store_del deletes it (with its binmeta and usage
 * stamp); a record already absent is skipped. */
static int del_one(MDB_txn *txn, kc__env_t *env, kc_rec_kind_t kind, const kc_key_t *key,
                   size_t *removed)
{
    int rc;

    if (!kc__env_has_db(env, kind))
        return 0;
    rc = kc__rec_del_with_dependants(txn, env, kind, key);
    if (rc == MDB_NOTFOUND)
        return 0;
    if (rc == 0)
        (*removed)++;
    return rc;
}

static int del_many_fn(MDB_txn *txn, void *arg)
{
    del_many_ctx_t *c = arg;
    int rc;

    /* kc__env_write may run this again from the start after growing the map. */
    c->removed = 0;
    for (size_t i = 0; i < c->n; i++)
        if ((rc = del_one(txn, c->env, c->kinds[i], &c->keys[i], &c->removed)) != 0)
            return rc;
    return 0;
}

int kc_store_del_many(kc_store_t *store, const kc_rec_kind_t *kinds, const kc_key_t *keys,
                      size_t n, size_t *removed)
{
    del_many_ctx_t c;
    int rc;

    if (removed)
        *removed = 0;
    if (!store || (n && (!kinds || !keys)))
        return KC_EINVAL;
    kc__store_begin_call(store);
    if ((rc = kc__store_check_writable(store, "delete")) != KC_OK)
        return rc;
    for (size_t i = 0; i < n; i++)
        if (!kc__kind_has_key(kinds[i]))
            return kc__store_fail(store, KC_EINVAL, "delete: invalid record kind %d",
                                  (int)kinds[i]);
    if (n == 0)
        return KC_OK;
    c = (del_many_ctx_t){store->env, kinds, keys, n, 0};
    rc = kc__env_write(store->env, del_many_fn, &c);
    if (rc == 0 && removed)
        *removed = c.removed;
    return kc__store_finish(store, rc, "delete");
}
