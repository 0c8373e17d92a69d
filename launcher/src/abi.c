/* Prebuilt binaries' launch ABI: checked against the spec once, at
 * registration; specialization checked once per shape signature; scratch
 * buffers and launch attributes on every launch. */
#include "abi.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Triton's type names ("*fp32", "i32", "fp16"...) as kcache dtypes. */
static kc_dtype_t triton_dtype(const char *t)
{
    static const struct {
        const char *name;
        kc_dtype_t dt;
    } map[] = {
        {"i1", KC_DTYPE_BOOL},       {"u1", KC_DTYPE_BOOL},
        {"i8", KC_DTYPE_I8},         {"i16", KC_DTYPE_I16},
        {"i32", KC_DTYPE_I32},       {"i64", KC_DTYPE_I64},
        {"u8", KC_DTYPE_U8},         {"u16", KC_DTYPE_U16},
        {"u32", KC_DTYPE_U32},       {"u64", KC_DTYPE_U64},
        {"fp16", KC_DTYPE_F16},      {"bf16", KC_DTYPE_BF16},
        {"fp32", KC_DTYPE_F32},      {"f32", KC_DTYPE_F32},
        {"fp64", KC_DTYPE_F64},      {"fp8e4nv", KC_DTYPE_FP8E4M3},
        {"fp8e5", KC_DTYPE_FP8E5M2},
    };
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
        if (strcmp(map[i].name, t) == 0)
            return map[i].dt;
    return KC_DTYPE_INVALID;
}

/* Same width and kind (integer or float): what the kernel reads. */
static int same_scalar(kc_dtype_t a, kc_dtype_t b)
{
    int fa = a >= KC_DTYPE_F16, fb = b >= KC_DTYPE_F16;
    return fa == fb && kc_dtype_size(a) == kc_dtype_size(b) &&
           (!fa || a == b); /* f16 and bf16 differ */
}

/* "sm_90a" runs on sm_90 only; "sm_90" on sm_90. A cubin is bound to its
 * major and minor: no other arch loads it. */
static int arch_fits(const char *bin, const char *dev)
{
    size_t n = strlen(dev);
    if (strncmp(bin, dev, n) != 0)
        return 0;
    return bin[n] == '\0' || ((bin[n] == 'a' || bin[n] == 'f') && bin[n + 1] == '\0');
}

int kc__abi_from_binmeta(const kc_binmeta_rec_t *bm, const kc__spec_t *sp,
                         const char *arch, kc__abi_t *out, char *err, size_t errcap)
{
    memset(out, 0, sizeof(*out));
    if (bm->flags & KC_BINMETA_TMA) {
        snprintf(err, errcap,
                 "the binary uses tensor descriptors (TMA), which kcache does not "
                 "launch yet (not supported yet)");
        return KC_EUNSUPPORTED;
    }
    if (arch && !arch_fits(bm->arch, arch)) {
        snprintf(err, errcap, "the binary is for %s, the device is %s", bm->arch, arch);
        return KC_ESPEC;
    }
    if (bm->warp_size != 32 || bm->threads_per_block == 0 ||
        bm->threads_per_block > KC__BLOCK_THREADS_MAX) {
        snprintf(err, errcap,
                 "the binary's block of %" PRIu32 " threads (warp size %" PRIu32
                 ") cannot be launched",
                 bm->threads_per_block, bm->warp_size);
        return KC_ESPEC;
    }
    if (bm->n_args != sp->s.n_args) {
        snprintf(err, errcap, "the binary takes %zu arguments, the spec has %zu",
                 bm->n_args, sp->s.n_args);
        return KC_ESPEC;
    }
    for (size_t i = 0; i < bm->n_args; i++) {
        const kc_arg_spec_t *a = &sp->s.args[i];
        const char *t = bm->args[i].type;
        int ptr = t[0] == '*';
        kc_dtype_t dt = triton_dtype(ptr ? t + 1 : t);
        int ok = ptr ? a->kind == KC_ARG_POINTER &&
                           (dt == KC_DTYPE_INVALID || dt == a->dtype ||
                            kc_dtype_size(dt) == kc_dtype_size(a->dtype))
                     : a->kind == KC_ARG_SCALAR && dt != KC_DTYPE_INVALID &&
                           same_scalar(dt, a->dtype);
        if (!ok) {
            snprintf(err, errcap,
                     "args[%zu] '%s': the binary's argument '%s' is %s, the spec says "
                     "%s%s",
                     i, a->name, bm->args[i].name, t, kc_dtype_name(a->dtype),
                     a->kind == KC_ARG_POINTER ? "*" : "");
            return KC_ESPEC;
        }
    }
    out->threads = bm->threads_per_block;
    out->dyn_smem = bm->dyn_smem;
    out->num_ctas = bm->num_ctas;
    out->flags = bm->flags & (KC_BINMETA_COOPERATIVE | KC_BINMETA_PDL);
    out->gscratch_size = bm->global_scratch_size;
    out->gscratch_align = bm->global_scratch_align;
    out->pscratch_size = bm->profile_scratch_size;
    out->pscratch_align = bm->profile_scratch_align;
    out->n_extra = strcmp(bm->compiler, "triton") == 0 ? 2 : 0;
    if (bm->n_spec) {
        out->spec = malloc(bm->n_spec * sizeof(*out->spec));
        if (!out->spec) {
            snprintf(err, errcap, "out of memory");
            return KC_ENOMEM;
        }
        memcpy(out->spec, bm->spec, bm->n_spec * sizeof(*out->spec));
        out->n_spec = bm->n_spec;
    }
    return KC_OK;
}

void kc__abi_clear(kc__abi_t *abi)
{
    if (!abi)
        return;
    free(abi->spec);
    memset(abi, 0, sizeof(*abi));
}

size_t kc__abi_violation(const kc__abi_t *abi, const kc__spec_t *sp, const kc_arg_t *args,
                         char *err, size_t errcap)
{
    for (size_t i = 0; i < abi->n_spec; i++) {
        size_t a = abi->spec[i].arg;
        const kc_arg_spec_t *as = &sp->s.args[a];
        const kc_arg_t *v = &args[a];
        switch (abi->spec[i].prop) {
        case KC_SPEC_ALIGN16:
            if (v->ptr % 16 != 0) {
                snprintf(err, errcap,
                         "argument '%s' (0x%" PRIx64 ") is not 16-byte aligned, and the "
                         "binary was compiled assuming it is",
                         as->name, v->ptr);
                return a;
            }
            break;
        case KC_SPEC_DIV16:
            if (v->value.i % 16 != 0) {
                snprintf(err, errcap,
                         "argument '%s' = %" PRId64 " is not divisible by 16, and the "
                         "binary was compiled assuming it is",
                         as->name, v->value.i);
                return a;
            }
            break;
        case KC_SPEC_EQ1:
            if (v->value.i != 1) {
                snprintf(err, errcap,
                         "argument '%s' = %" PRId64 " is not 1, and the binary was "
                         "compiled assuming it is",
                         as->name, v->value.i);
                return a;
            }
            break;
        }
    }
    return SIZE_MAX;
}

/* grid size x num_ctas x size, rounded for the alignment; 0 on overflow. */
static size_t scratch_bytes(const unsigned grid[3], unsigned ctas, uint32_t size,
                            uint32_t align)
{
    uint64_t n = (uint64_t)grid[0] * grid[1] * grid[2];
    if (__builtin_mul_overflow(n, (uint64_t)ctas * size, &n) ||
        __builtin_add_overflow(n, (uint64_t)(align ? align - 1 : 0), &n) || n > SIZE_MAX)
        return 0;
    return (size_t)n;
}

static uint64_t align_up(uint64_t p, uint32_t align)
{
    return align > 1 ? (p + align - 1) & ~(uint64_t)(align - 1) : p;
}

int kc__abi_opt_in(kc__device_t *dev, const kc__abi_t *abi, void *fn)
{
    if (abi->dyn_smem <= SMEM_NO_OPTIN)
        return KC_OK;
    return dev->ops->set_dyn_smem(dev, fn, abi->dyn_smem);
}

int kc__abi_launch(kc__device_t *dev, const kc__abi_t *abi, void *fn,
                   const unsigned grid[3], void *stream, void **params, size_t n_args)
{
    unsigned shared = abi->dyn_smem;
    const kc__device_ops_t *ops = dev->ops;
    uint64_t base[2] = {0, 0}, ptr[2] = {0, 0};
    const uint32_t size[2] = {abi->gscratch_size, abi->pscratch_size};
    const uint32_t align[2] = {abi->gscratch_align, abi->pscratch_align};
    unsigned block[3] = {abi->threads, 1, 1};
    int rc = KC_OK;

    for (unsigned i = 0; i < abi->n_extra && i < KC__ABI_MAX_EXTRA; i++) {
        if (size[i]) {
            size_t bytes = scratch_bytes(grid, abi->num_ctas, size[i], align[i]);
            if (!bytes) {
                kc__device_set_errmsg(
                    dev, "scratch of %" PRIu32 " bytes per CTA overflows", size[i]);
                rc = KC_ETOOBIG;
                goto out;
            }
            rc = ops->mem_alloc_async(dev, bytes, stream, &base[i]);
            if (rc != KC_OK)
                goto out;
            ptr[i] = align_up(base[i], align[i]);
        }
        params[n_args + i] = &ptr[i];
    }
    if (abi->num_ctas > 1 || abi->flags) {
        unsigned g[3] = {grid[0] * abi->num_ctas, grid[1], grid[2]};
        if (abi->num_ctas > 1 && g[0] / abi->num_ctas != grid[0]) {
            kc__device_set_errmsg(dev, "grid x of %u clusters of %u CTAs overflows",
                                  grid[0], abi->num_ctas);
            rc = KC_EINVAL;
            goto out;
        }
        rc = ops->launch_ex(dev, fn, g, block, shared, stream, params, abi->num_ctas,
                            abi->flags);
    } else {
        rc = ops->launch(dev, fn, grid, block, shared, stream, params);
    }
out:
    /* Stream-ordered: freed after the kernel that uses it has run. */
    for (unsigned i = 0; i < KC__ABI_MAX_EXTRA; i++)
        if (base[i])
            ops->mem_free_async(dev, base[i], stream);
    return rc;
}
