/* Explaining misses: which key fields set two build or tuning preimages
 * apart, and which stored records are nearest to a given one.
 *
 * A miss happens because some field of the wanted preimage differs from
 * every stored one. These calls compare decoded preimages field by field so
 * that a tool (cachectl why) or the launcher's debug log can say, e.g.,
 * "nearest tuning 3f2a9c1e differs in: shape signature". Comparing is pure
 * and thread-safe; kc_why_nearest_* read the store through its public API.
 */
#ifndef KCACHE_WHY_H
#define KCACHE_WHY_H

#include <stddef.h>

#include "kcache/api.h"
#include "kcache/key.h"
#include "kcache/record.h"
#include "kcache/store.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One bit per key field. Builds use SOURCE_KIND to TOOLCHAIN; tunings use
 * every field but PARAMS and TOOLCHAIN. */
typedef enum kc_why_field {
    KC_WHY_SOURCE_KIND = 1u << 0,
    KC_WHY_SOURCE_DIGEST = 1u << 1,
    KC_WHY_ENTRY = 1u << 2,
    KC_WHY_OPTIONS = 1u << 3,
    KC_WHY_PARAMS = 1u << 4, /* builds: config values */
    KC_WHY_ARCH = 1u << 5,
    KC_WHY_TOOLCHAIN = 1u << 6,    /* builds: NVRTC or driver version */
    KC_WHY_SPACE_DIGEST = 1u << 7, /* tunings: the tuning space */
    KC_WHY_SHAPE_SIG = 1u << 8,    /* tunings */
    KC_WHY_DEVICE_CLASS = 1u << 9, /* tunings: SM count and device name */
} kc_why_field_t;
#define KC_WHY_FIELD_COUNT 10

/* "source kind", "source digest", "entry", "options", "params", "arch",
 * "toolchain", "space digest", "shape signature", "device class" for one
 * field bit; NULL for anything else. Static strings. */
KC_API const char *kc_why_field_name(unsigned field);

/* The set of fields in which a and b differ (0: same key). Options compare
 * in order, params by name and value (both preimages keep them sorted). */
KC_API unsigned kc_why_compare_build(const kc_build_desc_t *a, const kc_build_desc_t *b);
KC_API unsigned kc_why_compare_tuning(const kc_tuning_desc_t *a,
                                      const kc_tuning_desc_t *b);

/* How far apart a difference mask puts two records: fields that name
 * another kernel (entry, source kind) weigh more than those that name
 * another target or input (arch, shape), so that the nearest record is the
 * same kernel built or tuned for something else. */
KC_API unsigned kc_why_distance(unsigned fields);

/* Write field's value in d for people into out[cap] (always terminated):
 * "sm_90", "f32[1024x512]/a16 i32=16x", "NVIDIA H100 (132 SMs)",
 * "-O3 -lineinfo", "BLOCK=128", an 8-digit digest prefix. Returns out. */
KC_API const char *kc_why_describe_build(const kc_build_desc_t *d, unsigned field,
                                         char *out, size_t cap);
KC_API const char *kc_why_describe_tuning(const kc_tuning_desc_t *d, unsigned field,
                                          char *out, size_t cap);

/* One stored record close to a target. */
typedef struct kc_why_match {
    kc_key_t key;
    unsigned fields;   /* differing fields */
    unsigned distance; /* kc_why_distance(fields) */
} kc_why_match_t;

/* The stored builds (tunings) nearest to target, nearest first, ties in key
 * order, at most cap of them in out[]; *n receives how many. A stored record
 * whose key is skip (may be NULL) is left out, so that a stored target is
 * not its own nearest. Records that do not decode are skipped. Returns
 * KC_OK (with *n 0 when the store has none), KC_EINVAL, or a store error. */
KC_API int kc_why_nearest_builds(kc_store_t *store, const kc_build_desc_t *target,
                                 const kc_key_t *skip, kc_why_match_t *out, size_t cap,
                                 size_t *n);
KC_API int kc_why_nearest_tunings(kc_store_t *store, const kc_tuning_desc_t *target,
                                  const kc_key_t *skip, kc_why_match_t *out, size_t cap,
                                  size_t *n);

#ifdef __cplusplus
}
#endif
#endif
