/* kc_store_stats: record counts, blob sizes, counters and map usage. */
#include <string.h>
#include <sys/stat.h>

#include "blob_internal.h"
#include "store_internal.h"

typedef struct stats_ctx {
    kc__env_t *env;
    kc_store_stats_t *out;
} stats_ctx_t;

static int stats_fn(MDB_txn *txn, void *arg)
{
    stats_ctx_t *c = arg;
    MDB_cursor *cur;
    MDB_val k, v;
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
    if ((rc = mdb_cursor_open(txn, c->env->dbi[KC_REC_BLOB], &cur)) != 0)
        return rc;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        kc_blob_rec_t b;
        c->out->blob_stored_bytes += v.mv_size;
        if (kc__blob_view(v.mv_data, v.mv_size, &b) == KC_OK)
            c->out->blob_raw_bytes += b.raw_size;
    }
    mdb_cursor_close(cur);
    if (rc != MDB_NOTFOUND)
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
    c->out->map_bytes = info.me_mapsize;
    c->out->used_bytes = ((uint64_t)info.me_last_pgno + 1) * ms.ms_psize;
    return 0;
}

int kc_store_stats(kc_store_t *store, kc_store_stats_t *out)
{
    stats_ctx_t c = {NULL, out};
    struct stat sb;
    int rc;

    if (!store || !out)
        return KC_EINVAL;
    kc__store_begin_call(store);
    memset(out, 0, sizeof(*out));
    c.env = store->env;
    rc = kc__env_read(store->env, stats_fn, &c);
    if (rc != 0)
        return kc__store_finish(store, rc, "stats");
    pthread_mutex_lock(&store->pending_lock);
    for (int i = 0; i < KC_COUNTER_COUNT_; i++)
        out->counters[i] += store->pending.counters[i];
    pthread_mutex_unlock(&store->pending_lock);
    if (stat(store->data_path, &sb) == 0)
        out->file_bytes = (uint64_t)sb.st_size;
    out->readonly = store->readonly;
    return KC_OK;
}
