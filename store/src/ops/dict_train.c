/* kc_store_train_dict: train a zstd dictionary on the stored cubins, keep it
 * as meta record "dict.<id>", and recompress the blobs it shrinks.
 *
 * Cubins of one toolchain share ELF headers, section names, symbol tables
 * and instruction patterns that a single frame cannot learn from its
 * neighbours; a dictionary holds them once. Training reads a bounded sample
 * of cubins; recompression then walks every blob in batches, compressing
 * outside the write transactions and keeping each one short. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zdict.h>

#include "dict_encode.h"
#include "grow.h"
#include "blob_internal.h"
#include "kcache/blob.h"
#include "store_internal.h"

/* zstd's advice: about 100 times the dictionary's size in samples. */
#define SAMPLE_FACTOR 100
/* Blobs and encoded bytes per write transaction. */
#define BATCH_BLOBS 64
#define BATCH_BYTES ((size_t)16 << 20)

typedef struct blob_ref {
    kc_key_t key;
    size_t stored; /* encoded record length when listed */
} blob_ref_t;

typedef struct list_ctx {
    blob_ref_t *v;
    size_t n, cap;
} list_ctx_t;

static int list_fn(void *user, kc_rec_kind_t kind, const kc_key_t *key, const void *data,
                   size_t len)
{
    list_ctx_t *c = user;

    (void)kind;
    (void)data;
    if (kc__grow((void **)&c->v, c->n, &c->cap, sizeof(*c->v), 256) != 0)
        return KC_ENOMEM;
    c->v[c->n].key = *key;
    c->v[c->n].stored = len;
    c->n++;
    return 0;
}

/* ---- training --------------------------------------------------------------- */

typedef struct samples {
    uint8_t *buf;
    size_t len, cap;
    size_t *sizes;
    size_t n;
} samples_t;

/* Read cubins into one buffer until the budget is spent. A blob that cannot
 * be read now (damaged, deleted meanwhile) is left out. */
static int samples_read(kc_store_t *st, const list_ctx_t *l, size_t budget, samples_t *s,
                        uint64_t *raw_total)
{
    s->sizes = calloc(l->n ? l->n : 1, sizeof(*s->sizes));
    if (!s->sizes)
        return KC_ENOMEM;
    for (size_t i = 0; i < l->n; i++) {
        void *cubin = NULL;
        size_t len = 0;
        int rc = kc_store_get_cubin(st, &l->v[i].key, &cubin, &len);

        if (rc == KC_ENOTFOUND || rc == KC_EUNSUPPORTED)
            continue;
        if (rc != KC_OK)
            return rc;
        *raw_total += len;
        if (s->len + len <= budget) {
            if (s->len + len > s->cap) {
                size_t cap = s->cap ? s->cap : (size_t)1 << 20;
                while (cap < s->len + len)
                    cap *= 2;
                uint8_t *b = realloc(s->buf, cap);
                if (!b) {
                    kc_free(cubin);
                    return KC_ENOMEM;
                }
                s->buf = b;
                s->cap = cap;
            }
            memcpy(s->buf + s->len, cubin, len);
            s->len += len;
            s->sizes[s->n++] = len;
        }
        kc_free(cubin);
    }
    return KC_OK;
}

/* ---- writing ---------------------------------------------------------------- */

typedef struct pending_blob {
    kc_key_t key;
    void *rec;
    size_t len;
} pending_blob_t;

typedef struct write_ctx {
    kc__env_t *env;
    const char *dict_name; /* NULL once the dictionary is stored */
    const void *dict;
    size_t dict_len;
    pending_blob_t *v;
    size_t n;
    uint64_t written; /* set by the last successful attempt */
    uint64_t saved;   /* bytes the written blobs shrank by */
} write_ctx_t;

static int write_fn(MDB_txn *txn, void *arg)
{
    write_ctx_t *c = arg;
    int rc;

    c->written = 0;
    c->saved = 0;
    /* The dictionary goes with the first blobs that need it. */
    if (c->dict_name &&
        (rc = kc__meta_write(txn, c->env, c->dict_name, c->dict, c->dict_len, 0)) != 0)
        return rc;
    for (size_t i = 0; i < c->n; i++) {
        MDB_val k = kc__key_val(&c->v[i].key), v;

        /* Compare with what is stored now, not with what was listed: gc may
         * have deleted the blob, or another process rewritten it. */
        rc = mdb_get(txn, c->env->dbi[KC_REC_BLOB], &k, &v);
        if (rc == MDB_NOTFOUND)
            continue;
        if (rc != 0)
            return rc;
        size_t old = kc__blob_value_len(&v); /* a split blob's whole length */
        if (c->v[i].len >= old)
            continue;
        v.mv_data = c->v[i].rec;
        v.mv_size = c->v[i].len;
        if ((rc = kc__rec_put(txn, c->env, KC_REC_BLOB, &k, &v, 0)) != 0)
            return rc;
        c->written++;
        c->saved += old - c->v[i].len;
    }
    return 0;
}

static void batch_clear(pending_blob_t *v, size_t *n, size_t *bytes)
{
    for (size_t i = 0; i < *n; i++)
        kc_free(v[i].rec);
    *n = 0;
    *bytes = 0;
}

/* ---- the call --------------------------------------------------------------- */

int kc_store_train_dict(kc_store_t *store, size_t dict_size, int dry_run,
                        kc_dict_report_t *report)
{
    kc_dict_report_t r = {0};
    list_ctx_t l = {0};
    samples_t s = {0};
    void *dict = NULL;
    kc__blob_dict_enc_t *enc = NULL;
    pending_blob_t batch[BATCH_BLOBS];
    size_t nbatch = 0, batch_bytes = 0;
    char dict_name[32];
    int dict_stored = 0;
    int rc;

    if (report)
        memset(report, 0, sizeof(*report));
    if (!store)
        return KC_EINVAL;
    kc__store_begin_call(store);
    if (dict_size == 0)
        dict_size = KC_DICT_DEFAULT_SIZE;
    /* ZDICT needs room for its header and entropy tables. */
    if (dict_size < 1024 || dict_size > ((size_t)16 << 20))
        return kc__store_fail(store, KC_EINVAL,
                              "dictionary size %zu out of range (1 KiB to 16 MiB)",
                              dict_size);
    if (!dry_run && (rc = kc__store_check_writable(store, "train dictionary")) != KC_OK)
        return rc;

    rc = kc_store_iterate(store, KC_REC_BLOB, list_fn, &l);
    if (rc != KC_OK)
        goto fail;
    r.blobs = l.n;
    for (size_t i = 0; i < l.n; i++)
        r.stored_before += l.v[i].stored;

    rc = samples_read(store, &l, dict_size * SAMPLE_FACTOR, &s, &r.raw_bytes);
    if (rc != KC_OK) {
        rc = kc__store_fail(store, rc, "reading cubins to train on: %s",
                            kc_store_errmsg(store));
        goto fail;
    }
    r.samples = s.n;
    if (s.n < KC_DICT_MIN_SAMPLES) {
        rc = kc__store_fail(store, KC_EINVAL,
                            "%zu readable blobs in %s: training a dictionary needs at "
                            "least %d",
                            s.n, store->path, KC_DICT_MIN_SAMPLES);
        goto fail;
    }

    dict = malloc(dict_size);
    if (!dict) {
        rc = kc__store_fail(store, KC_ENOMEM, "out of memory");
        goto fail;
    }
    size_t dlen = ZDICT_trainFromBuffer(dict, dict_size, s.buf, s.sizes, (unsigned)s.n);
    if (ZDICT_isError(dlen)) {
        rc = kc__store_fail(store, KC_EZSTD, "training on %zu cubins failed: %s", s.n,
                            ZDICT_getErrorName(dlen));
        goto fail;
    }
    free(s.buf);
    s.buf = NULL;
    r.dict_bytes = dlen;
    rc = kc__blob_dict_enc_new(dict, dlen, store->zstd_level, &r.dict_id, &enc);
    if (rc != KC_OK) {
        rc = kc__store_fail(store, rc, "cannot use the trained dictionary");
        goto fail;
    }
    snprintf(dict_name, sizeof(dict_name), "dict.%u", (unsigned)r.dict_id);

    r.stored_after = r.stored_before;
    for (size_t i = 0; i <= l.n; i++) {
        if (i < l.n) {
            void *cubin = NULL;
            size_t len = 0;
            kc_key_t key;
            pending_blob_t *p = &batch[nbatch];

            rc = kc_store_get_cubin(store, &l.v[i].key, &cubin, &len);
            if (rc == KC_ENOTFOUND || rc == KC_EUNSUPPORTED)
                continue;
            if (rc != KC_OK)
                goto fail_msg;
            rc = kc__blob_encode_dict(enc, cubin, len, &key, &p->rec, &p->len);
            kc_free(cubin);
            if (rc != KC_OK) {
                rc = kc__store_fail(store, rc, "compressing with the dictionary failed");
                goto fail;
            }
            if (p->len >= l.v[i].stored || dry_run) {
                if (p->len < l.v[i].stored) {
                    r.recompressed++;
                    r.stored_after -= l.v[i].stored - p->len;
                }
                kc_free(p->rec);
                continue;
            }
            p->key = l.v[i].key;
            batch_bytes += p->len;
            nbatch++;
            if (nbatch < BATCH_BLOBS && batch_bytes < BATCH_BYTES)
                continue;
        }
        if (nbatch == 0)
            continue;
        write_ctx_t c = {
            store->env, dict_stored ? NULL : dict_name, dict, dlen, batch, nbatch, 0, 0};
        rc = kc__env_write(store->env, write_fn, &c);
        if (rc != 0) {
            rc = kc__store_finish(store, rc, "recompressing blobs");
            goto fail;
        }
        dict_stored = 1;
        r.recompressed += c.written;
        r.stored_after -= c.saved;
        batch_clear(batch, &nbatch, &batch_bytes);
    }
    if (!dry_run && !dict_stored)
        r.dict_id = 0; /* no blob needed it, so it was not kept */
    rc = KC_OK;
    goto out;
fail_msg:
    rc = kc__store_fail(store, rc, "reading cubins to recompress: %s",
                        kc_store_errmsg(store));
fail:
out:
    if (report)
        *report = r;
    batch_clear(batch, &nbatch, &batch_bytes);
    kc__blob_dict_enc_free(enc);
    free(dict);
    free(s.buf);
    free(s.sizes);
    free(l.v);
    return rc;
}
