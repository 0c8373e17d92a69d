/* Kernel specs, validated and owned: the launcher's view of a
 * kc_kernel_spec_t after kc_kernel_get or a JSON spec file. Internal.
 *
 * A kc__spec_t is immutable once created, so any number of threads may read
 * it without locks. Everything it points to is memory it owns.
 *
 * Variables. Expressions read int64 slots: slot i < s.n_params is config
 * parameter i (a candidate row is exactly those slots), then one slot per
 * integer scalar argument (bool and i8..u64) in argument order: arg_slot[a]
 * gives it. Pointer and float arguments have no slot (KC__SPEC_NO_SLOT).
 * kc__spec_bind fills vars[] and the shapes for a launch.
 */
#ifndef KCACHE_SPEC_H
#define KCACHE_SPEC_H

#include <stddef.h>
#include <stdint.h>

#include "expr.h"
#include "kcache/key.h"
#include "kcache/launch.h"

/* Limits on one spec. With them, vars[KC__SPEC_MAX_VARS] and
 * shapes[KC__SPEC_MAX_ARGS] fit on the launch path's stack. */
#define KC__SPEC_MAX_PARAMS 32
#define KC__SPEC_MAX_VALUES 1024 /* values of one parameter */
#define KC__SPEC_MAX_ARGS 128
#define KC__SPEC_MAX_VARS (KC__SPEC_MAX_PARAMS + KC__SPEC_MAX_ARGS)
#define KC__SPEC_MAX_SPACE 65536     /* configs enumerated before the constraint */
#define KC__SPEC_MAX_CANDIDATES 4096 /* configs left after it */
#define KC__SPEC_MAX_NAME 128        /* spec, parameter and argument names */
#define KC__SPEC_NO_SLOT UINT32_MAX

/* The CUDA launch limits every device shares; kc__spec_eval_geometry
 * enforces them so that a bad expression fails with a message instead of a
 * CUDA_ERROR_INVALID_VALUE. */
#define KC__GRID_X_MAX 2147483647u
#define KC__GRID_YZ_MAX 65535u
#define KC__BLOCK_XY_MAX 1024u
#define KC__BLOCK_Z_MAX 64u
#define KC__BLOCK_THREADS_MAX 1024u

typedef struct kc__spec_mem kc__spec_mem_t;

typedef struct kc__spec {
    /* The spec as given, deep-copied. source_len is set, source is
     * NUL-terminated, grid[1..2] and block[1..2] hold "1" and shared "0"
     * when they were not given, constraint may be NULL. */
    kc_kernel_spec_t s;

    size_t n_vars;       /* s.n_params + integer scalar arguments */
    uint32_t *arg_slot;  /* s.n_args entries: var slot, or KC__SPEC_NO_SLOT */
    kc__expr_t *grid[3]; /* always set */
    kc__expr_t *block[3];
    kc__expr_t *shared;
    kc__expr_t *constraint; /* NULL when the spec has none */
    /* Bit i (grid x, y, z, block x, y, z, shared) is set when geometry
     * expression i reads a scalar argument or a pointer's dims, so must be
     * evaluated on every launch; the others depend on the config alone. */
    uint8_t geo_dynamic;

    /* Configs that pass the constraint, as rows of s.n_params values, in
     * the order of the cartesian product with params[0] varying slowest.
     * Row r starts at candidates + r * s.n_params. At least one. */
    const int64_t *candidates;
    size_t n_candidates;
    /* KC_SOURCE_PREBUILT: candidate i's build key; NULL otherwise. The
     * source digest is then a digest of these keys, source and entry are
     * "", and the block and shared expressions are "1" and "0" (the
     * binaries' metadata decides them at launch). */
    const kc_key_t *prebuilt;

    /* kc_source_digest over the source and headers. */
    kc_key_t source_digest;
    /* The tuning space: parameters and values in order, the constraint, the
     * compiled geometry expressions, the argument specs and the dims policy
     * (see spec.c). Enters the tuning preimage. */
    kc_key_t space_digest;
    /* Name, source kind, source digest, entry, options and space digest:
     * equal for two registrations of the same spec. */
    kc_key_t identity;

    kc__symtab_t symtab; /* params, then args */
    kc__spec_mem_t *mem;
} kc__spec_t;

/* Validate in and make an owned copy. KC_OK with *out (free with
 * kc__spec_free); KC_ESPEC or KC_EEXPR with a message in err[errcap] that
 * names the spec, the field and the position, e.g.
 *   "spec 'softmax': grid[0]: at column 7: unknown name 'BLOKC'";
 * KC_EINVAL for NULL in/out; KC_ENOMEM. *out is NULL on failure. */
int kc__spec_create(const kc_kernel_spec_t *in, kc__spec_t **out, char *err,
                    size_t errcap);
void kc__spec_free(kc__spec_t *spec);

/* kc__spec_create with `who` in place of "spec 'NAME'" at the start of
 * messages (the JSON loader passes "FILE: kernels[I] 'NAME'"). */
int kc__spec_create_as(const kc_kernel_spec_t *in, const char *who, kc__spec_t **out,
                       char *err, size_t errcap);

/* Fill vars[spec->n_vars] from a candidate row (spec->s.n_params values) and
 * the integer scalars in args, and shapes[n_args] from the pointer args.
 * KC_EINVAL if n_args differs from the spec; KC_EEXPR (message in err) for a
 * u64 scalar above INT64_MAX or a rank over KC_MAX_RANK. Never allocates. */
int kc__spec_bind(const kc__spec_t *spec, const int64_t *config, const kc_arg_t *args,
                  size_t n_args, int64_t *vars, kc__argshape_t *shapes, char *err,
                  size_t errcap);

/* Evaluate grid, block and shared memory for vars[] and shapes[n], and check
 * them against the CUDA limits above (shared >= 0 and <= UINT32_MAX).
 * KC_EEXPR with "spec 'NAME': block[0]: at column 3: division by zero" or
 * "spec 'NAME': block[0]: 2048 is out of range 1..1024" in err. Never
 * allocates. */
int kc__spec_eval_geometry(const kc__spec_t *spec, const int64_t *vars,
                           const kc__argshape_t *shapes, size_t n, unsigned grid[3],
                           unsigned block[3], unsigned *shared, char *err, size_t errcap);

/* The launch path's split of the same work: kc__spec_eval_geometry_fixed
 * evaluates, once per config (n_params values), the expressions that depend
 * on the config alone into fixed[7] (entries of dynamic ones are 0); then
 * kc__spec_eval_geometry_with evaluates only the dynamic ones per launch and
 * takes the rest from fixed (NULL: evaluate all). Same checks and messages
 * as kc__spec_eval_geometry; never allocate. */
int kc__spec_eval_geometry_fixed(const kc__spec_t *sp, const int64_t *config,
                                 int64_t fixed[7], char *err, size_t errcap);
int kc__spec_eval_geometry_with(const kc__spec_t *sp, const int64_t *fixed,
                                const int64_t *vars, const kc__argshape_t *shapes,
                                size_t n, unsigned grid[3], unsigned block[3],
                                unsigned *shared, char *err, size_t errcap);

/* ---- JSON spec files (docs/SPEC.md) ------------------------------------ */

/* Files larger than this are refused (so are source and header files). */
#define KC__SPEC_FILE_MAX (16u << 20)

/* Load every kernel of a JSON spec file. *specs receives a malloc'd array
 * of *n specs; free it with kc__spec_free_array. source_file and header
 * files are read relative to the directory holding path. Errors name the
 * file, the kernel and the field, e.g.
 *   "specs.json: kernels[0] 'softmax': args[1]: unknown type 'f33'";
 * malformed JSON gives jansson's line and column. KC_ESPEC / KC_EEXPR for a
 * bad spec, KC_EIO for an unreadable file, KC_ETOOBIG for one over
 * KC__SPEC_FILE_MAX, KC_ENOMEM. On failure *specs is NULL and *n 0. */
int kc__spec_load_json(const char *path, kc__spec_t ***specs, size_t *n, char *err,
                       size_t errcap);

/* The same from memory. name is the file name used in messages; base_dir
 * resolves source_file and header files, and NULL makes any file reference
 * an error (the fuzzer passes NULL). */
int kc__spec_load_json_mem(const char *data, size_t len, const char *name,
                           const char *base_dir, kc__spec_t ***specs, size_t *n,
                           char *err, size_t errcap);

/* Free an array from kc__spec_load_json and its specs. Accepts NULL. */
void kc__spec_free_array(kc__spec_t **specs, size_t n);

#endif
