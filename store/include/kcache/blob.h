/* Blobs: zstd-compressed cubins, keyed by the XXH3-128 of the raw bytes.
 *
 * Compression and decompression contexts are kept per thread and reused.
 * Decoding bounds the raw size before decompressing and checks the hash of
 * the result against the key: a blob that does not hash to its key is
 * KC_ECORRUPT, so nothing damaged is ever handed to the driver.
 */
#ifndef KCACHE_BLOB_H
#define KCACHE_BLOB_H

#include <stddef.h>
#include <stdint.h>

#include "kcache/api.h"
#include "kcache/key.h"

#ifdef __cplusplus
extern "C" {
#endif

#define KC_BLOB_DEFAULT_LEVEL 9
/* The largest raw blob accepted, compressing or decompressing: 512 MiB. */
#define KC_BLOB_MAX_RAW ((uint64_t)512 << 20)

/* Compress raw[raw_len] at zstd level (0: KC_BLOB_DEFAULT_LEVEL) into a
 * complete encoded blob record (*rec, *rec_len; free with kc_free). *key
 * receives the blob's key. KC_ETOOBIG past KC_BLOB_MAX_RAW. */
KC_API int kc_blob_encode(const void *raw, size_t raw_len, int level, kc_key_t *key,
                          void **rec, size_t *rec_len);

/* Decode an encoded blob record: verify it, bound its raw size by max_raw
 * (0: KC_BLOB_MAX_RAW), decompress, and check the result hashes to *key.
 * *raw (free with kc_free) and *raw_len receive the cubin. KC_ECORRUPT for
 * a damaged record, frame or hash mismatch; KC_ETOOBIG when the declared
 * size is over the bound; KC_EUNSUPPORTED for a dictionary the caller did
 * not supply (dict NULL or of another id). */
KC_API int kc_blob_decode(const void *rec, size_t rec_len, const kc_key_t *key,
                          uint64_t max_raw, const void *dict, size_t dict_len, void **raw,
                          size_t *raw_len);

/* Run the encode and decode path once on a sample and keep the
 * decompression context it used for the next thread that needs one, so
 * that a fresh process's first kc_blob_decode costs what later ones do.
 * Meant for a background thread at start-up; the sample's compression
 * takes a few hundred microseconds. kc_store_warm calls it only for a
 * store with no cubin to decode (it hands over the context of its own
 * decode otherwise). Harmless to call more than once: while a context
 * waits, it does nothing. */
KC_API void kc_blob_warm(void);

#ifdef __cplusplus
}
#endif
#endif
