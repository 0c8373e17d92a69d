/* Reading, writing and deleting one record, cubins included. A record that
 * fails verification on the way out is a miss: counted, and deleted when the
 * store is writable. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blob_internal.h"
#include "kcache/blob.h"
#include "store_internal.h"

/* What is wrong with a split blob that cannot be joined (core/blob_value.c). */
#define SPLIT_DAMAGE "a split blob whose tail is missing or does not add up to its length"

/* ---- reading ---------------------------------------------------------------- */

typedef struct fetch_ctx {
    kc__env_t *env;
    int kind;
    const kc_key_t *key;
    void *data;
    size_t len;
} fetch_ctx_t;

/* Copy a record out of the map: its bytes must not outlive the txn. */
static int fetch_fn(MDB_txn *txn, void *arg)
{
    fetch_ctx_t *c = arg;
    MDB_val k = kc__key_val(c->key), v;
    if (!kc__env_has_db(c->env, c->kind))
        return MDB_NOTFOUND;
    kc__blob_buf_t buf = {NULL, 0};
    int rc = c->kind == KC_REC_BLOB ? kc__blob_value_get(txn, c->env, &k, &v, &buf)
                                    : mdb_get(txn, c->env->dbi[c->kind], &k, &v);

    if (rc != 0)
        return rc;
    if (buf.p) { /* a joined blob: its buffer is the copy */
        c->data = buf.p;
        c->len = v.mv_size;
        return 0;
    }
    c->data = kc__memdup(v.mv_data, v.mv_size);
    if (!c->data)
        return KC_ENOMEM;
    c->len = v.mv_size;
    return 0;
}

static int fetch(kc_store_t *st, int kind, const kc_key_t *key, fetch_ctx_t *c)
{
    memset(c, 0, sizeof(*c));
    c->env = st->env;
    c->kind = kind;
    c->key = key;
    int rc = kc__env_read(st->env, fetch_fn, c);
    if (rc != 0) {
        free(c->data);
        c->data = NULL;
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
    int removed; /* set when this call deleted the record */
} del_ctx_t;

static int del_fn(MDB_txn *txn, void *arg)
{
    del_ctx_t *c = arg;
    MDB_val k = kc__key_val(c->key), v;
    int rc;

    if (!kc__env_has_db(c->env, c->kind))
        return MDB_NOTFOUND;
    if (c->expect) {
        /* A split blob is compared by its head, as read_blob copied it. */
        rc = mdb_get(txn, c->env->dbi[c->kind], &k, &v);
        if (rc != 0)
            return rc;
        if (v.mv_size != c->expect_len || memcmp(v.mv_data, c->expect, v.mv_size) != 0)
            return 0; /* rewritten since we read it */
    }
    rc = kc__rec_del_with_dependants(txn, c->env, c->kind, c->key);
    if (rc == 0)
        c->removed = 1;
    return rc;
}

int kc__rec_del_with_dependants(MDB_txn *txn, kc__env_t *env, kc_rec_kind_t kind,
                                const kc_key_t *key)
{
    MDB_val k = kc__key_val(key);
    int rc = kc__rec_del(txn, env, kind, &k);

    if (rc != 0)
        return rc;
    /* A binmeta stands beside its build: it goes with it, and the usage
     * stamp under their key is the build's. */
    if (kind == KC_REC_BUILD && kc__env_has_db(env, KC_REC_BINMETA)) {
        rc = kc__rec_del(txn, env, KC_REC_BINMETA, &k);
        if (rc != 0 && rc != MDB_NOTFOUND)
            return rc;
    }
    if (kind != KC_REC_USAGE && kind != KC_REC_BINMETA) {
        rc = mdb_del(txn, env->dbi[KC_REC_USAGE], &k, NULL);
        if (rc != 0 && rc != MDB_NOTFOUND)
            return rc;
    }
    return 0;
}

/* A record failed verification: count it, delete it if we may, and report
 * a miss. Its bytes are compared again under the write txn so that a good
 * record written meanwhile by another process is not deleted. */
static int corrupt_miss(kc_store_t *st, int kind, const kc_key_t *key, const void *data,
                        size_t len, int why, const char *detail)
{
    char hex[KC_KEY_HEX_LEN + 1];
    int deleted = 0;

    /* Counted once per damaged record: where the store is writable, by the
     * reader whose delete removed it (another reader may have got there
     * first); where it is read-only, by every reader that meets it. */
    if (!st->readonly) {
        del_ctx_t c = {st->env, kind, key, data, len, 0};
        deleted = kc__env_write(st->env, del_fn, &c) == 0 && c.removed;
        if (deleted)
            kc_store_count(st, KC_COUNTER_CORRUPT, 1);
    } else {
        kc_store_count(st, KC_COUNTER_CORRUPT, 1);
    }
    kc_key_to_hex(key, hex);
    return kc__store_fail(st, KC_ENOTFOUND, "%s record %s in %s is damaged (%s)%s",
                          kc_rec_kind_name(kind), hex, st->path,
                          detail ? detail : kc_strerror(why), deleted ? "; deleted" : "");
}

/* ---- decoding in the read txn ---------------------------------------------- */

/* Records are decoded and blobs decompressed straight from the map, inside
 * the read txn: the map's pages stay valid until it ends, and what decoding
 * produces is a copy the caller owns. Only a record that fails verification
 * is copied out as it is, so that corrupt_miss can compare it again under
 * its write txn after the read txn has ended. */
typedef struct verdict {
    int rc;             /* KC_OK, or why the record is unusable */
    void *bad;          /* a damaged record's bytes, copied out (free with free);
                           of a split blob, its head */
    size_t len;         /* of bad */
    const char *detail; /* what is wrong, when more than rc says */
} verdict_t;

/* Whether code rc from decoding a record of kind means the record is
 * damaged, rather than written by a newer kcache or not decodable now. */
static int is_damage(int kind, int rc)
{
    if (kind == KC_REC_BLOB) /* no blob this large could have been stored */
        return rc == KC_ECORRUPT || rc == KC_ETOOBIG;
    return rc != KC_OK && rc != KC_EVERSION && rc != KC_ENOMEM;
}

static int judge(verdict_t *v, int kind, int rc, const MDB_val *val)
{
    v->rc = rc;
    if (!is_damage(kind, rc))
        return 0;
    v->bad = kc__memdup(val->mv_data, val->mv_size);
    if (!v->bad)
        return KC_ENOMEM;
    v->len = val->mv_size;
    return 0;
}

/* Whether a decoded record belongs under (kind, key). */
static int record_fits(int kind, const kc_key_t *key, const kc_record_t *rec)
{
    kc_key_t derived;

    if ((int)rec->kind != kind)
        return 0;
    if (kc__kind_derives_key(kind))
        return kc_record_derived_key(rec, &derived) == KC_OK &&
               memcmp(derived.b, key->b, 16) == 0;
    return 1;
}

/* Look up and decode record (kind, key) in txn. 0 once it was found, with
 * the verdict in v and, when good, *rec; otherwise an LMDB code or
 * KC_ENOMEM. */
static int read_record(MDB_txn *txn, kc__env_t *env, int kind, const kc_key_t *key,
                       kc_record_t **rec, verdict_t *v, kc__blob_buf_t *buf)
{
    MDB_val k = kc__key_val(key), val, head;
    if (!kc__env_has_db(env, kind))
        return MDB_NOTFOUND;
    int rc = mdb_get(txn, env->dbi[kind], &k, &val);

    if (rc != 0)
        return rc;
    head = val;
    if (kind == KC_REC_BLOB) { /* a split blob is decoded whole */
        rc = kc__blob_value_join(txn, env, &k, &val, buf);
        if (rc == KC_ECORRUPT) {
            v->detail = SPLIT_DAMAGE;
            return judge(v, kind, rc, &head);
        }
        if (rc != 0)
            return rc;
    }
    rc = kc_record_decode(val.mv_data, val.mv_size, rec);
    if (rc == KC_OK && !record_fits(kind, key, *rec)) {
        kc_free(*rec);
        *rec = NULL;
        rc = KC_ECORRUPT;
    }
    return judge(v, kind, rc, &head);
}

/* Look up, decompress and verify blob key in txn, as read_record does. A
 * whole blob is decoded from the map; a split one is joined into buf (one
 * copy of the record) and decoded from there. */
static int read_blob(MDB_txn *txn, kc__env_t *env, const kc_key_t *key, void **cubin,
                     size_t *len, verdict_t *v, kc__blob_buf_t *buf)
{
    MDB_val k = kc__key_val(key), val, head;
    kc_blob_rec_t b;
    int rc = mdb_get(txn, env->dbi[KC_REC_BLOB], &k, &val);

    if (rc != 0)
        return rc;
    head = val;
    rc = kc__blob_value_join(txn, env, &k, &val, buf);
    if (rc == KC_ECORRUPT) {
        v->detail = SPLIT_DAMAGE;
        return judge(v, KC_REC_BLOB, rc, &head);
    }
    if (rc != 0)
        return rc;
    rc = kc_blob_decode(val.mv_data, val.mv_size, key, 0, NULL, 0, cubin, len);
    /* Only a blob made with a dictionary asks for one, and is then decoded
     * again with it. A dictionary that cannot be read leaves the blob
     * KC_EUNSUPPORTED. */
    if (rc == KC_EUNSUPPORTED && kc__blob_view(val.mv_data, val.mv_size, &b) == KC_OK &&
        b.dict_id != 0) {
        char name[32];
        void *dict = NULL;
        size_t dict_len = 0;

        snprintf(name, sizeof(name), "dict.%u", (unsigned)b.dict_id);
        if (kc__meta_read_alloc(txn, env, name, &dict, &dict_len) == 0) {
            rc = kc_blob_decode(val.mv_data, val.mv_size, key, 0, dict, dict_len, cubin,
                                len);
            free(dict);
        }
    }
    return judge(v, KC_REC_BLOB, rc, &head);
}

/* The call's code for verdict v on (kind, key), once the read txn has
 * ended: a damaged record is a corrupt miss, one of a newer format a plain
 * miss. Frees v's copy. */
static int settle(kc_store_t *st, int kind, const kc_key_t *key, verdict_t *v,
                  const char *what)
{
    int rc = v->rc;

    if (v->bad)
        rc = corrupt_miss(st, kind, key, v->bad, v->len, rc, v->detail);
    else if (rc == KC_EVERSION)
        /* Written by a newer kcache that shares this store: not ours to
         * judge or delete. */
        rc = kc__store_fail(st, KC_ENOTFOUND,
                            "%s record written by a newer format (store %s)",
                            kc_rec_kind_name(kind), st->path);
    else if (rc == KC_EUNSUPPORTED && kind == KC_REC_BLOB)
        rc = kc__store_fail(
            st, rc, "blob compressed with a zstd dictionary missing from %s", st->path);
    else if (rc != KC_OK)
        rc = kc__store_finish(st, rc, what);
    free(v->bad);
    v->bad = NULL;
    return rc;
}

/* ---- the read calls --------------------------------------------------------- */

typedef struct get_ctx {
    kc__env_t *env;
    int kind;
    const kc_key_t *key;
    kc_record_t *rec;
    verdict_t rec_v;
    void *cubin;
    size_t len;
    verdict_t blob_v;
    kc__blob_buf_t buf; /* a split blob, joined */
} get_ctx_t;

static int get_fn(MDB_txn *txn, void *arg)
{
    get_ctx_t *c = arg;
    return read_record(txn, c->env, c->kind, c->key, &c->rec, &c->rec_v, &c->buf);
}

static int get_cubin_fn(MDB_txn *txn, void *arg)
{
    get_ctx_t *c = arg;
    return read_blob(txn, c->env, c->key, &c->cubin, &c->len, &c->blob_v, &c->buf);
}

static int get_build_cubin_fn(MDB_txn *txn, void *arg)
{
    get_ctx_t *c = arg;
    int rc = read_record(txn, c->env, KC_REC_BUILD, c->key, &c->rec, &c->rec_v, &c->buf);

    if (rc != 0 || c->rec_v.rc != KC_OK)
        return rc;
    return read_blob(txn, c->env, &c->rec->u.build.blob, &c->cubin, &c->len, &c->blob_v,
                     &c->buf);
}

/* Run fn in a read txn over a zeroed ctx; on a failure of the txn itself,
 * release whatever fn had made. */
static int get_run(kc_store_t *st, int (*fn)(MDB_txn *, void *), int kind,
                   const kc_key_t *key, get_ctx_t *c)
{
    int rc;

    memset(c, 0, sizeof(*c));
    c->env = st->env;
    c->kind = kind;
    c->key = key;
    rc = kc__env_read(st->env, fn, c);
    kc__blob_buf_free(&c->buf);
    if (rc != 0) {
        kc_free(c->rec);
        kc_free(c->cubin);
        free(c->rec_v.bad);
        free(c->blob_v.bad);
        memset(c, 0, sizeof(*c));
    }
    return rc;
}

int kc_store_get(kc_store_t *store, kc_rec_kind_t kind, const kc_key_t *key,
                 kc_record_t **out)
{
    get_ctx_t c;
    int rc;

    if (out)
        *out = NULL;
    if (!store || !key || !out)
        return KC_EINVAL;
    kc__store_begin_call(store);
    if (!kc__kind_has_key(kind))
        return kc__store_fail(store, KC_EINVAL, "kc_store_get: invalid record kind %d",
                              (int)kind);
    rc = get_run(store, get_fn, kind, key, &c);
    if (rc != 0)
        return kc__store_finish(store, rc, "get");
    rc = settle(store, kind, key, &c.rec_v, "get");
    if (rc == KC_OK)
        *out = c.rec;
    return rc;
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
    kc__store_begin_call(store);
    if (!kc__kind_has_key(kind))
        return kc__store_fail(store, KC_EINVAL,
                              "kc_store_get_raw: invalid record kind %d", (int)kind);
    rc = fetch(store, kind, key, &c);
    if (rc == KC_ECORRUPT && kind == KC_REC_BLOB) {
        char hex[KC_KEY_HEX_LEN + 1];
        kc_key_to_hex(key, hex);
        return kc__store_fail(store, rc, "blob record %s in %s is damaged (%s)", hex,
                              store->path, SPLIT_DAMAGE);
    }
    if (rc != 0)
        return kc__store_finish(store, rc, "get");
    *data = c.data;
    *len = c.len;
    return KC_OK;
}

int kc_store_get_cubin(kc_store_t *store, const kc_key_t *key, void **cubin, size_t *len)
{
    get_ctx_t c;
    int rc;

    if (cubin)
        *cubin = NULL;
    if (len)
        *len = 0;
    if (!store || !key || !cubin || !len)
        return KC_EINVAL;
    kc__store_begin_call(store);
    rc = get_run(store, get_cubin_fn, KC_REC_BLOB, key, &c);
    if (rc != 0)
        return kc__store_finish(store, rc, "get cubin");
    rc = settle(store, KC_REC_BLOB, key, &c.blob_v, "get cubin");
    if (rc == KC_OK) {
        *cubin = c.cubin;
        *len = c.len;
    }
    return rc;
}

int kc_store_get_build_cubin(kc_store_t *store, const kc_key_t *build_key,
                             kc_record_t **build, void **cubin, size_t *len)
{
    get_ctx_t c;
    int rc;

    if (build)
        *build = NULL;
    if (cubin)
        *cubin = NULL;
    if (len)
        *len = 0;
    if (!store || !build_key || !build || !cubin || !len)
        return KC_EINVAL;
    kc__store_begin_call(store);
    rc = get_run(store, get_build_cubin_fn, KC_REC_BUILD, build_key, &c);
    if (rc != 0)
        return kc__store_finish(store, rc, "get build cubin");
    /* At most one verdict is bad: the blob is read only behind a good build. */
    rc = settle(store, KC_REC_BUILD, build_key, &c.rec_v, "get build cubin");
    if (rc == KC_OK)
        rc = settle(store, KC_REC_BLOB, &c.rec->u.build.blob, &c.blob_v,
                    "get build cubin");
    if (rc != KC_OK) {
        kc_free(c.rec);
        kc_free(c.cubin);
        return rc;
    }
    *build = c.rec;
    *cubin = c.cubin;
    *len = c.len;
    return KC_OK;
}

/* ---- writing ---------------------------------------------------------------- */

typedef struct put_ctx {
    kc__env_t *env;
    int kind;
    const kc_key_t *key;
    const void *data;
    size_t len;
    unsigned flags;
    int existed;  /* MDB_NOOVERWRITE found one */
    int no_build; /* a binmeta whose build is not stored */
} put_ctx_t;

static int put_fn(MDB_txn *txn, void *arg)
{
    put_ctx_t *c = arg;
    MDB_val k = kc__key_val(c->key), v = {c->len, (void *)c->data}, b;
    int rc;

    c->no_build = 0;
    if (c->kind == KC_REC_BINMETA) {
        /* Stored beside its build only: gc would sweep it at once. */
        rc = mdb_get(txn, c->env->dbi[KC_REC_BUILD], &k, &b);
        if (rc == MDB_NOTFOUND) {
            c->no_build = 1;
            return KC_EINVAL;
        }
        if (rc != 0)
            return rc;
    }
    rc = kc__rec_put(txn, c->env, c->kind, &k, &v, c->flags);

    c->existed = rc == MDB_KEYEXIST;
    return c->existed ? 0 : rc;
}

static int write_record(kc_store_t *st, int kind, const kc_key_t *key, const void *data,
                        size_t len, unsigned flags, int *existed)
{
    put_ctx_t c = {st->env, kind, key, data, len, flags, 0, 0};
    int rc = kc__env_write(st->env, put_fn, &c);

    if (existed)
        *existed = c.existed;
    if (c.no_build) {
        char hex[KC_KEY_HEX_LEN + 1];
        kc_key_to_hex(key, hex);
        return kc__store_fail(st, KC_EINVAL,
                              "put: binmeta %s describes a build that %s does not hold",
                              hex, st->path);
    }
    return rc;
}

/* Whether rec, of a kind whose key derives from its content (build,
 * tuning, binmeta), is stored under that key; else why. The one judgement
 * kc_store_put and kc__record_verify share. */
static int check_derived(const kc_record_t *rec, const kc_key_t *key, char *why,
                         size_t cap)
{
    kc_key_t derived;
    char a[KC_KEY_HEX_LEN + 1], b[KC_KEY_HEX_LEN + 1];
    int rc = kc_record_derived_key(rec, &derived);

    if (rc != KC_OK) {
        snprintf(why, cap, "cannot derive the key of a %s record",
                 kc_rec_kind_name(rec->kind));
        return rc;
    }
    if (memcmp(derived.b, key->b, sizeof(derived.b)) != 0) {
        kc_key_to_hex(key, a);
        kc_key_to_hex(&derived, b);
        snprintf(why, cap, "%s key %s is not the key its record derives (%s)",
                 kc_rec_kind_name(rec->kind), a, b);
        return KC_EINVAL;
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
    kc__store_begin_call(store);
    if ((rc = kc__store_check_writable(store, "put")) != KC_OK)
        return rc;
    if (rec->kind == KC_REC_BLOB)
        return kc__store_fail(store, KC_EINVAL,
                              "put: blobs are stored with kc_store_put_cubin");
    if (!kc__kind_has_key(rec->kind))
        return kc__store_fail(store, KC_EINVAL, "put: invalid record kind %d",
                              (int)rec->kind);
    if (kc__kind_derives_key(rec->kind)) {
        char why[256];
        if ((rc = check_derived(rec, key, why, sizeof(why))) != KC_OK)
            return kc__store_fail(store, rc, "%s", why);
    }
    rc = kc_record_encode(rec, &enc, &len);
    if (rc != KC_OK)
        return kc__store_fail(store, rc, "put: cannot encode the %s record: %s",
                              kc_rec_kind_name(rec->kind), kc_strerror(rc));
    rc = write_record(store, rec->kind, key, enc, len, 0, NULL);
    kc_free(enc);
    return kc__store_finish(store, rc, "put");
}

int kc__record_verify(int kind, const kc_key_t *key, const void *data, size_t len,
                      char *why, size_t cap)
{
    kc_record_t *rec = NULL;
    int rc, got_kind;

    rc = kc_record_check(data, len, &got_kind, NULL);
    if (rc != KC_OK) {
        snprintf(why, cap, "the %s record does not check: %s", kc_rec_kind_name(kind),
                 kc_strerror(rc));
        return rc;
    }
    if (got_kind != kind) {
        snprintf(why, cap, "a %s record given as a %s record",
                 kc_rec_kind_name(got_kind) ? kc_rec_kind_name(got_kind) : "unknown",
                 kc_rec_kind_name(kind));
        return KC_EINVAL;
    }
    if (kind == KC_REC_BLOB) {
        void *raw = NULL;
        size_t raw_len;
        rc = kc_blob_decode(data, len, key, 0, NULL, 0, &raw, &raw_len);
        kc_free(raw);
        if (rc != KC_OK)
            snprintf(why, cap, "the blob does not match its key: %s", kc_strerror(rc));
        return rc;
    }
    rc = kc_record_decode(data, len, &rec);
    if (rc != KC_OK) {
        snprintf(why, cap, "cannot decode the %s record: %s", kc_rec_kind_name(kind),
                 kc_strerror(rc));
        return rc;
    }
    if (kc__kind_derives_key(kind))
        rc = check_derived(rec, key, why, cap);
    kc_free(rec);
    return rc;
}

int kc_store_put_raw(kc_store_t *store, kc_rec_kind_t kind, const kc_key_t *key,
                     const void *data, size_t len)
{
    char why[256];
    int rc;

    if (!store || !key || (!data && len))
        return KC_EINVAL;
    kc__store_begin_call(store);
    if ((rc = kc__store_check_writable(store, "put")) != KC_OK)
        return rc;
    if (!kc__kind_has_key(kind))
        return kc__store_fail(store, KC_EINVAL, "put: invalid record kind %d", (int)kind);
    rc = kc__record_verify(kind, key, data, len, why, sizeof(why));
    /* A blob made with a dictionary cannot be verified without it; its
     * checksum has been, and reads verify the rest. */
    if (rc != KC_OK && !(kind == KC_REC_BLOB && rc == KC_EUNSUPPORTED))
        return kc__store_fail(store, rc, "put: %s", why);
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
    kc__store_begin_call(store);
    if ((rc = kc__store_check_writable(store, "delete")) != KC_OK)
        return rc;
    if (!kc__kind_has_key(kind))
        return kc__store_fail(store, KC_EINVAL, "delete: invalid record kind %d",
                              (int)kind);
    c = (del_ctx_t){store->env, kind, key, NULL, 0, 0};
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
    kc__store_begin_call(store);
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
