/* Fuzz the JSON spec loader from memory (no file references: the base dir
 * is NULL). A load either fails with a message that names the file, or
 * gives specs with at least one candidate whose geometry evaluates without
 * crashing; loading the same bytes twice gives the same digests. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kcache/errors.h"
#include "spec.h"

static void exercise(const kc__spec_t *sp)
{
    static const int64_t dims[2] = {4096, 33};
    int64_t vars[KC__SPEC_MAX_VARS] = {0};
    kc__argshape_t shapes[KC__SPEC_MAX_ARGS];
    unsigned grid[3], block[3], shared;
    char err[256];

    if (sp->n_candidates == 0 || sp->n_candidates > KC__SPEC_MAX_CANDIDATES ||
        sp->n_vars > KC__SPEC_MAX_VARS)
        abort();
    for (size_t a = 0; a < sp->s.n_args; a++) {
        shapes[a] = (kc__argshape_t){0, NULL};
        if (sp->s.args[a].kind == KC_ARG_POINTER)
            shapes[a] = (kc__argshape_t){2, dims};
        else if (sp->arg_slot[a] != KC__SPEC_NO_SLOT)
            vars[sp->arg_slot[a]] = 1000 + (int64_t)a;
    }
    for (size_t c = 0; c < sp->n_candidates && c < 8; c++) {
        memcpy(vars, sp->candidates + c * sp->s.n_params, sp->s.n_params * sizeof(*vars));
        int rc = kc__spec_eval_geometry(sp, vars, shapes, sp->s.n_args, grid, block,
                                        &shared, err, sizeof(err));
        if (rc != KC_OK && (rc != KC_EEXPR || strncmp(err, "spec '", 6) != 0))
            abort();
        if (rc == KC_OK && (grid[0] == 0 || block[0] == 0 ||
                            block[0] * block[1] * block[2] > KC__BLOCK_THREADS_MAX))
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    kc__spec_t **specs = NULL, **again = NULL;
    size_t n = 0, n2 = 0;
    char err[512];

    int rc = kc__spec_load_json_mem((const char *)data, size, "fuzz.json", NULL, &specs,
                                    &n, err, sizeof(err));
    if (rc != KC_OK) {
        if (specs || n || (rc != KC_ENOMEM && strncmp(err, "fuzz.json", 9) != 0))
            abort();
        return 0;
    }
    if (n == 0 || !specs)
        abort();
    for (size_t i = 0; i < n; i++)
        exercise(specs[i]);

    if (kc__spec_load_json_mem((const char *)data, size, "fuzz.json", NULL, &again, &n2,
                               err, sizeof(err)) != KC_OK ||
        n2 != n)
        abort();
    for (size_t i = 0; i < n; i++)
        if (memcmp(specs[i]->identity.b, again[i]->identity.b, 16) != 0 ||
            memcmp(specs[i]->space_digest.b, again[i]->space_digest.b, 16) != 0)
            abort();
    kc__spec_free_array(again, n2);
    kc__spec_free_array(specs, n);
    return 0;
}
