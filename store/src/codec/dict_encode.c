/* Blob records compressed with a zstd dictionary. The frame names its
 * dictionary and carries a checksum, as kc_blob_encode's frames do, so
 * kc_blob_decode verifies it the same way given that dictionary. */
#include "dict_encode.h"
#include "blob_internal.h"

#include <stdlib.h>

#include <zstd.h>
#include <zstd_errors.h>

#include "kcache/blob.h"
#include "kcache/errors.h"
#include "kcache/record.h"

struct kc__blob_dict_enc {
    ZSTD_CCtx *cctx;
    ZSTD_CDict *cdict;
    uint32_t dict_id;
};

void kc__blob_dict_enc_free(kc__blob_dict_enc_t *e)
{
    if (!e)
        return;
    ZSTD_freeCDict(e->cdict);
    ZSTD_freeCCtx(e->cctx);
    free(e);
}

int kc__blob_dict_enc_new(const void *dict, size_t len, int level, uint32_t *dict_id,
                          kc__blob_dict_enc_t **out)
{
    kc__blob_dict_enc_t *e;
    int rc;

    *out = NULL;
    if (!dict || len == 0 || !dict_id)
        return KC_EINVAL;
    if (level == 0)
        level = KC_BLOB_DEFAULT_LEVEL;
    /* A raw-content dictionary has no id, and kc_blob_decode needs one to
     * find it again. */
    *dict_id = ZSTD_getDictID_fromDict(dict, len);
    if (*dict_id == 0)
        return KC_EINVAL;
    e = calloc(1, sizeof(*e));
    if (!e)
        return KC_ENOMEM;
    e->dict_id = *dict_id;
    e->cctx = ZSTD_createCCtx();
    e->cdict = ZSTD_createCDict(dict, len, level);
    if (!e->cctx || !e->cdict) {
        rc = KC_ENOMEM;
        goto fail;
    }
    size_t r = ZSTD_CCtx_setParameter(e->cctx, ZSTD_c_checksumFlag, 1);
    if (!ZSTD_isError(r))
        r = ZSTD_CCtx_setParameter(e->cctx, ZSTD_c_contentSizeFlag, 1);
    if (!ZSTD_isError(r))
        r = ZSTD_CCtx_setParameter(e->cctx, ZSTD_c_dictIDFlag, 1);
    if (!ZSTD_isError(r))
        r = ZSTD_CCtx_refCDict(e->cctx, e->cdict);
    if (ZSTD_isError(r)) {
        rc = KC_EZSTD;
        goto fail;
    }
    *out = e;
    return KC_OK;
fail:
    kc__blob_dict_enc_free(e);
    return rc;
}

int kc__blob_encode_dict(kc__blob_dict_enc_t *e, const void *raw, size_t raw_len,
                         kc_key_t *key, void **rec, size_t *rec_len)
{
    static const uint8_t empty[1];
    void *frame = NULL;
    int rc;

    if (!e || !key || !rec || !rec_len || (raw_len && !raw))
        return KC_EINVAL;
    *rec = NULL;
    *rec_len = 0;
    if (!raw)
        raw = empty;
    if ((uint64_t)raw_len > KC_BLOB_MAX_RAW)
        return KC_ETOOBIG;
    size_t cap = ZSTD_compressBound(raw_len);
    frame = malloc(cap);
    if (!frame)
        return KC_ENOMEM;
    /* Parameters and the dictionary stay across frames; only the session
     * is reset. */
    size_t r = ZSTD_CCtx_reset(e->cctx, ZSTD_reset_session_only);
    if (!ZSTD_isError(r))
        r = ZSTD_compress2(e->cctx, frame, cap, raw, raw_len);
    if (ZSTD_isError(r)) {
        rc = ZSTD_getErrorCode(r) == ZSTD_error_memory_allocation ? KC_ENOMEM : KC_EZSTD;
        free(frame);
        return rc;
    }
    return kc__blob_finish(frame, r, e->dict_id, raw, raw_len, key, rec, rec_len);
}
