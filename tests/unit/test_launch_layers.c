/* The launcher over layered stores: a read-only layer (a store baked into
 * an image, in a directory this user cannot write) serves hits and stored
 * builds, while new tunings are published to the writable layer on top.
 * Simulation device, real NVRTC cubins. */
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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
    s.name = "layers.inc";
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

/* Run one launch of inc on n zeros through a new sim and launcher on
 * store_dir; fill *st with the launcher's totals. 0, or a failure code. */
static int run_inc(const char *store_dir, int n, kc_kernel_stats_t *st)
{
    kc_sim_t *sim = NULL;
    kc_launcher_t *l = NULL;
    kc_kernel_t *k = NULL;
    kc_kernel_spec_t spec = inc_spec();
    float *x = calloc((size_t)n, sizeof(float));
    int64_t dims[1] = {n};
    kc_arg_t a[2] = {{.ptr = (uint64_t)(uintptr_t)x, .rank = 1, .dims = dims},
                     {.value.i = n}};
    int rc = 1;

    if (!x || kc_sim_create(NULL, &sim) != KC_OK ||
        kc_sim_register(sim, "inc", kcs_sim_inc, kcs_cost_256, NULL) != KC_OK)
        goto out;
    kc_launcher_opts_t o = {.device = KC_DEVICE_SIM, .sim = sim, .store_dir = store_dir};
    o.budget_ms = 0.01;
    o.min_reps = 3;
    o.max_reps = 5;
    if (kc_launcher_create(&o, &l) != KC_OK)
        goto out;
    rc = 2;
    if (kc_kernel_get(l, &spec, &k) != KC_OK ||
        kc_kernel_launch(k, NULL, a, 2) != KC_OK || kc_kernel_wait_compiled(k) != KC_OK)
        goto out;
    rc = 3;
    for (int i = 0; i < n; i++)
        if (x[i] != 1.0f)
            goto out;
    kc_launcher_stats(l, st);
    rc = 0;
out:
    kc_launcher_destroy(l);
    kc_sim_destroy(sim);
    free(x);
    return rc;
}

static int chmod_ro(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)ftw;
    return chmod(path, flag == FTW_D || flag == FTW_DP ? 0555 : 0444);
}

static uint64_t tunings_in(const char *dir)
{
    kc_store_t *st = NULL;
    kc_store_stats_t s;
    kc_store_opts_t ro = {.flags = KC_STORE_RDONLY};
    assert_int_equal(kc_store_open(dir, &ro, &st), KC_OK);
    assert_int_equal(kc_store_stats(st, &s), KC_OK);
    kc_store_close(st);
    return s.records[KC_REC_TUNING];
}

/* In a child without root: hits from the image layer, new tunings above. */
static int image_user(const char *path)
{
    kc_kernel_stats_t st = {0};
    if (setgid(65534) != 0 || setuid(65534) != 0)
        return 10;
    /* The signature the image was tuned for: a store hit, nothing built. */
    if (run_inc(path, 1000, &st) != 0)
        return 11;
    if (st.store_hits != 1 || st.compiles != 0 || st.tunes != 0)
        return 12;
    /* A new signature tunes, reusing the image's builds, and publishes. */
    memset(&st, 0, sizeof(st));
    if (run_inc(path, 4096, &st) != 0)
        return 13;
    if (st.tunes != 1 || st.compiles != 0 || st.builds_reused != 4 || st.publishes != 1) {
        fprintf(stderr, "tunes %llu compiles %llu reused %llu publishes %llu\n",
                (unsigned long long)st.tunes, (unsigned long long)st.compiles,
                (unsigned long long)st.builds_reused, (unsigned long long)st.publishes);
        return 14;
    }
    /* Which, in a new process, is a hit from the upper layer. */
    memset(&st, 0, sizeof(st));
    if (run_inc(path, 4096, &st) != 0 || st.store_hits != 1 || st.tunes != 0)
        return 15;
    return 0;
}

static void test_image_layer_serves_hits_and_builds_while_tunings_go_above(void **state)
{
    (void)state;
    const char *base = getenv("KC_TEST_TMP");
    char root[512], lower[600], upper[600], path[1300];
    kc_kernel_stats_t st = {0};
    int status;

    if (!base || !*base)
        base = "/tmp";
    mkdir(base, 0755);
    snprintf(root, sizeof(root), "%s/test_launch_layers.XXXXXX", base);
    assert_non_null(mkdtemp(root));
    assert_int_equal(chmod(root, 0755), 0);
    snprintf(lower, sizeof(lower), "%s/image", root);
    snprintf(upper, sizeof(upper), "%s/user", root);

    /* The image build step: tune once into the image's store. */
    assert_int_equal(run_inc(lower, 1000, &st), 0);
    assert_int_equal(st.tunes, 1);
    assert_int_equal(nftw(lower, chmod_ro, 16, FTW_PHYS), 0);
    assert_int_equal(mkdir(upper, 0777), 0);
    assert_int_equal(chmod(upper, 0777), 0);

    snprintf(path, sizeof(path), "%s:%s", upper, lower);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(image_user(path));
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_int_equal(tunings_in(lower), 1); /* the image is untouched */
    assert_int_equal(tunings_in(upper), 1); /* the new tuning went above */
    kct_rmtree(root, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_image_layer_serves_hits_and_builds_while_tunings_go_above),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
