/* Arguments: the kernel parameters built from the caller's arguments (with
 * dtype conversion of scalars), a candidate's geometry evaluated over them,
 * and how many bytes of a written buffer tuning must save and restore. */
#include "kernel_int.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

static uint16_t f32_to_f16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000u, mant = x & 0x7fffffu;
    int exp = (int)((x >> 23) & 0xff);

    if (exp == 0xff) /* inf, NaN */
        return (uint16_t)(sign | 0x7c00u | (mant ? 0x200u : 0));
    exp = exp - 127 + 15;
    if (exp >= 0x1f)
        return (uint16_t)(sign | 0x7c00u);
    if (exp <= 0) {
        if (exp < -10)
            return (uint16_t)sign;
        mant |= 0x800000u;
        unsigned shift = (unsigned)(14 - exp);
        uint32_t half = mant >> shift, rem = mant & ((1u << shift) - 1),
                 mid = 1u << (shift - 1);
        if (rem > mid || (rem == mid && (half & 1)))
            half++;
        return (uint16_t)(sign | half);
    }
    uint32_t h = sign | ((uint32_t)exp << 10) | (mant >> 13), rem = mant & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1)))
        h++; /* a carry into the exponent rounds up correctly, to inf at most */
    return (uint16_t)h;
}

static uint16_t f32_to_bf16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((x >> 16) | 0x40u);
    x += 0x7fffu + ((x >> 16) & 1);
    return (uint16_t)(x >> 16);
}

/* cuLaunchKernel reads each argument with the width of its C type: an i32
 * must be passed as 4 bytes, an f32 as a float. */
int kc__build_params(const kc_launcher_t *owner, const kc__spec_t *sp,
                     const kc_arg_t *args, size_t n, scalar_t *vals, void **params)
{
    for (size_t i = 0; i < n; i++) {
        const kc_arg_spec_t *a = &sp->s.args[i];
        const kc_arg_t *v = &args[i];
        if (a->kind == KC_ARG_POINTER) {
            params[i] = (void *)&v->ptr;
            continue;
        }
        switch (a->dtype) {
        case KC_DTYPE_BOOL:
            vals[i].u8 = v->value.i != 0;
            break;
        case KC_DTYPE_I8:
        case KC_DTYPE_U8:
            vals[i].u8 = (uint8_t)v->value.u;
            break;
        case KC_DTYPE_I16:
        case KC_DTYPE_U16:
            vals[i].u16 = (uint16_t)v->value.u;
            break;
        case KC_DTYPE_I32:
        case KC_DTYPE_U32:
            vals[i].u32 = (uint32_t)v->value.u;
            break;
        case KC_DTYPE_I64:
        case KC_DTYPE_U64:
            vals[i].u64 = v->value.u;
            break;
        case KC_DTYPE_F16:
            vals[i].u16 = f32_to_f16((float)v->value.f);
            break;
        case KC_DTYPE_BF16:
            vals[i].u16 = f32_to_bf16((float)v->value.f);
            break;
        case KC_DTYPE_F32:
            vals[i].f32 = (float)v->value.f;
            break;
        case KC_DTYPE_F64:
            vals[i].f64 = v->value.f;
            break;
        default:
            kc__errmsg_set(owner,
                           "spec '%s': args[%zu] '%s': %s scalars cannot be passed",
                           sp->s.name, i, a->name, kc_dtype_name(a->dtype));
            return KC_EINVAL;
        }
        params[i] = &vals[i];
    }
    return KC_OK;
}

/* fixed: the config-only geometry of a memo entry, or NULL. */
int kc__prepare(const kc__spec_t *sp, const int64_t *config, const int64_t *fixed,
                const kc_arg_t *args, size_t n, prep_t *p, char *err, size_t errcap)
{
    int rc = kc__spec_bind(sp, config, args, n, p->vars, p->shapes, err, errcap);
    if (rc != KC_OK)
        return rc;
    return kc__spec_eval_geometry_with(sp, fixed, p->vars, p->shapes, n, p->grid,
                                       p->block, &p->shared, err, errcap);
}

/* ---- tuning ------------------------------------------------------------ */

size_t kc__written_bytes(const kc_arg_spec_t *a, const kc_arg_t *v)
{
    size_t elems = 1;
    if (v->strides) {
        for (uint32_t r = 0; r < v->rank; r++) {
            if (v->dims[r] <= 0)
                return 0;
            if (v->strides[r] > 0)
                elems += (size_t)(v->dims[r] - 1) * (size_t)v->strides[r];
        }
    } else {
        for (uint32_t r = 0; r < v->rank; r++)
            elems *= v->dims[r] > 0 ? (size_t)v->dims[r] : 0;
    }
    return elems * kc_dtype_size(a->dtype);
}

/* Classify a candidate whose geometry could not be evaluated: a block the
 * device cannot run is a resource problem, anything else a launch failure. */
uint8_t kc__geometry_status(const kc_kernel_t *k, const prep_t *p)
{
    uint64_t threads = 1;
    for (int i = 0; i < 3; i++) {
        int64_t v;
        if (kc__expr_eval(k->spec->block[i], p->vars, p->shapes, k->spec->s.n_args, &v) !=
            KC_OK)
            return KC_CAND_LAUNCH_FAILED;
        if (v <= 0)
            return KC_CAND_LAUNCH_FAILED;
        threads *= (uint64_t)v;
        if (threads > UINT32_MAX)
            break;
    }
    unsigned max = k->l->info.max_threads_per_block ? k->l->info.max_threads_per_block
                                                    : KC__BLOCK_THREADS_MAX;
    return threads > max || threads > KC__BLOCK_THREADS_MAX ? KC_CAND_RESOURCES
                                                            : KC_CAND_LAUNCH_FAILED;
}

int kc__tuning_key(kc_kernel_t *k, const uint8_t *sig, size_t len, void **pre,
                   size_t *pre_len, kc_key_t *key)
{
    const kc__spec_t *sp = k->spec;
    kc_tuning_desc_t desc = {
        .source_kind = sp->s.source_kind,
        .source_digest = sp->source_digest,
        .entry = sp->s.entry,
        .options = sp->s.options,
        .n_options = sp->s.n_options,
        .space_digest = sp->space_digest,
        .shape_sig = {sig, len},
        .arch = k->l->arch,
        .sm_count = k->l->info.sm_count,
        .device_name = k->l->info.name,
    };
    int rc = kc_tuning_preimage_encode(&desc, pre, pre_len);
    if (rc == KC_OK)
        *key = kc_key_hash(*pre, *pre_len);
    return rc;
}
