/* Reading, writing and deleting one record, cubins included. A record that
 * fails verification on the way out is a miss: counted, and deleted when the
 * store is writable. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blob_internal.h"
#include "kcache/blob.h"
#include "store_internal.h"

/* ---- reading ---------------------------------------------------------------- */

typedef struct fetch_ctx {
    kc__env_t *env;
    int kind;
    const kc_key_t *key;
    void *data;
    size_t len;
    /* For blobs stored with a dictionary: the dictionary, copied too. */
    int want_dict;
    void *dict;
    size_t dict_len;
} fetch_ctx_t;

/* Copy a record out of the map: its bytes must not outlive the txn. */
static int fetch_fn(MDB_txn *txn, void *arg)
{
    fetch_ctx_t *c = arg;
    MDB_val k = kc__key_val(c->key), v;
    int rc = mdb_get(txn, c->env->dbi[c->kind], &k, &v);

    if (rc != 0)
        return rc;
    c->data = kc__memdup(v.mv_data, v.mv_size);
    if (!c->data)
        return KC_ENOMEM;
    c->len = v.mv_size;

    kc_blob_rec_t b;
    if (c->want_dict && kc__blob_view(c->data, c->len, &b) == KC_OK && b.dict_id != 0) {
        char name[32];

        snprintf(name, sizeof(name), "dict.%u", (unsigned)b.dict_id);
        /* A dictionary that cannot be read is left NULL: the blob decoder
         * then reports it missing. */
        (void)kc__meta_read_alloc(txn, c->env, name, &c->dict, &c->dict_len);
    }
    return 0;
}

static int fetch(kc_store_t *st, int kind, const kc_key_t *key, int want_dict,
                 fetch_ctx_t *c)
{
    memset(c, 0, sizeof(*c));
    c->env = st->env;
    c->kind = kind;
    c->key = key;
    c->want_dict = want_dict;
    int rc = kc__env_read(st->env, fetch_fn, c);
    if (rc != 0) {
        free(c->data);
        free(c->dict);
        c->data = c->dict = NULL;
    }
    return rc;
}

/* ---- deleting --------------------------------------------------------------- */

typedef struct del_ctx {
    kc__env_t *env;
    int kind;
    const kc_key_t *key;
    const void *expect; /* delete only if the stored bytes are these */
    size_t expect_len;
} del_ctx_t;

static int del_fn(MDB_txn *txn, void *arg)
{
    del_ctx_t *c = arg;
    MDB_val k = kc__key_val(c->key), v;
    int rc;

    if (c->expect) {
        rc = mdb_get(txn, c->env->dbi[c->kind], &k, &v);
        if (rc != 0)
            return rc;
        if (v.mv_size != c->expect_len || memcmp(v.mv_data, c->expect, v.mv_size) != 0)
            return 0; /* rewritten since we read it */
    }
    rc = mdb_del(txn, c->env->dbi[c->kind], &k, NULL);
    if (rc != 0)
        return rc;
    if (c->kind != KC_REC_USAGE) {
        rc = mdb_del(txn, c->env->dbi[KC_REC_USAGE], &k, NULL);
        if (rc == MDB_NOTFOUND)
            rc = 0;
    }
    return rc;
}

/* A record failed verification: count it, delete it if we may, and report
 * a miss. Its bytes are compared again under the write txn so that a good
 * record written meanwhile by another process is not deleted. */
static int corrupt_miss(kc_store_t *st, int kind, const kc_key_t *key, const void *data,
                        size_t len, int why)
{
    char hex[KC_KEY_HEX_LEN + 1];
    int deleted = 0;

    kc_store_count(st, KC_COUNTER_CORRUPT, 1);
    if (!st->readonly) {
        del_ctx_t c = {st->env, kind, key, data, len};
        deleted = kc__env_write(st->env, del_fn, &c) == 0;
    }
    kc_key_to_hex(key, hex);
    return kc__store_fail(st, KC_ENOTFOUND, "%s record %s in %s is damaged (%s)%s",
                          kc_rec_kind_name(kind), hex, st->path, kc_strerror(why),
                          deleted ? "; deleted" : "");
}

/* ---- the read calls --------------------------------------------------------- */

/* Whether a decoded record belongs under (kind, key). */
static int record_fits(int kind, const kc_key_t *key, const kc_record_t *rec)
{
    kc_key_t derived;

    if ((int)rec->kind != kind)
        return 0;
    if (kind == KC_REC_BUILD || kind == KC_REC_TUNING)
        return kc_record_derived_key(rec, &derived) == KC_OK &&
               memcmp(derived.b, key->b, 16) == 0;
    return 1;
}

int kc_store_get(kc_store_t *store, kc_rec_kind_t kind, const kc_key_t *key,
                 kc_record_t **out)
{
    fetch_ctx_t c;
    kc_record_t *rec = NULL;
    int rc;

    if (out)
        *out = NULL;
    if (!store || !key || !out)
        return KC_EINVAL;
    kc__store_begin_call();
    if (!kc__kind_has_key(kind))
        return kc__store_fail(store, KC_EINVAL, "kc_store_get: invalid record kind %d",
                              (int)kind);
    rc = fetch(store, kind, key, 0, &c);
    if (rc != 0)
        return kc__store_finish(store, rc, "get");
    rc = kc_record_decode(c.data, c.len, &rec);
    if (rc == KC_EVERSION) {
        /* Written by a newer kcache that shares this store: not ours to
         * judge or delete. */
        free(c.data);
        return kc__store_fail(store, KC_ENOTFOUND,
                              "record written by a newer format (store %s)", store->path);
    }
    if (rc == KC_ENOMEM) {
        free(c.data);
        return kc__store_finish(store, rc, "get");
    }
    if (rc != KC_OK || !record_fits(kind, key, rec)) {
        kc_free(rec);
        rc =
            corrupt_miss(store, kind, key, c.data, c.len, rc != KC_OK ? rc : KC_ECORRUPT);
        free(c.data);
        return rc;
    }
    free(c.data);
    *out = rec;
    return KC_OK;
}

int kc_store_get_raw(kc_store_t *store, kc_rec_kind_t kind, const kc_key_t *key,
                     void **data, size_t *len)
{
    fetch_ctx_t c;
    int rc;

    if (data)
        *data = NULL;
    if (len)
        *len = 0;
    if (!store || !key || !data || !len)
        return KC_EINVAL;
    kc__store_begin_call();
    if (!kc__kind_has_key(kind))
        return kc__store_fail(store, KC_EINVAL,
                              "kc_store_get_raw: invalid record kind %d", (int)kind);
    rc = fetch(store, kind, key, 0, &c);
    if (rc != 0)
        return kc__store_finish(store, rc, "get");
    *data = c.data;
    *len = c.len;
    return KC_OK;
}

int kc_store_get_cubin(kc_store_t *store, const kc_key_t *key, void **cubin, size_t *len)
{
    fetch_ctx_t c;
    int rc;

    if (cubin)
        *cubin = NULL;
    if (len)
        *len = 0;
    if (!store || !key || !cubin || !len)
        return KC_EINVAL;
    kc__store_begin_call();
    rc = fetch(store, KC_REC_BLOB, key, 1, &c);
    if (rc != 0)
        return kc__store_finish(store, rc, "get cubin");
    rc = kc_blob_decode(c.data, c.len, key, 0, c.dict, c.dict_len, cubin, len);
    switch (rc) {
    case KC_OK:
        break;
    case KC_ECORRUPT:
    case KC_ETOOBIG: /* no blob this large could have been stored */
        rc = corrupt_miss(store, KC_REC_BLOB, key, c.data, c.len, rc);
        break;
    case KC_EVERSION:
        rc = kc__store_fail(store, KC_ENOTFOUND,
                            "blob written by a newer format (store %s)", store->path);
        break;
    case KC_EUNSUPPORTED:
        rc = kc__store_fail(store, rc,
                            "blob compressed with a zstd dictionary missing from %s",
                            store->path);
        break;
    default:
        rc = kc__store_finish(store, rc, "get cubin");
    }
    free(c.data);
    free(c.dict);
    return rc;
}

/* ---- writing ---------------------------------------------------------------- */

typedef struct put_ctx {
    kc__env_t *env;
    int kind;
    const kc_key_t *key;
    const void *data;
    size_t len;
    unsigned flags;
    int existed; /* MDB_NOOVERWRITE found one */
} put_ctx_t;

static int put_fn(MDB_txn *txn, void *arg)
{
    put_ctx_t *c = arg;
    MDB_val k = kc__key_val(c->key), v = {c->len, (void *)c->data};
    int rc = mdb_put(txn, c->env->dbi[c->kind], &k, &v, c->flags);

    c->existed = rc == MDB_KEYEXIST;
    return c->existed ? 0 : rc;
}

static int write_record(kc_store_t *st, int kind, const kc_key_t *key, const void *data,
                        size_t len, unsigned flags, int *existed)
{
    put_ctx_t c = {st->env, kind, key, data, len, flags, 0};
    int rc = kc__env_write(st->env, put_fn, &c);

    if (existed)
        *existed = c.existed;
    return rc;
}

/* Check that a build or tuning is stored under its derived key. */
static int check_derived(kc_store_t *st, const kc_record_t *rec, const kc_key_t *key)
{
    kc_key_t derived;
    char a[KC_KEY_HEX_LEN + 1], b[KC_KEY_HEX_LEN + 1];
    int rc = kc_record_derived_key(rec, &derived);

    if (rc != KC_OK)
        return kc__store_fail(st, rc, "cannot derive the key of a %s record",
                              kc_rec_kind_name(rec->kind));
    if (memcmp(derived.b, key->b, 16) != 0) {
        kc_key_to_hex(key, a);
        kc_key_to_hex(&derived, b);
        return kc__store_fail(st, KC_EINVAL,
                              "%s key %s is not the hash of its preimage (%s)",
                              kc_rec_kind_name(rec->kind), a, b);
    }
    return KC_OK;
}

int kc_store_put(kc_store_t *store, const kc_key_t *key, const kc_record_t *rec)
{
    void *enc = NULL;
    size_t len;
    int rc;

    if (!store || !key || !rec)
        return KC_EINVAL;
    kc__store_begin_call();
    if ((rc = kc__store_check_writable(store, "put")) != KC_OK)
        return rc;
    if (rec->kind == KC_REC_BLOB)
        return kc__store_fail(store, KC_EINVAL,
                              "put: blobs are stored with kc_store_put_cubin");
    if (!kc__kind_has_key(rec->kind))
        return kc__store_fail(store, KC_EINVAL, "put: invalid record kind %d",
                              (int)rec->kind);
    if (rec->kind == KC_REC_BUILD || rec->kind == KC_REC_TUNING) {
        if ((rc = check_derived(store, rec, key)) != KC_OK)
            return rc;
    }
    rc = kc_record_encode(rec, &enc, &len);
    if (rc != KC_OK)
        return kc__store_fail(store, rc, "put: cannot encode the %s record: %s",
                              kc_rec_kind_name(rec->kind), kc_strerror(rc));
    rc = write_record(store, rec->kind, key, enc, len, 0, NULL);
    kc_free(enc);
    return kc__store_finish(store, rc, "put");
}

int kc_store_put_raw(kc_store_t *store, kc_rec_kind_t kind, const kc_key_t *key,
                     const void *data, size_t len)
{
    kc_record_t *rec = NULL;
    int rc, got_kind;

    if (!store || !key || (!data && len))
        return KC_EINVAL;
    kc__store_begin_call();
    if ((rc = kc__store_check_writable(store, "put")) != KC_OK)
        return rc;
    if (!kc__kind_has_key(kind))
        return kc__store_fail(store, KC_EINVAL, "put: invalid record kind %d", (int)kind);
    rc = kc_record_check(data, len, &got_kind, NULL);
    if (rc != KC_OK)
        return kc__store_fail(store, rc, "put: the %s record does not check: %s",
                              kc_rec_kind_name(kind), kc_strerror(rc));
    if (got_kind != (int)kind)
        return kc__store_fail(store, KC_EINVAL, "put: a %s record given as a %s record",
                              kc_rec_kind_name(got_kind) ? kc_rec_kind_name(got_kind)
                                                         : "unknown",
                              kc_rec_kind_name(kind));
    if (kind == KC_REC_BLOB) {
        void *raw = NULL;
        size_t raw_len;
        rc = kc_blob_decode(data, len, key, 0, NULL, 0, &raw, &raw_len);
        kc_free(raw);
        /* A blob made with a dictionary cannot be verified without it; its
         * checksum has been, and reads verify the rest. */
        if (rc != KC_OK && rc != KC_EUNSUPPORTED)
            return kc__store_fail(store, rc, "put: the blob does not match its key: %s",
                                  kc_strerror(rc));
    } else {
        rc = kc_record_decode(data, len, &rec);
        if (rc != KC_OK)
            return kc__store_fail(store, rc, "put: cannot decode the %s record: %s",
                                  kc_rec_kind_name(kind), kc_strerror(rc));
        if (kind == KC_REC_BUILD || kind == KC_REC_TUNING)
            rc = check_derived(store, rec, key);
        kc_free(rec);
        if (rc != KC_OK)
            return rc;
    }
    rc = write_record(store, kind, key, data, len, 0, NULL);
    if (rc == 0 && kind == KC_REC_BLOB)
        kc_store_count(store, KC_COUNTER_BYTES_STORED, len);
    return kc__store_finish(store, rc, "put");
}

int kc_store_del(kc_store_t *store, kc_rec_kind_t kind, const kc_key_t *key)
{
    del_ctx_t c;
    int rc;

    if (!store || !key)
        return KC_EINVAL;
    kc__store_begin_call();
    if ((rc = kc__store_check_writable(store, "delete")) != KC_OK)
        return rc;
    if (!kc__kind_has_key(kind))
        return kc__store_fail(store, KC_EINVAL, "delete: invalid record kind %d",
                              (int)kind);
    c = (del_ctx_t){store->env, kind, key, NULL, 0};
    rc = kc__env_write(store->env, del_fn, &c);
    return kc__store_finish(store, rc, "delete");
}

int kc_store_put_cubin(kc_store_t *store, const void *cubin, size_t len, kc_key_t *key)
{
    kc_key_t k;
    void *rec = NULL;
    size_t rec_len;
    int rc, existed = 0;

    if (!store || (!cubin && len))
        return KC_EINVAL;
    kc__store_begin_call();
    if ((rc = kc__store_check_writable(store, "put cubin")) != KC_OK)
        return rc;
    rc = kc_blob_encode(cubin, len, store->zstd_level, &k, &rec, &rec_len);
    if (rc != KC_OK)
        return kc__store_fail(store, rc, "put cubin: cannot compress %zu bytes: %s", len,
                              kc_strerror(rc));
    rc = write_record(store, KC_REC_BLOB, &k, rec, rec_len, MDB_NOOVERWRITE, &existed);
    kc_free(rec);
    if (rc == 0 && !existed)
        kc_store_count(store, KC_COUNTER_BYTES_STORED, rec_len);
    if (rc == 0 && key)
        *key = k;
    return kc__store_finish(store, rc, "put cubin");
}
