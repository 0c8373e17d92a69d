/* A process without NVRTC (KCACHE_NVRTC=none: a runtime image without the
 * compiler, or a production server that must never compile) still launches
 * everything the store holds, and a launch that would need a compile fails
 * with an error that says why. Simulation device; the store is filled by a
 * child process that has NVRTC, before this process could load it (NVRTC
 * is loaded once per process). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "kc_simkernels.h"
#include "kcache/launch.h"
#include "kcache/sim.h"

static const int64_t blocks[] = {64, 128, 256, 512};
static const kc_param_spec_t params[] = {{"BLOCK", blocks, 4}};

static kc_kernel_spec_t inc_spec(void)
{
    kc_kernel_spec_t s = {0};
    s.name = "no_nvrtc.inc";
    s.source_kind = KC_SOURCE_CUDA;
    s.source = kcs_inc_src;
    s.entry = "inc";
    s.params = params;
    s.n_params = 1;
    s.args = kcs_inc_args;
    s.n_args = 2;
    s.grid[0] = "cdiv(n, BLOCK)";
    s.block[0] = "BLOCK";
    return s;
}

typedef struct run {
    int rc;               /* of kc_kernel_launch */
    char errmsg[1024];    /* kc_launcher_errmsg after it */
    int all_ones;         /* x[i] == 1 for every i */
    kc_kernel_stats_t st; /* the launcher's totals */
} run_t;

/* One launch of inc on n zeros through a new sim and launcher on dir. */
static run_t run_inc(const char *dir, int n)
{
    run_t r = {.rc = -1};
    kc_sim_t *sim = NULL;
    kc_launcher_t *l = NULL;
    kc_kernel_t *k = NULL;
    kc_kernel_spec_t spec = inc_spec();
    float *x = calloc((size_t)n, sizeof(float));
    int64_t dims[1] = {n};
    kc_arg_t a[2] = {{.ptr = (uint64_t)(uintptr_t)x, .rank = 1, .dims = dims},
                     {.value.i = n}};

    if (!x || kc_sim_create(NULL, &sim) != KC_OK ||
        kc_sim_register(sim, "inc", kcs_sim_inc, kcs_cost_256, NULL) != KC_OK)
        goto out;
    kc_launcher_opts_t o = {.device = KC_DEVICE_SIM, .sim = sim, .store_dir = dir};
    o.budget_ms = 0.01;
    o.min_reps = 3;
    o.max_reps = 5;
    o.log_level = KC_LOG_ERROR;
    if (kc_launcher_create(&o, &l) != KC_OK || kc_kernel_get(l, &spec, &k) != KC_OK)
        goto out;
    r.rc = kc_kernel_launch(k, NULL, a, 2);
    snprintf(r.errmsg, sizeof(r.errmsg), "%s", kc_launcher_errmsg(l));
    kc_kernel_wait_compiled(k);
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

static void test_without_nvrtc_stored_kernels_launch_and_misses_say_why(void **state)
{
    (void)state;
    char dir[512];
    int status;

    assert_int_equal(kct_tmpdir("test_launch_no_nvrtc", dir, sizeof(dir)), 0);
    /* With NVRTC, in a child: compile, tune and publish n = 1000. */
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        run_t r = run_inc(dir, 1000);
        _exit(r.rc == KC_OK && r.all_ones && r.st.tunes == 1 ? 0 : 1);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);

    /* This process has not loaded NVRTC yet: from now on it cannot. */
    assert_int_equal(setenv("KCACHE_NVRTC", "none", 1), 0);
    run_t hit = run_inc(dir, 1000);
    assert_int_equal(hit.rc, KC_OK);
    assert_true(hit.all_ones);
    assert_int_equal(hit.st.store_hits, 1);
    assert_int_equal(hit.st.compiles, 0);
    assert_int_equal(hit.st.tunes, 0);

    /* A new signature needs candidates this process cannot compile. */
    run_t miss = run_inc(dir, 4096);
    assert_int_not_equal(miss.rc, KC_OK);
    assert_false(miss.all_ones);
    assert_int_equal(miss.st.compiles, 0);
    if (!strstr(miss.errmsg, "KCACHE_NVRTC=none"))
        fail_msg("the error does not say why: %s", miss.errmsg);
    unsetenv("KCACHE_NVRTC");
    kct_rmtree(dir, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_without_nvrtc_stored_kernels_launch_and_misses_say_why),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
