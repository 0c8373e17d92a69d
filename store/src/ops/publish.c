/* kc_store_publish and kc_store_publish_many: the records of one or many
 * tuning runs, committed together in one write transaction. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kcache/blob.h"
#include "gc_internal.h"
#include "key_sort.h"
#include "store_internal.h"

typedef struct enc_rec {
    kc_key_t key;
    void *data;
    size_t len;
    kc_key_t blob;  /* builds: the blob they name */
    int check_blob; /* builds: the blob is not among the item's cubins */
    int by_tuning;  /* builds: the item's tuning names it winner (no stamp) */
} enc_rec_t;

/* One kc_publish_t, encoded. */
typedef struct enc_item {
    enc_rec_t *cubins;
    size_t n_cubins;
    enc_rec_t *builds;
    size_t n_builds;
    enc_rec_t *binmetas; /* blob: unused; check_blob: the build is not in the item */
    size_t n_binmetas;
    enc_rec_t tuning; /* data NULL if none */
    kc_key_t winner_build;
    int check_winner; /* the winning build is not among the item's builds */
} enc_item_t;

typedef struct publish_ctx {
    kc_store_t *st;
    enc_item_t *items;
    size_t n_items;
    uint64_t now;
    /* Set by the last attempt. */
    uint64_t new_bytes;
    size_t bad_item;     /* the item whose reference was missing */
    int missing_kind;    /* which reference was missing, for the message */
    int missing_binmeta; /* the missing build was a binmeta's, not the winner */
    kc_key_t missing;
} publish_ctx_t;

/* A record outside the item that one inside it names must be stored (an
 * earlier item of the same batch counts: its puts are visible in the txn):
 * KC_EINVAL, noting which one, if it is not. */
static int require_stored(MDB_txn *txn, publish_ctx_t *c, int kind, const kc_key_t *key)
{
    MDB_val k = kc__key_val(key), v;
    int rc = mdb_get(txn, c->st->env->dbi[kind], &k, &v);

    if (rc == MDB_NOTFOUND) {
        c->missing_kind = kind;
        c->missing = *key;
        return KC_EINVAL;
    }
    return rc;
}

static int put_item(MDB_txn *txn, publish_ctx_t *c, const enc_item_t *it)
{
    kc__env_t *env = c->st->env;
    int rc;

    for (size_t i = 0; i < it->n_cubins; i++) {
        const enc_rec_t *e = &it->cubins[i];
        MDB_val k = kc__key_val(&e->key), v = {e->len, e->data};
        rc = kc__rec_put(txn, env, KC_REC_BLOB, &k, &v, MDB_NOOVERWRITE);
        if (rc == 0)
            c->new_bytes += e->len;
        else if (rc != MDB_KEYEXIST)
            return rc;
    }
    for (size_t i = 0; i < it->n_builds; i++) {
        const enc_rec_t *e = &it->builds[i];
        MDB_val k = kc__key_val(&e->key), v = {e->len, e->data};
        if (e->check_blob && (rc = require_stored(txn, c, KC_REC_BLOB, &e->blob)) != 0)
            return rc;
        rc = kc__rec_put(txn, env, KC_REC_BUILD, &k, &v, 0);
        if (rc != 0)
            return rc;
    }
    for (size_t i = 0; i < it->n_binmetas; i++) {
        const enc_rec_t *e = &it->binmetas[i];
        MDB_val k = kc__key_val(&e->key), v = {e->len, e->data};
        if (e->check_blob && (rc = require_stored(txn, c, KC_REC_BUILD, &e->key)) != 0) {
            c->missing_binmeta = 1;
            return rc;
        }
        rc = kc__rec_put(txn, env, KC_REC_BINMETA, &k, &v, 0);
        if (rc != 0)
            return rc;
    }
    if (it->tuning.data) {
        MDB_val k = kc__key_val(&it->tuning.key), v = {it->tuning.len, it->tuning.data};
        if (it->check_winner &&
            (rc = require_stored(txn, c, KC_REC_BUILD, &it->winner_build)) != 0)
            return rc;
        rc = kc__rec_put(txn, env, KC_REC_TUNING, &k, &v, 0);
        if (rc != 0)
            return rc;
    }

    for (size_t i = 0; i < it->n_cubins; i++)
        if ((rc = kc__usage_stamp(txn, env, &it->cubins[i].key, c->now, 0)) != 0)
            return rc;
    /* A winning build published with its tuning is not stamped: the
     * tuning's stamp stands for both (gc evicts a build with the tunings
     * that name it, by the newest use of the lot; prefetch_hot follows a
     * tuning to its winning build). One random usage leaf fewer a kernel. */
    for (size_t i = 0; i < it->n_builds; i++)
        if (!it->builds[i].by_tuning &&
            (rc = kc__usage_stamp(txn, env, &it->builds[i].key, c->now, 0)) != 0)
            return rc;
    if (it->tuning.data &&
        (rc = kc__usage_stamp(txn, env, &it->tuning.key, c->now, 0)) != 0)
        return rc;
    return 0;
}

/* One publish's write transaction: its items and counters, and the usage
 * stamps pending in its handle when it was called (put back if it fails). */
typedef struct write_ctx {
    kc_store_t *st;
    publish_ctx_t *c;
    kc__pending_t pending;
} write_ctx_t;

/* The body of a publish: its items, in order, then the counters and the
 * pending usage. Publishes of several threads at once run in one
 * transaction (kc__env_write_grouped), so it keeps its results in c and
 * resets them on each run. */
static int publish_fn(MDB_txn *txn, void *arg)
{
    write_ctx_t *w = arg;
    publish_ctx_t *c = w->c;
    uint64_t extra[KC_COUNTER_COUNT_] = {0};
    int rc;

    c->new_bytes = 0;
    c->missing_kind = 0;
    c->missing_binmeta = 0;
    for (size_t i = 0; i < c->n_items; i++) {
        c->bad_item = i;
        if ((rc = put_item(txn, c, &c->items[i])) != 0)
            return rc;
    }
    extra[KC_COUNTER_PUBLISHES] += c->n_items;
    extra[KC_COUNTER_BYTES_STORED] += c->new_bytes;
    return kc__pending_write(txn, w->st->env, &w->pending, extra);
}

static void enc_free(enc_rec_t *e, size_t n)
{
    if (!e)
        return;
    for (size_t i = 0; i < n; i++)
        kc_free(e[i].data);
    free(e);
}

static void item_free(enc_item_t *it)
{
    enc_free(it->cubins, it->n_cubins);
    enc_free(it->builds, it->n_builds);
    enc_free(it->binmetas, it->n_binmetas);
    kc_free(it->tuning.data);
}

/* The keys of an item's cubins or builds, to find whether a build's blob
 * (or a binmeta's build) comes with it: scanned while few, sorted once
 * when many (an import of a whole Triton cache is one item of thousands,
 * where a scan per build would cost n^2). */
#define KEYS_SCAN_MAX 16

typedef struct key_set {
    const enc_rec_t *e;
    size_t n;
    kc_key_t *sorted; /* NULL: scan e */
} key_set_t;

static void key_set_init(key_set_t *s, const enc_rec_t *e, size_t n)
{
    s->e = e;
    s->n = n;
    s->sorted = n > KEYS_SCAN_MAX ? malloc(n * sizeof(*s->sorted)) : NULL;
    if (!s->sorted)
        return; /* few, or no memory: a scan is as right */
    for (size_t i = 0; i < n; i++)
        s->sorted[i] = e[i].key;
    qsort(s->sorted, n, sizeof(*s->sorted), kc__key_order);
}

static int in_keys(const key_set_t *s, const kc_key_t *key)
{
    if (s->sorted)
        return kc__key_find(s->sorted, s->n, sizeof(*s->sorted), key) >= 0;
    for (size_t i = 0; i < s->n; i++)
        if (kc_key_cmp(&s->e[i].key, key) == 0)
            return 1;
    return 0;
}

/* Compress, hash and encode item idx of a publish (what is slow happens
 * here, before the write transaction). what names the call in messages:
 * "publish", or "publish_many item N". */
static int encode_item(kc_store_t *store, const kc_publish_t *pub, const char *what,
                       enc_item_t *it)
{
    int rc;

    if ((pub->n_cubins && !pub->cubins) || (pub->n_builds && !pub->builds) ||
        (pub->n_binmetas && !pub->binmetas))
        return kc__store_fail(store, KC_EINVAL, "%s: a NULL array with a count", what);
    it->cubins = calloc(pub->n_cubins ? pub->n_cubins : 1, sizeof(*it->cubins));
    it->builds = calloc(pub->n_builds ? pub->n_builds : 1, sizeof(*it->builds));
    it->binmetas = calloc(pub->n_binmetas ? pub->n_binmetas : 1, sizeof(*it->binmetas));
    if (!it->cubins || !it->builds || !it->binmetas)
        return kc__store_fail(store, KC_ENOMEM, "%s: out of memory", what);
    for (size_t i = 0; i < pub->n_cubins; i++, it->n_cubins++) {
        const kc_buf_t *b = &pub->cubins[i];
        rc = kc_blob_encode(b->data, b->size, store->zstd_level, &it->cubins[i].key,
                            &it->cubins[i].data, &it->cubins[i].len);
        if (rc != KC_OK)
            return kc__store_fail(store, rc,
                                  "%s: cannot compress cubin %zu (%zu bytes): %s", what,
                                  i, b->size, kc_strerror(rc));
    }
    key_set_t cubins, builds;
    key_set_init(&cubins, it->cubins, it->n_cubins);
    for (size_t i = 0; i < pub->n_builds; i++, it->n_builds++) {
        kc_record_t rec = {.kind = KC_REC_BUILD, .version = KC_RECORD_VERSION};
        enc_rec_t *e = &it->builds[i];

        rec.u.build = pub->builds[i];
        if ((rc = kc_record_derived_key(&rec, &e->key)) != KC_OK ||
            (rc = kc_record_encode(&rec, &e->data, &e->len)) != KC_OK) {
            free(cubins.sorted);
            return kc__store_fail(store, rc, "%s: cannot encode build %zu: %s", what, i,
                                  kc_strerror(rc));
        }
        e->blob = pub->builds[i].blob;
        e->check_blob = !in_keys(&cubins, &e->blob);
    }
    free(cubins.sorted);
    key_set_init(&builds, it->builds, it->n_builds);
    for (size_t i = 0; i < pub->n_binmetas; i++, it->n_binmetas++) {
        kc_record_t rec = {.kind = KC_REC_BINMETA, .version = KC_RECORD_VERSION};
        enc_rec_t *e = &it->binmetas[i];

        rec.u.binmeta = pub->binmetas[i];
        if ((rc = kc_record_derived_key(&rec, &e->key)) != KC_OK ||
            (rc = kc_record_encode(&rec, &e->data, &e->len)) != KC_OK) {
            free(builds.sorted);
            return kc__store_fail(store, rc, "%s: cannot encode binmeta %zu: %s", what, i,
                                  kc_strerror(rc));
        }
        e->check_blob = !in_keys(&builds, &e->key);
    }
    free(builds.sorted);
    if (pub->tuning) {
        kc_record_t rec = {.kind = KC_REC_TUNING, .version = KC_RECORD_VERSION};

        rec.u.tuning = *pub->tuning;
        if ((rc = kc_record_derived_key(&rec, &it->tuning.key)) != KC_OK ||
            (rc = kc_record_encode(&rec, &it->tuning.data, &it->tuning.len)) != KC_OK)
            return kc__store_fail(store, rc, "%s: cannot encode the tuning: %s", what,
                                  kc_strerror(rc));
        it->winner_build = pub->tuning->winner_build;
        if (kc_key_is_zero(&it->winner_build))
            return kc__store_fail(store, KC_EINVAL,
                                  "%s: the tuning names no winning build", what);
        key_set_t scan = {it->builds, it->n_builds, NULL}; /* one lookup */
        it->check_winner = !in_keys(&scan, &it->winner_build);
        for (size_t i = 0; i < it->n_builds; i++)
            it->builds[i].by_tuning =
                memcmp(it->builds[i].key.b, it->winner_build.b, 16) == 0;
    }
    return KC_OK;
}

/* Commit c: a kcache code, with the message in the calling thread.
 * Publishes from several threads of the process at once share write
 * transactions (group commit, kc__env_write_grouped): one fsync for all. If
 * a shared transaction fails (a bad reference in one of them, a full disk),
 * nothing of it was written and each publish runs again alone, so that each
 * gets its own result and message. All or nothing per call either way. */
static int commit(kc_store_t *store, publish_ctx_t *c, int many)
{
    char hex[KC_KEY_HEX_LEN + 1], what[48];
    write_ctx_t w = {.st = store, .c = c};

    kc__pending_take(store, &w.pending);
    int rc = kc__env_write_grouped(store->env, publish_fn, &w);
    if (rc == 0) {
        free(w.pending.usage.ent);
        return KC_OK;
    }
    kc__pending_restore(store, &w.pending);
    if (rc == KC_EINVAL && c->missing_kind) {
        kc_key_to_hex(&c->missing, hex);
        if (many)
            snprintf(what, sizeof what, "publish_many: item %zu", c->bad_item);
        else
            snprintf(what, sizeof what, "publish");
        rc = kc__store_fail(store, KC_EINVAL, "%s: %s %s is neither published nor stored",
                            what,
                            c->missing_kind == KC_REC_BLOB ? "the blob of a build,"
                            : c->missing_kind == KC_REC_BUILD && c->missing_binmeta
                                ? "the build of a binmeta,"
                                : "the tuning's winning build",
                            hex);
    }
    return kc__store_finish(store, rc, many ? "publish_many" : "publish");
}

/* Encode pubs[0..n), write them in one transaction, then apply the size
 * limit. */
static int publish_all(kc_store_t *store, const kc_publish_t *pubs, size_t n, int many)
{
    publish_ctx_t c;
    char what[48];
    int rc = KC_OK;

    memset(&c, 0, sizeof(c));
    c.st = store;
    c.now = kc__now_s();
    c.items = calloc(n ? n : 1, sizeof(*c.items));
    if (!c.items)
        return kc__store_fail(store, KC_ENOMEM, "publish: out of memory");
    for (; c.n_items < n; c.n_items++) {
        if (many)
            snprintf(what, sizeof what, "publish_many: item %zu", c.n_items);
        else
            snprintf(what, sizeof what, "publish");
        /* n_items counts the items to free: the one being encoded too. */
        rc = encode_item(store, &pubs[c.n_items], what, &c.items[c.n_items]);
        if (rc != KC_OK) {
            c.n_items++;
            goto fail;
        }
    }

    /* References to records outside an item are checked inside the write
     * transaction, where they cannot vanish before the commit. */
    if ((rc = commit(store, &c, many)) != KC_OK)
        goto fail;
    /* After the commit, never inside it; a failed gc is not a failed publish. */
    kc__gc_after_publish(store, c.now);
    rc = KC_OK;
fail:
    for (size_t i = 0; i < c.n_items; i++)
        item_free(&c.items[i]);
    free(c.items);
    return rc;
}

int kc_store_publish(kc_store_t *store, const kc_publish_t *pub)
{
    int rc;

    if (!store || !pub || (pub->n_cubins && !pub->cubins) ||
        (pub->n_builds && !pub->builds) || (pub->n_binmetas && !pub->binmetas))
        return KC_EINVAL;
    kc__store_begin_call(store);
    if ((rc = kc__store_check_writable(store, "publish")) != KC_OK)
        return rc;
    return publish_all(store, pub, 1, 0);
}

int kc_store_publish_many(kc_store_t *store, const kc_publish_t *pubs, size_t n)
{
    int rc;

    if (!store || (n && !pubs))
        return KC_EINVAL;
    kc__store_begin_call(store);
    if ((rc = kc__store_check_writable(store, "publish_many")) != KC_OK)
        return rc;
    if (n == 0)
        return KC_OK;
    return publish_all(store, pubs, n, 1);
}
