/* Meta records: values kept by name (the format version, counters, zstd
 * dictionaries) rather than under a kc_key_t. These calls run inside a
 * caller's transaction. */
#include <string.h>

#include "store_internal.h"

int kc__txn_put_record(MDB_txn *txn, MDB_dbi dbi, MDB_val *k, const kc_record_t *rec,
                       unsigned flags)
{
    MDB_val v;
    void *enc = NULL;
    size_t enc_len;
    int rc;

    rc = kc_record_encode(rec, &enc, &enc_len);
    if (rc != KC_OK)
        return rc;
    v.mv_data = enc;
    v.mv_size = enc_len;
    rc = mdb_put(txn, dbi, k, &v, flags);
    kc_free(enc);
    return rc;
}

static MDB_val name_val(const char *name)
{
    MDB_val v = {strlen(name), (void *)name};
    return v;
}

/* Look up and decode meta record name (*rec: free with kc_free). */
static int meta_get(MDB_txn *txn, kc__env_t *env, const char *name, kc_record_t **rec)
{
    MDB_val k = name_val(name), v;
    int rc;

    rc = mdb_get(txn, env->dbi[KC_REC_META], &k, &v);
    if (rc != 0)
        return rc;
    rc = kc_record_decode(v.mv_data, v.mv_size, rec);
    if (rc != KC_OK)
        return rc == KC_EVERSION || rc == KC_ENOMEM ? rc : KC_ECORRUPT;
    if ((*rec)->kind != KC_REC_META) {
        kc_free(*rec);
        *rec = NULL;
        return KC_ECORRUPT;
    }
    return 0;
}

int kc__meta_read(MDB_txn *txn, kc__env_t *env, const char *name, void *buf, size_t cap,
                  size_t *len)
{
    kc_record_t *rec = NULL;
    int rc = meta_get(txn, env, name, &rec);

    if (rc != 0)
        return rc;
    if (rec->u.meta.value.size > cap) {
        rc = KC_ETOOBIG;
    } else {
        memcpy(buf, rec->u.meta.value.data, rec->u.meta.value.size);
        *len = rec->u.meta.value.size;
    }
    kc_free(rec);
    return rc;
}

int kc__meta_read_alloc(MDB_txn *txn, kc__env_t *env, const char *name, void **value,
                        size_t *len)
{
    kc_record_t *rec = NULL;
    int rc = meta_get(txn, env, name, &rec);

    if (rc != 0)
        return rc;
    *value = kc__memdup(rec->u.meta.value.data, rec->u.meta.value.size);
    if (*value)
        *len = rec->u.meta.value.size;
    else
        rc = KC_ENOMEM;
    kc_free(rec);
    return rc;
}

int kc__meta_write(MDB_txn *txn, kc__env_t *env, const char *name, const void *value,
                   size_t len, unsigned flags)
{
    kc_record_t rec = {.kind = KC_REC_META, .version = KC_RECORD_VERSION};
    MDB_val k = name_val(name);

    rec.u.meta.value.data = value;
    rec.u.meta.value.size = len;
    return kc__txn_put_record(txn, env->dbi[KC_REC_META], &k, &rec, flags);
}
