/* The simulation kernels and fixtures of kc_simkernels.h: one definition,
 * in the test library kc_test_sim that every launcher test links. */
#include "kc_simkernels.h"

#include <pthread.h>

const char kcs_vadd_src[] = "extern \"C\" __global__ void vadd(const float *a, const "
                            "float *b, float *out, int n)\n"
                            "{\n"
                            "    int i = blockIdx.x * BLOCK + threadIdx.x;\n"
                            "    if (i < n)\n"
                            "        out[i] = a[i] + b[i];\n"
                            "}\n";

const char kcs_inc_src[] = "extern \"C\" __global__ void inc(float *x, int n)\n"
                           "{\n"
                           "    int i = blockIdx.x * BLOCK + threadIdx.x;\n"
                           "    if (i < n)\n"
                           "        x[i] += 1.0f;\n"
                           "}\n";

const kc_arg_spec_t kcs_vadd_args[] = {
    {"a", KC_ARG_POINTER, KC_DTYPE_F32, KC_ACCESS_IN, 0},
    {"b", KC_ARG_POINTER, KC_DTYPE_F32, KC_ACCESS_IN, 0},
    {"out", KC_ARG_POINTER, KC_DTYPE_F32, KC_ACCESS_OUT, 0},
    {"n", KC_ARG_SCALAR, KC_DTYPE_I32, 0, 0},
};

const kc_arg_spec_t kcs_inc_args[] = {
    {"x", KC_ARG_POINTER, KC_DTYPE_F32, KC_ACCESS_INOUT, 0},
    {"n", KC_ARG_SCALAR, KC_DTYPE_I32, 0, 0},
};

void kcs_for_each_thread(const kc_sim_launch_t *l, int n,
                         void (*body)(int, void *const *), void *const *params)
{
    for (unsigned b = 0; b < l->grid[0]; b++)
        for (unsigned t = 0; t < l->block[0]; t++) {
            long i = (long)b * l->block[0] + t;
            if (i < n)
                body((int)i, params);
        }
}

void kcs_vadd_body(int i, void *const *p)
{
    const float *a = KCS_PARAM_PTR(p[0]), *b = KCS_PARAM_PTR(p[1]);
    float *out = KCS_PARAM_PTR(p[2]);
    out[i] = a[i] + b[i];
}

void kcs_inc_body(int i, void *const *p)
{
    float *x = KCS_PARAM_PTR(p[0]);
    x[i] += 1.0f;
}

int kcs_check_behaviour(void *user, const kc_sim_launch_t *l)
{
    const kcs_behaviour_t *bh = user;
    if (bh && bh->sticky_block && l->block[0] == bh->sticky_block)
        return KC_ESTICKY;
    if (bh && bh->fail_block && l->block[0] == bh->fail_block)
        return 1;
    return 0;
}

int kcs_sim_vadd(void *user, const kc_sim_launch_t *l)
{
    int rc = kcs_check_behaviour(user, l);
    if (rc == 0)
        kcs_for_each_thread(l, KCS_PARAM_I32(l->params[3]), kcs_vadd_body, l->params);
    return rc;
}

int kcs_sim_inc(void *user, const kc_sim_launch_t *l)
{
    int rc = kcs_check_behaviour(user, l);
    if (rc == 0)
        kcs_for_each_thread(l, KCS_PARAM_I32(l->params[1]), kcs_inc_body, l->params);
    return rc;
}

uint64_t kcs_cost_256(void *user, const kc_sim_launch_t *l)
{
    (void)user;
    long d = (long)l->block[0] - 256;
    return (uint64_t)(d < 0 ? -d : d) + 1000;
}

uint64_t kcs_cost_linear(void *user, const kc_sim_launch_t *l)
{
    (void)user;
    return 1000 + l->block[0];
}

float *kcs_falloc(size_t bytes)
{
    return aligned_alloc(64, (bytes + 63) / 64 * 64);
}

int kcs_vecs_try_init(kcs_vecs_t *v, int n)
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

void kcs_vecs_init(kcs_vecs_t *v, int n)
{
    assert_int_equal(kcs_vecs_try_init(v, n), 0);
}

int kcs_vecs_first_wrong(const kcs_vecs_t *v)
{
    for (int i = 0; i < v->n; i++)
        if (v->out[i] != (float)(3 * i + 1))
            return i;
    return -1;
}

int kcs_vecs_ok(const kcs_vecs_t *v)
{
    return kcs_vecs_first_wrong(v) < 0;
}

void kcs_vecs_check(const kcs_vecs_t *v)
{
    int i = kcs_vecs_first_wrong(v);
    if (i >= 0)
        fail_msg("out[%d] = %g, expected %d", i, v->out[i], 3 * i + 1);
}

void kcs_vecs_free(kcs_vecs_t *v)
{
    free(v->a);
    free(v->b);
    free(v->out);
}

kc_kernel_spec_t kcs_vadd_spec(const char *name, const kc_param_spec_t *params)
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

kc_kernel_spec_t kcs_inc_like_spec(const char *name, const char *src, const char *entry,
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

kc_kernel_spec_t kcs_inc_spec(const char *name, const kc_param_spec_t *params)
{
    return kcs_inc_like_spec(name, kcs_inc_src, "inc", params);
}

kcs_inc_run_t kcs_run_inc(const char *store_dir, const char *name,
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

/* The launcher logs from its pool threads too. */
static pthread_mutex_t g_log_mu = PTHREAD_MUTEX_INITIALIZER;

void kcs_capture_log(void *user, kc_log_level_t level, const char *msg)
{
    kcs_fx_t *f = user;
    (void)level;
    pthread_mutex_lock(&g_log_mu);
    size_t len = strlen(f->log);
    snprintf(f->log + len, sizeof(f->log) - len, "%s\n", msg);
    pthread_mutex_unlock(&g_log_mu);
}

void kcs_new_sim(kcs_fx_t *f, const kc_sim_opts_t *opts)
{
    /* A launcher must go before its sim: its modules are the sim's. */
    kc_launcher_destroy(f->l);
    f->l = NULL;
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

kc_launcher_opts_t kcs_sim_opts(kcs_fx_t *f)
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

void kcs_new_launcher(kcs_fx_t *f)
{
    kc_launcher_opts_t o = kcs_sim_opts(f);
    kc_launcher_destroy(f->l);
    f->l = NULL;
    assert_int_equal(kc_launcher_create(&o, &f->l), KC_OK);
}

int kcs_fx_setup(void **state, const char *tag, int with_inc)
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

int kcs_fx_teardown(void **state)
{
    kcs_fx_t *f = *state;
    kc_launcher_destroy(f->l);
    kc_sim_destroy(f->sim);
    kct_rmrf(f->dir);
    free(f);
    return 0;
}
