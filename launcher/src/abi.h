/* The launch ABI of a prebuilt binary (kc_prebuilt_t): what its binmeta
 * record says a launch needs beyond the cubin and the user's arguments.
 * Internal.
 *
 * Triton's compiler appends two pointer parameters to every kernel, global
 * and profile scratch; a launch passes a buffer of grid size x num_ctas x
 * size bytes (aligned) for each that is non-zero, NULL otherwise, as
 * Triton's own launcher does. Clusters (num_ctas > 1), programmatic
 * dependent launch and cooperative grids go through cuLaunchKernelEx; the
 * grid's x is then multiplied by num_ctas. */
#ifndef KCACHE_ABI_H
#define KCACHE_ABI_H

#include <stddef.h>
#include <stdint.h>

#include "device.h"
#include "kcache/record.h"
#include "spec.h"

/* Parameters appended after the user's arguments, at most. */
#define KC__ABI_MAX_EXTRA 2

typedef struct kc__abi {
    unsigned threads;  /* block x */
    unsigned dyn_smem; /* dynamic shared memory, bytes */
    unsigned num_ctas; /* CTAs per cluster */
    uint32_t flags;    /* KC_BINMETA_COOPERATIVE, KC_BINMETA_PDL */
    uint32_t gscratch_size, gscratch_align;
    uint32_t pscratch_size, pscratch_align;
    unsigned n_extra; /* scratch pointers appended: 2 for Triton, else 0 */
    /* The specialization, indices into the spec's arguments. */
    kc_binmeta_spec_t *spec;
    size_t n_spec;
} kc__abi_t;

/* Check a binmeta record against the kernel's spec and the device's arch,
 * and fill *out (out->spec is malloc'd: kc__abi_clear). KC_EUNSUPPORTED
 * for tensor descriptors (TMA), KC_ESPEC for an arch or argument mismatch,
 * with the reason in err (without the kernel's name). */
int kc__abi_from_binmeta(const kc_binmeta_rec_t *bm, const kc__spec_t *sp,
                         const char *arch, kc__abi_t *out, char *err, size_t errcap);
void kc__abi_clear(kc__abi_t *abi);

/* The first argument that breaks the binary's specialization: its index,
 * and in err what is wrong; SIZE_MAX when every argument fits. */
size_t kc__abi_violation(const kc__abi_t *abi, const kc__spec_t *sp, const kc_arg_t *args,
                         char *err, size_t errcap);

/* Allow fn the binary's dynamic shared memory (the opt-in above 48 KiB),
 * once per loaded function: kc__abi_launch does not. */
int kc__abi_opt_in(kc__device_t *dev, const kc__abi_t *abi, void *fn);

/* Launch fn under the ABI: abi's block and shared memory, the grid given.
 * params has room for n_args + KC__ABI_MAX_EXTRA
 * pointers; the scratch pointers are written after the user's. fn has had
 * its kc__abi_opt_in. Scratch is
 * allocated and freed in stream order. Same codes as the device's launch. */
int kc__abi_launch(kc__device_t *dev, const kc__abi_t *abi, void *fn,
                   const unsigned grid[3], void *stream, void **params, size_t n_args);

#endif
