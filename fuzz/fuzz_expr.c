/* Fuzz the expression parser and evaluator. The input is expression text.
 * A parse either succeeds or fails with a positioned message; what parses
 * evaluates without crashing, twice to the same result, and encodes to the
 * same program when surrounded by whitespace (the encoding ignores
 * spelling). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "expr.h"
#include "kcache/errors.h"
#include "kcache/key.h"
#include "wire.h"

static const kc__sym_t syms[] = {
    {"BLOCK", KC__SYM_VAR, 0},   {"WARPS", KC__SYM_VAR, 1}, {"n", KC__SYM_VAR, 2},
    {"m", KC__SYM_VAR, 3},       {"x", KC__SYM_POINTER, 0}, {"y", KC__SYM_POINTER, 1},
    {"alpha", KC__SYM_FLOAT, 2},
};
static const kc__symtab_t symtab = {syms, sizeof(syms) / sizeof(syms[0])};

static kc_key_t program_key(const kc__expr_t *e)
{
    kc__wbuf_t w;
    kc_key_t k;
    kc__wbuf_init(&w);
    kc__expr_encode(e, &w);
    if (w.failed)
        abort();
    k = kc_key_hash(w.data, w.len);
    kc__wbuf_free(&w);
    return k;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const int64_t xdims[3] = {1024, 7, 3};
    static const int64_t vars[4] = {256, 4, 1000, -3};
    const kc__argshape_t shapes[2] = {{3, xdims}, {0, NULL}};
    char err[256];
    kc__expr_t *e = NULL;

    if (size > KC__EXPR_MAX_LEN + 16)
        return 0;
    char *text = malloc(size + 3);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';

    int rc = kc__expr_parse(text, &symtab, &e, err, sizeof(err));
    if (rc != KC_OK) {
        if (e || (rc == KC_EEXPR && strncmp(err, "at column ", 10) != 0))
            abort();
        free(text);
        return 0;
    }
    int64_t v1 = 0, v2 = 0;
    kc__expr_fault_t f;
    int r1 = kc__expr_eval_fault(e, vars, shapes, 2, &v1, &f);
    int r2 = kc__expr_eval(e, vars, shapes, 2, &v2);
    if (r1 != r2 || (r1 == KC_OK && v1 != v2) || (r1 != KC_OK && r1 != KC_EEXPR))
        abort();
    if (r1 == KC_EEXPR && (!f.what || f.column == 0 || f.column > size))
        abort();
    /* Fewer shapes than the program reads is an error, never a read past. */
    (void)kc__expr_eval(e, vars, shapes, 1, &v2);
    (void)kc__expr_uses_beyond(e, 2);

    /* Text stops at the first NUL, so only compare whole-text inputs. */
    if (strlen(text) == size && size + 3 <= KC__EXPR_MAX_LEN) {
        char *wrapped = malloc(size + 5);
        kc__expr_t *e2 = NULL;
        if (wrapped) {
            wrapped[0] = ' ';
            memcpy(wrapped + 1, text, size);
            memcpy(wrapped + 1 + size, " \n", 3);
            if (kc__expr_parse(wrapped, &symtab, &e2, NULL, 0) != KC_OK)
                abort();
            kc_key_t a = program_key(e), b = program_key(e2);
            if (memcmp(a.b, b.b, sizeof(a.b)) != 0)
                abort();
            kc__expr_free(e2);
            free(wrapped);
        }
    }
    kc__expr_free(e);
    free(text);
    return 0;
}
