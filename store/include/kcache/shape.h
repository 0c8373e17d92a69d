/* Shape signatures: the part of a tuning key that describes the inputs.
 *
 * Each argument contributes, in order: a pointer its dtype, rank, dims and
 * whether its address is 16-byte aligned; a scalar its type and either its
 * value (for scalars named as tuning keys) or its class (1, a multiple of 16,
 * other). Dims are kept exact or rounded up to powers of two, per kernel.
 *
 * Encoding happens on the launch path: it writes into a caller buffer and
 * never allocates.
 */
#ifndef KCACHE_SHAPE_H
#define KCACHE_SHAPE_H

#include <stddef.h>
#include <stdint.h>

#include "kcache/api.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum kc_dtype {
    KC_DTYPE_INVALID = 0,
    KC_DTYPE_BOOL,
    KC_DTYPE_I8,
    KC_DTYPE_I16,
    KC_DTYPE_I32,
    KC_DTYPE_I64,
    KC_DTYPE_U8,
    KC_DTYPE_U16,
    KC_DTYPE_U32,
    KC_DTYPE_U64,
    KC_DTYPE_F16,
    KC_DTYPE_BF16,
    KC_DTYPE_F32,
    KC_DTYPE_F64,
    KC_DTYPE_FP8E4M3,
    KC_DTYPE_FP8E5M2,
    KC_DTYPE_COUNT_
} kc_dtype_t;

/* "f32", "bf16", ... ; NULL for an invalid dtype. */
KC_API const char *kc_dtype_name(kc_dtype_t dt);
/* KC_DTYPE_INVALID for an unknown name. */
KC_API kc_dtype_t kc_dtype_from_name(const char *name);
/* Size in bytes, 0 for an invalid dtype. */
KC_API size_t kc_dtype_size(kc_dtype_t dt);

typedef enum kc_arg_kind {
    KC_ARG_POINTER = 1,
    KC_ARG_SCALAR = 2,
} kc_arg_kind_t;

typedef enum kc_dims_policy {
    KC_DIMS_EXACT = 0,
    KC_DIMS_POW2 = 1,
} kc_dims_policy_t;

/* Scalar classes, as encoded. */
typedef enum kc_scalar_class {
    KC_SCLASS_ONE = 1,
    KC_SCLASS_DIV16 = 2,
    KC_SCLASS_OTHER = 3,
    KC_SCLASS_VALUE = 4, /* the scalar is a tuning key: its value is encoded */
    KC_SCLASS_FLOAT = 5, /* a float scalar that is not a key: type only */
} kc_scalar_class_t;

#define KC_MAX_RANK 8

/* One argument as seen by the signature. For a pointer, dtype, rank, dims
 * and addr are used; for a scalar, dtype (an integer or float type), value
 * and is_key. */
typedef struct kc_argdesc {
    kc_arg_kind_t kind;
    kc_dtype_t dtype;
    uint32_t rank;
    const int64_t *dims;
    uint64_t addr;
    union {
        int64_t i;
        uint64_t u;
        double f;
    } value;
    int is_key;
} kc_argdesc_t;

#define KC_SHAPE_SIG_VERSION 1

/* Encode the signature of args into out[cap]; *len receives the length.
 * KC_ETOOBIG if cap is too small (*len then holds the size needed),
 * KC_EINVAL for a bad descriptor (rank over KC_MAX_RANK, negative dim,
 * unknown dtype). Never allocates. */
KC_API int kc_shape_sig_encode(const kc_argdesc_t *args, size_t n_args,
                               kc_dims_policy_t policy, uint8_t *out, size_t cap,
                               size_t *len);

/* Render an encoded signature for people, e.g.
 * "f32[1024x512]/a16, f32[1024x512]/a16, i32:div16" into out[cap], always
 * NUL-terminated (truncated if cap is short). "/a16" marks a 16-byte aligned
 * pointer; a pow2 signature starts with "pow2: ". KC_ECORRUPT for bytes that
 * are not a signature, KC_EVERSION for a newer signature version. */
KC_API int kc_shape_sig_format(const void *sig, size_t len, char *out, size_t cap);

/* The class an integer scalar falls in (ONE, DIV16 or OTHER). */
KC_API kc_scalar_class_t kc_scalar_class_of(int64_t v);

#ifdef __cplusplus
}
#endif
#endif
