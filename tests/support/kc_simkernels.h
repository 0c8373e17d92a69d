/* Kernels and fixtures shared by the launcher tests on the simulation
 * device: CUDA C sources for NVRTC, the C functions the sim runs in their
 * place (they really compute, so results can be checked element by
 * element), cost models, argument specs, vector arguments, and a fixture
 * holding a scratch store directory, a sim and a launcher.
 *
 * Header-only (static inline) because it needs the launcher's headers and
 * cmocka, and the support library (tests/support, .c files) links the
 * store only. Include it only from test_launch_* tests.
 */
#ifndef KC_TEST_KC_SIMKERNELS_H
#define KC_TEST_KC_SIMKERNELS_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kc_testutil.h"
#include "kcache/launch.h"
#include "kcache/sim.h"

/* ---- kernels: CUDA C for NVRTC, C functions for the sim ----------------- */

static const char kcs_vadd_src[] =
    "extern \"C\" __global__ void vadd(const float *a, const "
    "float *b, float *out, int n)\n"
    "{\n"
    "    int i = blockIdx.x * BLOCK + threadIdx.x;\n"
    "    if (i < n)\n"
    "        out[i] = a[i] + b[i];\n"
    "}\n";

static const char kcs_inc_src[] = "extern \"C\" __global__ void inc(float *x, int n)\n"
                                  "{\n"
                                  "    int i = blockIdx.x * BLOCK + threadIdx.x;\n"
                                  "    if (i < n)\n"
                                  "        x[i] += 1.0f;\n"
                                  "}\n";

static const kc_arg_spec_t kcs_vadd_args[] = {
    {"a", KC_ARG_POINTER, KC_DTYPE_F32, KC_ACCESS_IN, 0},
    {"b", KC_ARG_POINTER, KC_DTYPE_F32, KC_ACCESS_IN, 0},
    {"out", KC_ARG_POINTER, KC_DTYPE_F32, KC_ACCESS_OUT, 0},
    {"n", KC_ARG_SCALAR, KC_DTYPE_I32, 0, 0},
};
static const kc_arg_spec_t kcs_inc_args[] = {
    {"x", KC_ARG_POINTER, KC_DTYPE_F32, KC_ACCESS_INOUT, 0},
    {"n", KC_ARG_SCALAR, KC_DTYPE_I32, 0, 0},
};

#define KCS_PARAM_PTR(p) ((void *)(uintptr_t) * (const uint64_t *)(p))
#define KCS_PARAM_I32(p) (*(const int32_t *)(p))

/* What the sim functions do besides computing, per test: their user
 * pointer, or NULL to always compute. */
typedef struct kcs_behaviour {
    unsigned fail_block;   /* launches with this block size report a failure */
    unsigned sticky_block; /* ... or an illegal address */
} kcs_behaviour_t;

static inline void kcs_for_each_thread(const kc_sim_launch_t *l, int n,
                                       void (*body)(int, void *const *),
                                       void *const *params)
{
    for (unsigned b = 0; b < l->grid[0]; b++)
        for (unsigned t = 0; t < l->block[0]; t++) {
            long i = (long)b * l->block[0] + t;
            if (i < n)
                body((int)i, params);
        }
}

static inline void kcs_vadd_body(int i, void *const *p)
{
    const float *a = KCS_PARAM_PTR(p[0]), *b = KCS_PARAM_PTR(p[1]);
    float *out = KCS_PARAM_PTR(p[2]);
    out[i] = a[i] + b[i];
}

static inline void kcs_inc_body(int i, void *const *p)
{
    float *x = KCS_PARAM_PTR(p[0]);
    x[i] += 1.0f;
}

static inline int kcs_check_behaviour(void *user, const kc_sim_launch_t *l)
{
    const kcs_behaviour_t *bh = user;
    if (bh && bh->sticky_block && l->block[0] == bh->sticky_block)
        return KC_ESTICKY;
    if (bh && bh->fail_block && l->block[0] == bh->fail_block)
        return 1;
    return 0;
}

/* vadd(a, b, out, n); user is a kcs_behaviour_t or NULL. */
static inline int kcs_sim_vadd(void *user, const kc_sim_launch_t *l)
{
    int rc = kcs_check_behaviour(user, l);
    if (rc == 0)
        kcs_for_each_thread(l, KCS_PARAM_I32(l->params[3]), kcs_vadd_body, l->params);
    return rc;
}

/* inc(x, n); user is a kcs_behaviour_t or NULL. */
static inline int kcs_sim_inc(void *user, const kc_sim_launch_t *l)
{
    int rc = kcs_check_behaviour(user, l);
    if (rc == 0)
        kcs_for_each_thread(l, KCS_PARAM_I32(l->params[1]), kcs_inc_body, l->params);
    return rc;
}

/* BLOCK = 256 is fastest; the rest are slower by their distance from it. */
static inline uint64_t kcs_cost_256(void *user, const kc_sim_launch_t *l)
{
    (void)user;
    long d = (long)l->block[0] - 256;
    return (uint64_t)(d < 0 ? -d : d) + 1000;
}

/* The smallest block is fastest. */
static inline uint64_t kcs_cost_linear(void *user, const kc_sim_launch_t *l)
{
    (void)user;
    return 1000 + l->block[0];
}

/* ---- vadd's arguments ------------------------------------------------------ */

/* 64-byte aligned floats, so every buffer has the same signature. */
static inline float *kcs_falloc(size_t bytes)
{
    return aligned_alloc(64, (bytes + 63) / 64 * 64);
}

/* a[i] = i, b[i] = 2i + 1, out[i] = -1: vadd makes out[i] = 3i + 1. */
typedef struct kcs_vecs {
    int n;
    int64_t dims[1];
    float *a, *b, *out;
    kc_arg_t args[4];
} kcs_vecs_t;

/* Returns 0, or -1 if out of memory. Asserts nothing, so that child
 * processes can use it. */
static inline int kcs_vecs_try_init(kcs_vecs_t *v, int n)
{
    v->n = n;
    v->dims[0] = n;
    v->a = kcs_falloc((size_t)n * sizeof(float) + 64);
    v->b = kcs_falloc((size_t)n * sizeof(float) + 64);
    v->out = kcs_falloc((size_t)n * sizeof(float) + 64);
    if (!v->a || !v->b || !v->out)
        return -1;
    for (int i = 0; i < n; i++) {
        v->a[i] = (float)i;
        v->b[i] = (float)(2 * i + 1);
        v->out[i] = -1.f;
    }
    memset(v->args, 0, sizeof(v->args));
    v->args[0] = (kc_arg_t){.ptr = (uint64_t)(uintptr_t)v->a, .rank = 1, .dims = v->dims};
    v->args[1] = (kc_arg_t){.ptr = (uint64_t)(uintptr_t)v->b, .rank = 1, .dims = v->dims};
    v->args[2] =
        (kc_arg_t){.ptr = (uint64_t)(uintptr_t)v->out, .rank = 1, .dims = v->dims};
    v->args[3].value.i = n;
    return 0;
}

static inline void kcs_vecs_init(kcs_vecs_t *v, int n)
{
    assert_int_equal(kcs_vecs_try_init(v, n), 0);
}

/* The first index whose out is not 3i + 1, or -1 if all are. */
static inline int kcs_vecs_first_wrong(const kcs_vecs_t *v)
{
    for (int i = 0; i < v->n; i++)
        if (v->out[i] != (float)(3 * i + 1))
            return i;
    return -1;
}

static inline int kcs_vecs_ok(const kcs_vecs_t *v)
{
    return kcs_vecs_first_wrong(v) < 0;
}

static inline void kcs_vecs_check(const kcs_vecs_t *v)
{
    int i = kcs_vecs_first_wrong(v);
    if (i >= 0)
        fail_msg("out[%d] = %g, expected %d", i, v->out[i], 3 * i + 1);
}

static inline void kcs_vecs_free(kcs_vecs_t *v)
{
    free(v->a);
    free(v->b);
    free(v->out);
}

/* ---- inc as a whole process would run it ----------------------------------- */

/* One-parameter (BLOCK) specs of the kernels above, grid cdiv(n, BLOCK):
 * vadd(a, b, out, n), and inc(x, n) or another kernel of inc's arguments
 * (source src, entry entry). */
static inline kc_kernel_spec_t kcs_vadd_spec(const char *name,
                                             const kc_param_spec_t *params)
{
    return (kc_kernel_spec_t){.name = name,
                              .source_kind = KC_SOURCE_CUDA,
                              .source = kcs_vadd_src,
                              .entry = "vadd",
                              .params = params,
                              .n_params = 1,
                              .args = kcs_vadd_args,
                              .n_args = 4,
                              .grid = {"cdiv(n, BLOCK)"},
                              .block = {"BLOCK"}};
}

static inline kc_kernel_spec_t kcs_inc_like_spec(const char *name, const char *src,
                                                 const char *entry,
                                                 const kc_param_spec_t *params)
{
    return (kc_kernel_spec_t){.name = name,
                              .source_kind = KC_SOURCE_CUDA,
                              .source = src,
                              .entry = entry,
                              .params = params,
                              .n_params = 1,
                              .args = kcs_inc_args,
                              .n_args = 2,
                              .grid = {"cdiv(n, BLOCK)"},
                              .block = {"BLOCK"}};
}

static inline kc_kernel_spec_t kcs_inc_spec(const char *name,
                                            const kc_param_spec_t *params)
{
    return kcs_inc_like_spec(name, kcs_inc_src, "inc", params);
}

typedef struct kcs_inc_run {
    int rc;               /* of kc_kernel_launch (-1: no launcher) */
    int wait_rc;          /* of kc_kernel_wait_compiled after it */
    char errmsg[1024];    /* kc_launcher_errmsg after the launch */
    int all_ones;         /* every x[i] became 1 */
    kc_kernel_stats_t st; /* the launcher's totals */
} kcs_inc_run_t;

/* One launch of inc on n zeros through a new sim and launcher on store_dir
 * (a directory or a layer list), as a fresh process would do it. Asserts
 * nothing, so that child processes can use it. */
static inline kcs_inc_run_t kcs_run_inc(const char *store_dir, const char *name,
                                        const kc_param_spec_t *params, int n)
{
    kcs_inc_run_t r = {.rc = -1, .wait_rc = -1};
    kc_sim_t *sim = NULL;
    kc_launcher_t *l = NULL;
    kc_kernel_t *k = NULL;
    kc_kernel_spec_t spec = kcs_inc_spec(name, params);
    float *x = calloc((size_t)n, sizeof(float));
    int64_t dims[1] = {n};
    kc_arg_t a[2] = {{.ptr = (uint64_t)(uintptr_t)x, .rank = 1, .dims = dims},
                     {.value.i = n}};

    if (!x || kc_sim_create(NULL, &sim) != KC_OK ||
        kc_sim_register(sim, "inc", kcs_sim_inc, kcs_cost_256, NULL) != KC_OK)
        goto out;
    kc_launcher_opts_t o = {.size = sizeof(kc_launcher_opts_t),
                            .device = KC_DEVICE_SIM,
                            .sim = sim,
                            .store_dir = store_dir};
    o.budget_ms = 0.01;
    o.min_reps = 3;
    o.max_reps = 5;
    if (kc_launcher_create(&o, &l) != KC_OK || kc_kernel_get(l, &spec, &k) != KC_OK)
        goto out;
    r.rc = kc_kernel_launch(k, NULL, a, 2);
    snprintf(r.errmsg, sizeof(r.errmsg), "%s", kc_launcher_errmsg(l));
    r.wait_rc = kc_kernel_wait_compiled(k);
    r.all_ones = 1;
    for (int i = 0; i < n; i++)
        if (x[i] != 1.0f)
            r.all_ones = 0;
    kc_launcher_stats(l, &r.st);
out:
    kc_launcher_destroy(l);
    kc_sim_destroy(sim);
    free(x);
    return r;
}

/* ---- fixture: a store directory, a sim and a launcher on it --------------- */

typedef struct kcs_fx {
    char dir[512];
    kc_sim_t *sim;
    kc_launcher_t *l;
    kcs_behaviour_t bh;
    char log[4096];
    int with_inc; /* register inc and flaky (inc's C function) beside vadd */
} kcs_fx_t;

static inline void kcs_capture_log(void *user, kc_log_level_t level, const char *msg)
{
    kcs_fx_t *f = user;
    (void)level;
    size_t len = strlen(f->log);
    snprintf(f->log + len, sizeof(f->log) - len, "%s\n", msg);
}

static inline void kcs_new_sim(kcs_fx_t *f, const kc_sim_opts_t *opts)
{
    kc_sim_destroy(f->sim);
    assert_int_equal(kc_sim_create(opts, &f->sim), KC_OK);
    assert_int_equal(kc_sim_register(f->sim, "vadd", kcs_sim_vadd, kcs_cost_256, &f->bh),
                     KC_OK);
    if (!f->with_inc)
        return;
    assert_int_equal(kc_sim_register(f->sim, "inc", kcs_sim_inc, kcs_cost_256, &f->bh),
                     KC_OK);
    assert_int_equal(kc_sim_register(f->sim, "flaky", kcs_sim_inc, kcs_cost_256, &f->bh),
                     KC_OK);
}

static inline kc_launcher_opts_t kcs_sim_opts(kcs_fx_t *f)
{
    kc_launcher_opts_t o = KC_LAUNCHER_OPTS_INIT;
    o.device = KC_DEVICE_SIM;
    o.sim = f->sim;
    o.store_dir = f->dir;
    o.budget_ms = 0.01; /* the sim's clock: a few microseconds per run */
    o.min_reps = 3;
    o.max_reps = 10;
    o.log = kcs_capture_log;
    o.log_user = f;
    o.log_level = KC_LOG_DEBUG;
    return o;
}

static inline void kcs_new_launcher(kcs_fx_t *f)
{
    kc_launcher_opts_t o = kcs_sim_opts(f);
    kc_launcher_destroy(f->l);
    f->l = NULL;
    assert_int_equal(kc_launcher_create(&o, &f->l), KC_OK);
}

/* A cmocka setup: a scratch directory tag.XXXXXX, a sim with vadd (and, with
 * with_inc, inc and flaky) and a launcher, into *state. */
static inline int kcs_fx_setup(void **state, const char *tag, int with_inc)
{
    kcs_fx_t *f = calloc(1, sizeof(*f));
    if (!f || kct_tmpdir(tag, f->dir, sizeof(f->dir)) != 0)
        return -1;
    f->with_inc = with_inc;
    kcs_new_sim(f, NULL);
    kcs_new_launcher(f);
    *state = f;
    return 0;
}

static inline int kcs_fx_teardown(void **state)
{
    kcs_fx_t *f = *state;
    kc_launcher_destroy(f->l);
    kc_sim_destroy(f->sim);
    kct_rmrf(f->dir);
    free(f);
    return 0;
}

#endif
