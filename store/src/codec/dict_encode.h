/* Compressing blobs with a zstd dictionary. Internal: kc_blob_encode has no
 * dictionary parameter, and only kc_store_train_dict makes such blobs. */
#ifndef KCACHE_DICT_ENCODE_H
#define KCACHE_DICT_ENCODE_H

#include <stddef.h>
#include <stdint.h>

#include "kcache/key.h"

/* A compression context bound to one dictionary at one level. Not
 * thread-safe: one per thread. */
typedef struct kc__blob_dict_enc kc__blob_dict_enc_t;

/* Digest dict[len] (a zstd dictionary with its header, as ZDICT makes it)
 * for level (0: KC_BLOB_DEFAULT_LEVEL). *dict_id receives its id. KC_EINVAL
 * for a dictionary without an id, KC_ENOMEM, KC_EZSTD. */
int kc__blob_dict_enc_new(const void *dict, size_t len, int level, uint32_t *dict_id,
                          kc__blob_dict_enc_t **out);
void kc__blob_dict_enc_free(kc__blob_dict_enc_t *e);

/* Like kc_blob_encode, with the dictionary: a complete encoded blob record
 * whose dict_id names it (*rec: free with kc_free). */
int kc__blob_encode_dict(kc__blob_dict_enc_t *e, const void *raw, size_t raw_len,
                         kc_key_t *key, void **rec, size_t *rec_len);

#endif
