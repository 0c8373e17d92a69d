/* Fuzz the binmeta payload parser. Each input is tried as a record as it
 * is, then as the payload of a binmeta record with a valid header and
 * checksum, so that mutations reach the parser's field checks instead of
 * dying at the envelope. Whatever decodes must re-encode to the very same
 * bytes (the encoding is canonical) and derive the build key it carries. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "kcache/errors.h"
#include "kcache/record.h"
#include "wire.h"

static void try_one(const uint8_t *data, size_t size)
{
    kc_record_t *rec = NULL;
    int rc = kc_record_decode(data, size, &rec);

    if (rc != KC_OK) {
        if (rec)
            abort();
        return;
    }
    void *again = NULL;
    size_t again_len = 0;
    if (kc_record_encode(rec, &again, &again_len) != KC_OK)
        abort();
    if (again_len != size || memcmp(again, data, size) != 0)
        abort();
    if (rec->kind == KC_REC_BINMETA) {
        kc_key_t key;
        if (kc_record_derived_key(rec, &key) != KC_OK ||
            memcmp(key.b, rec->u.binmeta.build.b, 16) != 0)
            abort();
    }
    kc_free(again);
    kc_free(rec);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    try_one(data, size);
    /* A record's payload: the input without a header and trailer if it has
     * the record magic, else the whole input. */
    const uint8_t *payload = data;
    size_t n = size;
    if (size >= KC_RECORD_HEADER_SIZE + KC_RECORD_TRAILER_SIZE &&
        memcmp(data, "KCR", 4) == 0) {
        payload = data + KC_RECORD_HEADER_SIZE;
        n = size - KC_RECORD_HEADER_SIZE - KC_RECORD_TRAILER_SIZE;
    }
    if (n > UINT32_MAX)
        return 0;
    size_t len = KC_RECORD_HEADER_SIZE + n + KC_RECORD_TRAILER_SIZE;
    uint8_t *rec = malloc(len);
    if (!rec)
        return 0;
    memcpy(rec, "KCR", 4);
    rec[4] = KC_REC_BINMETA;
    rec[5] = KC_RECORD_VERSION;
    rec[6] = rec[7] = 0;
    kc__store_u32le(rec + 8, (uint32_t)n);
    if (n)
        memcpy(rec + KC_RECORD_HEADER_SIZE, payload, n);
    kc__store_u64le(rec + len - 8, XXH3_64bits(rec, len - 8));
    try_one(rec, len);
    free(rec);
    return 0;
}
