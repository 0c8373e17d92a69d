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
#include <stdatomic.h>
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

/* The stored record, without this transaction's pending changes. */
static int totals_load(MDB_txn *txn, kc__env_t *env, uint64_t t[KC__TOTALS_SLOTS])
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

static int totals_store(MDB_txn *txn, kc__env_t *env, const uint64_t t[KC__TOTALS_SLOTS])
{
    uint8_t buf[KC__TOTALS_SLOTS * 8];

    for (int i = 0; i < KC__TOTALS_SLOTS; i++)
        kc__store_u64le(buf + 8 * i, t[i]);
    return kc__meta_write(txn, env, TOTALS_NAME, buf, sizeof(buf), 0);
}

/* The pending changes of txn, if env gathers them. */
static kc__totals_delta_t *pending(MDB_txn *txn, kc__env_t *env)
{
    return atomic_load_explicit(&env->tot.txn, memory_order_relaxed) == txn ? &env->tot
                                                                            : NULL;
}

/* Apply d to t: 0, or -1 if t can no longer be trusted. */
static int apply(uint64_t t[KC__TOTALS_SLOTS], const kc__totals_delta_t *d)
{
    if (d->lost)
        return -1;
    for (int i = 0; i < KC__TOTALS_SLOTS; i++) {
        if (t[i] + d->add[i] < d->sub[i])
            return -1;
        t[i] = t[i] + d->add[i] - d->sub[i];
    }
    return 0;
}

int kc__totals_read(MDB_txn *txn, kc__env_t *env, uint64_t t[KC__TOTALS_SLOTS])
{
    kc__totals_delta_t *d = pending(txn, env);
    int rc = totals_load(txn, env, t);

    if (rc == 0 && d && d->noted && apply(t, d) != 0)
        return KC_ECORRUPT; /* as a damaged record: the caller scans */
    return rc;
}

int kc__totals_write(MDB_txn *txn, kc__env_t *env, const uint64_t t[KC__TOTALS_SLOTS])
{
    kc__totals_delta_t *d = pending(txn, env);
    int rc = totals_store(txn, env, t);

    /* t is the whole truth of txn (a scan): nothing is left to add. */
    if (rc == 0 && d) {
        memset(d->add, 0, sizeof(d->add));
        memset(d->sub, 0, sizeof(d->sub));
        d->noted = d->lost = 0;
    }
    return rc;
}

static int totals_drop(MDB_txn *txn, kc__env_t *env)
{
    MDB_val k = {sizeof(TOTALS_NAME) - 1, (void *)TOTALS_NAME};
    int rc = mdb_del(txn, env->dbi[KC_REC_META], &k, NULL);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

/* What a value of kind, as LMDB holds it, counts for: its stored bytes,
 * and a blob's raw bytes. A split blob's head counts for the whole record
 * its header declares; both come from the headers, so nothing is joined,
 * copied or read past a blob's first page (a blob removed or replaced is
 * also checked against the bytes LMDB holds for it, in measure_old).
 * -1 if a blob's header cannot be read (a damaged record). The scan and
 * the per-record notes measure alike. */
static int measure(int kind, const MDB_val *v, uint64_t *stored, uint64_t *raw)
{
    *stored = v->mv_size;
    *raw = 0;
    if (kind != KC_REC_BLOB)
        return 0;
    *stored = kc__blob_value_len(v);
    return kc__blob_raw_size(v->mv_data, v->mv_size, raw) == KC_OK ? 0 : -1;
}

/* Note, in d, that a value of kind measured (stored, raw) was added (sign
 * 1) or removed (sign -1). */
static void gather(kc__totals_delta_t *d, int kind, int ok, uint64_t stored, uint64_t raw,
                   int sign)
{
    d->noted = 1;
    if (!ok) {
        d->lost = 1;
        return;
    }
    uint64_t *s = sign > 0 ? d->add : d->sub;
    s[kind] += stored;
    s[0] += raw;
}

/* Write d, gathered in txn, into the stored totals. */
static int totals_update(MDB_txn *txn, kc__env_t *env, const kc__totals_delta_t *d)
{
    uint64_t t[KC__TOTALS_SLOTS];
    int rc;

    if (!d->noted)
        return 0;
    rc = totals_load(txn, env, t);
    if (rc == MDB_NOTFOUND)
        return 0; /* an older store: stats scans */
    if (rc == KC_ECORRUPT)
        return totals_drop(txn, env);
    if (rc != 0)
        return rc;
    if (apply(t, d) != 0)
        return totals_drop(txn, env);
    return totals_store(txn, env, t);
}

int kc__totals_flush(MDB_txn *txn, kc__env_t *env)
{
    kc__totals_delta_t *d = pending(txn, env);
    int rc = d ? totals_update(txn, env, d) : 0;

    if (rc == 0 && d)
        d->noted = 0; /* written */
    return rc;
}

/* Note the change of a value of kind, measured before and after. */
static int note(MDB_txn *txn, kc__env_t *env, int kind, int old_ok, uint64_t old_stored,
                uint64_t old_raw, int has_old, const MDB_val *new_val)
{
    kc__totals_delta_t one, *d = pending(txn, env);
    uint64_t stored = 0, raw = 0;

    if (!d) { /* a transaction of its own: account now */
        memset(&one, 0, sizeof(one));
        d = &one;
    }
    if (has_old)
        gather(d, kind, old_ok, old_stored, old_raw, -1);
    if (new_val) {
        int ok = measure(kind, new_val, &stored, &raw) == 0;
        gather(d, kind, ok, stored, raw, 1);
    }
    return d == &one ? totals_update(txn, env, d) : 0;
}

int kc__totals_note(MDB_txn *txn, kc__env_t *env, int kind, const MDB_val *old,
                    const MDB_val *new_val)
{
    uint64_t stored = 0, raw = 0;
    int ok = 1;

    if (!kc__kind_totaled(kind) || (!old && !new_val))
        return 0;
    if (old)
        ok = measure(kind, old, &stored, &raw) == 0;
    return note(txn, env, kind, ok, stored, raw, old != NULL, new_val);
}

/* The value stored under k before it changes, measured: *has_old says
 * there is one, *old_ok that it could be measured. */
static int measure_old(MDB_txn *txn, kc__env_t *env, int kind, const MDB_val *k,
                       int *has_old, int *old_ok, uint64_t *stored, uint64_t *raw)
{
    MDB_val key = *k, old;
    int rc = mdb_get(txn, env->dbi[kind], &key, &old);

    *has_old = rc == 0;
    *old_ok = 1;
    if (rc != 0)
        return rc == MDB_NOTFOUND ? 0 : rc;
    *old_ok = measure(kind, &old, stored, raw) == 0;
    /* A blob's header says what it counted for when it was put (puts are
     * verified), and a blob damaged since may say otherwise and skew the
     * totals for good. raw_size is checked against the zstd frame's header
     * (kc__blob_raw_size); the declared length against the bytes LMDB
     * holds for it, head and tail, found without reading them. A mismatch
     * drops the totals, which the next kc_store_stats rebuilds by a scan. */
    size_t held = 0;
    if (*old_ok && kind == KC_REC_BLOB &&
        (kc__blob_value_held(txn, env, k, &old, &held) != 0 || held != *stored))
        *old_ok = 0;
    return 0;
}

int kc__rec_put(MDB_txn *txn, kc__env_t *env, int kind, const MDB_val *k, MDB_val *v,
                unsigned flags)
{
    MDB_val key = *k;
    uint64_t old_stored = 0, old_raw = 0;
    int rc, has_old = 0, old_ok = 1;

    if (!kc__kind_totaled(kind))
        return mdb_put(txn, env->dbi[kind], &key, v, flags);
    /* Measured before the put, which may reuse the old value's pages. */
    if (!(flags & MDB_NOOVERWRITE) &&
        (rc = measure_old(txn, env, kind, k, &has_old, &old_ok, &old_stored, &old_raw)) !=
            0)
        return rc;
    rc = kc__value_put(txn, env, kind, &key, v, flags);
    if (rc != 0)
        return rc;
    return note(txn, env, kind, old_ok, old_stored, old_raw, has_old, v);
}

int kc__rec_del(MDB_txn *txn, kc__env_t *env, int kind, const MDB_val *k)
{
    MDB_val key = *k;
    uint64_t old_stored = 0, old_raw = 0;
    int rc, has_old = 0, old_ok = 1;

    if (!kc__kind_totaled(kind))
        return mdb_del(txn, env->dbi[kind], &key, NULL);
    rc = measure_old(txn, env, kind, k, &has_old, &old_ok, &old_stored, &old_raw);
    if (rc != 0)
        return rc;
    if (!has_old)
        return MDB_NOTFOUND;
    rc = kc__value_del(txn, env, kind, &key);
    if (rc != 0)
        return rc;
    return note(txn, env, kind, old_ok, old_stored, old_raw, 1, NULL);
}

int kc__totals_scan(MDB_txn *txn, kc__env_t *env, uint64_t t[KC__TOTALS_SLOTS])
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
            uint64_t stored, raw;
            /* A blob whose header cannot be read counts its bytes, and no
             * raw bytes. */
            measure(kind, &v, &stored, &raw);
            t[kind] += stored;
            t[0] += raw;
        }
        mdb_cursor_close(cur);
        if (rc != MDB_NOTFOUND)
            return rc;
    }
    return 0;
}
