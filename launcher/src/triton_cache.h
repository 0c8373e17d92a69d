/* The parsers behind kcache/triton.h, from memory: a Triton metadata json
 * and the IR text holding the kernel's `tt.func public @<name>(...)` line.
 * Internal: the fuzz target fuzz/fuzz_triton.c and triton_cache.c use them.
 */
#ifndef KC_TRITON_CACHE_H
#define KC_TRITON_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "kcache/record.h"

/* Arguments past this many make the signature malformed. */
#define KC__TRITON_MAX_ARGS 1024

/* What the json and the signature say. Strings and arrays are malloc'd and
 * owned by the struct: release with kc__triton_meta_free. */
typedef struct kc__triton_meta {
    char *name;
    char *hash;
    char *version;
    uint32_t arch; /* target.arch, e.g. 90 */
    uint32_t num_warps, warp_size, num_ctas, num_stages;
    uint32_t shared;
    uint32_t gscratch_size, gscratch_align, pscratch_size, pscratch_align;
    uint32_t flags;         /* KC_BINMETA_* */
    kc_binmeta_arg_t *args; /* name and type strings malloc'd */
    size_t n_args;
    kc_binmeta_spec_t *spec; /* sorted by (arg, prop) */
    size_t n_spec;
} kc__triton_meta_t;

/* Parse the metadata json (json_len bytes) and the signature of its kernel
 * from the IR text (ir_len bytes). json_name and ir_name name the inputs
 * in messages. Returns KC_OK with *out filled (release with
 * kc__triton_meta_free), or with *out zeroed and the reason in err:
 * KC_EUNSUPPORTED (triton_version missing or older than 3.6, a backend
 * other than cuda, a warp size other than 32, tensor descriptors, an
 * argument type not known), KC_ECORRUPT (anything malformed), KC_ENOMEM. */
int kc__triton_parse_mem(const char *json, size_t json_len, const char *ir, size_t ir_len,
                         const char *json_name, const char *ir_name,
                         kc__triton_meta_t *out, char *err, size_t errcap);

void kc__triton_meta_free(kc__triton_meta_t *m);

/* Parse only the signature of kernel name from IR text (NUL-terminated):
 * fills m->args, m->n_args, m->spec, m->n_spec and sets KC_BINMETA_TMA in
 * m->flags for a tensor descriptor argument. Codes as kc__triton_parse_mem. */
int kc__triton_parse_signature(const char *ir, const char *name, const char *ir_name,
                               kc__triton_meta_t *m, char *err, size_t errcap);

#endif
