/* kc_store_gc: least recently used eviction of tunings, groups and builds,
 * and a mark-and-sweep of the blobs no build or group references; the size limit enforced
 * after publishes (the handle holds the limit, resolved at open).
 *
 * gc plans in one read transaction, on copies of the keys, then deletes in
 * write transactions of at most BATCH records, checking each record again
 * there, since other processes may have used, republished or referenced it
 * in between.
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>

#include "grow.h"
#include "key_sort.h"
#include "opts.h"
#include "gc_internal.h"
#include "store_internal.h"

/* Records deleted per write transaction: keeps each transaction's dirty
 * pages bounded, and other writers waiting briefly. */
#define BATCH 512
/* An unreferenced blob whose usage stamp is this recent is spared: a
 * publish stamps its blobs, and another process may be about to commit a
 * build that references it. */
#define BLOB_GRACE_S 600

typedef struct g_blob {
    kc_key_t key;
    uint64_t bytes;
    uint64_t last_use;
    uint32_t refs; /* builds and group files that reference it */
    int gone;
} g_blob_t;

typedef struct g_build {
    kc_key_t key;
    uint64_t bytes;
    uint64_t own_use;  /* its usage stamp, else its created time */
    uint64_t unit_use; /* the latest of own_use and its tunings' */
    long blob;         /* index in plan.blobs, or -1 */
    long tunings;      /* first tuning that names it as winner, or -1 */
    int gone;
} g_build_t;

typedef struct g_tuning {
    kc_key_t key;
    uint64_t bytes;
    uint64_t last_use;
    long next; /* next tuning with the same winner, or -1 */
    int gone;
} g_tuning_t;

/* A group: a unit of its own, like a tuning; its files keep their blobs. */
typedef struct g_group {
    kc_key_t key;
    uint64_t bytes;
    uint64_t last_use;
    long *blobs; /* indexes in plan.blobs of its files' blobs (-1: absent) */
    size_t n_blobs;
    int gone;
} g_group_t;

/* One planned deletion. seen is the usage time the plan went by; a record
 * whose stamp has moved past it was used since and stays. */
typedef struct g_item {
    kc_gc_item_t pub;
    uint64_t seen;
    int done;
} g_item_t;

typedef struct plan {
    kc__env_t *env;
    g_blob_t *blobs;
    size_t n_blobs, cap_blobs;
    g_build_t *builds;
    size_t n_builds, cap_builds;
    g_tuning_t *tunings;
    size_t n_tunings, cap_tunings;
    g_group_t *groups;
    size_t n_groups, cap_groups;
    uint64_t size;
    g_item_t *items;
    size_t n_items, cap_items;
    /* Progress (kc_gc_opts_t.progress): records read of total. */
    void (*progress)(void *user, const char *phase, uint64_t done, uint64_t total);
    void *progress_user;
    uint64_t scanned, to_scan;
} plan_t;

/* One more record read into the plan. */
static void plan_tick(plan_t *p)
{
    if (++p->scanned % 4096 == 0 && p->progress)
        p->progress(p->progress_user, "scan", p->scanned, p->to_scan);
}

static void plan_free(plan_t *p)
{
    free(p->blobs);
    free(p->builds);
    free(p->tunings);
    for (size_t i = 0; i < p->n_groups; i++)
        free(p->groups[i].blobs);
    free(p->groups);
    free(p->items);
}

/* The usage stamp of key: 0 with *last_use, or MDB_NOTFOUND. A damaged
 * usage record counts as none. */
static int usage_last(MDB_txn *txn, kc__env_t *env, const kc_key_t *key,
                      uint64_t *last_use)
{
    MDB_val k = kc__key_val(key), v;
    kc_record_t *rec = NULL;
    int rc = mdb_get(txn, env->dbi[KC_REC_USAGE], &k, &v);

    if (rc != 0)
        return rc;
    if (kc_record_decode(v.mv_data, v.mv_size, &rec) != KC_OK ||
        rec->kind != KC_REC_USAGE) {
        kc_free(rec);
        return MDB_NOTFOUND;
    }
    *last_use = rec->u.usage.last_use;
    kc_free(rec);
    return 0;
}

/* last use of a record: its stamp, else fallback. */
static int last_use_of(MDB_txn *txn, kc__env_t *env, const kc_key_t *key,
                       uint64_t fallback, uint64_t *out)
{
    int rc = usage_last(txn, env, key, out);

    if (rc == MDB_NOTFOUND) {
        *out = fallback;
        return 0;
    }
    return rc;
}

/* ---- planning ------------------------------------------------------------- */

static int key_from(const MDB_val *k, kc_key_t *key)
{
    if (k->mv_size != sizeof(key->b))
        return 0;
    memcpy(key->b, k->mv_data, sizeof(key->b));
    return 1;
}

static int scan_blobs(MDB_txn *txn, plan_t *p)
{
    MDB_cursor *cur;
    MDB_val k, v;
    kc__tail_walk_t tails;
    int rc = kc__tail_walk_open(txn, p->env, &tails);

    if (rc != 0)
        return rc;
    if ((rc = mdb_cursor_open(txn, p->env->dbi[KC_REC_BLOB], &cur)) != 0) {
        kc__tail_walk_close(&tails);
        return rc;
    }
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        g_blob_t b = {.refs = 0};
        size_t len = kc__tail_walk_len(&tails, &k, &v); /* head and tail */
        plan_tick(p);
        p->size += len;
        if (!key_from(&k, &b.key))
            continue;
        b.bytes = len;
        if ((rc = last_use_of(txn, p->env, &b.key, 0, &b.last_use)) != 0)
            break;
        if ((rc = kc__grow((void **)&p->blobs, p->n_blobs, &p->cap_blobs, sizeof(b),
                           64)) != 0)
            break;
        p->blobs[p->n_blobs++] = b;
    }
    mdb_cursor_close(cur);
    kc__tail_walk_close(&tails);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

/* Builds and tunings that do not decode are counted in the size but never
 * evicted here: verify is what judges and repairs damaged records. */
static int scan_builds(MDB_txn *txn, plan_t *p)
{
    MDB_cursor *cur;
    MDB_val k, v;
    int rc = mdb_cursor_open(txn, p->env->dbi[KC_REC_BUILD], &cur);

    if (rc != 0)
        return rc;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        g_build_t b = {.blob = -1, .tunings = -1};
        kc_record_t *rec = NULL;

        plan_tick(p);
        p->size += v.mv_size;
        if (!key_from(&k, &b.key) ||
            kc_record_decode(v.mv_data, v.mv_size, &rec) != KC_OK ||
            rec->kind != KC_REC_BUILD) {
            kc_free(rec);
            continue;
        }
        b.bytes = v.mv_size;
        b.blob =
            kc__key_find(p->blobs, p->n_blobs, sizeof(*p->blobs), &rec->u.build.blob);
        if (b.blob >= 0)
            p->blobs[b.blob].refs++;
        rc = last_use_of(txn, p->env, &b.key, rec->u.build.created, &b.own_use);
        kc_free(rec);
        if (rc != 0)
            break;
        b.unit_use = b.own_use;
        if ((rc = kc__grow((void **)&p->builds, p->n_builds, &p->cap_builds, sizeof(b),
                           64)) != 0)
            break;
        p->builds[p->n_builds++] = b;
    }
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

static int scan_tunings(MDB_txn *txn, plan_t *p)
{
    MDB_cursor *cur;
    MDB_val k, v;
    int rc = mdb_cursor_open(txn, p->env->dbi[KC_REC_TUNING], &cur);

    if (rc != 0)
        return rc;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        g_tuning_t t = {.next = -1};
        kc_record_t *rec = NULL;
        long w;

        plan_tick(p);
        p->size += v.mv_size;
        if (!key_from(&k, &t.key) ||
            kc_record_decode(v.mv_data, v.mv_size, &rec) != KC_OK ||
            rec->kind != KC_REC_TUNING) {
            kc_free(rec);
            continue;
        }
        t.bytes = v.mv_size;
        w = kc__key_find(p->builds, p->n_builds, sizeof(*p->builds),
                         &rec->u.tuning.winner_build);
        rc = last_use_of(txn, p->env, &t.key, rec->u.tuning.created, &t.last_use);
        kc_free(rec);
        if (rc != 0)
            break;
        if ((rc = kc__grow((void **)&p->tunings, p->n_tunings, &p->cap_tunings, sizeof(t),
                           64)) != 0)
            break;
        if (w >= 0) {
            g_build_t *b = &p->builds[w];
            t.next = b->tunings;
            b->tunings = (long)p->n_tunings;
            if (t.last_use > b->unit_use)
                b->unit_use = t.last_use;
        }
        p->tunings[p->n_tunings++] = t;
    }
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

/* Groups that do not decode are counted in the size but never evicted
 * here, as builds and tunings. */
static int scan_groups(MDB_txn *txn, plan_t *p)
{
    MDB_cursor *cur;
    MDB_val k, v;
    int rc;

    if (!kc__env_has_db(p->env, KC_REC_GROUP))
        return 0; /* a read-only store made before groups: none */
    if ((rc = mdb_cursor_open(txn, p->env->dbi[KC_REC_GROUP], &cur)) != 0)
        return rc;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        g_group_t g = {.n_blobs = 0};
        kc_record_t *rec = NULL;

        plan_tick(p);
        p->size += v.mv_size;
        if (!key_from(&k, &g.key) ||
            kc_record_decode(v.mv_data, v.mv_size, &rec) != KC_OK ||
            rec->kind != KC_REC_GROUP) {
            kc_free(rec);
            continue;
        }
        g.bytes = v.mv_size;
        g.blobs = malloc((rec->u.group.n_files + 1) * sizeof(*g.blobs));
        if (!g.blobs) {
            kc_free(rec);
            rc = KC_ENOMEM;
            break;
        }
        for (size_t i = 0; i < rec->u.group.n_files; i++) {
            long b = kc__key_find(p->blobs, p->n_blobs, sizeof(*p->blobs),
                                  &rec->u.group.files[i].blob);
            if (b >= 0)
                p->blobs[b].refs++;
            g.blobs[g.n_blobs++] = b;
        }
        rc = last_use_of(txn, p->env, &g.key, rec->u.group.updated, &g.last_use);
        kc_free(rec);
        if (rc == 0)
            rc =
                kc__grow((void **)&p->groups, p->n_groups, &p->cap_groups, sizeof(g), 64);
        if (rc != 0) {
            free(g.blobs);
            break;
        }
        p->groups[p->n_groups++] = g;
    }
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

static int plan_fn(MDB_txn *txn, void *arg)
{
    plan_t *p = arg;
    int rc;

    /* A run of kc__env_read starts afresh. */
    p->scanned = p->to_scan = 0;
    for (int kind = KC_REC_KIND_MIN; kind <= KC_REC_KIND_MAX; kind++) {
        MDB_stat ms;
        if ((kind == KC_REC_BLOB || kind == KC_REC_BUILD || kind == KC_REC_TUNING ||
             kind == KC_REC_GROUP) &&
            kc__env_has_db(p->env, kind) && mdb_stat(txn, p->env->dbi[kind], &ms) == 0)
            p->to_scan += ms.ms_entries;
    }
    if ((rc = scan_blobs(txn, p)) != 0 || (rc = scan_builds(txn, p)) != 0 ||
        (rc = scan_tunings(txn, p)) != 0 || (rc = scan_groups(txn, p)) != 0)
        return rc;
    if (p->progress)
        p->progress(p->progress_user, "scan", p->scanned, p->to_scan);
    return 0;
}

/* ---- choosing ------------------------------------------------------------- */

typedef struct unit {
    int kind; /* KC_REC_TUNING, KC_REC_GROUP or KC_REC_BUILD */
    size_t idx;
    uint64_t last_use;
    const kc_key_t *key;
} unit_t;

static int unit_rank(int kind)
{
    return kind == KC_REC_TUNING ? 0 : kind == KC_REC_GROUP ? 1 : 2;
}

/* Oldest first; at equal times a tuning goes before a build, which it
 * might name (a group, which names no build, between them); then key
 * order, so that the plan is deterministic. */
static int unit_cmp(const void *a, const void *b)
{
    const unit_t *x = a, *y = b;

    if (x->last_use != y->last_use)
        return x->last_use < y->last_use ? -1 : 1;
    if (x->kind != y->kind)
        return unit_rank(x->kind) - unit_rank(y->kind);
    return kc__key_order(x->key, y->key);
}

static int add_item(plan_t *p, int kind, const kc_key_t *key, uint64_t last_use,
                    uint64_t seen, uint64_t bytes)
{
    g_item_t it = {.pub = {(kc_rec_kind_t)kind, *key, last_use, bytes}, .seen = seen};
    int rc = kc__grow((void **)&p->items, p->n_items, &p->cap_items, sizeof(it), 64);

    if (rc != 0)
        return rc;
    p->items[p->n_items++] = it;
    return 0;
}

static int evict_tuning(plan_t *p, size_t i, uint64_t *total)
{
    g_tuning_t *t = &p->tunings[i];

    t->gone = 1;
    *total -= t->bytes;
    return add_item(p, KC_REC_TUNING, &t->key, t->last_use, t->last_use, t->bytes);
}

/* Drop one reference to blob b; the last one takes the blob with it. */
static int unref_blob(plan_t *p, long b, uint64_t *total)
{
    if (b < 0)
        return 0;
    g_blob_t *bl = &p->blobs[b];
    if (--bl->refs == 0 && !bl->gone) {
        bl->gone = 1;
        *total -= bl->bytes;
        return add_item(p, KC_REC_BLOB, &bl->key, bl->last_use, bl->last_use, bl->bytes);
    }
    return 0;
}

static int evict_group(plan_t *p, size_t i, uint64_t *total)
{
    g_group_t *g = &p->groups[i];
    int rc;

    g->gone = 1;
    *total -= g->bytes;
    if ((rc = add_item(p, KC_REC_GROUP, &g->key, g->last_use, g->last_use, g->bytes)) !=
        0)
        return rc;
    for (size_t j = 0; j < g->n_blobs; j++)
        if ((rc = unref_blob(p, g->blobs[j], total)) != 0)
            return rc;
    return 0;
}

static int evict_build(plan_t *p, size_t i, uint64_t *total)
{
    g_build_t *b = &p->builds[i];
    int rc;

    for (long t = b->tunings; t >= 0; t = p->tunings[t].next)
        if (!p->tunings[t].gone && (rc = evict_tuning(p, (size_t)t, total)) != 0)
            return rc;
    b->gone = 1;
    *total -= b->bytes;
    if ((rc = add_item(p, KC_REC_BUILD, &b->key, b->unit_use, b->own_use, b->bytes)) != 0)
        return rc;
    return unref_blob(p, b->blob, total);
}

typedef struct gc_params {
    uint64_t max_bytes;
    uint64_t cutoff; /* evict what was last used before it (0: none) */
    uint64_t spare;  /* never evict what was used at or after it (0: none) */
    uint64_t now;
    void (*progress)(void *user, const char *phase, uint64_t done, uint64_t total);
    void *progress_user;
} gc_params_t;

static int choose(plan_t *p, const gc_params_t *gp)
{
    uint64_t total = p->size;
    unit_t *units;
    size_t n = 0;
    int rc = 0;

    for (size_t i = 0; i < p->n_blobs; i++) {
        g_blob_t *b = &p->blobs[i];
        if (b->refs == 0 && b->last_use + BLOB_GRACE_S <= gp->now) {
            b->gone = 1;
            total -= b->bytes;
            if ((rc = add_item(p, KC_REC_BLOB, &b->key, b->last_use, b->last_use,
                               b->bytes)) != 0)
                return rc;
        }
    }
    units = calloc(p->n_builds + p->n_tunings + p->n_groups + 1, sizeof(*units));
    if (!units)
        return KC_ENOMEM;
    for (size_t i = 0; i < p->n_tunings; i++)
        units[n++] =
            (unit_t){KC_REC_TUNING, i, p->tunings[i].last_use, &p->tunings[i].key};
    for (size_t i = 0; i < p->n_groups; i++)
        units[n++] = (unit_t){KC_REC_GROUP, i, p->groups[i].last_use, &p->groups[i].key};
    for (size_t i = 0; i < p->n_builds; i++)
        units[n++] = (unit_t){KC_REC_BUILD, i, p->builds[i].unit_use, &p->builds[i].key};
    qsort(units, n, sizeof(*units), unit_cmp);

    for (size_t i = 0; i < n && rc == 0; i++) {
        const unit_t *u = &units[i];
        int old = gp->cutoff && u->last_use < gp->cutoff;
        int over = gp->max_bytes && total > gp->max_bytes;

        /* Units come oldest first, and evicting only lowers the total:
         * once one may stay, every later one may. */
        if ((!old && !over) || (gp->spare && u->last_use >= gp->spare))
            break;
        if (u->kind == KC_REC_TUNING && !p->tunings[u->idx].gone)
            rc = evict_tuning(p, u->idx, &total);
        else if (u->kind == KC_REC_GROUP && !p->groups[u->idx].gone)
            rc = evict_group(p, u->idx, &total);
        else if (u->kind == KC_REC_BUILD && !p->builds[u->idx].gone)
            rc = evict_build(p, u->idx, &total);
    }
    free(units);
    return rc;
}

/* ---- deleting ------------------------------------------------------------- */

typedef struct keyset {
    kc_key_t *k;
    size_t n, cap;
} keyset_t;

static int keyset_add(keyset_t *s, const kc_key_t *key)
{
    int rc = kc__grow((void **)&s->k, s->n, &s->cap, sizeof(*s->k), 64);
    if (rc == 0)
        s->k[s->n++] = *key;
    return rc;
}

/* Add the blobs of every stored group's files to s. */
static int collect_group_blobs(MDB_txn *txn, kc__env_t *env, keyset_t *s)
{
    MDB_cursor *cur;
    MDB_val k, v;
    int rc;

    if (!kc__env_has_db(env, KC_REC_GROUP))
        return 0;
    if ((rc = mdb_cursor_open(txn, env->dbi[KC_REC_GROUP], &cur)) != 0)
        return rc;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        kc_record_t *rec = NULL;
        if (kc_record_decode(v.mv_data, v.mv_size, &rec) != KC_OK ||
            rec->kind != KC_REC_GROUP) {
            kc_free(rec);
            continue;
        }
        for (size_t i = 0; i < rec->u.group.n_files && rc == 0; i++)
            rc = keyset_add(s, &rec->u.group.files[i].blob);
        kc_free(rec);
        if (rc != 0)
            break;
    }
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

/* The winning builds of every tuning (want_blobs 0), or the blobs of every
 * build and every group's files (want_blobs 1), now stored: sorted, for
 * kc__key_find. */
static int collect_refs(MDB_txn *txn, kc__env_t *env, int want_blobs, keyset_t *s)
{
    int kind = want_blobs ? KC_REC_BUILD : KC_REC_TUNING;
    MDB_cursor *cur;
    MDB_val k, v;
    int rc;

    s->n = 0;
    if (want_blobs && (rc = collect_group_blobs(txn, env, s)) != 0)
        return rc;
    if ((rc = mdb_cursor_open(txn, env->dbi[kind], &cur)) != 0)
        return rc;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        kc_record_t *rec = NULL;
        if (kc_record_decode(v.mv_data, v.mv_size, &rec) != KC_OK ||
            (int)rec->kind != kind) {
            kc_free(rec);
            continue;
        }
        if ((rc = kc__grow((void **)&s->k, s->n, &s->cap, sizeof(*s->k), 64)) != 0) {
            kc_free(rec);
            break;
        }
        s->k[s->n++] = want_blobs ? rec->u.build.blob : rec->u.tuning.winner_build;
        kc_free(rec);
    }
    mdb_cursor_close(cur);
    if (rc != MDB_NOTFOUND)
        return rc;
    if (s->n > 1)
        qsort(s->k, s->n, sizeof(*s->k), kc__key_order);
    return 0;
}

/* The deletes run in batches of BATCH items, a write transaction each, in
 * phases: every tuning, then every group, then every build, then every
 * blob (order[] holds the items' indexes so). A build may go only if no
 * tuning names it as its winner, a blob only if no build or group file
 * names it: the refs, collected by a walk of every tuning (or every build
 * and group) inside the transaction. In its phase, deleting builds (or
 * blobs) does not change those refs, so the walk is done once per phase
 * and kept while no other transaction has committed since (the batch's
 * transaction is the one right after ours): a store of N records then
 * costs a walk or two, not one per batch. */
typedef struct del_ctx {
    kc_store_t *st;
    g_item_t *items;
    const size_t *order; /* items in phase order */
    size_t from, to;     /* into order */
    keyset_t refs;
    int refs_for;       /* KC_REC_BUILD or KC_REC_BLOB: what refs protect; 0: none */
    uint64_t refs_at;   /* the last transaction refs held in */
    uint64_t txn;       /* this attempt's */
    uint64_t committed; /* the last batch's, once committed (0: none or unknown) */
    int wrote;          /* this attempt wrote: its commit takes the next id */
    uint64_t binmeta;   /* binmeta removed with their builds, this attempt */
} del_ctx_t;

/* Delete one planned record unless it was used since the plan or is still
 * referenced. Sets it->done. */
static int delete_item(MDB_txn *txn, del_ctx_t *c, g_item_t *it)
{
    kc__env_t *env = c->st->env;
    MDB_val k = kc__key_val(&it->pub.key);
    uint64_t now_use;
    int rc;

    rc = usage_last(txn, env, &it->pub.key, &now_use);
    if (rc == 0 && now_use > it->seen)
        return 0;
    if (rc != 0 && rc != MDB_NOTFOUND)
        return rc;
    if ((it->pub.kind == KC_REC_BUILD || it->pub.kind == KC_REC_BLOB) &&
        kc__key_find(c->refs.k, c->refs.n, sizeof(*c->refs.k), &it->pub.key) >= 0)
        return 0;
    rc = kc__rec_del(txn, env, it->pub.kind, &k);
    if (rc == MDB_NOTFOUND)
        return 0;
    if (rc != 0)
        return rc;
    rc = mdb_del(txn, env->dbi[KC_REC_USAGE], &k, NULL);
    if (rc != 0 && rc != MDB_NOTFOUND)
        return rc;
    /* A build's binmeta (under the same key) goes with it. */
    if (it->pub.kind == KC_REC_BUILD) {
        rc = kc__rec_del(txn, env, KC_REC_BINMETA, &k);
        if (rc == 0)
            c->binmeta++;
        else if (rc != MDB_NOTFOUND)
            return rc;
    }
    it->done = 1;
    return 0;
}

/* Delete the records of kind among the batch's items. */
static int delete_kind(MDB_txn *txn, del_ctx_t *c, int kind, uint64_t *deleted)
{
    int any = 0, rc;

    for (size_t i = c->from; i < c->to; i++)
        any |= (int)c->items[c->order[i]].pub.kind == kind;
    if (!any)
        return 0;
    /* Builds stay while a tuning names them; blobs while a build or a
     * group's file does. */
    if ((kind == KC_REC_BUILD || kind == KC_REC_BLOB) && c->refs_for != kind) {
        if ((rc = collect_refs(txn, c->st->env, kind == KC_REC_BLOB, &c->refs)) != 0)
            return rc;
        c->refs_for = kind;
        c->refs_at = c->txn;
    }
    for (size_t i = c->from; i < c->to; i++) {
        g_item_t *it = &c->items[c->order[i]];
        if ((int)it->pub.kind != kind)
            continue;
        if ((rc = delete_item(txn, c, it)) != 0)
            return rc;
        *deleted += it->done;
    }
    return 0;
}

/* The phase an item's deletion belongs to (see del_ctx_t). */
static int phase_of(int kind)
{
    switch (kind) {
    case KC_REC_TUNING:
        return 0;
    case KC_REC_GROUP:
        return 1;
    case KC_REC_BUILD:
        return 2;
    default:
        return 3;
    }
}

/* items' indexes in phase order, each phase in plan order. */
static size_t *phase_order(const g_item_t *items, size_t n)
{
    size_t *order = malloc((n ? n : 1) * sizeof(*order)), k = 0;

    if (!order)
        return NULL;
    for (int ph = 0; ph < 4; ph++)
        for (size_t i = 0; i < n; i++)
            if (phase_of(items[i].pub.kind) == ph)
                order[k++] = i;
    return order;
}

static int delete_fn(MDB_txn *txn, void *arg)
{
    del_ctx_t *c = arg;
    kc__pending_t none;
    uint64_t extra[KC_COUNTER_COUNT_] = {0};
    uint64_t deleted = 0;
    int rc;

    /* kc__env_write may run this again from the start after growing the
     * map: forget what the aborted attempt did. */
    for (size_t i = c->from; i < c->to; i++)
        c->items[c->order[i]].done = 0;
    c->binmeta = 0;
    c->wrote = 0;
    /* The refs still hold if they held in our last batch, which committed,
     * and nothing has committed since. */
    c->txn = mdb_txn_id(txn);
    if (c->refs_for && c->committed && c->refs_at == c->committed &&
        c->txn == c->committed + 1)
        c->refs_at = c->txn;
    else
        c->refs_for = 0;
    if ((rc = delete_kind(txn, c, KC_REC_TUNING, &deleted)) != 0 ||
        (rc = delete_kind(txn, c, KC_REC_GROUP, &deleted)) != 0 ||
        (rc = delete_kind(txn, c, KC_REC_BUILD, &deleted)) != 0 ||
        (rc = delete_kind(txn, c, KC_REC_BLOB, &deleted)) != 0)
        return rc;
    /* A transaction that wrote nothing commits without taking an id. */
    c->wrote = deleted > 0;
    if (deleted == 0)
        return 0;
    memset(&none, 0, sizeof(none));
    extra[KC_COUNTER_EVICTIONS] = deleted;
    return kc__pending_write(txn, c->st->env, &none, extra);
}

/* ---- leftovers ------------------------------------------------------------ */

/* Usage stamps whose record is gone (a record deleted by another process
 * after this one's stamp was buffered, or by an older kcache), leases
 * that expired (their owner died or hung) and binmeta records whose build
 * is gone (deleted by an older kcache, or damaged and deleted by a reader)
 * carry no information; gc removes them in one write. A lease that may
 * still be live is left alone. */
typedef struct leftover_ctx {
    kc__env_t *env;
    uint64_t now_ms;
    uint64_t usage, leases, binmeta;
    uint64_t tails; /* of split blobs whose head is gone */
} leftover_ctx_t;

static int sweep_binmeta(MDB_txn *txn, leftover_ctx_t *c)
{
    MDB_cursor *cur;
    MDB_val k, v, b;
    int rc;

    if ((rc = mdb_cursor_open(txn, c->env->dbi[KC_REC_BINMETA], &cur)) != 0)
        return rc;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        rc = mdb_get(txn, c->env->dbi[KC_REC_BUILD], &k, &b);
        if (rc == 0)
            continue;
        MDB_val gone = {v.mv_size, NULL}; /* only its size is counted */
        if (rc != MDB_NOTFOUND || (rc = mdb_cursor_del(cur, 0)) != 0 ||
            (rc = kc__totals_note(txn, c->env, KC_REC_BINMETA, &gone, NULL)) != 0)
            break;
        c->binmeta++;
    }
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

static int has_record(MDB_txn *txn, kc__env_t *env, MDB_val *k)
{
    static const int kinds[] = {KC_REC_BLOB, KC_REC_BUILD, KC_REC_TUNING, KC_REC_LEASE,
                                KC_REC_GROUP};
    MDB_val v;
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
        if (kc__env_has_db(env, kinds[i]) && mdb_get(txn, env->dbi[kinds[i]], k, &v) == 0)
            return 1;
    return 0;
}

static int leftover_fn(MDB_txn *txn, void *arg)
{
    leftover_ctx_t *c = arg;
    MDB_cursor *cur;
    MDB_val k, v;
    int rc;

    c->usage = c->leases = c->binmeta = c->tails = 0;
    if ((rc = sweep_binmeta(txn, c)) != 0)
        return rc;
    if ((rc = kc__blob_tails_sweep(txn, c->env, &c->tails)) != 0)
        return rc;
    if ((rc = mdb_cursor_open(txn, c->env->dbi[KC_REC_USAGE], &cur)) != 0)
        return rc;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (has_record(txn, c->env, &k))
            continue;
        if ((rc = mdb_cursor_del(cur, 0)) != 0)
            break;
        c->usage++;
    }
    mdb_cursor_close(cur);
    if (rc != MDB_NOTFOUND)
        return rc;
    if ((rc = mdb_cursor_open(txn, c->env->dbi[KC_REC_LEASE], &cur)) != 0)
        return rc;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        kc_record_t *rec = NULL;
        int expired = kc_record_decode(v.mv_data, v.mv_size, &rec) == KC_OK &&
                      (int)rec->kind == KC_REC_LEASE &&
                      rec->u.lease.start + rec->u.lease.ttl_ms < c->now_ms;
        kc_free(rec);
        if (!expired)
            continue;
        if ((rc = mdb_cursor_del(cur, 0)) != 0)
            break;
        c->leases++;
    }
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

/* ---- measuring ------------------------------------------------------------ */

typedef struct size_ctx {
    kc__env_t *env;
    uint64_t bytes;
    int pages; /* 1: page estimate (an upper bound), 0: exact */
} size_ctx_t;

static const int sized_kinds[] = {KC_REC_BLOB, KC_REC_BUILD, KC_REC_TUNING, KC_REC_GROUP};

static int size_fn(MDB_txn *txn, void *arg)
{
    size_ctx_t *c = arg;
    int rc;

    c->bytes = 0;
    for (size_t i = 0; i < sizeof(sized_kinds) / sizeof(*sized_kinds); i++) {
        if (!kc__env_has_db(c->env, sized_kinds[i]))
            continue; /* a read-only store made before groups */
        MDB_dbi dbi = c->env->dbi[sized_kinds[i]];
        if (c->pages) {
            MDB_stat ms;
            if ((rc = mdb_stat(txn, dbi, &ms)) != 0)
                return rc;
            c->bytes +=
                (uint64_t)(ms.ms_branch_pages + ms.ms_leaf_pages + ms.ms_overflow_pages) *
                ms.ms_psize;
            if (sized_kinds[i] == KC_REC_BLOB) { /* and split blobs' tails */
                if ((rc = kc__blob_tails_stat(txn, c->env, &ms)) != 0)
                    return rc;
                c->bytes += (uint64_t)(ms.ms_branch_pages + ms.ms_leaf_pages +
                                       ms.ms_overflow_pages) *
                            ms.ms_psize;
            }
            continue;
        }
        MDB_cursor *cur;
        MDB_val k, v;
        kc__tail_walk_t tails = {.cur = NULL, .rc = MDB_NOTFOUND};
        if (sized_kinds[i] == KC_REC_BLOB &&
            (rc = kc__tail_walk_open(txn, c->env, &tails)) != 0)
            return rc;
        if ((rc = mdb_cursor_open(txn, dbi, &cur)) != 0) {
            kc__tail_walk_close(&tails);
            return rc;
        }
        for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
             rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT))
            c->bytes += kc__tail_walk_len(&tails, &k, &v);
        mdb_cursor_close(cur);
        kc__tail_walk_close(&tails);
        if (rc != MDB_NOTFOUND)
            return rc;
    }
    return 0;
}

static uint64_t file_size(const kc_store_t *st)
{
    struct stat sb;
    return stat(st->data_path, &sb) == 0 ? (uint64_t)sb.st_size : 0;
}

/* ---- the run -------------------------------------------------------------- */

static int gc_run(kc_store_t *st, const gc_params_t *gp, uint64_t trigger, int dry_run,
                  int list, kc_gc_report_t *r)
{
    plan_t p;
    del_ctx_t dc;
    int rc;

    memset(&p, 0, sizeof(p));
    memset(&dc, 0, sizeof(dc));
    p.env = st->env;
    p.progress = gp->progress;
    p.progress_user = gp->progress_user;
    r->file_before = file_size(st);
    rc = kc__env_read(st->env, plan_fn, &p);
    if (rc != 0)
        goto fail;
    r->size_before = p.size;
    if (p.size > trigger && (rc = choose(&p, gp)) != 0)
        goto fail;

    dc.st = st;
    dc.items = p.items;
    if (!dry_run && p.n_items && !(dc.order = phase_order(p.items, p.n_items))) {
        rc = KC_ENOMEM;
        goto fail;
    }
    for (size_t from = 0; !dry_run && from < p.n_items; from += BATCH) {
        dc.from = from;
        dc.to = p.n_items - from > BATCH ? from + BATCH : p.n_items;
        if ((rc = kc__env_write(st->env, delete_fn, &dc)) != 0)
            goto fail;
        dc.committed = dc.wrote ? dc.txn : 0;
        r->evicted[KC_REC_BINMETA] += dc.binmeta;
        if (gp->progress)
            gp->progress(gp->progress_user, "delete", dc.to, p.n_items);
    }

    if (!dry_run) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        leftover_ctx_t lc = {
            st->env, (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000, 0, 0, 0,
            0};
        if ((rc = kc__env_write(st->env, leftover_fn, &lc)) != 0)
            goto fail;
        r->evicted[KC_REC_BINMETA] += lc.binmeta;
        r->usage_swept = lc.usage;
        r->leases_swept = lc.leases;
    }

    size_t kept = 0;
    for (size_t i = 0; i < p.n_items; i++) {
        g_item_t *it = &p.items[i];
        if (!dry_run && !it->done) {
            r->skipped++;
            continue;
        }
        r->evicted[it->pub.kind]++;
        r->bytes_freed += it->pub.bytes;
        if (list)
            p.items[kept].pub = it->pub;
        kept++;
    }
    if (list && kept) {
        r->items = malloc(kept * sizeof(*r->items));
        if (!r->items) {
            rc = KC_ENOMEM;
            goto fail;
        }
        for (size_t i = 0; i < kept; i++)
            r->items[i] = p.items[i].pub;
        r->n_items = kept;
    }
    if (dry_run) {
        r->size_after = r->size_before - r->bytes_freed;
        r->file_after = r->file_before;
    } else {
        size_ctx_t sc = {st->env, 0, 0};
        if ((rc = kc__env_read(st->env, size_fn, &sc)) != 0)
            goto fail;
        r->size_after = sc.bytes;
        r->file_after = file_size(st);
    }
    rc = 0;
fail:
    free(dc.refs.k);
    free((void *)dc.order);
    plan_free(&p);
    return rc;
}

int kc_store_gc(kc_store_t *store, const kc_gc_opts_t *opts, kc_gc_report_t *report)
{
    kc_gc_report_t local;
    kc_gc_opts_t o;
    gc_params_t gp;
    int rc;

    if (!store || !opts)
        return KC_EINVAL;
    kc__store_begin_call(store);
    if (kc__opts_read(&o, sizeof(o), opts) != KC_OK)
        return kc__store_fail(
            store, KC_EINVAL,
            "gc: opts->size is %zu, this library's is %zu (use KC_GC_OPTS_INIT)",
            opts->size, sizeof(o));
    opts = &o;
    if (!report)
        report = &local;
    memset(report, 0, sizeof(*report));
    if (!opts->dry_run) {
        if ((rc = kc__store_check_writable(store, "gc")) != KC_OK)
            return rc;
        /* This process's own recent uses must count. */
        if ((rc = kc_store_flush(store)) != KC_OK)
            return rc;
    }
    memset(&gp, 0, sizeof(gp));
    gp.now = opts->now ? opts->now : kc__now_s();
    gp.max_bytes = opts->max_bytes;
    gp.progress = opts->progress;
    gp.progress_user = opts->progress_user;
    if (opts->older_than)
        gp.cutoff = opts->older_than < gp.now ? gp.now - opts->older_than : 0;
    /* Without a limit of either kind, gc only sweeps unreferenced blobs. */
    rc = gc_run(store, &gp, 0, opts->dry_run, opts->list, report);
    if (rc != 0) {
        kc_free(report->items);
        report->items = NULL;
        report->n_items = 0;
        return kc__store_finish(store, rc, "gc");
    }
    if (report == &local)
        kc_free(local.items);
    return KC_OK;
}

/* ---- the automatic limit -------------------------------------------------- */

/* What the limit counts (the stored bytes of blobs, builds, tunings and
 * groups), in constant time: exact from the totals the meta database
 * keeps; in a store without them (made by an older kcache, or dropped for
 * a rebuild), the pages of those databases, an upper bound. */
static int limit_bytes_fn(MDB_txn *txn, void *arg)
{
    size_ctx_t *c = arg;
    uint64_t t[KC__TOTALS_SLOTS];

    if (kc__totals_read(txn, c->env, t) == 0) {
        c->bytes = 0;
        for (size_t i = 0; i < sizeof(sized_kinds) / sizeof(*sized_kinds); i++)
            c->bytes += t[sized_kinds[i]];
        return 0;
    }
    c->pages = 1;
    return size_fn(txn, c);
}

static int limit_bytes(kc_store_t *store, uint64_t *bytes)
{
    size_ctx_t sc = {store->env, 0, 0};
    int rc = kc__env_read(store->env, limit_bytes_fn, &sc);

    *bytes = sc.bytes;
    return rc;
}

/* A gc that could not get under the limit runs again once the store has
 * grown by this share of the limit, or after this long. */
#define STUCK_GROWTH_DIV 16
#define STUCK_RETRY_S 10

void kc__gc_after_publish(kc_store_t *store, uint64_t since)
{
    kc_gc_report_t r;
    gc_params_t gp;
    uint64_t bytes, now, stuck;

    if (!store->max_size || store->readonly)
        return;
    /* Most publishes stop at this check, in constant time. */
    if (limit_bytes(store, &bytes) != 0 || bytes <= store->max_size)
        return;
    now = kc__now_s();
    stuck = atomic_load(&store->gc_stuck_bytes);
    if (stuck && bytes < stuck + store->max_size / STUCK_GROWTH_DIV &&
        now < atomic_load(&store->gc_stuck_at) + STUCK_RETRY_S)
        return; /* the last run could not do better: not a scan a publish */
    memset(&gp, 0, sizeof(gp));
    memset(&r, 0, sizeof(r));
    gp.now = now;
    gp.max_bytes = store->max_size / 10 * 9;
    if (gp.max_bytes == 0)
        gp.max_bytes = 1; /* 0 would mean no limit */
    gp.spare = since;
    gc_run(store, &gp, store->max_size, 0, 0, &r);
    kc_free(r.items);
    if (limit_bytes(store, &bytes) == 0 && bytes > store->max_size) {
        atomic_store(&store->gc_stuck_at, now);
        atomic_store(&store->gc_stuck_bytes, bytes);
    } else {
        atomic_store(&store->gc_stuck_bytes, 0);
    }
}
