/* kc_store_stats: record counts, byte totals, counters and map usage, in
 * constant time (the totals: core/totals.c). */
#include <string.h>
#include <sys/stat.h>

#include "store_internal.h"

typedef struct stats_ctx {
    kc__env_t *env;
    kc_store_stats_t *out;
    int scan;        /* compute the totals by a scan */
    int need_totals; /* the store keeps none */
    uint64_t t[KC__TOTALS_SLOTS];
} stats_ctx_t;

static void put_totals(kc_store_stats_t *out, const uint64_t t[KC__TOTALS_SLOTS])
{
    out->blob_raw_bytes = t[0];
    out->blob_stored_bytes = t[KC_REC_BLOB];
    out->record_bytes = 0;
    for (int kind = KC_REC_KIND_MIN; kind <= KC_REC_KIND_MAX; kind++)
        if (kc__kind_totaled(kind))
            out->record_bytes += t[kind];
}

/* Pages on LMDB's free list: its database 0 maps a transaction id to the
 * pages that transaction freed (an ID list whose first word is its
 * length). One record per transaction with frees pending: a few, read in
 * microseconds. They are the file's pages a later write reuses: those the
 * last writes' copy-on-write let go (LMDB keeps the previous transaction's
 * pages for crash safety) and those deletes emptied. */
static int free_pages(MDB_txn *txn, uint64_t *out)
{
    MDB_cursor *cur;
    MDB_val k, v;
    int rc = mdb_cursor_open(txn, 0, &cur);

    *out = 0;
    if (rc != 0)
        return rc;
    while ((rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) == 0) {
        size_t n;
        if (v.mv_size < sizeof(n))
            continue;
        memcpy(&n, v.mv_data, sizeof(n));
        if (n <= (v.mv_size - sizeof(n)) / sizeof(size_t))
            *out += n;
    }
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

static int stats_fn(MDB_txn *txn, void *arg)
{
    stats_ctx_t *c = arg;
    MDB_stat ms;
    uint32_t version;
    int rc;

    for (int kind = KC_REC_KIND_MIN; kind <= KC_REC_KIND_MAX; kind++) {
        if (!kc__env_has_db(c->env, kind))
            continue; /* a read-only store made before the kind: none */
        if ((rc = mdb_stat(txn, c->env->dbi[kind], &ms)) != 0)
            return rc;
        c->out->records[kind] = ms.ms_entries;
    }
    c->need_totals = 0;
    rc = c->scan ? MDB_NOTFOUND : kc__totals_read(txn, c->env, c->t);
    if (rc == MDB_NOTFOUND || rc == KC_ECORRUPT)
        c->need_totals = 1;
    else if (rc != 0)
        return rc;
    for (int i = 0; i < KC_COUNTER_COUNT_; i++) {
        rc = kc__counter_read(txn, c->env, i, &c->out->counters[i]);
        if (rc != 0 && rc != KC_ECORRUPT && rc != KC_EVERSION)
            return rc;
    }
    /* A damaged or newer format record was judged at open: report 0. */
    rc = kc__store_format_read(txn, c->env, &version);
    if (rc == 0)
        c->out->format_version = version;
    else if (kc__is_mdb_rc(rc) && rc != MDB_NOTFOUND)
        return rc;

    MDB_envinfo info;
    if ((rc = mdb_env_info(c->env->mdb, &info)) != 0 ||
        (rc = mdb_env_stat(c->env->mdb, &ms)) != 0)
        return rc;
    uint64_t pages = (uint64_t)info.me_last_pgno + 1, unused = 0;
    if ((rc = free_pages(txn, &unused)) != 0)
        return rc;
    c->out->map_bytes = info.me_mapsize;
    c->out->used_bytes = (pages - (unused < pages ? unused : pages)) * ms.ms_psize;
    return 0;
}

static int scan_fn(MDB_txn *txn, void *arg)
{
    stats_ctx_t *c = arg;
    return kc__totals_scan(txn, c->env, c->t);
}

/* A store without totals gets them: scanned and written in one write
 * transaction, so that no put or delete slips between the two. */
static int scan_store_fn(MDB_txn *txn, void *arg)
{
    stats_ctx_t *c = arg;
    int rc = kc__totals_scan(txn, c->env, c->t);
    return rc != 0 ? rc : kc__totals_write(txn, c->env, c->t);
}

static int stats(kc_store_t *store, kc_store_stats_t *out, int scan)
{
    stats_ctx_t c = {NULL, out, scan, 0, {0}};
    struct stat sb;
    int rc;

    if (!store || !out)
        return KC_EINVAL;
    kc__store_begin_call(store);
    memset(out, 0, sizeof(*out));
    c.env = store->env;
    rc = kc__env_read(store->env, stats_fn, &c);
    if (rc == 0 && c.need_totals) {
        if (!store->readonly)
            rc = kc__env_write(store->env, scan_store_fn, &c);
        else
            rc = kc__env_read(store->env, scan_fn, &c);
        out->totals_scanned = 1;
    }
    if (rc != 0)
        return kc__store_finish(store, rc, "stats");
    put_totals(out, c.t);
    pthread_mutex_lock(&store->pending_lock);
    for (int i = 0; i < KC_COUNTER_COUNT_; i++)
        out->counters[i] += store->pending.counters[i];
    pthread_mutex_unlock(&store->pending_lock);
    if (stat(store->data_path, &sb) == 0)
        out->file_bytes = (uint64_t)sb.st_size;
    out->readonly = store->readonly;
    return KC_OK;
}

int kc_store_stats(kc_store_t *store, kc_store_stats_t *out)
{
    return stats(store, out, 0);
}

int kc_store_stats_scan(kc_store_t *store, kc_store_stats_t *out)
{
    return stats(store, out, 1);
}
