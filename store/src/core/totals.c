/* Record totals kept in the meta database: the stored value bytes of every
 * blob, build, tuning, binmeta and group record, by kind, and the raw bytes
 * of every blob, kept exact by doing every put and delete of those kinds
 * through kc__rec_put / kc__rec_del in the writer's own transaction. So
 * kc_store_stats reads them in constant time (record counts come from
 * LMDB's own per-database entry counts, which are constant time too).
 *
 * The meta record "totals" (docs/FORMAT.md, revision 1.3) holds
 * KC__TOTALS_SLOTS little-endian u64: slot 0 the blobs' raw bytes, slot
 * kind the stored bytes of that kind. A store made by an older kcache has
 * none: the notes below then do nothing, and kc_store_stats computes the
 * totals by a scan (and stores them when it may). A delete of a blob whose
 * raw size cannot be read (a damaged record), or a total that would go
 * below zero, removes the record, which the next stats rebuilds. */
#include <string.h>

#include "blob_internal.h"
#include "store_internal.h"
#include "wire.h"

#define TOTALS_NAME "totals"

int kc__kind_totaled(int kind)
{
    return kind == KC_REC_BLOB || kind == KC_REC_BUILD || kind == KC_REC_TUNING ||
           kind == KC_REC_BINMETA || kind == KC_REC_GROUP;
}

int kc__totals_read(MDB_txn *txn, kc__env_t *env, uint64_t t[KC__TOTALS_SLOTS])
{
    uint8_t buf[KC__TOTALS_SLOTS * 8];
    size_t len = 0;
    int rc = kc__meta_read(txn, env, TOTALS_NAME, buf, sizeof(buf), &len);

    if (rc == KC_ETOOBIG)
        return KC_ECORRUPT;
    if (rc != 0)
        return rc;
    if (len != sizeof(buf))
        return KC_ECORRUPT;
    for (int i = 0; i < KC__TOTALS_SLOTS; i++)
        t[i] = kc__load_u64le(buf + 8 * i);
    return 0;
}

int kc__totals_write(MDB_txn *txn, kc__env_t *env, const uint64_t t[KC__TOTALS_SLOTS])
{
    uint8_t buf[KC__TOTALS_SLOTS * 8];

    for (int i = 0; i < KC__TOTALS_SLOTS; i++)
        kc__store_u64le(buf + 8 * i, t[i]);
    return kc__meta_write(txn, env, TOTALS_NAME, buf, sizeof(buf), 0);
}

static int totals_drop(MDB_txn *txn, kc__env_t *env)
{
    MDB_val k = {sizeof(TOTALS_NAME) - 1, (void *)TOTALS_NAME};
    int rc = mdb_del(txn, env->dbi[KC_REC_META], &k, NULL);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

/* Add (sign 1) or take away (sign -1) value v of kind to t; 0, or -1 if t
 * can no longer be trusted. */
static int account(uint64_t t[KC__TOTALS_SLOTS], int kind, const MDB_val *v, int sign)
{
    uint64_t raw = 0;

    if (kind == KC_REC_BLOB) {
        kc_blob_rec_t b;
        if (kc__blob_view(v->mv_data, v->mv_size, &b) != KC_OK)
            return -1;
        raw = b.raw_size;
    }
    if (sign > 0) {
        t[kind] += v->mv_size;
        t[0] += raw;
        return 0;
    }
    if (t[kind] < v->mv_size || t[0] < raw)
        return -1;
    t[kind] -= v->mv_size;
    t[0] -= raw;
    return 0;
}

int kc__totals_note(MDB_txn *txn, kc__env_t *env, int kind, const MDB_val *old,
                    const MDB_val *new_val)
{
    uint64_t t[KC__TOTALS_SLOTS];
    int rc;

    if (!kc__kind_totaled(kind) || (!old && !new_val))
        return 0;
    rc = kc__totals_read(txn, env, t);
    if (rc == MDB_NOTFOUND)
        return 0; /* an older store: stats scans */
    if (rc == KC_ECORRUPT)
        return totals_drop(txn, env);
    if (rc != 0)
        return rc;
    if ((old && account(t, kind, old, -1) != 0) ||
        (new_val && account(t, kind, new_val, 1) != 0))
        return totals_drop(txn, env);
    return kc__totals_write(txn, env, t);
}

int kc__rec_put(MDB_txn *txn, kc__env_t *env, int kind, const MDB_val *k, MDB_val *v,
                unsigned flags)
{
    MDB_val key = *k, old, *oldp = NULL;
    void *copy = NULL;
    int rc;

    if (!kc__kind_totaled(kind))
        return mdb_put(txn, env->dbi[kind], &key, v, flags);
    if (!(flags & MDB_NOOVERWRITE)) {
        /* The put may reuse the old value's page: keep a copy. */
        rc = kc__value_copy(txn, env, kind, &key, &old);
        if (rc != 0 && rc != MDB_NOTFOUND)
            return rc;
        if (rc == 0) {
            copy = old.mv_data;
            oldp = &old;
        }
    }
    rc = kc__value_put(txn, env, kind, &key, v, flags);
    if (rc == 0)
        rc = kc__totals_note(txn, env, kind, oldp, v);
    free(copy);
    return rc;
}

int kc__rec_del(MDB_txn *txn, kc__env_t *env, int kind, const MDB_val *k)
{
    MDB_val key = *k, old;
    void *copy = NULL;
    int rc;

    if (!kc__kind_totaled(kind))
        return mdb_del(txn, env->dbi[kind], &key, NULL);
    if ((rc = kc__value_copy(txn, env, kind, &key, &old)) != 0)
        return rc;
    copy = old.mv_data;
    rc = kc__value_del(txn, env, kind, &key);
    if (rc == 0)
        rc = kc__totals_note(txn, env, kind, &old, NULL);
    free(copy);
    return rc;
}

static int scan_kinds(MDB_txn *txn, kc__env_t *env, uint64_t t[KC__TOTALS_SLOTS],
                      kc__blob_buf_t *buf)
{
    memset(t, 0, KC__TOTALS_SLOTS * sizeof(*t));
    for (int kind = KC_REC_KIND_MIN; kind <= KC_REC_KIND_MAX; kind++) {
        MDB_cursor *cur;
        MDB_val k, v;
        int rc;

        if (!kc__kind_totaled(kind) || !kc__env_has_db(env, kind))
            continue;
        if ((rc = mdb_cursor_open(txn, env->dbi[kind], &cur)) != 0)
            return rc;
        for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
             rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
            kc_blob_rec_t b;
            /* A split blob counts whole; one whose tail is missing at the
             * length it declares, and without raw bytes (as account()). */
            if (kind == KC_REC_BLOB &&
                (rc = kc__blob_value_join(txn, env, &k, &v, buf)) != 0 &&
                rc != KC_ECORRUPT)
                break;
            rc = 0;
            t[kind] += kind == KC_REC_BLOB ? kc__blob_value_len(&v) : v.mv_size;
            if (kind == KC_REC_BLOB && kc__blob_view(v.mv_data, v.mv_size, &b) == KC_OK)
                t[0] += b.raw_size;
        }
        mdb_cursor_close(cur);
        if (rc != MDB_NOTFOUND)
            return rc;
    }
    return 0;
}

int kc__totals_scan(MDB_txn *txn, kc__env_t *env, uint64_t t[KC__TOTALS_SLOTS])
{
    kc__blob_buf_t buf = {NULL, 0}; /* split blobs, joined */
    int rc = scan_kinds(txn, env, t, &buf);

    kc__blob_buf_free(&buf);
    return rc;
}
