/* Keys, key prefixes and build/tuning preimages.
 *
 * A key is a 16-byte XXH3-128 digest in XXH3's canonical (big-endian) byte
 * order. Build and tuning keys are digests of preimages: canonical, versioned,
 * length-prefixed encodings of the fields that determine the record (see
 * docs/FORMAT.md). Two different inputs never encode to the same preimage.
 */
#ifndef KCACHE_KEY_H
#define KCACHE_KEY_H

#include <stddef.h>
#include <stdint.h>

#include "kcache/api.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kc_key {
    uint8_t b[16];
} kc_key_t;

/* A read-only view of bytes owned by someone else. */
typedef struct kc_buf {
    const void *data;
    size_t size;
} kc_buf_t;

/* Release memory that a kcache call returned and documented as the caller's.
 * Accepts NULL. */
KC_API void kc_free(void *p);

#define KC_KEY_HEX_LEN 32
/* Shortest accepted key prefix, in hex digits. */
#define KC_KEY_PREFIX_MIN 8

/* XXH3-128 of data in canonical byte order. */
KC_API kc_key_t kc_key_hash(const void *data, size_t size);

/* The key of the group named name (kcache/record.h, kc_group_rec_t): the
 * XXH3-128 of its bytes, without the NUL. KC_EINVAL for a NULL name, an
 * empty one or one longer than KC_GROUP_NAME_MAX (1024) bytes. */
KC_API int kc_group_key(const char *name, kc_key_t *out);

/* Writes 32 lowercase hex digits and a NUL into out[33]. */
KC_API void kc_key_to_hex(const kc_key_t *key, char out[KC_KEY_HEX_LEN + 1]);

/* Parses exactly 32 hex digits (either case). KC_EINVAL otherwise. */
KC_API int kc_key_from_hex(const char *hex, kc_key_t *out);

/* A hex prefix of a key: the first `nibbles` hex digits of `key` are
 * significant, the rest are zero. */
typedef struct kc_key_prefix {
    kc_key_t key;
    unsigned nibbles; /* KC_KEY_PREFIX_MIN..32 */
} kc_key_prefix_t;

/* Parses a prefix of KC_KEY_PREFIX_MIN to 32 hex digits. KC_EINVAL on any
 * other character, or a length out of range. */
KC_API int kc_key_prefix_parse(const char *hex, kc_key_prefix_t *out);

/* 1 if key starts with prefix, else 0. */
KC_API int kc_key_prefix_match(const kc_key_prefix_t *prefix, const kc_key_t *key);

KC_API int kc_key_cmp(const kc_key_t *a, const kc_key_t *b);
KC_API int kc_key_is_zero(const kc_key_t *key);

/* ---- preimages ---------------------------------------------------------- */

/* Version of the preimage encodings. Changing any preimage byte layout bumps
 * it, which changes every key: old records simply stop matching. */
#define KC_KEY_SCHEMA_VERSION 1

typedef enum kc_source_kind {
    KC_SOURCE_CUDA = 1,
    KC_SOURCE_PTX = 2,
    /* A binary kcache did not compile (Triton's): the build's source digest
     * is the cubin's blob key, its options name the producer's own id
     * (docs/FORMAT.md, "Imported binaries"), and its launch metadata is a
     * binmeta record. */
    KC_SOURCE_PREBUILT = 3,
} kc_source_kind_t;

/* One tuning parameter value, e.g. BLOCK=128. */
typedef struct kc_param {
    const char *name;
    int64_t value;
} kc_param_t;

/* A header supplied with CUDA source for NVRTC. */
typedef struct kc_header {
    const char *name;
    const char *content;
} kc_header_t;

/* XXH3-128 over a length-prefixed encoding of the source and of each header
 * (name and content), in the order given. */
KC_API kc_key_t kc_source_digest(const char *source, size_t source_len,
                                 const kc_header_t *headers, size_t n_headers);

/* The fields of a build preimage: this source, compiled with these options
 * and config values, for this arch, by this toolchain. */
typedef struct kc_build_desc {
    kc_source_kind_t source_kind;
    kc_key_t source_digest;
    const char *entry;
    const char *const *options; /* in compiler order */
    size_t n_options;
    const kc_param_t *params; /* any order; encoded sorted by name */
    size_t n_params;
    const char *arch;      /* "sm_90", "sm_90a", ... */
    const char *toolchain; /* "nvrtc-13.0", "driver-13000", ... */
} kc_build_desc_t;

/* The fields of a tuning preimage. shape_sig is an encoded shape signature
 * (kcache/shape.h); space_digest is the digest of the tuning space. */
typedef struct kc_tuning_desc {
    kc_source_kind_t source_kind;
    kc_key_t source_digest;
    const char *entry;
    const char *const *options;
    size_t n_options;
    kc_key_t space_digest;
    kc_buf_t shape_sig;
    const char *arch;
    uint32_t sm_count;
    const char *device_name;
} kc_tuning_desc_t;

/* Encode a preimage into a new malloc'd buffer (*out, *out_len; free with
 * kc_free). KC_EINVAL for a NULL string, duplicate parameter names or an
 * unknown source kind. */
KC_API int kc_build_preimage_encode(const kc_build_desc_t *desc, void **out,
                                    size_t *out_len);
KC_API int kc_tuning_preimage_encode(const kc_tuning_desc_t *desc, void **out,
                                     size_t *out_len);

/* Decode a preimage. *out is one allocation holding the struct and every
 * string and array it points to; free it with kc_free. KC_ECORRUPT for
 * damaged bytes, KC_EVERSION for a newer schema. */
KC_API int kc_build_preimage_decode(const void *data, size_t len, kc_build_desc_t **out);
KC_API int kc_tuning_preimage_decode(const void *data, size_t len,
                                     kc_tuning_desc_t **out);

/* Convenience: encode and hash in one step. */
KC_API int kc_build_key(const kc_build_desc_t *desc, kc_key_t *out);
KC_API int kc_tuning_key(const kc_tuning_desc_t *desc, kc_key_t *out);

#ifdef __cplusplus
}
#endif
#endif
