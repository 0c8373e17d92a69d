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

/* One launch of inc on n zeros as a fresh process; fill *st with the
 * launcher's totals. 0, or a failure code. */
static int run_inc(const char *store_dir, int n, kc_kernel_stats_t *st)
{
    kcs_inc_run_t r = kcs_run_inc(store_dir, "layers.inc", params, n);
    *st = r.st;
    if (r.rc == -1)
        return 1;
    if (r.rc != KC_OK || r.wait_rc != KC_OK)
        return 2;
    return r.all_ones ? 0 : 3;
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
    kc_store_opts_t ro = {.size = sizeof(kc_store_opts_t), .flags = KC_STORE_RDONLY};
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
