/* Groups (record kind 8): named files stored together, each file's bytes a
 * blob. kc_store_group_put compresses and hashes every file first, then
 * commits the blobs and the group record in one write transaction;
 * kc_store_group_get and kc_store_group_read are lookups with a usage
 * stamp on the group. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gc_internal.h"
#include "kcache/blob.h"
#include "record_internal.h"
#include "store_internal.h"

typedef struct g_file {
    const char *name;
    size_t name_len;
    kc_key_t blob;
    uint64_t size;
    void *rec; /* the encoded blob record */
    size_t rec_len;
} g_file_t;

typedef struct group_ctx {
    kc_store_t *st;
    const char *name;
    kc_key_t key;
    g_file_t *files; /* sorted by name */
    size_t n;
    int merge;
    uint64_t now;
    /* Set by the last attempt. */
    void *enc; /* the encoded group record */
    uint64_t new_bytes;
    size_t n_merged; /* files of the merged group, when over the limit */
} group_ctx_t;

static int file_cmp(const void *a, const void *b)
{
    const g_file_t *x = a, *y = b;
    return kc__group_fname_cmp((const uint8_t *)x->name, x->name_len,
                               (const uint8_t *)y->name, y->name_len);
}

/* The group stored under c->key, decoded; NULL when there is none, or one
 * that does not decode (a merge then starts from nothing, and the put
 * replaces the damaged record). */
static kc_record_t *stored_group(MDB_txn *txn, group_ctx_t *c)
{
    MDB_val k = kc__key_val(&c->key), v;
    kc_record_t *rec = NULL;

    if (mdb_get(txn, c->st->env->dbi[KC_REC_GROUP], &k, &v) != 0)
        return NULL;
    if (kc_record_decode(v.mv_data, v.mv_size, &rec) != KC_OK ||
        rec->kind != KC_REC_GROUP || strcmp(rec->u.group.name, c->name) != 0) {
        kc_free(rec);
        return NULL;
    }
    return rec;
}

/* The new record: c's files, merged over old's (may be NULL), encoded. */
static int encode_group(group_ctx_t *c, const kc_record_t *old, size_t *len)
{
    const kc_group_rec_t *o = old ? &old->u.group : NULL;
    size_t n_old = o ? o->n_files : 0, i = 0, j = 0, n = 0;
    kc_group_entry_t *e = calloc(n_old + c->n + 1, sizeof(*e));
    kc_record_t rec = {.kind = KC_REC_GROUP, .version = KC_RECORD_VERSION};
    int rc;

    if (!e)
        return KC_ENOMEM;
    /* Both lists are sorted: a merge walk, where a file of the put replaces
     * the stored one of the same name. */
    while (i < n_old || j < c->n) {
        int cmp = i == n_old  ? 1
                  : j == c->n ? -1
                              : kc__group_fname_cmp((const uint8_t *)o->files[i].name,
                                                    strlen(o->files[i].name),
                                                    (const uint8_t *)c->files[j].name,
                                                    c->files[j].name_len);
        if (cmp < 0) {
            e[n++] = o->files[i++];
            continue;
        }
        if (cmp == 0)
            i++;
        e[n++] = (kc_group_entry_t){c->files[j].name, c->files[j].blob, c->files[j].size};
        j++;
    }
    if (n > KC_GROUP_FILES_MAX) {
        c->n_merged = n;
        free(e);
        return KC_EINVAL;
    }
    rec.u.group = (kc_group_rec_t){c->name, o ? o->created : c->now, c->now, e, n};
    rc = kc_record_encode(&rec, &c->enc, len);
    free(e);
    return rc;
}

static int group_put_fn(MDB_txn *txn, void *arg)
{
    group_ctx_t *c = arg;
    kc__env_t *env = c->st->env;
    kc_record_t *old = NULL;
    size_t len = 0;
    int rc;

    /* kc__env_write may run this again after growing the map. */
    kc_free(c->enc);
    c->enc = NULL;
    c->new_bytes = 0;
    c->n_merged = 0;
    for (size_t i = 0; i < c->n; i++) {
        g_file_t *f = &c->files[i];
        MDB_val k = kc__key_val(&f->blob), v = {f->rec_len, f->rec};
        rc = kc__rec_put(txn, env, KC_REC_BLOB, &k, &v, MDB_NOOVERWRITE);
        if (rc == 0)
            c->new_bytes += f->rec_len;
        else if (rc != MDB_KEYEXIST)
            return rc;
        if ((rc = kc__usage_stamp(txn, env, &f->blob, c->now, 0)) != 0)
            return rc;
    }
    if (c->merge)
        old = stored_group(txn, c);
    rc = encode_group(c, old, &len);
    kc_free(old);
    if (rc != KC_OK)
        return rc;
    MDB_val k = kc__key_val(&c->key), v = {len, c->enc};
    if ((rc = kc__rec_put(txn, env, KC_REC_GROUP, &k, &v, 0)) != 0)
        return rc;
    return kc__usage_stamp(txn, env, &c->key, c->now, 0);
}

int kc_store_group_put(kc_store_t *store, const char *name, const kc_group_file_t *files,
                       size_t n, int merge)
{
    group_ctx_t c;
    int rc;

    if (!store)
        return KC_EINVAL;
    kc__store_begin_call(store);
    memset(&c, 0, sizeof(c));
    if (!name || kc_group_key(name, &c.key) != KC_OK)
        return kc__store_fail(store, KC_EINVAL,
                              "group put: the group name must be 1 to %d bytes",
                              KC_GROUP_NAME_MAX);
    if (n && !files)
        return kc__store_fail(store, KC_EINVAL, "group put: files is NULL");
    if (n > KC_GROUP_FILES_MAX)
        return kc__store_fail(store, KC_EINVAL,
                              "group put: %zu files, a group holds at most %d", n,
                              KC_GROUP_FILES_MAX);
    for (size_t i = 0; i < n; i++) {
        const char *f = files[i].name;
        if (!f || !kc__group_fname_ok((const uint8_t *)f, strlen(f)))
            return kc__store_fail(store, KC_EINVAL,
                                  "group put: file %zu: bad name \"%s\" (1 to %d bytes, "
                                  "no '/', not \".\" or \"..\")",
                                  i, f ? f : "(null)", KC_GROUP_FNAME_MAX);
        if (!files[i].data && files[i].size)
            return kc__store_fail(store, KC_EINVAL, "group put: file %s: data is NULL",
                                  f);
    }
    if ((rc = kc__store_check_writable(store, "group put")) != KC_OK)
        return rc;
    c.st = store;
    c.name = name;
    c.merge = merge;
    c.now = kc__now_s();
    c.files = calloc(n ? n : 1, sizeof(*c.files));
    if (!c.files)
        return kc__store_fail(store, KC_ENOMEM, "group put: out of memory");

    /* Everything slow happens here, before the write transaction. */
    for (size_t i = 0; i < n; i++, c.n++) {
        g_file_t *f = &c.files[i];
        f->name = files[i].name;
        f->name_len = strlen(f->name);
        f->size = files[i].size;
        rc = kc_blob_encode(files[i].data, files[i].size, store->zstd_level, &f->blob,
                            &f->rec, &f->rec_len);
        if (rc != KC_OK) {
            rc =
                kc__store_fail(store, rc, "group put: cannot compress %s (%zu bytes): %s",
                               f->name, files[i].size, kc_strerror(rc));
            goto fail;
        }
    }
    qsort(c.files, c.n, sizeof(*c.files), file_cmp);
    for (size_t i = 1; i < c.n; i++)
        if (file_cmp(&c.files[i - 1], &c.files[i]) == 0) {
            rc = kc__store_fail(store, KC_EINVAL, "group put: file %s given twice",
                                c.files[i].name);
            goto fail;
        }

    rc = kc__env_write(store->env, group_put_fn, &c);
    if (rc == KC_EINVAL && c.n_merged) {
        rc = kc__store_fail(store, KC_EINVAL,
                            "group put: merged, %s would hold %zu files (at most %d)",
                            name, c.n_merged, KC_GROUP_FILES_MAX);
        goto fail;
    }
    if (rc != 0) {
        rc = kc__store_finish(store, rc, "group put");
        goto fail;
    }
    kc_store_count(store, KC_COUNTER_BYTES_STORED, c.new_bytes);
    /* After the commit, as a publish does; a failed gc is not a failed put. */
    kc__gc_after_publish(store, c.now);
    rc = KC_OK;
fail:
    for (size_t i = 0; i < c.n; i++)
        kc_free(c.files[i].rec);
    free(c.files);
    kc_free(c.enc);
    return rc;
}

int kc_store_group_get(kc_store_t *store, const char *name, kc_record_t **out)
{
    kc_key_t key;
    int rc;

    if (out)
        *out = NULL;
    if (!store || !out)
        return KC_EINVAL;
    kc__store_begin_call(store);
    if (!name || kc_group_key(name, &key) != KC_OK)
        return kc__store_fail(store, KC_EINVAL,
                              "group get: the group name must be 1 to %d bytes",
                              KC_GROUP_NAME_MAX);
    rc = kc_store_get(store, KC_REC_GROUP, &key, out);
    if (rc != KC_OK)
        return rc;
    /* A hit is a use: LRU gc goes by it. */
    kc_store_touch(store, KC_REC_GROUP, &key);
    return KC_OK;
}

int kc_store_group_read(kc_store_t *store, const char *name, const char *fname,
                        void **data, size_t *len)
{
    kc_record_t *rec = NULL;
    const kc_group_entry_t *f = NULL;
    int rc;

    if (data)
        *data = NULL;
    if (len)
        *len = 0;
    if (!store || !fname || !data || !len)
        return KC_EINVAL;
    if ((rc = kc_store_group_get(store, name, &rec)) != KC_OK)
        return rc;
    const kc_group_rec_t *g = &rec->u.group;
    size_t lo = 0, hi = g->n_files, fl = strlen(fname);
    while (lo < hi && !f) {
        size_t mid = lo + (hi - lo) / 2;
        const char *m = g->files[mid].name;
        int cmp = kc__group_fname_cmp((const uint8_t *)m, strlen(m),
                                      (const uint8_t *)fname, fl);
        if (cmp == 0)
            f = &g->files[mid];
        else if (cmp < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (!f) {
        rc = kc__store_fail(store, KC_ENOTFOUND, "group %s has no file %s", name, fname);
        goto done;
    }
    rc = kc_store_get_cubin(store, &f->blob, data, len);
    if (rc == KC_OK && *len != f->size) {
        size_t got = *len;
        kc_free(*data);
        *data = NULL;
        *len = 0;
        rc = kc__store_fail(store, KC_ENOTFOUND,
                            "group %s: file %s is %llu bytes in the group, its blob %zu",
                            name, fname, (unsigned long long)f->size, got);
    }
done:
    kc_free(rec);
    return rc;
}
