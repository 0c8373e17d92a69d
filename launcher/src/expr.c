/* Launch-geometry expressions: a recursive-descent parser that emits a
 * stack program, and an evaluator that runs it on a fixed stack with
 * checked int64 arithmetic. */
#include "expr.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kcache/errors.h"
#include "kcache/shape.h"
#include "wire.h"

/* Each nesting level keeps at most five values pending (the left operands
 * of ==, <, + and *, and a call's first argument; && and || pop theirs), so
 * this bounds every program the depth limit lets through. The parser still
 * checks it. */
#define EXPR_STACK (8 * KC__EXPR_MAX_DEPTH)

typedef enum op_code {
    OP_CONST = 1,
    OP_VAR,   /* a = slot */
    OP_DIM,   /* a = argument, b = index (negative: from the end) */
    OP_NUMEL, /* a = argument */
    OP_ADD,
    OP_SUB,
    OP_MUL,
    OP_DIV,
    OP_MOD,
    OP_NEG,
    OP_CDIV,
    OP_MIN,
    OP_MAX,
    OP_LT,
    OP_LE,
    OP_GT,
    OP_GE,
    OP_EQ,
    OP_NE,
    OP_NOT,
    OP_BOOL, /* x != 0 */
    OP_JZ,   /* &&: if the top is 0, leave 0 and jump to a; else pop */
    OP_JNZ,  /* ||: if the top is not 0, leave 1 and jump to a; else pop */
} op_code_t;

typedef struct op {
    int64_t k;
    uint32_t a;
    int32_t b;
    uint16_t column;
    uint8_t code;
} op_t;

struct kc__expr {
    size_t n_ops;
    unsigned max_stack;
    unsigned var_end; /* 1 + the highest slot read, 0 if none */
    int uses_pointer; /* dim() or numel() appears */
    op_t ops[];
};

typedef struct parser {
    const char *text;
    size_t pos;
    const kc__symtab_t *syms;
    op_t *ops;
    size_t n_ops, cap;
    unsigned depth;
    unsigned stack, max_stack;
    unsigned var_end;
    int uses_pointer;
    int failed; /* KC_EEXPR or KC_ENOMEM once something went wrong */
    char *err;
    size_t errcap;
} parser_t;

static const char *const functions[] = {"cdiv", "min", "max", "dim", "numel"};

static int fail_at(parser_t *p, size_t pos, const char *fmt, ...)
{
    if (p->failed)
        return -1;
    p->failed = KC_EEXPR;
    if (p->err && p->errcap) {
        int n = snprintf(p->err, p->errcap, "at column %zu: ", pos + 1);
        if (n >= 0 && (size_t)n < p->errcap) {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(p->err + n, p->errcap - (size_t)n, fmt, ap);
            va_end(ap);
        }
    }
    return -1;
}

static int is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}
static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}
static int is_ident_start(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}
static int is_ident(char c)
{
    return is_ident_start(c) || is_digit(c);
}

static char peek(parser_t *p)
{
    while (is_space(p->text[p->pos]))
        p->pos++;
    return p->text[p->pos];
}

/* Describes the token at the current position for a message. */
static void describe_here(parser_t *p, char *out, size_t cap)
{
    char c = peek(p);
    if (c == '\0')
        snprintf(out, cap, "end of expression");
    else if (is_ident_start(c) || is_digit(c)) {
        size_t n = 0;
        while (is_ident(p->text[p->pos + n]) && n < 32)
            n++;
        snprintf(out, cap, "'%.*s'", (int)n, p->text + p->pos);
    } else if (c >= 0x20 && c < 0x7f)
        snprintf(out, cap, "'%c'", c);
    else
        snprintf(out, cap, "byte 0x%02x", (unsigned)(unsigned char)c);
}

static int expect(parser_t *p, char c)
{
    if (peek(p) == c) {
        p->pos++;
        return 0;
    }
    char found[48];
    describe_here(p, found, sizeof(found));
    return fail_at(p, p->pos, "expected '%c', found %s", c, found);
}

static int emit(parser_t *p, op_code_t code, int64_t k, uint32_t a, int32_t b, size_t pos)
{
    if (p->n_ops == p->cap) {
        size_t cap = p->cap ? 2 * p->cap : 16;
        op_t *ops = realloc(p->ops, cap * sizeof(*ops));
        if (!ops) {
            p->failed = KC_ENOMEM;
            return -1;
        }
        p->ops = ops;
        p->cap = cap;
    }
    p->ops[p->n_ops++] = (op_t){
        .k = k, .a = a, .b = b, .column = (uint16_t)(pos + 1), .code = (uint8_t)code};
    switch (code) {
    case OP_CONST:
    case OP_VAR:
    case OP_DIM:
    case OP_NUMEL:
        p->stack++;
        break;
    case OP_NEG:
    case OP_NOT:
    case OP_BOOL:
        break;
    default: /* binary operators, and the pop on the fall-through of JZ/JNZ */
        p->stack--;
        break;
    }
    if (p->stack > p->max_stack)
        p->max_stack = p->stack;
    if (p->max_stack > EXPR_STACK)
        return fail_at(p, pos, "expression too complex");
    return 0;
}

static int enter(parser_t *p)
{
    if (++p->depth > KC__EXPR_MAX_DEPTH)
        return fail_at(p, p->pos, "nested more than %d levels deep", KC__EXPR_MAX_DEPTH);
    return 0;
}

static const kc__sym_t *lookup(parser_t *p, const char *name, size_t len)
{
    for (size_t i = 0; p->syms && i < p->syms->n; i++) {
        const char *s = p->syms->syms[i].name;
        if (s && strlen(s) == len && memcmp(s, name, len) == 0)
            return &p->syms->syms[i];
    }
    return NULL;
}

/* Edit distance, capped: enough to suggest "BLOCK" for "BLOKC". */
static unsigned distance(const char *a, size_t la, const char *b, size_t lb)
{
    unsigned row[33];
    if (la > 32 || lb > 32)
        return 99;
    for (size_t j = 0; j <= lb; j++)
        row[j] = (unsigned)j;
    for (size_t i = 1; i <= la; i++) {
        unsigned diag = row[0];
        row[0] = (unsigned)i;
        for (size_t j = 1; j <= lb; j++) {
            unsigned up = row[j];
            unsigned best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

static int unknown_name(parser_t *p, const char *name, size_t len, size_t pos)
{
    const char *best = NULL;
    unsigned best_d = 3;
    for (size_t i = 0; p->syms && i < p->syms->n; i++) {
        const char *s = p->syms->syms[i].name;
        unsigned d = s ? distance(name, len, s, strlen(s)) : 99;
        if (d < best_d) {
            best_d = d;
            best = s;
        }
    }
    if (best)
        return fail_at(p, pos, "unknown name '%.*s' (did you mean '%s'?)", (int)len, name,
                       best);
    return fail_at(p, pos, "unknown name '%.*s'", (int)len, name);
}

static int parse_expr(parser_t *p);

/* A pointer argument's name, for dim() and numel(). */
static int parse_pointer_arg(parser_t *p, const char *fn, uint32_t *arg)
{
    peek(p);
    size_t pos = p->pos, len = 0;
    while (is_ident(p->text[pos + len]))
        len++;
    const kc__sym_t *sym =
        len && is_ident_start(p->text[pos]) ? lookup(p, p->text + pos, len) : NULL;
    if (!sym || sym->kind != KC__SYM_POINTER) {
        if (len)
            return fail_at(p, pos, "%s() needs a pointer argument, '%.*s' is not one", fn,
                           (int)len, p->text + pos);
        return fail_at(p, pos, "%s() needs a pointer argument", fn);
    }
    p->pos = pos + len;
    *arg = sym->index;
    p->uses_pointer = 1;
    return 0;
}

static int parse_call(parser_t *p, const char *name, size_t len, size_t pos)
{
    size_t fn = 0;
    while (fn < sizeof(functions) / sizeof(functions[0]) &&
           !(strlen(functions[fn]) == len && memcmp(functions[fn], name, len) == 0))
        fn++;
    if (fn == sizeof(functions) / sizeof(functions[0]))
        return fail_at(p, pos, "unknown function '%.*s'", (int)len, name);
    p->pos++; /* '(' */

    if (fn <= 2) { /* cdiv, min, max */
        static const op_code_t codes[] = {OP_CDIV, OP_MIN, OP_MAX};
        if (parse_expr(p) || expect(p, ',') || parse_expr(p) || expect(p, ')'))
            return -1;
        return emit(p, codes[fn], 0, 0, 0, pos);
    }

    uint32_t arg = 0;
    if (parse_pointer_arg(p, functions[fn], &arg))
        return -1;
    if (fn == 4) /* numel */
        return expect(p, ')') ? -1 : emit(p, OP_NUMEL, 0, arg, 0, pos);

    if (expect(p, ','))
        return -1;
    int neg = 0;
    if (peek(p) == '-') {
        neg = 1;
        p->pos++;
    }
    if (!is_digit(peek(p)))
        return fail_at(p, p->pos, "dim() index must be an integer");
    size_t ipos = p->pos;
    int64_t idx = 0;
    while (is_digit(p->text[p->pos])) {
        idx = idx * 10 + (p->text[p->pos++] - '0');
        if (idx > KC_MAX_RANK)
            break;
    }
    while (is_digit(p->text[p->pos]))
        p->pos++;
    if (neg)
        idx = -idx;
    if (idx >= KC_MAX_RANK || idx < -KC_MAX_RANK || (neg && idx == 0))
        return fail_at(p, ipos, "dim() index must be 0..%d or -1..-%d", KC_MAX_RANK - 1,
                       KC_MAX_RANK);
    if (expect(p, ')'))
        return -1;
    return emit(p, OP_DIM, 0, arg, (int32_t)idx, pos);
}

static int parse_name(parser_t *p)
{
    size_t pos = p->pos, len = 0;
    while (is_ident(p->text[pos + len]))
        len++;
    const char *name = p->text + pos;
    p->pos += len;
    if (peek(p) == '(')
        return parse_call(p, name, len, pos);

    const kc__sym_t *sym = lookup(p, name, len);
    if (!sym) {
        for (size_t i = 0; i < sizeof(functions) / sizeof(functions[0]); i++)
            if (strlen(functions[i]) == len && memcmp(functions[i], name, len) == 0)
                return fail_at(p, p->pos, "expected '(' after '%s'", functions[i]);
        return unknown_name(p, name, len, pos);
    }
    switch (sym->kind) {
    case KC__SYM_VAR:
        if (sym->index >= p->var_end)
            p->var_end = sym->index + 1;
        return emit(p, OP_VAR, 0, sym->index, 0, pos);
    case KC__SYM_POINTER:
        return fail_at(p, pos,
                       "'%.*s' is a pointer argument: use dim(%.*s, i) or numel(%.*s)",
                       (int)len, name, (int)len, name, (int)len, name);
    case KC__SYM_FLOAT:
        return fail_at(p, pos, "'%.*s' is a float argument: expressions are integer only",
                       (int)len, name);
    }
    return fail_at(p, pos, "unknown name '%.*s'", (int)len, name);
}

static int parse_primary(parser_t *p)
{
    char c = peek(p);
    size_t pos = p->pos;
    if (is_digit(c)) {
        int64_t v = 0;
        while (is_digit(p->text[p->pos])) {
            int d = p->text[p->pos++] - '0';
            if (__builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, d, &v))
                return fail_at(p, pos, "integer literal out of range");
        }
        if (is_ident_start(p->text[p->pos]))
            return fail_at(p, p->pos, "unexpected '%c' after a number", p->text[p->pos]);
        return emit(p, OP_CONST, v, 0, 0, pos);
    }
    if (is_ident_start(c))
        return parse_name(p);
    if (c == '(') {
        p->pos++;
        if (parse_expr(p))
            return -1;
        return expect(p, ')');
    }
    char found[48];
    describe_here(p, found, sizeof(found));
    return fail_at(p, pos, "expected a number, a name or '(', found %s", found);
}

static int parse_unary(parser_t *p)
{
    char c = peek(p);
    if ((c != '-' && c != '+' && c != '!') || (c == '!' && p->text[p->pos + 1] == '='))
        return parse_primary(p);
    size_t pos = p->pos++;
    if (enter(p) || parse_unary(p))
        return -1;
    p->depth--;
    if (c == '+')
        return 0;
    return emit(p, c == '-' ? OP_NEG : OP_NOT, 0, 0, 0, pos);
}

static int parse_term(parser_t *p)
{
    if (parse_unary(p))
        return -1;
    for (;;) {
        char c = peek(p);
        if (c != '*' && c != '/' && c != '%')
            return 0;
        size_t pos = p->pos++;
        if (parse_unary(p))
            return -1;
        if (emit(p, c == '*' ? OP_MUL : c == '/' ? OP_DIV : OP_MOD, 0, 0, 0, pos))
            return -1;
    }
}

static int parse_sum(parser_t *p)
{
    if (parse_term(p))
        return -1;
    for (;;) {
        char c = peek(p);
        if (c != '+' && c != '-')
            return 0;
        size_t pos = p->pos++;
        if (parse_term(p))
            return -1;
        if (emit(p, c == '+' ? OP_ADD : OP_SUB, 0, 0, 0, pos))
            return -1;
    }
}

static int parse_relational(parser_t *p)
{
    if (parse_sum(p))
        return -1;
    for (;;) {
        char c = peek(p);
        if (c != '<' && c != '>')
            return 0;
        size_t pos = p->pos++;
        int eq = p->text[p->pos] == '=';
        p->pos += (size_t)eq;
        if (parse_sum(p))
            return -1;
        op_code_t code = c == '<' ? (eq ? OP_LE : OP_LT) : (eq ? OP_GE : OP_GT);
        if (emit(p, code, 0, 0, 0, pos))
            return -1;
    }
}

static int parse_equality(parser_t *p)
{
    if (parse_relational(p))
        return -1;
    for (;;) {
        char c = peek(p);
        if ((c != '=' && c != '!') || p->text[p->pos + 1] != '=') {
            if (c == '=')
                return fail_at(p, p->pos, "expected '==', found '='");
            return 0;
        }
        size_t pos = p->pos;
        p->pos += 2;
        if (parse_relational(p))
            return -1;
        if (emit(p, c == '=' ? OP_EQ : OP_NE, 0, 0, 0, pos))
            return -1;
    }
}

/* && and || short-circuit, as in C, so that "W > 0 && B / W >= 16" never
 * divides by zero. */
static int parse_logical(parser_t *p, char c)
{
    if (c == '&' ? parse_equality(p) : parse_logical(p, '&'))
        return -1;
    for (;;) {
        if (peek(p) != c)
            return 0;
        size_t pos = p->pos;
        if (p->text[pos + 1] != c)
            return fail_at(p, pos, "expected '%c%c', found '%c'", c, c, c);
        p->pos += 2;
        size_t jump = p->n_ops;
        if (emit(p, c == '&' ? OP_JZ : OP_JNZ, 0, 0, 0, pos) ||
            (c == '&' ? parse_equality(p) : parse_logical(p, '&')) ||
            emit(p, OP_BOOL, 0, 0, 0, pos))
            return -1;
        p->ops[jump].a = (uint32_t)p->n_ops;
    }
}

static int parse_expr(parser_t *p)
{
    if (enter(p) || parse_logical(p, '|'))
        return -1;
    p->depth--;
    return 0;
}

int kc__expr_parse(const char *text, const kc__symtab_t *syms, kc__expr_t **out,
                   char *err, size_t errcap)
{
    parser_t p = {.text = text, .syms = syms, .err = err, .errcap = errcap};
    kc__expr_t *e = NULL;

    if (err && errcap)
        err[0] = '\0';
    if (!out)
        return KC_EINVAL;
    *out = NULL;
    if (!text)
        return KC_EINVAL;
    size_t len = strnlen(text, KC__EXPR_MAX_LEN + 1);
    if (len > KC__EXPR_MAX_LEN) {
        fail_at(&p, 0, "expression longer than %d characters", KC__EXPR_MAX_LEN);
        goto fail;
    }
    if (peek(&p) == '\0') {
        fail_at(&p, p.pos, "empty expression");
        goto fail;
    }
    if (parse_expr(&p))
        goto fail;
    if (peek(&p) != '\0') {
        char found[48];
        describe_here(&p, found, sizeof(found));
        if (p.text[p.pos] == ')')
            fail_at(&p, p.pos, "unmatched ')'");
        else
            fail_at(&p, p.pos, "expected an operator or the end, found %s", found);
        goto fail;
    }

    e = malloc(sizeof(*e) + p.n_ops * sizeof(op_t));
    if (!e) {
        p.failed = KC_ENOMEM;
        goto fail;
    }
    e->n_ops = p.n_ops;
    e->max_stack = p.max_stack;
    e->var_end = p.var_end;
    e->uses_pointer = p.uses_pointer;
    memcpy(e->ops, p.ops, p.n_ops * sizeof(op_t));
    free(p.ops);
    *out = e;
    return KC_OK;

fail:
    free(p.ops);
    if (p.failed == KC_ENOMEM && err && errcap)
        snprintf(err, errcap, "out of memory");
    return p.failed ? p.failed : KC_EEXPR;
}

void kc__expr_free(kc__expr_t *e)
{
    free(e);
}

int kc__expr_uses_beyond(const kc__expr_t *e, unsigned first_slot)
{
    return e && (e->uses_pointer || e->var_end > first_slot);
}

static int fault(kc__expr_fault_t *f, const op_t *op, const char *what)
{
    if (f) {
        f->what = what;
        f->column = op->column;
    }
    return KC_EEXPR;
}

int kc__expr_eval_fault(const kc__expr_t *e, const int64_t *vars,
                        const kc__argshape_t *shapes, size_t n_shapes, int64_t *out,
                        kc__expr_fault_t *f)
{
    int64_t st[EXPR_STACK];
    size_t sp = 0;

    if (f) {
        f->what = NULL;
        f->column = 0;
    }
    if (!e || !out || e->max_stack > EXPR_STACK || (e->var_end && !vars))
        return KC_EINVAL;
    for (size_t i = 0; i < e->n_ops; i++) {
        const op_t *op = &e->ops[i];
        int64_t a = 0, b = 0, r = 0;
        switch (op->code) {
        case OP_CONST:
            st[sp++] = op->k;
            continue;
        case OP_VAR:
            st[sp++] = vars[op->a];
            continue;
        case OP_DIM:
        case OP_NUMEL: {
            if (!shapes || op->a >= n_shapes)
                return fault(f, op, "no shape for the pointer argument");
            const kc__argshape_t *s = &shapes[op->a];
            if (s->rank > KC_MAX_RANK || (s->rank && !s->dims))
                return fault(f, op, "bad shape for the pointer argument");
            if (op->code == OP_DIM) {
                int64_t idx = op->b < 0 ? (int64_t)s->rank + op->b : op->b;
                if (idx < 0 || idx >= (int64_t)s->rank)
                    return fault(f, op, "dim() index out of the argument's rank");
                st[sp++] = s->dims[idx];
                continue;
            }
            r = 1;
            for (uint32_t d = 0; d < s->rank; d++)
                if (__builtin_mul_overflow(r, s->dims[d], &r))
                    return fault(f, op, "numel() overflows int64");
            st[sp++] = r;
            continue;
        }
        case OP_NEG:
            if (st[sp - 1] == INT64_MIN)
                return fault(f, op, "integer overflow");
            st[sp - 1] = -st[sp - 1];
            continue;
        case OP_NOT:
            st[sp - 1] = !st[sp - 1];
            continue;
        case OP_BOOL:
            st[sp - 1] = st[sp - 1] != 0;
            continue;
        case OP_JZ:
        case OP_JNZ:
            if ((st[sp - 1] != 0) == (op->code == OP_JNZ)) {
                st[sp - 1] = op->code == OP_JNZ;
                i = op->a - 1; /* the loop's i++ lands on the target */
            } else {
                sp--;
            }
            continue;
        default:
            break;
        }
        b = st[--sp];
        a = st[sp - 1];
        switch (op->code) {
        case OP_ADD:
            if (__builtin_add_overflow(a, b, &r))
                return fault(f, op, "integer overflow");
            break;
        case OP_SUB:
            if (__builtin_sub_overflow(a, b, &r))
                return fault(f, op, "integer overflow");
            break;
        case OP_MUL:
            if (__builtin_mul_overflow(a, b, &r))
                return fault(f, op, "integer overflow");
            break;
        case OP_DIV:
        case OP_MOD:
            if (b == 0)
                return fault(f, op,
                             op->code == OP_DIV ? "division by zero" : "modulo by zero");
            if (a == INT64_MIN && b == -1)
                return fault(f, op, "integer overflow");
            r = op->code == OP_DIV ? a / b : a % b;
            break;
        case OP_CDIV:
            if (b <= 0)
                return fault(f, op, "cdiv() divisor must be positive");
            /* C division truncates toward zero, which is already the
             * ceiling for a negative quotient. */
            r = a / b + (a % b != 0 && a > 0);
            break;
        case OP_MIN:
            r = a < b ? a : b;
            break;
        case OP_MAX:
            r = a > b ? a : b;
            break;
        case OP_LT:
            r = a < b;
            break;
        case OP_LE:
            r = a <= b;
            break;
        case OP_GT:
            r = a > b;
            break;
        case OP_GE:
            r = a >= b;
            break;
        case OP_EQ:
            r = a == b;
            break;
        case OP_NE:
            r = a != b;
            break;
        default:
            return fault(f, op, "corrupt program");
        }
        st[sp - 1] = r;
    }
    if (sp != 1)
        return KC_EINTERNAL;
    *out = st[0];
    return KC_OK;
}

int kc__expr_eval(const kc__expr_t *e, const int64_t *vars, const kc__argshape_t *shapes,
                  size_t n_shapes, int64_t *out)
{
    return kc__expr_eval_fault(e, vars, shapes, n_shapes, out, NULL);
}

void kc__expr_encode(const kc__expr_t *e, kc__wbuf_t *w)
{
    kc__w_u32(w, (uint32_t)e->n_ops);
    for (size_t i = 0; i < e->n_ops; i++) {
        kc__w_u8(w, e->ops[i].code);
        kc__w_u64(w, (uint64_t)e->ops[i].k);
        kc__w_u32(w, e->ops[i].a);
        kc__w_u32(w, (uint32_t)e->ops[i].b);
    }
}
