/* Launch-geometry expressions: parsed once into a small stack program,
 * evaluated on every launch without allocating. Internal.
 *
 * Grammar (C precedence, int64 arithmetic; comparisons and logic give 0 or
 * 1 and exist for constraints such as "BLOCK <= 1024 && BLOCK % WARPS == 0"):
 *   expr    := and ('||' and)*
 *   and     := eq ('&&' eq)*
 *   eq      := rel (('==' | '!=') rel)*
 *   rel     := sum (('<' | '<=' | '>' | '>=') sum)*
 *   sum     := term (('+' | '-') term)*
 *   term    := unary (('*' | '/' | '%') unary)*
 *   unary   := ('-' | '+' | '!') unary | primary
 *   primary := INT | NAME | NAME '(' args ')' | '(' expr ')'
 * && and || short-circuit as in C.
 * Functions: cdiv(a,b), min(a,b), max(a,b), dim(ARG, i), numel(ARG).
 * NAME resolves through the symbol table to a variable slot (config
 * parameters and scalar arguments); ARG in dim/numel names a pointer
 * argument. Unary '+' is accepted too. In dim(ARG, i), i is an integer
 * literal; a negative i counts from the last dim (dim(x, -1)).
 *
 * Texts are limited to KC__EXPR_MAX_LEN bytes and KC__EXPR_MAX_DEPTH levels
 * of nesting (parentheses, calls, unary minus), so that parsing cannot
 * exhaust the C stack and evaluation fits a fixed stack. */
#ifndef KCACHE_EXPR_H
#define KCACHE_EXPR_H

#include <stddef.h>
#include <stdint.h>

#define KC__EXPR_MAX_LEN 4096
#define KC__EXPR_MAX_DEPTH 64

struct kc__wbuf;

typedef enum kc__sym_kind {
    KC__SYM_VAR = 1,     /* an int64 slot: a config parameter or scalar argument */
    KC__SYM_POINTER = 2, /* a pointer argument, usable in dim() and numel() */
    KC__SYM_FLOAT = 3,   /* a float scalar: known, so that using it gives a clear error */
} kc__sym_kind_t;

typedef struct kc__sym {
    const char *name;
    kc__sym_kind_t kind;
    unsigned index; /* slot in vars[] for VAR, argument index for POINTER */
} kc__sym_t;

typedef struct kc__symtab {
    const kc__sym_t *syms;
    size_t n;
} kc__symtab_t;

/* What a pointer argument's dims look like at evaluation time. */
typedef struct kc__argshape {
    uint32_t rank;
    const int64_t *dims;
} kc__argshape_t;

typedef struct kc__expr kc__expr_t;

/* Parse text against syms. On error returns KC_EEXPR and writes "at column
 * N: what went wrong" to err[errcap]. *out: free with kc__expr_free. */
int kc__expr_parse(const char *text, const kc__symtab_t *syms, kc__expr_t **out,
                   char *err, size_t errcap);
void kc__expr_free(kc__expr_t *e);

/* 1 if the expression reads any variable slot >= first_slot or any pointer
 * shape (used to check that a constraint names only parameters). */
int kc__expr_uses_beyond(const kc__expr_t *e, unsigned first_slot);

/* Evaluate. vars[] holds the variable slots, shapes[] each argument (only
 * pointer entries are read). KC_EEXPR on division by zero, overflow, or a
 * dim() index out of the argument's rank. Never allocates. */
int kc__expr_eval(const kc__expr_t *e, const int64_t *vars, const kc__argshape_t *shapes,
                  size_t n_shapes, int64_t *out);

/* Why an evaluation failed: static text ("division by zero") and the
 * 1-based column of the operator or call that failed. */
typedef struct kc__expr_fault {
    const char *what;
    unsigned column;
} kc__expr_fault_t;

/* kc__expr_eval that also says why it failed (fault may be NULL). */
int kc__expr_eval_fault(const kc__expr_t *e, const int64_t *vars,
                        const kc__argshape_t *shapes, size_t n_shapes, int64_t *out,
                        kc__expr_fault_t *fault);

/* Append a canonical encoding of the compiled program (not the text: spaces
 * and redundant parentheses do not change it) to w, for digests. */
void kc__expr_encode(const kc__expr_t *e, struct kc__wbuf *w);

#endif
