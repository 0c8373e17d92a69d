/* Blob records: compression, and decompression that trusts nothing it reads.
 *
 * zstd contexts are costly to create (hundreds of KiB each), so every thread
 * keeps one compression and one decompression context and reuses them. A
 * pthread key destructor frees them when the thread exits.
 *
 * kc_blob_warm runs the whole encode and decode path once, off the caller's
 * critical path, and leaves the decompression context it used (created,
 * its memory touched) for the first thread that needs one: in a fresh
 * process the first decompress would otherwise pay for the context's
 * creation, its first page faults and the first touch of zstd's and
 * xxHash's code, several times the decompress itself. */
#include "kcache/blob.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* For ZSTD_c_literalCompressionMode (see set_raw_literals). */
#define ZSTD_STATIC_LINKING_ONLY
#include <zstd.h>
#include <zstd_errors.h>

#include "blob_internal.h"
#include "kcache/errors.h"
#include "kcache/record.h"

typedef struct zctx {
    ZSTD_CCtx *c;
    ZSTD_DCtx *d;
} zctx_t;

static _Thread_local zctx_t *tls_zctx;
static pthread_key_t zctx_key;
static pthread_once_t zctx_once = PTHREAD_ONCE_INIT;
static int zctx_key_rc = -1;
static atomic_long zctx_live;
/* A used decompression context left by kc_blob_warm, or NULL. */
static _Atomic(ZSTD_DCtx *) spare_dctx;

static void zctx_destroy(void *p)
{
    zctx_t *z = p;
    ZSTD_freeCCtx(z->c);
    ZSTD_freeDCtx(z->d);
    free(z);
    tls_zctx = NULL;
    atomic_fetch_sub(&zctx_live, 1);
}

static void zctx_key_create(void)
{
    zctx_key_rc = pthread_key_create(&zctx_key, zctx_destroy);
}

static zctx_t *zctx_get(void)
{
    if (tls_zctx)
        return tls_zctx;
    if (pthread_once(&zctx_once, zctx_key_create) != 0 || zctx_key_rc != 0)
        return NULL;
    zctx_t *z = calloc(1, sizeof(*z));
    if (!z)
        return NULL;
    if (pthread_setspecific(zctx_key, z) != 0) {
        free(z);
        return NULL;
    }
    atomic_fetch_add(&zctx_live, 1);
    tls_zctx = z;
    return z;
}

static ZSTD_CCtx *cctx_get(void)
{
    zctx_t *z = zctx_get();
    if (z && !z->c)
        z->c = ZSTD_createCCtx();
    return z ? z->c : NULL;
}

static ZSTD_DCtx *dctx_get(void)
{
    zctx_t *z = zctx_get();
    if (z && !z->d) {
        z->d = atomic_exchange(&spare_dctx, NULL);
        if (!z->d)
            z->d = ZSTD_createDCtx();
    }
    return z ? z->d : NULL;
}

long kc__blob_live_contexts(void)
{
    return atomic_load(&zctx_live);
}

int kc__blob_has_spare(void)
{
    return atomic_load(&spare_dctx) != NULL;
}

int kc__blob_thread_compressed(void)
{
    return tls_zctx && tls_zctx->c;
}

static int zstd_code(size_t r, int otherwise)
{
    return ZSTD_getErrorCode(r) == ZSTD_error_memory_allocation ? KC_ENOMEM : otherwise;
}

/* Literals stored as they are, not Huffman-coded: on cubins this makes
 * frames about 8% larger and decompression about twice as fast, and the
 * decompress is on the path of every first launch of a stored kernel
 * (docs/FORMAT.md, "Blob"). The frame stays a standard zstd frame that any
 * decoder reads. The parameter belongs to zstd's experimental API, so it is
 * used only if this libzstd knows it (1.5.0 on); otherwise the default
 * literal coding is kept. */
static void set_raw_literals(ZSTD_CCtx *cctx)
{
    if (ZSTD_versionNumber() < 10500)
        return;
    ZSTD_bounds b = ZSTD_cParam_getBounds(ZSTD_c_literalCompressionMode);
    if (ZSTD_isError(b.error) || (int)ZSTD_ps_disable < b.lowerBound ||
        (int)ZSTD_ps_disable > b.upperBound)
        return;
    ZSTD_CCtx_setParameter(cctx, ZSTD_c_literalCompressionMode, ZSTD_ps_disable);
}

int kc_blob_encode(const void *raw, size_t raw_len, int level, kc_key_t *key, void **rec,
                   size_t *rec_len)
{
    static const uint8_t empty[1];
    void *frame = NULL;
    int rc;

    if (!key || !rec || !rec_len || (raw_len && !raw))
        return KC_EINVAL;
    *rec = NULL;
    *rec_len = 0;
    if (!raw)
        raw = empty;
    if ((uint64_t)raw_len > KC_BLOB_MAX_RAW)
        return KC_ETOOBIG;
    if (level == 0)
        level = KC_BLOB_DEFAULT_LEVEL;
    ZSTD_bounds lv = ZSTD_cParam_getBounds(ZSTD_c_compressionLevel);
    if (ZSTD_isError(lv.error) || level < lv.lowerBound || level > lv.upperBound)
        return KC_EINVAL;

    ZSTD_CCtx *cctx = cctx_get();
    if (!cctx)
        return KC_ENOMEM;
    size_t cap = ZSTD_compressBound(raw_len);
    frame = malloc(cap);
    if (!frame)
        return KC_ENOMEM;

    size_t r = ZSTD_CCtx_reset(cctx, ZSTD_reset_session_and_parameters);
    if (!ZSTD_isError(r))
        r = ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, level);
    if (!ZSTD_isError(r))
        /* No zstd content checksum: every read hashes the result against
         * the blob's key (XXH3-128), which is the stronger check, and
         * skipping zstd's own saves a pass over the bytes on the hit path. */
        r = ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 0);
    if (!ZSTD_isError(r))
        r = ZSTD_CCtx_setParameter(cctx, ZSTD_c_contentSizeFlag, 1);
    if (!ZSTD_isError(r))
        set_raw_literals(cctx);
    if (!ZSTD_isError(r))
        r = ZSTD_compress2(cctx, frame, cap, raw, raw_len);
    if (ZSTD_isError(r)) {
        rc = zstd_code(r, KC_EZSTD);
        goto fail;
    }
    return kc__blob_finish(frame, r, 0, raw, raw_len, key, rec, rec_len);
fail:
    free(frame);
    return rc;
}

int kc__blob_finish(void *frame, size_t frame_len, uint32_t dict_id, const void *raw,
                    size_t raw_len, kc_key_t *key, void **rec, size_t *rec_len)
{
    kc_record_t br = {.kind = KC_REC_BLOB};
    br.u.blob.codec = KC_CODEC_ZSTD;
    br.u.blob.dict_id = dict_id;
    br.u.blob.raw_size = raw_len;
    br.u.blob.frame.data = frame;
    br.u.blob.frame.size = frame_len;
    int rc = kc_record_encode(&br, rec, rec_len);
    free(frame);
    if (rc == KC_OK)
        *key = kc_key_hash(raw, raw_len);
    return rc;
}

/* Everything that can be judged from the frame's header, before any memory
 * is reserved for the output. */
static int check_frame(const kc_blob_rec_t *b)
{
    const void *f = b->frame.data;
    size_t n = b->frame.size;

    unsigned long long content = ZSTD_getFrameContentSize(f, n);
    if (content == ZSTD_CONTENTSIZE_ERROR)
        return KC_ECORRUPT;
    if (content != ZSTD_CONTENTSIZE_UNKNOWN && content != b->raw_size)
        return KC_ECORRUPT;
    /* Exactly one frame: no trailing bytes, no second frame. */
    size_t used = ZSTD_findFrameCompressedSize(f, n);
    if (ZSTD_isError(used) || used != n)
        return KC_ECORRUPT;
    unsigned frame_dict = ZSTD_getDictID_fromFrame(f, n);
    if (frame_dict != 0 && frame_dict != b->dict_id)
        return KC_ECORRUPT;
    return KC_OK;
}

int kc_blob_decode(const void *rec, size_t rec_len, const kc_key_t *key, uint64_t max_raw,
                   const void *dict, size_t dict_len, void **raw, size_t *raw_len)
{
    kc_blob_rec_t b;
    uint8_t *out = NULL;
    int rc;

    if (!key || !raw || !raw_len)
        return KC_EINVAL;
    *raw = NULL;
    *raw_len = 0;
    if ((rc = kc__blob_view(rec, rec_len, &b)) != KC_OK)
        return rc;
    uint64_t bound = max_raw ? max_raw : KC_BLOB_MAX_RAW;
    if (b.raw_size > bound || (uint64_t)(size_t)b.raw_size != b.raw_size)
        return KC_ETOOBIG;
    if ((rc = check_frame(&b)) != KC_OK)
        return rc;
    if (b.dict_id != 0 &&
        (!dict || dict_len == 0 || ZSTD_getDictID_fromDict(dict, dict_len) != b.dict_id))
        return KC_EUNSUPPORTED;

    ZSTD_DCtx *dctx = dctx_get();
    if (!dctx)
        return KC_ENOMEM;
    size_t size = (size_t)b.raw_size;
    out = malloc(size ? size : 1);
    if (!out)
        return KC_ENOMEM;

    /* The output buffer is exactly raw_size bytes: a frame that would
     * produce more fails with dstSize_tooSmall instead of growing it. */
    size_t got = ZSTD_DCtx_reset(dctx, ZSTD_reset_session_and_parameters);
    if (ZSTD_isError(got)) {
        rc = zstd_code(got, KC_EZSTD);
        goto fail;
    }
    if (b.dict_id != 0) {
        const ZSTD_DDict *dd = kc__blob_ddict(dict, dict_len, b.dict_id);
        got = dd ? ZSTD_decompress_usingDDict(dctx, out, size, b.frame.data, b.frame.size,
                                              dd)
                 : ZSTD_decompress_usingDict(dctx, out, size, b.frame.data, b.frame.size,
                                             dict, dict_len);
    } else
        got = ZSTD_decompressDCtx(dctx, out, size, b.frame.data, b.frame.size);
    if (ZSTD_isError(got)) {
        rc = zstd_code(got, KC_ECORRUPT);
        goto fail;
    }
    if (got != size) {
        rc = KC_ECORRUPT;
        goto fail;
    }
    kc_key_t h = kc_key_hash(out, size);
    if (memcmp(h.b, key->b, sizeof(h.b)) != 0) {
        rc = KC_ECORRUPT;
        goto fail;
    }
    *raw = out;
    *raw_len = size;
    return KC_OK;
fail:
    free(out);
    return rc;
}

/* Cubin-like bytes: zero runs between stretches of a small alphabet, so
 * that the frame has both matches and literals. Deterministic. */
static void warm_sample(uint8_t *p, size_t n)
{
    uint32_t x = 2463534242u;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        p[i] = (i / 64) % 3 == 0 ? 0 : (uint8_t)(x & 0x1f);
    }
}

int kc__blob_offer_context(void)
{
    zctx_t *z = tls_zctx;
    ZSTD_DCtx *none = NULL;
    if (!z || !z->d || !atomic_compare_exchange_strong(&spare_dctx, &none, z->d))
        return 0;
    z->d = NULL;
    return 1;
}

void kc_blob_warm(void)
{
    enum { SAMPLE = 16 << 10 };
    uint8_t *sample;
    void *rec = NULL, *raw = NULL;
    size_t rec_len = 0, raw_len = 0;
    kc_key_t key;

    if (atomic_load(&spare_dctx) || !(sample = malloc(SAMPLE)))
        return;
    warm_sample(sample, SAMPLE);
    if (kc_blob_encode(sample, SAMPLE, 0, &key, &rec, &rec_len) == KC_OK &&
        kc_blob_decode(rec, rec_len, &key, 0, NULL, 0, &raw, &raw_len) == KC_OK) {
        /* Hand this thread's context, now used, to the next thread that
         * decompresses; this thread makes another if it needs one. */
        kc__blob_offer_context();
    }
    kc_free(raw);
    kc_free(rec);
    free(sample);
}
