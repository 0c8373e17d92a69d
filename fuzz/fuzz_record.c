/* Fuzz the record decoder. Each input is tried as it is, then again with its
 * checksum recomputed, so that mutations reach the payload parser instead of
 * all dying at the checksum. Whatever decodes must re-encode to the very
 * same bytes: the encoding is canonical. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "kcache/errors.h"
#include "kcache/record.h"
#include "wire.h"

static void try_one(const uint8_t *data, size_t size)
{
    int kind = 0, version = 0;
    int checked = kc_record_check(data, size, &kind, &version);
    kc_record_t *rec = NULL;
    int rc = kc_record_decode(data, size, &rec);

    if (rc != KC_OK) {
        if (rec || (checked != KC_OK && rc != checked))
            abort();
        return;
    }
    if (checked != KC_OK || (int)rec->kind != kind || rec->version != version)
        abort();

    void *again = NULL;
    size_t again_len = 0;
    if (kc_record_encode(rec, &again, &again_len) != KC_OK)
        abort();
    if (again_len != size || memcmp(again, data, size) != 0)
        abort();
    kc_key_t key;
    int derived = kc_record_derived_key(rec, &key);
    if ((derived == KC_OK) != (kind == KC_REC_BUILD || kind == KC_REC_TUNING ||
                               kind == KC_REC_BINMETA || kind == KC_REC_GROUP))
        abort();
    kc_free(again);
    kc_free(rec);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    try_one(data, size);
    if (size < KC_RECORD_HEADER_SIZE + KC_RECORD_TRAILER_SIZE)
        return 0;
    uint8_t *copy = malloc(size);
    if (!copy)
        return 0;
    memcpy(copy, data, size);
    kc__store_u64le(copy + size - 8, XXH3_64bits(copy, size - 8));
    try_one(copy, size);
    free(copy);
    return 0;
}
