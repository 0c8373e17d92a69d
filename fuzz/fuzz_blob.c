/* Fuzz the blob decoder. The first 16 bytes of an input are the key the
 * blob is expected under; the rest is the encoded record. As in
 * fuzz_record.c, each record is tried as it is and with its checksum
 * recomputed, so that mutations reach zstd. Output is bounded to 1 MiB. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "blob_internal.h"
#include "kcache/blob.h"
#include "kcache/errors.h"
#include "wire.h"

#define MAX_RAW (1u << 20)

static void try_one(const kc_key_t *key, const uint8_t *rec, size_t size)
{
    void *raw = NULL;
    size_t raw_len = 0;
    int rc = kc_blob_decode(rec, size, key, MAX_RAW, NULL, 0, &raw, &raw_len);

    if (rc != KC_OK) {
        if (raw || raw_len)
            abort();
        return;
    }
    /* Success promises exactly this: the declared size, within the bound,
     * and bytes that hash to the key. */
    kc_blob_rec_t view;
    kc_key_t got = kc_key_hash(raw, raw_len);
    if (kc__blob_view(rec, size, &view) != KC_OK || view.raw_size != raw_len ||
        raw_len > MAX_RAW || memcmp(got.b, key->b, sizeof(got.b)) != 0)
        abort();
    kc_free(raw);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    kc_key_t key;

    if (size < sizeof(key.b))
        return 0;
    memcpy(key.b, data, sizeof(key.b));
    data += sizeof(key.b);
    size -= sizeof(key.b);

    uint8_t *copy = malloc(size ? size : 1);
    if (!copy)
        return 0;
    memcpy(copy, data, size);
    try_one(&key, copy, size);
    if (size >= 20) {
        kc__store_u64le(copy + size - 8, XXH3_64bits(copy, size - 8));
        try_one(&key, copy, size);
    }
    free(copy);
    return 0;
}
