/* Kernel specs: the expression language (parse errors, evaluation,
 * checked arithmetic), spec validation with the field named in each
 * message, candidate enumeration, digests, geometry evaluation, and JSON
 * spec files. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "expr.h"
#include "kcache/errors.h"
#include "kcache/launch.h"
#include "spec.h"
#include "wire.h"

#define ERRCAP 512

static void assert_contains(const char *msg, const char *sub)
{
    if (!strstr(msg, sub)) {
        print_error("message \"%s\"\n  does not contain \"%s\"\n", msg, sub);
        fail();
    }
}

/* ---- expressions ------------------------------------------------------- */

/* Slots: A=0, B=1, n=2; x is pointer argument 0, alpha a float. */
static const kc__sym_t test_syms[] = {
    {"A", KC__SYM_VAR, 0},     {"B", KC__SYM_VAR, 1},     {"n", KC__SYM_VAR, 2},
    {"BLOCK", KC__SYM_VAR, 3}, {"x", KC__SYM_POINTER, 0}, {"alpha", KC__SYM_FLOAT, 1},
};
static const kc__symtab_t symtab = {test_syms, sizeof(test_syms) / sizeof(test_syms[0])};

static int64_t eval_vars(const char *text, const int64_t *vars, int *rc,
                         kc__expr_fault_t *fault)
{
    static const int64_t dims[3] = {2, 3, 4};
    kc__argshape_t shapes[2] = {{3, dims}, {0, NULL}};
    char err[ERRCAP];
    kc__expr_t *e = NULL;
    int64_t v = 0;

    int prc = kc__expr_parse(text, &symtab, &e, err, sizeof(err));
    if (prc != KC_OK) {
        print_error("parse of \"%s\" failed: %s\n", text, err);
        fail();
    }
    *rc = kc__expr_eval_fault(e, vars, shapes, 2, &v, fault);
    kc__expr_free(e);
    return v;
}

static int64_t eval_ok(const char *text)
{
    static const int64_t vars[4] = {6, 4, 1000, 128};
    int rc;
    int64_t v = eval_vars(text, vars, &rc, NULL);
    if (rc != KC_OK) {
        print_error("eval of \"%s\" failed: %d\n", text, rc);
        fail();
    }
    return v;
}

/* Parses text, which must fail, and returns the message. */
static const char *parse_err(const char *text)
{
    static char err[ERRCAP];
    kc__expr_t *e = (kc__expr_t *)1;
    assert_int_equal(kc__expr_parse(text, &symtab, &e, err, sizeof(err)), KC_EEXPR);
    assert_null(e);
    return err;
}

static void test_operators_follow_c_precedence_and_associativity(void **state)
{
    (void)state;
    assert_int_equal(eval_ok("1 + 2 * 3"), 7);
    assert_int_equal(eval_ok("(1 + 2) * 3"), 9);
    assert_int_equal(eval_ok("10 - 4 - 3"), 3);
    assert_int_equal(eval_ok("100 / 10 / 5"), 2);
    assert_int_equal(eval_ok("7 / 2"), 3);
    assert_int_equal(eval_ok("-7 / 2"), -3);
    assert_int_equal(eval_ok("-7 % 3"), -1);
    assert_int_equal(eval_ok("2 * -3"), -6);
    assert_int_equal(eval_ok("--4"), 4);
    assert_int_equal(eval_ok("+4 - -4"), 8);
    assert_int_equal(eval_ok("A * B + n % 7"), 6 * 4 + 1000 % 7);
    assert_int_equal(eval_ok("  ( ( A ) )\t"), 6);
}

static void test_comparisons_and_logic_give_zero_or_one(void **state)
{
    (void)state;
    assert_int_equal(eval_ok("A < B"), 0);
    assert_int_equal(eval_ok("A > B"), 1);
    assert_int_equal(eval_ok("A >= 6"), 1);
    assert_int_equal(eval_ok("A <= 5"), 0);
    assert_int_equal(eval_ok("A == 6"), 1);
    assert_int_equal(eval_ok("A != 6"), 0);
    assert_int_equal(eval_ok("!A"), 0);
    assert_int_equal(eval_ok("!0 + !!7"), 2);
    assert_int_equal(eval_ok("1 + 2 < 4"), 1);
    assert_int_equal(eval_ok("1 < 2 == 1"), 1);
    assert_int_equal(eval_ok("A > B && B > 3"), 1);
    assert_int_equal(eval_ok("A < B || B == 4"), 1);
    assert_int_equal(eval_ok("2 && 3"), 1);
    assert_int_equal(eval_ok("0 || 0"), 0);
    assert_int_equal(eval_ok("A && B && 0 || n"), 1);
    assert_int_equal(eval_ok("(A || 0) * 10"), 10);
    /* Short-circuit: the right side is not evaluated. */
    assert_int_equal(eval_ok("0 && 1 / 0"), 0);
    assert_int_equal(eval_ok("1 || 1 / 0"), 1);
    assert_int_equal(eval_ok("B != 0 && A / B >= 1"), 1);
    assert_contains(parse_err("A = 6"), "at column 3: expected '==', found '='");
    assert_contains(parse_err("A & B"), "at column 3: expected '&&'");
    assert_contains(parse_err("A | B"), "at column 3: expected '||'");
}

static void test_cdiv_rounds_up_and_is_exact_for_negatives(void **state)
{
    (void)state;
    assert_int_equal(eval_ok("cdiv(10, 4)"), 3);
    assert_int_equal(eval_ok("cdiv(8, 4)"), 2);
    assert_int_equal(eval_ok("cdiv(0, 4)"), 0);
    assert_int_equal(eval_ok("cdiv(1, 1)"), 1);
    assert_int_equal(eval_ok("cdiv(-5, 2)"), -2);
    assert_int_equal(eval_ok("cdiv(-4, 2)"), -2);
    /* No a + b - 1 overflow at the top of the range. */
    assert_int_equal(eval_ok("cdiv(9223372036854775807, 2)"),
                     INT64_C(4611686018427387904));
    assert_int_equal(eval_ok("cdiv(n, BLOCK)"), 8);

    int64_t vars[4] = {5, 0, 0, 0};
    kc__expr_fault_t f;
    int rc;
    eval_vars("cdiv(A, B)", vars, &rc, &f);
    assert_int_equal(rc, KC_EEXPR);
    assert_string_equal(f.what, "cdiv() divisor must be positive");
    vars[1] = -1;
    eval_vars("cdiv(A, B)", vars, &rc, &f);
    assert_int_equal(rc, KC_EEXPR);
}

static void test_min_max_dim_and_numel_evaluate(void **state)
{
    (void)state;
    assert_int_equal(eval_ok("min(BLOCK, n)"), 128);
    assert_int_equal(eval_ok("max(BLOCK * 8, n)"), 1024);
    assert_int_equal(eval_ok("min(max(A, B), 5)"), 5);
    assert_int_equal(eval_ok("dim(x, 0)"), 2);
    assert_int_equal(eval_ok("dim(x, 2)"), 4);
    assert_int_equal(eval_ok("dim(x, -1)"), 4);
    assert_int_equal(eval_ok("dim(x, -3)"), 2);
    assert_int_equal(eval_ok("numel(x)"), 24);
    assert_int_equal(eval_ok("cdiv(numel(x), dim(x, 1))"), 8);
}

static void test_dim_beyond_the_rank_fails_at_eval(void **state)
{
    (void)state;
    int64_t vars[4] = {0};
    kc__expr_fault_t f;
    int rc;
    eval_vars("dim(x, 3)", vars, &rc, &f);
    assert_int_equal(rc, KC_EEXPR);
    assert_int_equal(f.column, 1);
    eval_vars("1 + dim(x, -4)", vars, &rc, &f);
    assert_int_equal(rc, KC_EEXPR);
    assert_int_equal(f.column, 5);

    /* A rank-0 pointer has one element. */
    kc__expr_t *e;
    int64_t v = 0;
    kc__argshape_t scalar_shape = {0, NULL};
    assert_int_equal(kc__expr_parse("numel(x)", &symtab, &e, NULL, 0), KC_OK);
    assert_int_equal(kc__expr_eval(e, vars, &scalar_shape, 1, &v), KC_OK);
    assert_int_equal(v, 1);
    /* No shape for the argument at all. */
    assert_int_equal(kc__expr_eval(e, vars, NULL, 0, &v), KC_EEXPR);
    kc__expr_free(e);
}

static void test_overflow_and_division_by_zero_fail_at_eval(void **state)
{
    (void)state;
    kc__expr_fault_t f;
    int rc;

    int64_t zero[4] = {7, 0, 0, 0};
    eval_vars("A / B", zero, &rc, &f);
    assert_int_equal(rc, KC_EEXPR);
    assert_string_equal(f.what, "division by zero");
    assert_int_equal(f.column, 3);
    eval_vars("A % B", zero, &rc, &f);
    assert_int_equal(rc, KC_EEXPR);
    assert_string_equal(f.what, "modulo by zero");

    int64_t min_neg[4] = {INT64_MIN, -1, 0, 0};
    eval_vars("A / B", min_neg, &rc, &f);
    assert_int_equal(rc, KC_EEXPR);
    assert_string_equal(f.what, "integer overflow");
    eval_vars("A % B", min_neg, &rc, &f);
    assert_int_equal(rc, KC_EEXPR);
    eval_vars("-A", min_neg, &rc, &f);
    assert_int_equal(rc, KC_EEXPR);

    int64_t big[4] = {INT64_C(1) << 32, INT64_MAX, 0, 0};
    eval_vars("A * A", big, &rc, &f);
    assert_int_equal(rc, KC_EEXPR);
    eval_vars("B + 1", big, &rc, &f);
    assert_int_equal(rc, KC_EEXPR);
    assert_int_equal(f.column, 3);
    eval_vars("-B - 2", big, &rc, &f);
    assert_int_equal(rc, KC_EEXPR);
    /* Just inside the range is fine. */
    int64_t v = eval_vars("B - 1 + 1", big, &rc, &f);
    assert_int_equal(rc, KC_OK);
    assert_int_equal(v, INT64_MAX);
}

static void test_numel_overflow_fails_at_eval(void **state)
{
    (void)state;
    static const int64_t dims[3] = {INT64_C(1) << 31, INT64_C(1) << 31, 4};
    kc__argshape_t shape = {3, dims};
    kc__expr_t *e;
    int64_t v;
    assert_int_equal(kc__expr_parse("numel(x)", &symtab, &e, NULL, 0), KC_OK);
    assert_int_equal(kc__expr_eval(e, NULL, &shape, 1, &v), KC_EEXPR);
    kc__expr_free(e);
}

static void test_parse_errors_report_the_column(void **state)
{
    (void)state;
    assert_contains(parse_err("(n + 1"), "at column 7: expected ')'");
    assert_contains(parse_err("n + 1 )"), "at column 7: unmatched ')'");
    assert_contains(parse_err("cdiv(n BLOCK)"), "at column 8: expected ','");
    assert_contains(parse_err("n * "), "at column 5: expected a number");
    assert_contains(parse_err("n $ 2"), "at column 3:");
    assert_contains(parse_err("1 2"), "at column 3: expected an operator");
    assert_contains(parse_err("12ab"), "at column 3:");
    assert_contains(parse_err(""), "at column 1: empty expression");
    assert_contains(parse_err("   "), "empty expression");
    assert_contains(parse_err("99999999999999999999"),
                    "at column 1: integer literal out of range");
}

static void test_unknown_names_are_named_with_a_suggestion(void **state)
{
    (void)state;
    const char *msg = parse_err("cdiv(n, BLOKC)");
    assert_contains(msg, "at column 9: unknown name 'BLOKC'");
    assert_contains(msg, "did you mean 'BLOCK'");
    assert_string_equal(parse_err("zzzzzzzz"), "at column 1: unknown name 'zzzzzzzz'");
    assert_contains(parse_err("foo(1)"), "unknown function 'foo'");
}

static void test_misused_names_give_clear_errors(void **state)
{
    (void)state;
    assert_contains(parse_err("x + 1"), "'x' is a pointer argument");
    assert_contains(parse_err("dim(n, 0)"), "dim() needs a pointer argument");
    assert_contains(parse_err("numel(3)"), "numel() needs a pointer argument");
    assert_contains(parse_err("2 * alpha"), "at column 5: 'alpha' is a float argument");
    assert_contains(parse_err("min + 1"), "expected '(' after 'min'");
    assert_contains(parse_err("dim(x, 8)"), "dim() index");
    assert_contains(parse_err("dim(x, -9)"), "dim() index");
    assert_contains(parse_err("dim(x, n)"), "dim() index must be an integer");
    assert_contains(parse_err("min(1)"), "expected ','");
    assert_contains(parse_err("max(1, 2, 3)"), "expected ')'");
}

static void test_nesting_deeper_than_the_limit_is_rejected(void **state)
{
    (void)state;
    char text[KC__EXPR_MAX_LEN + 2];
    kc__expr_t *e;
    int64_t v;

    /* The outermost expression is level 1, each parenthesis one more. */
    int ok_parens = KC__EXPR_MAX_DEPTH - 1;
    memset(text, '(', (size_t)ok_parens);
    text[ok_parens] = '1';
    memset(text + ok_parens + 1, ')', (size_t)ok_parens);
    text[2 * ok_parens + 1] = '\0';
    assert_int_equal(kc__expr_parse(text, &symtab, &e, NULL, 0), KC_OK);
    assert_int_equal(kc__expr_eval(e, NULL, NULL, 0, &v), KC_OK);
    assert_int_equal(v, 1);
    kc__expr_free(e);

    int bad = KC__EXPR_MAX_DEPTH;
    memset(text, '(', (size_t)bad);
    text[bad] = '1';
    memset(text + bad + 1, ')', (size_t)bad);
    text[2 * bad + 1] = '\0';
    assert_contains(parse_err(text), "nested more than 64 levels");

    memset(text, '-', 200);
    strcpy(text + 200, "1");
    assert_contains(parse_err(text), "nested more than");

    /* Deep but within the limit on the value stack as well. */
    text[0] = '\0';
    for (int i = 0; i < 30; i++)
        strcat(text, "1 + 2 * min(3, ");
    strcat(text, "4");
    for (int i = 0; i < 30; i++)
        strcat(text, ")");
    assert_int_equal(kc__expr_parse(text, &symtab, &e, NULL, 0), KC_OK);
    assert_int_equal(kc__expr_eval(e, NULL, NULL, 0, &v), KC_OK);
    assert_int_equal(v, 7);
    kc__expr_free(e);

    memset(text, ' ', KC__EXPR_MAX_LEN + 1);
    text[0] = '1';
    text[KC__EXPR_MAX_LEN + 1] = '\0';
    assert_contains(parse_err(text), "longer than 4096");
}

static void test_uses_beyond_tells_parameters_from_arguments(void **state)
{
    (void)state;
    kc__expr_t *e;
    assert_int_equal(kc__expr_parse("A * B + 3", &symtab, &e, NULL, 0), KC_OK);
    assert_false(kc__expr_uses_beyond(e, 2));
    assert_true(kc__expr_uses_beyond(e, 1));
    kc__expr_free(e);
    assert_int_equal(kc__expr_parse("A - n", &symtab, &e, NULL, 0), KC_OK);
    assert_true(kc__expr_uses_beyond(e, 2));
    kc__expr_free(e);
    assert_int_equal(kc__expr_parse("numel(x)", &symtab, &e, NULL, 0), KC_OK);
    assert_true(kc__expr_uses_beyond(e, 4));
    kc__expr_free(e);
}

static kc_key_t encode_hash(const char *text)
{
    kc__expr_t *e;
    kc__wbuf_t w;
    assert_int_equal(kc__expr_parse(text, &symtab, &e, NULL, 0), KC_OK);
    kc__wbuf_init(&w);
    kc__expr_encode(e, &w);
    assert_false(w.failed);
    kc_key_t k = kc_key_hash(w.data, w.len);
    kc__wbuf_free(&w);
    kc__expr_free(e);
    return k;
}

static void test_encoding_ignores_spacing_but_not_meaning(void **state)
{
    (void)state;
    kc_key_t a = encode_hash("cdiv(n,BLOCK)");
    kc_key_t b = encode_hash("  cdiv( n , (BLOCK) ) ");
    kc_key_t c = encode_hash("cdiv(n, BLOCK + 0)");
    kc_key_t d = encode_hash("cdiv(BLOCK, n)");
    assert_memory_equal(a.b, b.b, 16);
    assert_memory_not_equal(a.b, c.b, 16);
    assert_memory_not_equal(a.b, d.b, 16);
}

/* ---- specs ------------------------------------------------------------- */

static const char softmax_src[] =
    "extern \"C\" __global__ void softmax_kernel(const float *x, float *y, int n) {}\n";
static const int64_t block_values[3] = {128, 256, 512};
static const int64_t warps_values[2] = {4, 8};
static const char *const softmax_opts[2] = {"-O3", "--use_fast_math"};

typedef struct fixture {
    kc_param_spec_t params[2];
    kc_arg_spec_t args[4];
    kc_header_t headers[1];
    kc_kernel_spec_t spec;
} fixture_t;

static void softmax(fixture_t *f)
{
    memset(f, 0, sizeof(*f));
    f->params[0] = (kc_param_spec_t){"BLOCK", block_values, 3};
    f->params[1] = (kc_param_spec_t){"WARPS", warps_values, 2};
    f->args[0] = (kc_arg_spec_t){"x", KC_ARG_POINTER, KC_DTYPE_F32, KC_ACCESS_IN, 0};
    f->args[1] = (kc_arg_spec_t){"y", KC_ARG_POINTER, KC_DTYPE_F32, KC_ACCESS_OUT, 0};
    f->args[2] = (kc_arg_spec_t){"n", KC_ARG_SCALAR, KC_DTYPE_I32, 0, 0};
    f->args[3] = (kc_arg_spec_t){"alpha", KC_ARG_SCALAR, KC_DTYPE_F32, 0, 0};
    f->headers[0] = (kc_header_t){"common.h", "#define X 1\n"};
    f->spec = (kc_kernel_spec_t){
        .name = "softmax",
        .source_kind = KC_SOURCE_CUDA,
        .source = softmax_src,
        .headers = f->headers,
        .n_headers = 1,
        .entry = "softmax_kernel",
        .options = softmax_opts,
        .n_options = 2,
        .params = f->params,
        .n_params = 2,
        .constraint = "BLOCK / WARPS >= 16",
        .args = f->args,
        .n_args = 4,
        .grid = {"cdiv(n, BLOCK)"},
        .block = {"WARPS * 32"},
        .shared = "BLOCK * 4",
        .dims_policy = KC_DIMS_EXACT,
    };
}

static kc__spec_t *create_ok(const kc_kernel_spec_t *in)
{
    char err[ERRCAP];
    kc__spec_t *sp = NULL;
    int rc = kc__spec_create(in, &sp, err, sizeof(err));
    if (rc != KC_OK) {
        print_error("kc__spec_create: %d: %s\n", rc, err);
        fail();
    }
    return sp;
}

/* Creates the spec, which must fail with code, and returns the message. */
static const char *create_err(const kc_kernel_spec_t *in, int code)
{
    static char err[ERRCAP];
    kc__spec_t *sp = (kc__spec_t *)1;
    assert_int_equal(kc__spec_create(in, &sp, err, sizeof(err)), code);
    assert_null(sp);
    return err;
}

static void test_a_valid_spec_is_copied_with_defaults_and_slots(void **state)
{
    (void)state;
    fixture_t f;
    char name[] = "softmax", grid0[] = "cdiv(n, BLOCK)";
    softmax(&f);
    f.spec.name = name;
    f.spec.grid[0] = grid0;
    kc__spec_t *sp = create_ok(&f.spec);

    /* The copy does not alias the caller's memory. */
    name[0] = 'X';
    grid0[0] = 'X';
    assert_string_equal(sp->s.name, "softmax");
    assert_string_equal(sp->s.grid[0], "cdiv(n, BLOCK)");
    assert_ptr_not_equal(sp->s.params, f.params);
    assert_ptr_not_equal(sp->s.source, softmax_src);
    assert_int_equal(sp->s.source_len, strlen(softmax_src));
    assert_string_equal(sp->s.headers[0].content, "#define X 1\n");
    assert_string_equal(sp->s.options[1], "--use_fast_math");

    assert_string_equal(sp->s.grid[1], "1");
    assert_string_equal(sp->s.block[2], "1");
    assert_string_equal(sp->s.shared, "BLOCK * 4");
    assert_string_equal(sp->s.constraint, "BLOCK / WARPS >= 16");

    assert_int_equal(sp->n_vars, 3);
    assert_int_equal(sp->arg_slot[0], KC__SPEC_NO_SLOT);
    assert_int_equal(sp->arg_slot[2], 2);
    assert_int_equal(sp->arg_slot[3], KC__SPEC_NO_SLOT);
    kc__spec_free(sp);
    kc__spec_free(NULL);
}

typedef struct bad_case {
    const char *what;
    void (*mutate)(fixture_t *f);
    int code;
    const char *message;
} bad_case_t;

static const int64_t dup_values[3] = {128, 64, 64};
static const int64_t one_value[1] = {1};
static const int64_t hundred[100] = {
    1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20,
    21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40,
    41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60,
    61, 62, 63, 64, 65, 66, 67, 68, 69, 70, 71, 72, 73, 74, 75, 76, 77, 78, 79, 80,
    81, 82, 83, 84, 85, 86, 87, 88, 89, 90, 91, 92, 93, 94, 95, 96, 97, 98, 99, 100};

static void no_name(fixture_t *f)
{
    f->spec.name = "";
}
static void no_entry(fixture_t *f)
{
    f->spec.entry = NULL;
}
static void spaced_entry(fixture_t *f)
{
    f->spec.entry = "softmax kernel";
}
static void no_source(fixture_t *f)
{
    f->spec.source = NULL;
}
static void empty_source(fixture_t *f)
{
    f->spec.source = "";
}
static void nul_in_source(fixture_t *f)
{
    f->spec.source_len = sizeof(softmax_src);
}
static void bad_kind(fixture_t *f)
{
    f->spec.source_kind = (kc_source_kind_t)7;
}
static void ptx_headers(fixture_t *f)
{
    f->spec.source_kind = KC_SOURCE_PTX;
}
static void null_option(fixture_t *f)
{
    static const char *const opts[2] = {"-O3", NULL};
    f->spec.options = opts;
}
static void param_not_ident(fixture_t *f)
{
    f->params[1].name = "2WARPS";
}
static void param_duplicate(fixture_t *f)
{
    f->params[1].name = "BLOCK";
}
static void param_no_values(fixture_t *f)
{
    f->params[0].n_values = 0;
}
static void param_dup_value(fixture_t *f)
{
    f->params[1].values = dup_values, f->params[1].n_values = 3;
}
static void arg_duplicate(fixture_t *f)
{
    f->args[1].name = "x";
}
static void arg_clash(fixture_t *f)
{
    f->args[2].name = "BLOCK";
}
static void arg_not_ident(fixture_t *f)
{
    f->args[0].name = "x-y";
}
static void arg_bad_dtype(fixture_t *f)
{
    f->args[0].dtype = KC_DTYPE_COUNT_;
}
static void arg_no_access(fixture_t *f)
{
    f->args[1].access = 0;
}
static void arg_ptr_key(fixture_t *f)
{
    f->args[0].is_key = 1;
}
static void arg_half_scalar(fixture_t *f)
{
    f->args[2].dtype = KC_DTYPE_F16;
}
static void arg_scalar_access(fixture_t *f)
{
    f->args[2].access = KC_ACCESS_IN;
}
static void arg_bad_kind(fixture_t *f)
{
    f->args[3].kind = (kc_arg_kind_t)9;
}
static void no_grid(fixture_t *f)
{
    f->spec.grid[0] = NULL;
}
static void no_block(fixture_t *f)
{
    f->spec.block[0] = NULL;
}
static void grid_typo(fixture_t *f)
{
    f->spec.grid[0] = "cdiv(n, BLOKC)";
}
static void block1_error(fixture_t *f)
{
    f->spec.block[1] = "(WARPS";
}
static void shared_error(fixture_t *f)
{
    f->spec.shared = "BLOCK *";
}
static void grid_float(fixture_t *f)
{
    f->spec.grid[2] = "alpha";
}
static void constraint_arg(fixture_t *f)
{
    f->spec.constraint = "BLOCK <= n";
}
static void constraint_dim(fixture_t *f)
{
    f->spec.constraint = "BLOCK <= dim(x, 0)";
}
static void constraint_all(fixture_t *f)
{
    f->spec.constraint = "BLOCK > 4096";
}
static void constraint_div0(fixture_t *f)
{
    f->spec.constraint = "BLOCK / (WARPS - 4)";
}
static void bad_dims(fixture_t *f)
{
    f->spec.dims_policy = (kc_dims_policy_t)5;
}
static void space_too_big(fixture_t *f)
{
    f->params[0] = (kc_param_spec_t){"BLOCK", hundred, 100};
    f->params[1] = (kc_param_spec_t){"WARPS", hundred, 100};
    f->spec.constraint = "BLOCK > 0";
    /* 10000 configs: under the enumeration cap, over the candidate cap. */
}
static void params_too_many(fixture_t *f)
{
    static kc_param_spec_t many[KC__SPEC_MAX_PARAMS + 1];
    static char names[KC__SPEC_MAX_PARAMS + 1][8];
    for (int i = 0; i <= KC__SPEC_MAX_PARAMS; i++) {
        snprintf(names[i], sizeof(names[i]), "P%d", i);
        many[i] = (kc_param_spec_t){names[i], one_value, 1};
    }
    f->spec.params = many;
    f->spec.n_params = KC__SPEC_MAX_PARAMS + 1;
}

#define CASE(fn, code, msg)                                                              \
    {                                                                                    \
#fn, fn, code, msg                                                               \
    }
static const bad_case_t bad_cases[] = {
    CASE(no_name, KC_ESPEC, "spec: name: missing"),
    CASE(no_entry, KC_ESPEC, "spec 'softmax': entry: missing"),
    CASE(spaced_entry, KC_ESPEC,
         "spec 'softmax': entry: 'softmax kernel' contains whitespace"),
    CASE(no_source, KC_ESPEC, "spec 'softmax': source: missing"),
    CASE(empty_source, KC_ESPEC, "spec 'softmax': source: empty"),
    CASE(nul_in_source, KC_ESPEC, "spec 'softmax': source: NUL byte at offset 78"),
    CASE(bad_kind, KC_ESPEC, "spec 'softmax': source_kind: 7"),
    CASE(ptx_headers, KC_ESPEC, "spec 'softmax': headers: PTX source takes no headers"),
    CASE(null_option, KC_ESPEC, "spec 'softmax': options[1]: empty"),
    CASE(param_not_ident, KC_ESPEC,
         "spec 'softmax': params[1] '2WARPS': name is not a C identifier"),
    CASE(param_duplicate, KC_ESPEC,
         "spec 'softmax': params[1] 'BLOCK': duplicate of params[0]"),
    CASE(param_no_values, KC_ESPEC, "spec 'softmax': params[0] 'BLOCK': no values"),
    CASE(param_dup_value, KC_ESPEC,
         "spec 'softmax': params[1] 'WARPS': duplicate value 64"),
    CASE(arg_duplicate, KC_ESPEC, "spec 'softmax': args[1] 'x': duplicate of args[0]"),
    CASE(arg_clash, KC_ESPEC,
         "spec 'softmax': args[2] 'BLOCK': name also used by params[0]"),
    CASE(arg_not_ident, KC_ESPEC,
         "spec 'softmax': args[0] 'x-y': name is not a C identifier"),
    CASE(arg_bad_dtype, KC_ESPEC, "spec 'softmax': args[0] 'x': invalid dtype"),
    CASE(arg_no_access, KC_ESPEC,
         "spec 'softmax': args[1] 'y': access must be in, out or inout"),
    CASE(arg_ptr_key, KC_ESPEC, "spec 'softmax': args[0] 'x': only scalars can be keys"),
    CASE(arg_half_scalar, KC_ESPEC, "spec 'softmax': args[2] 'n': a scalar must be"),
    CASE(arg_scalar_access, KC_ESPEC,
         "spec 'softmax': args[2] 'n': access applies to pointers only"),
    CASE(arg_bad_kind, KC_ESPEC, "spec 'softmax': args[3] 'alpha': kind must be"),
    CASE(no_grid, KC_ESPEC, "spec 'softmax': grid[0]: missing"),
    CASE(no_block, KC_ESPEC, "spec 'softmax': block[0]: missing"),
    CASE(grid_typo, KC_EEXPR,
         "spec 'softmax': grid[0]: at column 9: unknown name 'BLOKC'"),
    CASE(block1_error, KC_EEXPR, "spec 'softmax': block[1]: at column 7: expected ')'"),
    CASE(shared_error, KC_EEXPR,
         "spec 'softmax': shared: at column 8: expected a number"),
    CASE(grid_float, KC_EEXPR,
         "spec 'softmax': grid[2]: at column 1: 'alpha' is a float argument"),
    CASE(constraint_arg, KC_ESPEC,
         "spec 'softmax': constraint: may name only tuning parameters"),
    CASE(constraint_dim, KC_ESPEC,
         "spec 'softmax': constraint: may name only tuning parameters"),
    CASE(constraint_all, KC_ESPEC, "spec 'softmax': constraint: excludes every config"),
    CASE(constraint_div0, KC_ESPEC,
         "spec 'softmax': constraint: at column 7: division by zero for BLOCK=128, "
         "WARPS=4"),
    CASE(bad_dims, KC_ESPEC, "spec 'softmax': dims_policy: 5"),
    CASE(space_too_big, KC_ESPEC, "spec 'softmax': params: more than 4096 configs pass"),
    CASE(params_too_many, KC_ESPEC,
         "spec 'softmax': params: 33 parameters, more than 32"),
};

static void test_each_bad_spec_names_the_field(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
        fixture_t f;
        softmax(&f);
        bad_cases[i].mutate(&f);
        char err[ERRCAP];
        kc__spec_t *sp = (kc__spec_t *)1;
        int rc = kc__spec_create(&f.spec, &sp, err, sizeof(err));
        if (rc != bad_cases[i].code || !strstr(err, bad_cases[i].message)) {
            print_error("%s: got %d \"%s\"\n  want %d \"%s\"\n", bad_cases[i].what, rc,
                        err, bad_cases[i].code, bad_cases[i].message);
            fail();
        }
        assert_null(sp);
    }
}

static void test_an_oversized_space_is_refused_before_enumerating(void **state)
{
    (void)state;
    fixture_t f;
    kc_param_spec_t p[3] = {
        {"A", hundred, 100}, {"B", hundred, 100}, {"C", hundred, 100}};
    softmax(&f);
    f.spec.params = p;
    f.spec.n_params = 3;
    f.spec.constraint = NULL;
    f.spec.grid[0] = "1";
    f.spec.block[0] = "1";
    f.spec.shared = NULL;
    assert_contains(create_err(&f.spec, KC_ESPEC),
                    "params: the tuning space has more than 65536");
}

static void test_candidates_are_the_filtered_product_in_spec_order(void **state)
{
    (void)state;
    static const int64_t a[3] = {1, 2, 3}, b[2] = {10, 20};
    kc_param_spec_t p[2] = {{"A", a, 3}, {"B", b, 2}};
    kc_kernel_spec_t in = {.name = "prod",
                           .source_kind = KC_SOURCE_PTX,
                           .source = ".version 8.0\n",
                           .entry = "k",
                           .params = p,
                           .n_params = 2,
                           .constraint = "A * B != 20",
                           .grid = {"A"},
                           .block = {"B"}};
    kc__spec_t *sp = create_ok(&in);
    static const int64_t want[4][2] = {{1, 10}, {2, 20}, {3, 10}, {3, 20}};
    assert_int_equal(sp->n_candidates, 4);
    assert_memory_equal(sp->candidates, want, sizeof(want));
    kc__spec_free(sp);

    in.constraint = NULL;
    sp = create_ok(&in);
    assert_int_equal(sp->n_candidates, 6);
    assert_int_equal(sp->candidates[2 * 2], 2);
    assert_int_equal(sp->candidates[2 * 2 + 1], 10);
    kc__spec_free(sp);

    /* No parameters: exactly one (empty) config. */
    in.n_params = 0;
    in.params = NULL;
    in.grid[0] = "1";
    in.block[0] = "32";
    sp = create_ok(&in);
    assert_int_equal(sp->n_candidates, 1);
    assert_non_null(sp->candidates);
    kc__spec_free(sp);
}

typedef struct digests {
    kc_key_t source, space, identity;
} digests_t;

static digests_t digests_of(const kc_kernel_spec_t *in)
{
    kc__spec_t *sp = create_ok(in);
    digests_t d = {sp->source_digest, sp->space_digest, sp->identity};
    kc__spec_free(sp);
    return d;
}

#define assert_key_eq(x, y) assert_memory_equal((x).b, (y).b, 16)
#define assert_key_ne(x, y) assert_memory_not_equal((x).b, (y).b, 16)

static void test_digests_track_exactly_what_changed(void **state)
{
    (void)state;
    fixture_t f;
    softmax(&f);
    digests_t base = digests_of(&f.spec);
    digests_t again = digests_of(&f.spec);
    assert_key_eq(base.source, again.source);
    assert_key_eq(base.space, again.space);
    assert_key_eq(base.identity, again.identity);
    kc_key_t direct = kc_source_digest(softmax_src, strlen(softmax_src), f.headers, 1);
    assert_key_eq(base.source, direct);

    /* One parameter value: the space (and so the identity) changes. */
    static const int64_t other_block[3] = {128, 256, 1024};
    softmax(&f);
    f.params[0].values = other_block;
    digests_t d = digests_of(&f.spec);
    assert_key_eq(d.source, base.source);
    assert_key_ne(d.space, base.space);
    assert_key_ne(d.identity, base.identity);

    /* One option: identity only. */
    static const char *const other_opts[2] = {"-O2", "--use_fast_math"};
    softmax(&f);
    f.spec.options = other_opts;
    d = digests_of(&f.spec);
    assert_key_eq(d.space, base.space);
    assert_key_ne(d.identity, base.identity);

    /* One expression. */
    softmax(&f);
    f.spec.shared = "BLOCK * 8";
    d = digests_of(&f.spec);
    assert_key_ne(d.space, base.space);
    assert_key_ne(d.identity, base.identity);

    /* Spacing and explicit defaults are not changes. */
    softmax(&f);
    f.spec.grid[0] = "cdiv( n,BLOCK )";
    f.spec.grid[1] = "1";
    d = digests_of(&f.spec);
    assert_key_eq(d.space, base.space);
    assert_key_eq(d.identity, base.identity);

    /* Header content: the source digest. */
    softmax(&f);
    f.headers[0].content = "#define X 2\n";
    d = digests_of(&f.spec);
    assert_key_ne(d.source, base.source);
    assert_key_eq(d.space, base.space);
    assert_key_ne(d.identity, base.identity);

    /* Entry, access, key flag, dims policy, constraint. */
    softmax(&f);
    f.spec.entry = "softmax_kernel2";
    assert_key_ne(digests_of(&f.spec).identity, base.identity);
    softmax(&f);
    f.args[0].access = KC_ACCESS_INOUT;
    assert_key_ne(digests_of(&f.spec).space, base.space);
    softmax(&f);
    f.args[2].is_key = 1;
    assert_key_ne(digests_of(&f.spec).space, base.space);
    softmax(&f);
    f.spec.dims_policy = KC_DIMS_POW2;
    assert_key_ne(digests_of(&f.spec).space, base.space);
    softmax(&f);
    f.spec.constraint = NULL;
    assert_key_ne(digests_of(&f.spec).space, base.space);
}

static void test_geometry_evaluates_for_a_candidate(void **state)
{
    (void)state;
    fixture_t f;
    softmax(&f);
    kc__spec_t *sp = create_ok(&f.spec);
    static const int64_t xdims[1] = {1000};
    kc_arg_t args[4] = {{.ptr = 0x1000, .rank = 1, .dims = xdims},
                        {.ptr = 0x2000, .rank = 1, .dims = xdims},
                        {.value.i = 1000},
                        {.value.f = 0.5}};
    int64_t vars[KC__SPEC_MAX_VARS];
    kc__argshape_t shapes[KC__SPEC_MAX_ARGS];
    const int64_t config[2] = {256, 8};
    unsigned grid[3], block[3], shared;
    char err[ERRCAP] = "";

    assert_int_equal(kc__spec_bind(sp, config, args, 4, vars, shapes, err, sizeof(err)),
                     KC_OK);
    assert_int_equal(vars[2], 1000);
    assert_int_equal(kc__spec_eval_geometry(sp, vars, shapes, 4, grid, block, &shared,
                                            err, sizeof(err)),
                     KC_OK);
    assert_int_equal(grid[0], 4);
    assert_int_equal(grid[1], 1);
    assert_int_equal(grid[2], 1);
    assert_int_equal(block[0], 256);
    assert_int_equal(block[1], 1);
    assert_int_equal(shared, 1024);

    assert_int_equal(kc__spec_bind(sp, config, args, 3, vars, shapes, err, sizeof(err)),
                     KC_EINVAL);
    args[2].value.i = INT64_C(1) << 40;
    assert_int_equal(kc__spec_bind(sp, config, args, 4, vars, shapes, err, sizeof(err)),
                     KC_EEXPR);
    assert_contains(err, "spec 'softmax': args[2] 'n': 1099511627776 does not fit i32");
    kc__spec_free(sp);
}

static void test_geometry_out_of_range_or_faulting_is_an_error(void **state)
{
    (void)state;
    fixture_t f;
    int64_t vars[3] = {128, 4, 1000};
    unsigned grid[3], block[3], shared;
    char err[ERRCAP];

    softmax(&f);
    f.spec.block[0] = "BLOCK * 16";
    kc__spec_t *sp = create_ok(&f.spec);
    assert_int_equal(
        kc__spec_eval_geometry(sp, vars, NULL, 0, grid, block, &shared, err, sizeof(err)),
        KC_EEXPR);
    assert_string_equal(err, "spec 'softmax': block[0]: 2048 is out of range 1..1024");
    kc__spec_free(sp);

    softmax(&f);
    f.spec.grid[0] = "n / (BLOCK - 128)";
    sp = create_ok(&f.spec);
    assert_int_equal(
        kc__spec_eval_geometry(sp, vars, NULL, 0, grid, block, &shared, err, sizeof(err)),
        KC_EEXPR);
    assert_string_equal(err, "spec 'softmax': grid[0]: at column 3: division by zero");
    kc__spec_free(sp);

    softmax(&f);
    f.spec.grid[0] = "n - 1000";
    sp = create_ok(&f.spec);
    assert_int_equal(
        kc__spec_eval_geometry(sp, vars, NULL, 0, grid, block, &shared, err, sizeof(err)),
        KC_EEXPR);
    assert_contains(err, "grid[0]: 0 is out of range 1..2147483647");
    kc__spec_free(sp);

    softmax(&f);
    f.spec.block[0] = "64";
    f.spec.block[1] = "WARPS * 4";
    sp = create_ok(&f.spec);
    assert_int_equal(
        kc__spec_eval_geometry(sp, vars, NULL, 0, grid, block, &shared, err, sizeof(err)),
        KC_OK);
    vars[1] = 8;
    assert_int_equal(
        kc__spec_eval_geometry(sp, vars, NULL, 0, grid, block, &shared, err, sizeof(err)),
        KC_EEXPR);
    assert_contains(err, "block: 64 x 32 x 1 threads, more than 1024");
    kc__spec_free(sp);

    softmax(&f);
    f.spec.shared = "0 - BLOCK";
    sp = create_ok(&f.spec);
    assert_int_equal(
        kc__spec_eval_geometry(sp, vars, NULL, 0, grid, block, &shared, err, sizeof(err)),
        KC_EEXPR);
    assert_contains(err, "shared: -128 is out of range 0..4294967295");
    kc__spec_free(sp);
}

/* ---- JSON spec files --------------------------------------------------- */

static char tmpdir[512];

static int make_tmpdir(void **state)
{
    (void)state;
    const char *base = getenv("KC_TEST_TMP");
    if (!base)
        base = "/tmp";
    mkdir(base, 0755);
    snprintf(tmpdir, sizeof(tmpdir), "%s/spec-XXXXXX", base);
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int remove_tmpdir(void **state)
{
    (void)state;
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static void write_file(const char *rel, const char *text)
{
    char path[700];
    snprintf(path, sizeof(path), "%s/%s", tmpdir, rel);
    char *slash = strrchr(path, '/');
    *slash = '\0';
    mkdir(path, 0755);
    *slash = '/';
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static int load(const char *json, kc__spec_t ***specs, size_t *n, char *err)
{
    char path[700];
    write_file("specs.json", json);
    snprintf(path, sizeof(path), "%s/specs.json", tmpdir);
    return kc__spec_load_json(path, specs, n, err, ERRCAP);
}

static const char scale_src[] =
    "extern \"C\" __global__ void scale(float *y, long n) { }\n";

static const char two_kernels[] =
    "{\"version\": 1, \"kernels\": [\n"
    " {\"name\": \"softmax\", \"source_kind\": \"cuda\",\n"
    "  \"source\": \"extern \\\"C\\\" __global__ void softmax_kernel(const float *x, "
    "float "
    "*y, int n) {}\\n\",\n"
    "  \"headers\": {\"common.h\": \"#define X 1\\n\"},\n"
    "  \"entry\": \"softmax_kernel\", \"options\": [\"-O3\", \"--use_fast_math\"],\n"
    "  \"params\": {\"BLOCK\": [128, 256, 512], \"WARPS\": [4, 8]},\n"
    "  \"constraint\": \"BLOCK / WARPS >= 16\",\n"
    "  \"args\": [{\"name\": \"x\", \"type\": \"f32*\", \"access\": \"in\"},\n"
    "           {\"name\": \"y\", \"type\": \"f32*\", \"access\": \"out\"},\n"
    "           {\"name\": \"n\", \"type\": \"i32\"},\n"
    "           {\"name\": \"alpha\", \"type\": \"f32\", \"key\": false}],\n"
    "  \"grid\": [\"cdiv(n, BLOCK)\"], \"block\": [\"WARPS * 32\"], \"shared\": \"BLOCK "
    "* 4\",\n"
    "  \"dims\": \"exact\"},\n"
    " {\"name\": \"scale\", \"source_file\": \"kern/scale.cu\", \"entry\": \"scale\",\n"
    "  \"params\": [{\"name\": \"TILE\", \"values\": [64, 128]}],\n"
    "  \"args\": [{\"name\": \"y\", \"type\": \"f32*\", \"access\": \"inout\"},\n"
    "           {\"name\": \"n\", \"type\": \"i64\", \"key\": true}],\n"
    "  \"grid\": [\"cdiv(n, TILE)\", 1, 1], \"block\": [\"TILE\"], \"shared\": 0,\n"
    "  \"dims\": \"pow2\"}\n"
    "]}\n";

static void test_a_json_file_matches_the_equivalent_c_specs(void **state)
{
    (void)state;
    kc__spec_t **specs;
    size_t n;
    char err[ERRCAP];

    write_file("kern/scale.cu", scale_src);
    int rc = load(two_kernels, &specs, &n, err);
    if (rc != KC_OK)
        print_error("%s\n", err);
    assert_int_equal(rc, KC_OK);
    assert_int_equal(n, 2);

    fixture_t f;
    softmax(&f);
    digests_t want = digests_of(&f.spec);
    assert_string_equal(specs[0]->s.name, "softmax");
    assert_key_eq(specs[0]->source_digest, want.source);
    assert_key_eq(specs[0]->space_digest, want.space);
    assert_key_eq(specs[0]->identity, want.identity);

    static const int64_t tiles[2] = {64, 128};
    kc_param_spec_t tile = {"TILE", tiles, 2};
    kc_arg_spec_t args[2] = {{"y", KC_ARG_POINTER, KC_DTYPE_F32, KC_ACCESS_INOUT, 0},
                             {"n", KC_ARG_SCALAR, KC_DTYPE_I64, 0, 1}};
    kc_kernel_spec_t scale = {.name = "scale",
                              .source_kind = KC_SOURCE_CUDA,
                              .source = scale_src,
                              .entry = "scale",
                              .params = &tile,
                              .n_params = 1,
                              .args = args,
                              .n_args = 2,
                              .grid = {"cdiv(n, TILE)"},
                              .block = {"TILE"},
                              .dims_policy = KC_DIMS_POW2};
    want = digests_of(&scale);
    assert_string_equal(specs[1]->s.source, scale_src);
    assert_key_eq(specs[1]->source_digest, want.source);
    assert_key_eq(specs[1]->space_digest, want.space);
    assert_key_eq(specs[1]->identity, want.identity);
    assert_int_equal(specs[1]->n_candidates, 2);
    kc__spec_free_array(specs, n);
}

static void test_header_files_resolve_beside_the_spec_file(void **state)
{
    (void)state;
    kc__spec_t **specs;
    size_t n;
    char err[ERRCAP];
    write_file("inc/common.h", "#define X 1\n");
    const char *json =
        "{\"version\": 1, \"kernels\": [{\"name\": \"k\", \"source\": \"int x;\","
        " \"headers\": {\"common.h\": {\"file\": \"inc/common.h\"}},"
        " \"entry\": \"k\", \"grid\": [1], \"block\": [32]}]}";
    assert_int_equal(load(json, &specs, &n, err), KC_OK);
    assert_int_equal(specs[0]->s.n_headers, 1);
    assert_string_equal(specs[0]->s.headers[0].name, "common.h");
    assert_string_equal(specs[0]->s.headers[0].content, "#define X 1\n");
    kc__spec_free_array(specs, n);
}

typedef struct json_case {
    const char
        *kernel; /* the body of kernels[0], or a whole document if it starts with { */
    int code;
    const char *message;
} json_case_t;

#define K "\"name\": \"softmax\", \"source\": \"x\", \"entry\": \"k\", "
#define GB "\"grid\": [1], \"block\": [32]"
static const json_case_t json_cases[] = {
    {K GB ", \"gird\": [1]", KC_ESPEC,
     "specs.json: kernels[0] 'softmax': unknown key 'gird'"},
    {K GB ", \"args\": [{\"name\": \"x\", \"type\": \"f32*\", \"access\": \"in\"}, "
          "{\"name\": \"n\", \"type\": \"f33\"}]",
     KC_ESPEC, "specs.json: kernels[0] 'softmax': args[1]: unknown type 'f33'"},
    {K GB ", \"args\": [{\"name\": \"x\", \"type\": \"f32*\", \"acces\": \"in\"}]",
     KC_ESPEC, "specs.json: kernels[0] 'softmax': args[0]: unknown key 'acces'"},
    {K GB ", \"args\": [{\"name\": \"x\", \"type\": \"f32*\"}]", KC_ESPEC,
     "specs.json: kernels[0] 'softmax': args[0]: access: missing"},
    {K GB ", \"args\": [{\"name\": \"x\", \"type\": \"f32*\", \"access\": \"rw\"}]",
     KC_ESPEC,
     "specs.json: kernels[0] 'softmax': args[0]: access: expected in, out or inout"},
    {K GB ", \"args\": [{\"name\": \"n\", \"type\": \"i32\", \"key\": 1}]", KC_ESPEC,
     "specs.json: kernels[0] 'softmax': args[0]: key: expected true or false"},
    {K GB
     ", \"args\": [{\"name\": \"n\", \"type\": \"i32\"}, {\"name\": \"n\", \"type\": "
     "\"i64\"}]",
     KC_ESPEC, "specs.json: kernels[0] 'softmax': args[1] 'n': duplicate of args[0]"},
    {K GB ", \"params\": {\"BLOCK\": [128, \"256\"]}", KC_ESPEC,
     "specs.json: kernels[0] 'softmax': params 'BLOCK': values[1]: expected an integer"},
    {K GB ", \"params\": {\"BLOCK\": [128, 128]}", KC_ESPEC,
     "specs.json: kernels[0] 'softmax': params[0] 'BLOCK': duplicate value 128"},
    {K GB ", \"params\": [{\"name\": \"BLOCK\", \"value\": [1]}]", KC_ESPEC,
     "specs.json: kernels[0] 'softmax': params[0]: unknown key 'value'"},
    {K "\"grid\": [\"cdiv(8, BLOKC)\"], \"block\": [32], \"params\": {\"BLOCK\": [1]}",
     KC_EEXPR,
     "specs.json: kernels[0] 'softmax': grid[0]: at column 9: unknown name 'BLOKC'"},
    {K "\"grid\": [], \"block\": [32]", KC_ESPEC,
     "specs.json: kernels[0] 'softmax': grid: expected an array of 1 to 3 expressions"},
    {K "\"grid\": [1], \"block\": [32, true]", KC_ESPEC,
     "specs.json: kernels[0] 'softmax': block[1]: expected an expression string"},
    {K "\"block\": [32]", KC_ESPEC, "specs.json: kernels[0] 'softmax': grid[0]: missing"},
    {K GB ", \"shared\": 1.5", KC_ESPEC,
     "specs.json: kernels[0] 'softmax': shared: expected an expression string"},
    {K GB ", \"dims\": \"pow3\"", KC_ESPEC,
     "specs.json: kernels[0] 'softmax': dims: 'pow3' is neither"},
    {K GB ", \"source_kind\": \"hip\"", KC_ESPEC,
     "specs.json: kernels[0] 'softmax': source_kind: 'hip' is not"},
    {K GB ", \"source_file\": \"a.cu\"", KC_ESPEC,
     "specs.json: kernels[0] 'softmax': source: give either source or source_file"},
    {"\"name\": \"softmax\", \"source_file\": \"missing.cu\", \"entry\": \"k\", " GB,
     KC_ESPEC, "specs.json: kernels[0] 'softmax': source_file: cannot open"},
    {"\"name\": \"softmax\", \"source_file\": \"kern\", \"entry\": \"k\", " GB, KC_ESPEC,
     "specs.json: kernels[0] 'softmax': source_file: "},
    {"\"name\": \"softmax\", \"entry\": \"k\", " GB, KC_ESPEC,
     "specs.json: kernels[0] 'softmax': source: missing"},
    {"\"source\": \"x\", \"entry\": \"k\", " GB, KC_ESPEC,
     "specs.json: kernels[0]: name: missing"},
    {K GB ", \"headers\": {\"a.h\": 3}", KC_ESPEC,
     "specs.json: kernels[0] 'softmax': headers 'a.h': expected a string or"},
    {K GB ", \"options\": [\"-O3\", 3]", KC_ESPEC,
     "specs.json: kernels[0] 'softmax': options[1]: expected a string"},
    {K GB ", \"constraint\": 5", KC_ESPEC,
     "specs.json: kernels[0] 'softmax': constraint: expected a string"},
    {"{\"version\": 2, \"kernels\": []}", KC_ESPEC, "specs.json: version: unsupported"},
    {"{\"kernels\": []}", KC_ESPEC, "specs.json: version: missing"},
    {"{\"version\": 1, \"kernels\": []}", KC_ESPEC,
     "specs.json: kernels: expected a non-empty"},
    {"{\"version\": 1, \"kernel\": []}", KC_ESPEC, "specs.json: unknown key 'kernel'"},
    {"{\"version\": 1, \"kernels\": [3]}", KC_ESPEC,
     "specs.json: kernels[0]: expected an object"},
    {"{\"version\": 1, \"kernels\": [{" K GB "}, {" K GB "}]}", KC_ESPEC,
     "specs.json: kernels[1] 'softmax': name: also used by kernels[0]"},
    {"{\"version\": 1,\n \"kernels\": [}", KC_ESPEC, "specs.json: line 2, column 14:"},
    {"{\"version\": 1, \"version\": 1}", KC_ESPEC, "specs.json: line 1, column"},
    {"[1, 2]", KC_ESPEC, "specs.json: expected an object"},
};

static void test_each_json_error_names_file_kernel_and_field(void **state)
{
    (void)state;
    write_file("kern/scale.cu", scale_src);
    for (size_t i = 0; i < sizeof(json_cases) / sizeof(json_cases[0]); i++) {
        char doc[2048], err[ERRCAP] = "";
        kc__spec_t **specs = (kc__spec_t **)1;
        size_t n = 99;
        if (json_cases[i].kernel[0] == '{' || json_cases[i].kernel[0] == '[')
            snprintf(doc, sizeof(doc), "%s", json_cases[i].kernel);
        else
            snprintf(doc, sizeof(doc), "{\"version\": 1, \"kernels\": [{%s}]}",
                     json_cases[i].kernel);
        int rc = load(doc, &specs, &n, err);
        if (rc != json_cases[i].code || !strstr(err, json_cases[i].message)) {
            print_error("case %zu: got %d \"%s\"\n  want %d \"%s\"\n", i, rc, err,
                        json_cases[i].code, json_cases[i].message);
            fail();
        }
        assert_null(specs);
        assert_int_equal(n, 0);
    }
}

/* A model's spec lists hundreds of kernels: each name is checked against
 * all before it (by an index, not a scan), and a repeat far down names the
 * first use. */
static void test_many_kernels_and_a_late_repeated_name(void **state)
{
    (void)state;
    enum { COUNT = 600 };
    size_t cap = (size_t)COUNT * 160 + 64, len = 0;
    char *doc = malloc(cap), err[ERRCAP] = "";
    kc__spec_t **specs = NULL;
    size_t n = 0;
    assert_non_null(doc);
    for (int pass = 0; pass < 2; pass++) {
        len = (size_t)snprintf(doc, cap, "{\"version\": 1, \"kernels\": [");
        for (int i = 0; i < COUNT; i++)
            len += (size_t)snprintf(doc + len, cap - len,
                                    "%s{\"name\": \"k%d\", \"source\": \"x\", "
                                    "\"entry\": \"k\", " GB "}",
                                    i ? ", " : "", pass && i == 577 ? 123 : i);
        snprintf(doc + len, cap - len, "]}");
        int rc = load(doc, &specs, &n, err);
        if (pass == 0) {
            assert_int_equal(rc, KC_OK);
            assert_int_equal(n, COUNT);
            assert_string_equal(specs[577]->s.name, "k577");
            kc__spec_free_array(specs, n);
        } else {
            assert_int_equal(rc, KC_ESPEC);
            assert_contains(err, "specs.json: kernels[577] 'k123': name: also used by "
                                 "kernels[123]");
            assert_null(specs);
            assert_int_equal(n, 0);
        }
    }
    free(doc);
}

static void test_file_references_need_a_base_dir(void **state)
{
    (void)state;
    const char json[] =
        "{\"version\": 1, \"kernels\": [{\"name\": \"k\", \"source_file\": "
        "\"/etc/passwd\", \"entry\": \"k\", " GB "}]}";
    kc__spec_t **specs;
    size_t n;
    char err[ERRCAP];
    assert_int_equal(kc__spec_load_json_mem(json, strlen(json), "mem.json", NULL, &specs,
                                            &n, err, sizeof(err)),
                     KC_ESPEC);
    assert_contains(err, "mem.json: kernels[0] 'k': source_file: file references are not "
                         "allowed");
}

static void test_missing_and_oversized_files_are_refused(void **state)
{
    (void)state;
    kc__spec_t **specs;
    size_t n;
    char err[ERRCAP], path[700];

    snprintf(path, sizeof(path), "%s/nope.json", tmpdir);
    assert_int_equal(kc__spec_load_json(path, &specs, &n, err, sizeof(err)), KC_EIO);
    assert_contains(err, "nope.json");

    snprintf(path, sizeof(path), "%s/big.json", tmpdir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(ftruncate(fileno(f), (off_t)KC__SPEC_FILE_MAX + 1), 0);
    fclose(f);
    assert_int_equal(kc__spec_load_json(path, &specs, &n, err, sizeof(err)), KC_ETOOBIG);
    assert_contains(err, "larger than 16 MiB");
    assert_null(specs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_operators_follow_c_precedence_and_associativity),
        cmocka_unit_test(test_comparisons_and_logic_give_zero_or_one),
        cmocka_unit_test(test_cdiv_rounds_up_and_is_exact_for_negatives),
        cmocka_unit_test(test_min_max_dim_and_numel_evaluate),
        cmocka_unit_test(test_dim_beyond_the_rank_fails_at_eval),
        cmocka_unit_test(test_overflow_and_division_by_zero_fail_at_eval),
        cmocka_unit_test(test_numel_overflow_fails_at_eval),
        cmocka_unit_test(test_parse_errors_report_the_column),
        cmocka_unit_test(test_unknown_names_are_named_with_a_suggestion),
        cmocka_unit_test(test_misused_names_give_clear_errors),
        cmocka_unit_test(test_nesting_deeper_than_the_limit_is_rejected),
        cmocka_unit_test(test_uses_beyond_tells_parameters_from_arguments),
        cmocka_unit_test(test_encoding_ignores_spacing_but_not_meaning),
        cmocka_unit_test(test_a_valid_spec_is_copied_with_defaults_and_slots),
        cmocka_unit_test(test_each_bad_spec_names_the_field),
        cmocka_unit_test(test_an_oversized_space_is_refused_before_enumerating),
        cmocka_unit_test(test_candidates_are_the_filtered_product_in_spec_order),
        cmocka_unit_test(test_digests_track_exactly_what_changed),
        cmocka_unit_test(test_geometry_evaluates_for_a_candidate),
        cmocka_unit_test(test_geometry_out_of_range_or_faulting_is_an_error),
        cmocka_unit_test(test_a_json_file_matches_the_equivalent_c_specs),
        cmocka_unit_test(test_header_files_resolve_beside_the_spec_file),
        cmocka_unit_test(test_each_json_error_names_file_kernel_and_field),
        cmocka_unit_test(test_many_kernels_and_a_late_repeated_name),
        cmocka_unit_test(test_file_references_need_a_base_dir),
        cmocka_unit_test(test_missing_and_oversized_files_are_refused),
    };
    return cmocka_run_group_tests(tests, make_tmpdir, remove_tmpdir);
}
