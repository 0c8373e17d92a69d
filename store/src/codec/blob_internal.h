/* Internal blob helpers for the store. */
#ifndef KCACHE_BLOB_INTERNAL_H
#define KCACHE_BLOB_INTERNAL_H

#include <stddef.h>

#include "kcache/record.h"

/* Verify an encoded blob record (header, checksum, kind, codec, exact
 * payload length) and read its fields without copying or decompressing:
 * out->frame points into rec and is valid as long as rec is. Lets the store
 * learn a blob's raw size and dictionary id cheaply. KC_ECORRUPT for a
 * damaged record or one of another kind, KC_EVERSION for a newer format.
 * Defined in record.c, next to the rest of the payload layout. */
int kc__blob_view(const void *rec, size_t len, kc_blob_rec_t *out);

/* A blob record's raw_size, read from its header alone: rec may be a split
 * blob's head. KC_ECORRUPT if the header is not a blob's, or if raw_size
 * disagrees with the size the zstd frame's header states. Reads no more
 * than the headers (no checksum): for the record totals. */
int kc__blob_raw_size(const void *rec, size_t len, uint64_t *raw);

/* How many threads currently hold zstd contexts created by blob.c. Tests use
 * it to see that exiting threads release theirs. */
long kc__blob_live_contexts(void);

/* Hand the calling thread's decompression context, used by a decode, to
 * the next thread that needs one (as kc_blob_warm does), unless one already
 * waits or this thread has none. Returns whether it was handed over. */
int kc__blob_offer_context(void);

/* Whether kc_blob_warm left a decompression context that no thread has
 * taken yet. For tests. */
int kc__blob_has_spare(void);

/* Whether the calling thread has made a compression context (it has
 * encoded a blob). For tests. */
int kc__blob_thread_compressed(void);

/* Wrap a compressed frame of raw[raw_len] into an encoded blob record
 * (*rec: free with kc_free) and give the blob's key. Takes ownership of
 * frame (freed in every case): the last step of every blob encoder. */
int kc__blob_finish(void *frame, size_t frame_len, uint32_t dict_id, const void *raw,
                    size_t raw_len, kc_key_t *key, void **rec, size_t *rec_len);

/* The digested form of dictionary dict[len] (id: its zstd id), made on
 * first use and kept for the process (dict_decode.c), or NULL when the cache
 * is full or out of memory: then decode with the raw dictionary. */
struct ZSTD_DDict_s;
const struct ZSTD_DDict_s *kc__blob_ddict(const void *dict, size_t len, uint32_t id);

#endif
