/* kc_store_warm: the read path run once ahead of the first hit.
 *
 * A fresh process's first lookup pays for things later lookups do not: the
 * first LMDB transaction, page faults on the B-trees' upper pages and on
 * the code of LMDB, the record decoder, zstd and xxHash, a decompression
 * context to create. Each is small; together they cost several times the
 * lookup and the decompress themselves (BENCHMARKS.md). The launcher calls
 * kc_store_warm on a pool thread when its first kernel is registered, so
 * that the first launch of a stored kernel, often soon after, finds them
 * done.
 *
 * It runs the same calls as a store hit of the launcher, on the first
 * tuning record and its winning build (or the first build if there is no
 * tuning): kc_store_get, then kc_store_get_build_cubin. The decompression
 * context that decode used goes at once to the next thread that needs one
 * (the caller's first hit may be moments away). Only where no cubin was
 * decoded does kc_blob_warm make one from a sample: its compression of
 * the sample costs a few hundred microseconds, which before held the
 * context back from a first hit that had started meanwhile
 * (BENCHMARKS.md). It only reads; a damaged record it meets is dealt with
 * as any lookup would. */
#include "blob_internal.h"
#include "kcache/blob.h"
#include "kcache/record.h"
#include "store_internal.h"

typedef struct warm_pick {
    kc__env_t *env;
    kc_key_t tuning, build;
    int has_tuning, has_build;
} warm_pick_t;

static int first_key(MDB_txn *txn, MDB_dbi dbi, MDB_val *k, MDB_val *v)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, dbi, &cur);
    if (rc != 0)
        return rc;
    rc = mdb_cursor_get(cur, k, v, MDB_FIRST);
    mdb_cursor_close(cur);
    return rc;
}

/* The first tuning and its winner, or the first build. */
static int pick_fn(MDB_txn *txn, void *arg)
{
    warm_pick_t *p = arg;
    MDB_val k, v;
    kc_record_t *rec = NULL;

    if (first_key(txn, p->env->dbi[KC_REC_TUNING], &k, &v) == 0 &&
        k.mv_size == sizeof(p->tuning.b) &&
        kc_record_decode(v.mv_data, v.mv_size, &rec) == KC_OK &&
        rec->kind == KC_REC_TUNING) {
        memcpy(p->tuning.b, k.mv_data, sizeof(p->tuning.b));
        p->build = rec->u.tuning.winner_build;
        p->has_tuning = p->has_build = 1;
    } else if (first_key(txn, p->env->dbi[KC_REC_BUILD], &k, &v) == 0 &&
               k.mv_size == sizeof(p->build.b)) {
        memcpy(p->build.b, k.mv_data, sizeof(p->build.b));
        p->has_build = 1;
    }
    kc_free(rec);
    return 0;
}

void kc_store_warm(kc_store_t *store)
{
    warm_pick_t p = {0};
    kc_record_t *rec = NULL;
    void *cubin = NULL;
    size_t len = 0;

    if (store) {
        p.env = store->env;
        if (kc__env_read(store->env, pick_fn, &p) == 0) {
            if (p.has_tuning &&
                kc_store_get(store, KC_REC_TUNING, &p.tuning, &rec) == KC_OK)
                kc_free(rec);
            rec = NULL;
            if (p.has_build &&
                kc_store_get_build_cubin(store, &p.build, &rec, &cubin, &len) == KC_OK) {
                kc_free(cubin);
                kc_free(rec);
                if (kc__blob_offer_context())
                    return;
            }
        }
    }
    /* No cubin decoded (an empty store, a damaged record): a sample makes
     * and uses the context instead. */
    kc_blob_warm();
}
