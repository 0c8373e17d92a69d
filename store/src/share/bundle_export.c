/* Bundles: the stream writer and kc_bundle_export. Import is in
 * bundle_import.c. */
#define XXH_STATIC_LINKING_ONLY /* XXH3_state_t on the stack */
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blob_internal.h"
#include "grow.h"
#include "bundle_internal.h"
#include "kcache/bundle.h"
#include "store_internal.h"
#include "wire.h"

/* ---- the writer ------------------------------------------------------------- */

static void bw_write(kc__bw_t *w, const void *p, size_t n, int digest)
{
    if (w->failed || n == 0)
        return;
    if (fwrite(p, 1, n, w->f) != n) {
        w->failed = KC_EIO;
        return;
    }
    if (digest && XXH3_128bits_update(w->digest, p, n) != XXH_OK)
        w->failed = KC_EINTERNAL;
    if (w->sign)
        kc__bsig_update(w->sign, p, n);
    w->bytes += n;
}

int kc__bw_begin(kc__bw_t *w, FILE *f, uint64_t created, const char *producer)
{
    return kc__bw_begin_signed(w, f, created, producer, NULL);
}

int kc__bw_begin_signed(kc__bw_t *w, FILE *f, uint64_t created, const char *producer,
                        const kc_bundle_key_t *key)
{
    uint8_t head[KC__BUNDLE_HEAD_FIXED + KC__BUNDLE_PRODUCER_MAX + KC__BUNDLE_CHECKSUM];
    size_t plen = strlen(producer), n;
    int rc;

    memset(w, 0, sizeof(*w));
    if (plen > KC__BUNDLE_PRODUCER_MAX)
        return KC_EINVAL;
    w->f = f;
    w->digest = XXH3_createState();
    if (!w->digest || XXH3_128bits_reset(w->digest) != XXH_OK) {
        kc__bw_abandon(w);
        return KC_ENOMEM;
    }
    if (key) {
        if (!key->has_secret) {
            kc__bw_abandon(w);
            return KC_EINVAL;
        }
        if ((rc = kc__bsig_begin(&w->sign)) != KC_OK) {
            kc__bw_abandon(w);
            return rc;
        }
        w->key = key;
    }
    memcpy(head, KC__BUNDLE_MAGIC, 4);
    head[4] = KC_BUNDLE_VERSION;
    head[5] = 0;
    head[6] = key ? KC__BUNDLE_FLAG_SIGNED : 0; /* flags */
    head[7] = 0;
    kc__store_u64le(head + 8, created);
    kc__store_u32le(head + 16, (uint32_t)plen);
    memcpy(head + KC__BUNDLE_HEAD_FIXED, producer, plen);
    n = KC__BUNDLE_HEAD_FIXED + plen;
    kc__store_u64le(head + n, XXH3_64bits(head, n));
    bw_write(w, head, n + KC__BUNDLE_CHECKSUM, 1);
    return w->failed;
}

int kc__bw_frame(kc__bw_t *w, int kind, const void *key, size_t key_len, const void *rec,
                 size_t rec_len)
{
    uint8_t head[KC__BUNDLE_FRAME_HEAD], sum[KC__BUNDLE_CHECKSUM];
    XXH3_state_t st;

    if (w->failed)
        return w->failed;
    if (key_len > UINT16_MAX || rec_len > UINT32_MAX)
        return w->failed = KC_ETOOBIG;
    head[0] = KC__FRAME_RECORD;
    head[1] = (uint8_t)kind;
    head[2] = (uint8_t)key_len;
    head[3] = (uint8_t)(key_len >> 8);
    kc__store_u32le(head + 4, (uint32_t)rec_len);
    XXH3_64bits_reset(&st);
    XXH3_64bits_update(&st, head, sizeof(head));
    XXH3_64bits_update(&st, key, key_len);
    XXH3_64bits_update(&st, rec, rec_len);
    kc__store_u64le(sum, XXH3_64bits_digest(&st));
    bw_write(w, head, sizeof(head), 1);
    bw_write(w, key, key_len, 1);
    bw_write(w, rec, rec_len, 1);
    bw_write(w, sum, sizeof(sum), 1);
    if (!w->failed)
        w->count++;
    return w->failed;
}

int kc__bw_finish(kc__bw_t *w)
{
    uint8_t t[KC__BUNDLE_FRAME_HEAD + KC__BUNDLE_TRAILER_BODY + KC__BUNDLE_CHECKSUM];
    XXH128_canonical_t canon;
    int rc;

    if (!w->failed) {
        XXH128_canonicalFromHash(&canon, XXH3_128bits_digest(w->digest));
        memset(t, 0, sizeof(t));
        t[0] = KC__FRAME_TRAILER;
        kc__store_u32le(t + 4, KC__BUNDLE_TRAILER_BODY);
        kc__store_u64le(t + 8, w->count);
        memcpy(t + 16, canon.digest, 16);
        kc__store_u64le(t + 32, XXH3_64bits(t, 32));
        bw_write(w, t, sizeof(t), 0);
        if (!w->failed && w->sign) {
            /* The signature covers the trailer; the block itself is not
             * signed, so it is written past the signing state. */
            uint8_t block[KC__BUNDLE_SIG_BLOCK];
            void *sign = w->sign;
            w->sign = NULL;
            if ((rc = kc__bsig_finish(sign, w->key, block)) != KC_OK)
                w->failed = rc;
            bw_write(w, block, sizeof(block), 0);
        }
        if (!w->failed && fflush(w->f) != 0)
            w->failed = KC_EIO;
    }
    rc = w->failed;
    kc__bw_abandon(w);
    w->failed = rc;
    return rc;
}

void kc__bw_abandon(kc__bw_t *w)
{
    XXH3_freeState(w->digest);
    w->digest = NULL;
    kc__bsig_abandon(w->sign);
    w->sign = NULL;
    w->key = NULL;
}

/* ---- export: choosing the records -------------------------------------------- */

/* A record and the one record it needs: a tuning's winning build, a
 * build's blob. For a blob, ref.b[0..3] holds its dictionary id. */
typedef struct sel {
    kc_key_t key;
    kc_key_t ref;
} sel_t;

typedef struct sel_vec {
    sel_t *v;
    size_t n, cap;
} sel_vec_t;

static int sel_push(sel_vec_t *s, const kc_key_t *key, const kc_key_t *ref)
{
    if (kc__grow((void **)&s->v, s->n, &s->cap, sizeof(*s->v), 64) != 0)
        return KC_ENOMEM;
    s->v[s->n].key = *key;
    s->v[s->n].ref = ref ? *ref : (kc_key_t){{0}};
    s->n++;
    return 0;
}

static int sel_cmp(const void *a, const void *b)
{
    return memcmp(((const sel_t *)a)->key.b, ((const sel_t *)b)->key.b, 16);
}

/* Sort by key and drop repeated keys. */
static void sel_sort(sel_vec_t *s)
{
    size_t out = 0;

    if (s->n)
        qsort(s->v, s->n, sizeof(sel_t), sel_cmp);
    for (size_t i = 0; i < s->n; i++)
        if (out == 0 || memcmp(s->v[out - 1].key.b, s->v[i].key.b, 16) != 0)
            s->v[out++] = s->v[i];
    s->n = out;
}

static const sel_t *sel_find(const sel_vec_t *s, const kc_key_t *key)
{
    sel_t probe = {.key = *key};
    return s->n ? bsearch(&probe, s->v, s->n, sizeof(sel_t), sel_cmp) : NULL;
}

typedef struct export_ctx {
    kc_store_t *st;
    const kc_bundle_filter_t *filter;
    int filtered; /* any filter set */
    FILE *out;
    sel_vec_t tunings, builds, blobs, need_builds, binmeta, groups;
    uint32_t *dicts;
    size_t n_dicts;
    kc_bundle_stats_t stats;
    int io_failed;
    const kc_bundle_key_t *key; /* NULL: unsigned */
    kc__blob_buf_t buf;         /* split blobs, joined */
} export_ctx_t;

static int filter_match(const export_ctx_t *c, const char *arch, const char *entry,
                        uint64_t created)
{
    const kc_bundle_filter_t *f = c->filter;

    if (f->arch && strcmp(f->arch, arch) != 0)
        return 0;
    if (f->name && fnmatch(f->name, entry, 0) != 0)
        return 0;
    return f->since == 0 || created > f->since;
}

/* Decode a build, tuning, binmeta or group record stored under key; NULL (counted
 * as damaged) if it does not decode or is not stored under its derived key. */
static kc_record_t *decode_keyed(export_ctx_t *c, int kind, const MDB_val *k,
                                 const MDB_val *v)
{
    kc_record_t *rec = NULL;
    kc_key_t derived;

    if (k->mv_size != 16 || kc_record_decode(v->mv_data, v->mv_size, &rec) != KC_OK ||
        (int)rec->kind != kind || kc_record_derived_key(rec, &derived) != KC_OK ||
        memcmp(derived.b, k->mv_data, 16) != 0) {
        kc_free(rec);
        c->stats.damaged++;
        return NULL;
    }
    return rec;
}

static int choose_tunings(MDB_txn *txn, export_ctx_t *c)
{
    MDB_cursor *cur;
    MDB_val k, v;
    int rc = mdb_cursor_open(txn, c->st->env->dbi[KC_REC_TUNING], &cur);

    if (rc != 0)
        return rc;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        kc_record_t *rec = decode_keyed(c, KC_REC_TUNING, &k, &v);
        kc_tuning_desc_t *d = NULL;
        int keep;

        if (!rec)
            continue;
        if (kc_tuning_preimage_decode(rec->u.tuning.preimage.data,
                                      rec->u.tuning.preimage.size, &d) != KC_OK) {
            c->stats.damaged++;
            kc_free(rec);
            continue;
        }
        keep = filter_match(c, d->arch, d->entry, rec->u.tuning.created);
        if (keep) {
            kc_key_t key;
            memcpy(key.b, k.mv_data, 16);
            rc = sel_push(&c->tunings, &key, &rec->u.tuning.winner_build);
            if (rc == 0)
                rc = sel_push(&c->need_builds, &rec->u.tuning.winner_build, NULL);
        }
        kc_free(d);
        kc_free(rec);
        if (rc != 0)
            break;
    }
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

/* Whether blob key is stored, sound on the outside (checksum, layout) and,
 * if it needs a dictionary, whether the store has it. A blob's frame is
 * not decompressed here: import does that. *dict_id receives its id. */
static int blob_usable(MDB_txn *txn, export_ctx_t *c, const kc_key_t *key,
                       uint32_t *dict_id, int *ok)
{
    MDB_val k = kc__key_val(key), v;
    kc_blob_rec_t b;
    int rc = kc__blob_value_get(txn, c->st->env, &k, &v, &c->buf);

    *ok = 0;
    if (rc == MDB_NOTFOUND || rc == KC_ECORRUPT) /* KC_ECORRUPT: a tail missing */
        return 0;
    if (rc != 0)
        return rc;
    if (kc__blob_view(v.mv_data, v.mv_size, &b) != KC_OK)
        return 0;
    if (b.dict_id != 0) {
        char name[32];
        MDB_val dk, dv;
        snprintf(name, sizeof(name), "dict.%u", (unsigned)b.dict_id);
        dk.mv_size = strlen(name);
        dk.mv_data = name;
        rc = mdb_get(txn, c->st->env->dbi[KC_REC_META], &dk, &dv);
        if (rc == MDB_NOTFOUND)
            return 0;
        if (rc != 0)
            return rc;
    }
    *dict_id = b.dict_id;
    *ok = 1;
    return 0;
}

static int add_blob(export_ctx_t *c, const kc_key_t *key, uint32_t dict_id)
{
    kc_key_t ref = {{0}};
    memcpy(ref.b, &dict_id, sizeof(dict_id));
    return sel_push(&c->blobs, key, &ref);
}

static int choose_builds(MDB_txn *txn, export_ctx_t *c)
{
    MDB_cursor *cur;
    MDB_val k, v;
    int rc = mdb_cursor_open(txn, c->st->env->dbi[KC_REC_BUILD], &cur);

    if (rc != 0)
        return rc;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        kc_record_t *rec = decode_keyed(c, KC_REC_BUILD, &k, &v);
        kc_build_desc_t *d = NULL;
        kc_key_t key;
        uint32_t dict_id = 0;
        int keep, ok = 0;

        if (!rec)
            continue;
        memcpy(key.b, k.mv_data, 16);
        keep = sel_find(&c->need_builds, &key) != NULL;
        if (!keep && !c->filter->tuned_only) {
            if (kc_build_preimage_decode(rec->u.build.preimage.data,
                                         rec->u.build.preimage.size, &d) != KC_OK) {
                c->stats.damaged++;
                kc_free(rec);
                continue;
            }
            keep = filter_match(c, d->arch, d->entry, rec->u.build.created);
            kc_free(d);
        }
        if (keep) {
            /* A build is never exported without its blob. */
            rc = blob_usable(txn, c, &rec->u.build.blob, &dict_id, &ok);
            if (rc == 0 && ok &&
                (rc = sel_push(&c->builds, &key, &rec->u.build.blob)) == 0 && c->filtered)
                rc = add_blob(c, &rec->u.build.blob, dict_id);
            else if (rc == 0 && !ok)
                c->stats.damaged++;
        }
        kc_free(rec);
        if (rc != 0)
            break;
    }
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

static int choose_all_blobs(MDB_txn *txn, export_ctx_t *c)
{
    MDB_cursor *cur;
    MDB_val k, v;
    int rc = mdb_cursor_open(txn, c->st->env->dbi[KC_REC_BLOB], &cur);

    if (rc != 0)
        return rc;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        kc_key_t key;
        uint32_t dict_id = 0;
        int ok = 0;

        if (k.mv_size != 16)
            continue;
        memcpy(key.b, k.mv_data, 16);
        if ((rc = blob_usable(txn, c, &key, &dict_id, &ok)) != 0)
            break;
        if (!ok)
            c->stats.damaged++;
        else if ((rc = add_blob(c, &key, dict_id)) != 0)
            break;
    }
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

static int u32_cmp(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

/* Drop tunings whose winning build was left out, and list the dictionaries
 * the chosen blobs need. */
static int close_selection(export_ctx_t *c)
{
    size_t out = 0;

    sel_sort(&c->builds);
    sel_sort(&c->blobs);
    for (size_t i = 0; i < c->tunings.n; i++) {
        if (sel_find(&c->builds, &c->tunings.v[i].ref))
            c->tunings.v[out++] = c->tunings.v[i];
        else
            c->stats.damaged++;
    }
    c->tunings.n = out;
    c->dicts = malloc((c->blobs.n ? c->blobs.n : 1) * sizeof(uint32_t));
    if (!c->dicts)
        return KC_ENOMEM;
    for (size_t i = 0; i < c->blobs.n; i++) {
        uint32_t id;
        memcpy(&id, c->blobs.v[i].ref.b, sizeof(id));
        if (id)
            c->dicts[c->n_dicts++] = id;
    }
    if (c->n_dicts)
        qsort(c->dicts, c->n_dicts, sizeof(uint32_t), u32_cmp);
    out = 0;
    for (size_t i = 0; i < c->n_dicts; i++)
        if (out == 0 || c->dicts[out - 1] != c->dicts[i])
            c->dicts[out++] = c->dicts[i];
    c->n_dicts = out;
    return 0;
}

/* The binmeta records of the chosen builds: each travels beside its build.
 * One that does not decode or does not name its build is left out as
 * damaged. */
static int choose_binmeta(MDB_txn *txn, export_ctx_t *c)
{
    if (!kc__env_has_db(c->st->env, KC_REC_BINMETA))
        return 0; /* a read-only store made before binmeta: none */
    for (size_t i = 0; i < c->builds.n; i++) {
        MDB_val k = kc__key_val(&c->builds.v[i].key), v;
        int rc = mdb_get(txn, c->st->env->dbi[KC_REC_BINMETA], &k, &v);
        if (rc == MDB_NOTFOUND)
            continue;
        if (rc != 0)
            return rc;
        kc_record_t *rec = decode_keyed(c, KC_REC_BINMETA, &k, &v);
        if (!rec)
            continue;
        kc_free(rec);
        if ((rc = sel_push(&c->binmeta, &c->builds.v[i].key, NULL)) != 0)
            return rc;
    }
    return 0;
}

/* Groups, each with the blobs of its files. A group has no arch and is no
 * tuning: a filter by arch or tuned_only leaves every group out; name
 * matches the group's name and since its updated time. A group with a
 * file whose blob is missing or damaged is left out as damaged. */
static int choose_groups(MDB_txn *txn, export_ctx_t *c)
{
    const kc_bundle_filter_t *f = c->filter;
    MDB_cursor *cur;
    MDB_val k, v;
    int rc;

    if (!kc__env_has_db(c->st->env, KC_REC_GROUP) || f->arch || f->tuned_only)
        return 0;
    if ((rc = mdb_cursor_open(txn, c->st->env->dbi[KC_REC_GROUP], &cur)) != 0)
        return rc;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        kc_record_t *rec = decode_keyed(c, KC_REC_GROUP, &k, &v);
        const kc_group_rec_t *g;
        int ok = 1;

        if (!rec)
            continue;
        g = &rec->u.group;
        if ((f->name && fnmatch(f->name, g->name, 0) != 0) ||
            (f->since && g->updated <= f->since)) {
            kc_free(rec);
            continue;
        }
        for (size_t i = 0; i < g->n_files && ok && rc == 0; i++) {
            uint32_t dict_id = 0;
            rc = blob_usable(txn, c, &g->files[i].blob, &dict_id, &ok);
            if (rc == 0 && ok && c->filtered)
                rc = add_blob(c, &g->files[i].blob, dict_id);
        }
        if (rc == 0 && !ok)
            c->stats.damaged++;
        if (rc == 0 && ok) {
            kc_key_t key;
            memcpy(key.b, k.mv_data, 16);
            rc = sel_push(&c->groups, &key, NULL);
        }
        kc_free(rec);
        if (rc != 0)
            break;
    }
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

/* ---- export: writing ---------------------------------------------------------- */

static int write_keyed(MDB_txn *txn, export_ctx_t *c, kc__bw_t *w, int kind,
                       const sel_vec_t *s, uint64_t *count)
{
    for (size_t i = 0; i < s->n; i++) {
        MDB_val k = kc__key_val(&s->v[i].key), v;
        int rc = kind == KC_REC_BLOB
                     ? kc__blob_value_get(txn, c->st->env, &k, &v, &c->buf)
                     : mdb_get(txn, c->st->env->dbi[kind], &k, &v);
        if (rc != 0)
            return rc;
        if ((rc = kc__bw_frame(w, kind, k.mv_data, 16, v.mv_data, v.mv_size)) != KC_OK)
            return rc;
        (*count)++;
    }
    return 0;
}

static int export_fn(MDB_txn *txn, void *arg)
{
    export_ctx_t *c = arg;
    kc__bw_t w;
    int rc;

    if ((rc = choose_tunings(txn, c)) != 0)
        return rc;
    sel_sort(&c->need_builds);
    if ((rc = choose_builds(txn, c)) != 0)
        return rc;
    if (!c->filtered && (rc = choose_all_blobs(txn, c)) != 0)
        return rc;
    if ((rc = choose_groups(txn, c)) != 0)
        return rc;
    if ((rc = close_selection(c)) != 0 || (rc = choose_binmeta(txn, c)) != 0)
        return rc;

    if ((rc = kc__bw_begin_signed(&w, c->out, kc__now_s(), "kcache", c->key)) != KC_OK) {
        c->io_failed = rc == KC_EIO;
        return rc;
    }
    for (size_t i = 0; i < c->n_dicts; i++) {
        char name[32];
        MDB_val k, v;
        snprintf(name, sizeof(name), "dict.%u", (unsigned)c->dicts[i]);
        k.mv_size = strlen(name);
        k.mv_data = name;
        if ((rc = mdb_get(txn, c->st->env->dbi[KC_REC_META], &k, &v)) != 0)
            goto fail;
        if ((rc = kc__bw_frame(&w, KC_REC_META, name, k.mv_size, v.mv_data, v.mv_size)) !=
            KC_OK)
            goto fail;
        c->stats.dicts++;
    }
    if ((rc = write_keyed(txn, c, &w, KC_REC_BLOB, &c->blobs, &c->stats.blobs)) != 0 ||
        (rc = write_keyed(txn, c, &w, KC_REC_BUILD, &c->builds, &c->stats.builds)) != 0 ||
        (rc = write_keyed(txn, c, &w, KC_REC_BINMETA, &c->binmeta, &c->stats.binmeta)) !=
            0 ||
        (rc = write_keyed(txn, c, &w, KC_REC_TUNING, &c->tunings, &c->stats.tunings)) !=
            0 ||
        (rc = write_keyed(txn, c, &w, KC_REC_GROUP, &c->groups, &c->stats.groups)) != 0)
        goto fail;
    c->stats.records = w.count;
    if (c->key) {
        c->stats.is_signed = 1;
        memcpy(c->stats.signer, c->key->pk, sizeof(c->stats.signer));
    }
    rc = kc__bw_finish(&w);
    c->stats.bytes = w.bytes;
    c->io_failed = rc == KC_EIO;
    return rc;
fail:
    c->io_failed = w.failed == KC_EIO;
    kc__bw_abandon(&w);
    return rc;
}

int kc_bundle_export(kc_store_t *store, const kc_bundle_filter_t *filter, FILE *out,
                     kc_bundle_stats_t *stats)
{
    return kc_bundle_export_signed(store, filter, NULL, out, stats);
}

int kc_bundle_export_signed(kc_store_t *store, const kc_bundle_filter_t *filter,
                            const kc_bundle_key_t *key, FILE *out,
                            kc_bundle_stats_t *stats)
{
    static const kc_bundle_filter_t none = {0};
    export_ctx_t c;
    int rc;

    if (stats)
        memset(stats, 0, sizeof(*stats));
    if (!store || !out || (key && !key->has_secret))
        return KC_EINVAL;
    kc__store_begin_call(store);
    memset(&c, 0, sizeof(c));
    c.st = store;
    c.key = key;
    c.filter = filter ? filter : &none;
    c.filtered =
        c.filter->arch || c.filter->name || c.filter->since || c.filter->tuned_only;
    c.out = out;
    rc = kc__env_read(store->env, export_fn, &c);
    if (rc == KC_EIO && c.io_failed)
        rc = kc__store_fail(store, KC_EIO, "export: cannot write the bundle");
    else if (rc != 0)
        rc = kc__store_finish(store, rc, "export");
    if (stats)
        *stats = c.stats;
    free(c.tunings.v);
    free(c.builds.v);
    free(c.blobs.v);
    free(c.need_builds.v);
    free(c.binmeta.v);
    free(c.groups.v);
    free(c.dicts);
    kc__blob_buf_free(&c.buf);
    return rc;
}
