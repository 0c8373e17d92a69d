/* The launcher's persistent counters on the simulation device, with real
 * NVRTC-compiled cubins and a real store: a miss is counted by its reason
 * (no tuning stored, or a tuning whose build is unusable), and a store hit
 * adds the compile and tuning time it saved. */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <jansson.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kcache/launch.h"
#include "kcache/record.h"
#include "kcache/sim.h"
#include "kcache/store.h"

/* ---- kernels: CUDA C for NVRTC, C functions for the sim ----------------- */

static const char vadd_src[] = "extern \"C\" __global__ void vadd(const float *a, const "
                               "float *b, float *out, int n)\n"
                               "{\n"
                               "    int i = blockIdx.x * BLOCK + threadIdx.x;\n"
                               "    if (i < n)\n"
                               "        out[i] = a[i] + b[i];\n"
                               "}\n";

#define PARAM_PTR(p) ((void *)(uintptr_t) * (const uint64_t *)(p))
#define PARAM_I32(p) (*(const int32_t *)(p))

/* What the sim functions do besides computing, per test. */
typedef struct behaviour {
    unsigned fail_block;   /* launches with this block size report a failure */
    unsigned sticky_block; /* ... or an illegal address */
} behaviour_t;

static void for_each_thread(const kc_sim_launch_t *l, int n,
                            void (*body)(int, void *const *), void *const *params)
{
    for (unsigned b = 0; b < l->grid[0]; b++)
        for (unsigned t = 0; t < l->block[0]; t++) {
            long i = (long)b * l->block[0] + t;
            if (i < n)
                body((int)i, params);
        }
}

static void vadd_body(int i, void *const *p)
{
    const float *a = PARAM_PTR(p[0]), *b = PARAM_PTR(p[1]);
    float *out = PARAM_PTR(p[2]);
    out[i] = a[i] + b[i];
}

static int check_behaviour(void *user, const kc_sim_launch_t *l)
{
    const behaviour_t *bh = user;
    if (bh && bh->sticky_block && l->block[0] == bh->sticky_block)
        return KC_ESTICKY;
    if (bh && bh->fail_block && l->block[0] == bh->fail_block)
        return 1;
    return 0;
}

static int sim_vadd(void *user, const kc_sim_launch_t *l)
{
    int rc = check_behaviour(user, l);
    if (rc == 0)
        for_each_thread(l, PARAM_I32(l->params[3]), vadd_body, l->params);
    return rc;
}

/* BLOCK = 256 is fastest; the rest are slower by their distance from it. */
static uint64_t cost_256(void *user, const kc_sim_launch_t *l)
{
    (void)user;
    long d = (long)l->block[0] - 256;
    return (uint64_t)(d < 0 ? -d : d) + 1000;
}

/* ---- specs --------------------------------------------------------------- */

static const int64_t blocks5[] = {64, 128, 256, 512, 1024};
static const kc_param_spec_t block_param5[] = {{"BLOCK", blocks5, 5}};

static const kc_arg_spec_t vadd_args[] = {
    {"a", KC_ARG_POINTER, KC_DTYPE_F32, KC_ACCESS_IN, 0},
    {"b", KC_ARG_POINTER, KC_DTYPE_F32, KC_ACCESS_IN, 0},
    {"out", KC_ARG_POINTER, KC_DTYPE_F32, KC_ACCESS_OUT, 0},
    {"n", KC_ARG_SCALAR, KC_DTYPE_I32, 0, 0},
};

static kc_kernel_spec_t vadd_spec(void)
{
    return (kc_kernel_spec_t){.name = "test.vadd",
                              .source_kind = KC_SOURCE_CUDA,
                              .source = vadd_src,
                              .entry = "vadd",
                              .params = block_param5,
                              .n_params = 1,
                              .args = vadd_args,
                              .n_args = 4,
                              .grid = {"cdiv(n, BLOCK)"},
                              .block = {"BLOCK"}};
}

/* ---- fixture ------------------------------------------------------------- */

typedef struct fx {
    char dir[512];
    kc_sim_t *sim;
    kc_launcher_t *l;
    behaviour_t bh;
    char log[4096];
} fx_t;

static void capture_log(void *user, kc_log_level_t level, const char *msg)
{
    fx_t *f = user;
    (void)level;
    size_t len = strlen(f->log);
    snprintf(f->log + len, sizeof(f->log) - len, "%s\n", msg);
}

static int make_dir(fx_t *f)
{
    const char *base = getenv("KC_TEST_TMP");
    char tmpl[512];

    if (!base || !base[0])
        base = "/tmp";
    snprintf(tmpl, sizeof(tmpl), "%s", base);
    /* KC_TEST_TMP may not exist yet: create it and its parents. */
    for (char *p = tmpl + 1; *p; p++)
        if (*p == '/') {
            *p = '\0';
            (void)!mkdir(tmpl, 0755);
            *p = '/';
        }
    (void)!mkdir(tmpl, 0755);
    if ((size_t)snprintf(f->dir, sizeof(f->dir), "%.480s/launch_counters.XXXXXX", tmpl) >=
        sizeof(f->dir))
        return -1;
    return mkdtemp(f->dir) ? 0 : -1;
}

static void new_sim(fx_t *f, const kc_sim_opts_t *opts)
{
    kc_sim_destroy(f->sim);
    assert_int_equal(kc_sim_create(opts, &f->sim), KC_OK);
    assert_int_equal(kc_sim_register(f->sim, "vadd", sim_vadd, cost_256, &f->bh), KC_OK);
}

static kc_launcher_opts_t sim_opts(fx_t *f)
{
    kc_launcher_opts_t o = {0};
    o.device = KC_DEVICE_SIM;
    o.sim = f->sim;
    o.store_dir = f->dir;
    o.budget_ms = 0.01; /* the sim's clock: a few microseconds per run */
    o.min_reps = 3;
    o.max_reps = 10;
    o.log = capture_log;
    o.log_user = f;
    o.log_level = KC_LOG_DEBUG;
    return o;
}

static void new_launcher(fx_t *f)
{
    kc_launcher_opts_t o = sim_opts(f);
    kc_launcher_destroy(f->l);
    f->l = NULL;
    assert_int_equal(kc_launcher_create(&o, &f->l), KC_OK);
}

static int setup(void **state)
{
    fx_t *f = calloc(1, sizeof(*f));
    if (!f || make_dir(f) != 0)
        return -1;
    new_sim(f, NULL);
    new_launcher(f);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx_t *f = *state;
    char cmd[600];
    kc_launcher_destroy(f->l);
    kc_sim_destroy(f->sim);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
    (void)!system(cmd);
    free(f);
    return 0;
}

/* ---- helpers ------------------------------------------------------------- */

/* 64-byte aligned floats, so every buffer has the same signature. */
static float *falloc(size_t bytes)
{
    return aligned_alloc(64, (bytes + 63) / 64 * 64);
}

typedef struct vecs {
    int n;
    int64_t dims[1];
    float *a, *b, *out;
    kc_arg_t args[4];
} vecs_t;

static void vecs_init(vecs_t *v, int n)
{
    v->n = n;
    v->dims[0] = n;
    v->a = falloc((size_t)n * sizeof(float) + 64);
    v->b = falloc((size_t)n * sizeof(float) + 64);
    v->out = falloc((size_t)n * sizeof(float) + 64);
    assert_non_null(v->a);
    assert_non_null(v->b);
    assert_non_null(v->out);
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
}

static void vecs_check(const vecs_t *v)
{
    for (int i = 0; i < v->n; i++)
        if (v->out[i] != (float)(3 * i + 1))
            fail_msg("out[%d] = %g, expected %d", i, v->out[i], 3 * i + 1);
}

static void vecs_free(vecs_t *v)
{
    free(v->a);
    free(v->b);
    free(v->out);
}

/* The single tuning record in the store (the caller frees it). */
static int grab_tuning(void *user, kc_rec_kind_t kind, const kc_key_t *key,
                       const void *data, size_t len)
{
    (void)kind;
    (void)key;
    kc_record_t **out = user;
    if (*out)
        return 2; /* more than one */
    return kc_record_decode(data, len, out) == KC_OK ? 0 : 3;
}

static kc_record_t *the_tuning(fx_t *f)
{
    kc_record_t *rec = NULL;
    assert_int_equal(
        kc_store_iterate(kc_launcher_store(f->l), KC_REC_TUNING, grab_tuning, &rec), 0);
    assert_non_null(rec);
    return rec;
}

/* The store's counters as the launcher's store handle sees them (persisted
 * plus buffered). */
static uint64_t counter(fx_t *f, kc_counter_t c)
{
    kc_store_stats_t s;
    assert_int_equal(kc_store_stats(kc_launcher_store(f->l), &s), KC_OK);
    return s.counters[c];
}

/* Launch vadd once on a fresh launcher and sim, as a new process would. */
static void launch_in_new_process(fx_t *f, int fresh)
{
    kc_kernel_spec_t spec = vadd_spec();
    kc_kernel_t *k;
    vecs_t v;

    if (fresh) {
        new_sim(f, NULL);
        new_launcher(f);
    }
    vecs_init(&v, 1000);
    assert_int_equal(kc_kernel_get(f->l, &spec, &k), KC_OK);
    assert_int_equal(kc_kernel_launch(k, NULL, v.args, 4), KC_OK);
    vecs_check(&v);
    assert_int_equal(kc_kernel_wait_compiled(k), KC_OK);
    vecs_free(&v);
}

/* ---- tests --------------------------------------------------------------- */

static void test_a_miss_without_a_stored_tuning_is_counted_as_no_tuning(void **state)
{
    fx_t *f = *state;

    launch_in_new_process(f, 0);
    assert_int_equal(counter(f, KC_COUNTER_MISSES), 1);
    assert_int_equal(counter(f, KC_COUNTER_MISS_NO_TUNING), 1);
    assert_int_equal(counter(f, KC_COUNTER_MISS_BUILD_UNUSABLE), 0);
    assert_int_equal(counter(f, KC_COUNTER_HITS), 0);
    assert_int_equal(counter(f, KC_COUNTER_COMPILE_US_SAVED), 0);
    assert_int_equal(counter(f, KC_COUNTER_TUNE_US_SAVED), 0);
}

static void test_a_store_hit_adds_the_compile_and_tuning_time_it_saved(void **state)
{
    fx_t *f = *state;
    kc_record_t *build = NULL;

    launch_in_new_process(f, 0);
    kc_record_t *t = the_tuning(f);
    assert_int_equal(kc_store_get(kc_launcher_store(f->l), KC_REC_BUILD,
                                  &t->u.tuning.winner_build, &build),
                     KC_OK);
    assert_true(t->u.tuning.tuning_us > 0);
    assert_true(build->u.build.compile_us > 0);

    launch_in_new_process(f, 1);
    assert_int_equal(counter(f, KC_COUNTER_HITS), 1);
    assert_int_equal(counter(f, KC_COUNTER_MISSES), 1);
    assert_int_equal(counter(f, KC_COUNTER_TUNE_US_SAVED), t->u.tuning.tuning_us);
    assert_int_equal(counter(f, KC_COUNTER_COMPILE_US_SAVED), build->u.build.compile_us);

    /* A third process saves as much again. */
    launch_in_new_process(f, 1);
    assert_int_equal(counter(f, KC_COUNTER_HITS), 2);
    assert_int_equal(counter(f, KC_COUNTER_TUNE_US_SAVED), 2 * t->u.tuning.tuning_us);
    kc_free(build);
    kc_free(t);
}

static void test_a_tuning_whose_build_is_gone_is_counted_as_build_unusable(void **state)
{
    fx_t *f = *state;

    launch_in_new_process(f, 0);
    kc_record_t *t = the_tuning(f);
    assert_int_equal(
        kc_store_del(kc_launcher_store(f->l), KC_REC_BUILD, &t->u.tuning.winner_build),
        KC_OK);
    kc_free(t);

    launch_in_new_process(f, 1);
    assert_int_equal(counter(f, KC_COUNTER_MISSES), 2);
    assert_int_equal(counter(f, KC_COUNTER_MISS_NO_TUNING), 1);
    assert_int_equal(counter(f, KC_COUNTER_MISS_BUILD_UNUSABLE), 1);
    assert_int_equal(counter(f, KC_COUNTER_HITS), 0);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_a_miss_without_a_stored_tuning_is_counted_as_no_tuning),
        T(test_a_store_hit_adds_the_compile_and_tuning_time_it_saved),
        T(test_a_tuning_whose_build_is_gone_is_counted_as_build_unusable),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
