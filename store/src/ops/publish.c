/* kc_store_publish: the records of one tuning run, committed together. */
#include <stdlib.h>
#include <string.h>

#include "kcache/blob.h"
#include "gc_internal.h"
#include "store_internal.h"

typedef struct enc_rec {
    kc_key_t key;
    void *data;
    size_t len;
    kc_key_t blob;  /* builds: the blob they name */
    int check_blob; /* builds: the blob is not among the publish's cubins */
} enc_rec_t;

typedef struct publish_ctx {
    kc_store_t *st;
    enc_rec_t *cubins;
    size_t n_cubins;
    enc_rec_t *builds;
    size_t n_builds;
    enc_rec_t *binmetas; /* blob: unused; check_blob: the build is not published */
    size_t n_binmetas;
    enc_rec_t tuning; /* data NULL if none */
    kc_key_t winner_build;
    int check_winner; /* the winning build is not among the publish's builds */
    kc__pending_t pending;
    uint64_t now;
    /* Set by the last attempt. */
    uint64_t new_bytes;
    int missing_kind;    /* which reference was missing, for the message */
    int missing_binmeta; /* the missing build was a binmeta's, not the winner */
    kc_key_t missing;
} publish_ctx_t;

/* A record outside the publish that one inside it names must be stored:
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

static int publish_fn(MDB_txn *txn, void *arg)
{
    publish_ctx_t *c = arg;
    kc__env_t *env = c->st->env;
    uint64_t extra[KC_COUNTER_COUNT_] = {0};
    int rc;

    c->new_bytes = 0;
    c->missing_binmeta = 0;
    for (size_t i = 0; i < c->n_cubins; i++) {
        enc_rec_t *e = &c->cubins[i];
        MDB_val k = kc__key_val(&e->key), v = {e->len, e->data};
        rc = mdb_put(txn, env->dbi[KC_REC_BLOB], &k, &v, MDB_NOOVERWRITE);
        if (rc == 0)
            c->new_bytes += e->len;
        else if (rc != MDB_KEYEXIST)
            return rc;
    }
    for (size_t i = 0; i < c->n_builds; i++) {
        enc_rec_t *e = &c->builds[i];
        MDB_val k = kc__key_val(&e->key), v = {e->len, e->data};
        if (e->check_blob && (rc = require_stored(txn, c, KC_REC_BLOB, &e->blob)) != 0)
            return rc;
        rc = mdb_put(txn, env->dbi[KC_REC_BUILD], &k, &v, 0);
        if (rc != 0)
            return rc;
    }
    for (size_t i = 0; i < c->n_binmetas; i++) {
        enc_rec_t *e = &c->binmetas[i];
        MDB_val k = kc__key_val(&e->key), v = {e->len, e->data};
        if (e->check_blob && (rc = require_stored(txn, c, KC_REC_BUILD, &e->key)) != 0) {
            c->missing_binmeta = 1;
            return rc;
        }
        rc = mdb_put(txn, env->dbi[KC_REC_BINMETA], &k, &v, 0);
        if (rc != 0)
            return rc;
    }
    if (c->tuning.data) {
        MDB_val k = kc__key_val(&c->tuning.key), v = {c->tuning.len, c->tuning.data};
        if (c->check_winner &&
            (rc = require_stored(txn, c, KC_REC_BUILD, &c->winner_build)) != 0)
            return rc;
        rc = mdb_put(txn, env->dbi[KC_REC_TUNING], &k, &v, 0);
        if (rc != 0)
            return rc;
    }

    for (size_t i = 0; i < c->n_cubins; i++)
        if ((rc = kc__usage_stamp(txn, env, &c->cubins[i].key, c->now, 0)) != 0)
            return rc;
    for (size_t i = 0; i < c->n_builds; i++)
        if ((rc = kc__usage_stamp(txn, env, &c->builds[i].key, c->now, 0)) != 0)
            return rc;
    if (c->tuning.data &&
        (rc = kc__usage_stamp(txn, env, &c->tuning.key, c->now, 0)) != 0)
        return rc;

    extra[KC_COUNTER_PUBLISHES] = 1;
    extra[KC_COUNTER_BYTES_STORED] = c->new_bytes;
    return kc__pending_write(txn, env, &c->pending, extra);
}

static void enc_free(enc_rec_t *e, size_t n)
{
    if (!e)
        return;
    for (size_t i = 0; i < n; i++)
        kc_free(e[i].data);
    free(e);
}

static int in_keys(const enc_rec_t *e, size_t n, const kc_key_t *key)
{
    for (size_t i = 0; i < n; i++)
        if (memcmp(e[i].key.b, key->b, 16) == 0)
            return 1;
    return 0;
}

int kc_store_publish(kc_store_t *store, const kc_publish_t *pub)
{
    publish_ctx_t c;
    char hex[KC_KEY_HEX_LEN + 1];
    int rc;

    if (!store || !pub || (pub->n_cubins && !pub->cubins) ||
        (pub->n_builds && !pub->builds) || (pub->n_binmetas && !pub->binmetas))
        return KC_EINVAL;
    kc__store_begin_call(store);
    if ((rc = kc__store_check_writable(store, "publish")) != KC_OK)
        return rc;
    memset(&c, 0, sizeof(c));
    c.st = store;
    c.now = kc__now_s();

    /* Everything slow happens here, before the write transaction. */
    c.cubins = calloc(pub->n_cubins ? pub->n_cubins : 1, sizeof(*c.cubins));
    c.builds = calloc(pub->n_builds ? pub->n_builds : 1, sizeof(*c.builds));
    c.binmetas = calloc(pub->n_binmetas ? pub->n_binmetas : 1, sizeof(*c.binmetas));
    if (!c.cubins || !c.builds || !c.binmetas) {
        rc = kc__store_fail(store, KC_ENOMEM, "publish: out of memory");
        goto fail;
    }
    for (size_t i = 0; i < pub->n_cubins; i++, c.n_cubins++) {
        const kc_buf_t *b = &pub->cubins[i];
        rc = kc_blob_encode(b->data, b->size, store->zstd_level, &c.cubins[i].key,
                            &c.cubins[i].data, &c.cubins[i].len);
        if (rc != KC_OK) {
            rc = kc__store_fail(store, rc,
                                "publish: cannot compress cubin %zu (%zu bytes): %s", i,
                                b->size, kc_strerror(rc));
            goto fail;
        }
    }
    for (size_t i = 0; i < pub->n_builds; i++, c.n_builds++) {
        kc_record_t rec = {.kind = KC_REC_BUILD, .version = KC_RECORD_VERSION};
        enc_rec_t *e = &c.builds[i];

        rec.u.build = pub->builds[i];
        if ((rc = kc_record_derived_key(&rec, &e->key)) != KC_OK ||
            (rc = kc_record_encode(&rec, &e->data, &e->len)) != KC_OK) {
            rc = kc__store_fail(store, rc, "publish: cannot encode build %zu: %s", i,
                                kc_strerror(rc));
            goto fail;
        }
        e->blob = pub->builds[i].blob;
        e->check_blob = !in_keys(c.cubins, c.n_cubins, &e->blob);
    }
    for (size_t i = 0; i < pub->n_binmetas; i++, c.n_binmetas++) {
        kc_record_t rec = {.kind = KC_REC_BINMETA, .version = KC_RECORD_VERSION};
        enc_rec_t *e = &c.binmetas[i];

        rec.u.binmeta = pub->binmetas[i];
        if ((rc = kc_record_derived_key(&rec, &e->key)) != KC_OK ||
            (rc = kc_record_encode(&rec, &e->data, &e->len)) != KC_OK) {
            rc = kc__store_fail(store, rc, "publish: cannot encode binmeta %zu: %s", i,
                                kc_strerror(rc));
            goto fail;
        }
        e->check_blob = !in_keys(c.builds, c.n_builds, &e->key);
    }
    if (pub->tuning) {
        kc_record_t rec = {.kind = KC_REC_TUNING, .version = KC_RECORD_VERSION};

        rec.u.tuning = *pub->tuning;
        if ((rc = kc_record_derived_key(&rec, &c.tuning.key)) != KC_OK ||
            (rc = kc_record_encode(&rec, &c.tuning.data, &c.tuning.len)) != KC_OK) {
            rc = kc__store_fail(store, rc, "publish: cannot encode the tuning: %s",
                                kc_strerror(rc));
            goto fail;
        }
        c.winner_build = pub->tuning->winner_build;
        if (kc_key_is_zero(&c.winner_build)) {
            rc = kc__store_fail(store, KC_EINVAL,
                                "publish: the tuning names no winning build");
            goto fail;
        }
        c.check_winner = !in_keys(c.builds, c.n_builds, &c.winner_build);
    }

    /* References to records outside the publish are checked inside the
     * write transaction, where they cannot vanish before the commit. */
    kc__pending_take(store, &c.pending);
    rc = kc__env_write(store->env, publish_fn, &c);
    if (rc != 0) {
        kc__pending_restore(store, &c.pending);
        if (rc == KC_EINVAL && c.missing_kind) {
            kc_key_to_hex(&c.missing, hex);
            rc = kc__store_fail(store, KC_EINVAL,
                                "publish: %s %s is neither published nor stored",
                                c.missing_kind == KC_REC_BLOB ? "the blob of a build,"
                                : c.missing_kind == KC_REC_BUILD && c.missing_binmeta
                                    ? "the build of a binmeta,"
                                    : "the tuning's winning build",
                                hex);
        }
        rc = kc__store_finish(store, rc, "publish");
        goto fail;
    }
    free(c.pending.usage.ent);
    /* After the commit, never inside it; a failed gc is not a failed publish. */
    kc__gc_after_publish(store, c.now);
    rc = KC_OK;
fail:
    enc_free(c.cubins, c.n_cubins);
    enc_free(c.builds, c.n_builds);
    enc_free(c.binmetas, c.n_binmetas);
    kc_free(c.tuning.data);
    return rc;
}
