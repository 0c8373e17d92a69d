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

static kcs_inc_run_t run_inc(const char *dir, int n)
{
    return kcs_run_inc(dir, "no_nvrtc.inc", params, n);
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
        kcs_inc_run_t r = run_inc(dir, 1000);
        _exit(r.rc == KC_OK && r.all_ones && r.st.tunes == 1 ? 0 : 1);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);

    /* This process has not loaded NVRTC yet: from now on it cannot. */
    assert_int_equal(setenv("KCACHE_NVRTC", "none", 1), 0);
    kcs_inc_run_t hit = run_inc(dir, 1000);
    assert_int_equal(hit.rc, KC_OK);
    assert_true(hit.all_ones);
    assert_int_equal(hit.st.store_hits, 1);
    assert_int_equal(hit.st.compiles, 0);
    assert_int_equal(hit.st.tunes, 0);

    /* A new signature needs candidates this process cannot compile. */
    kcs_inc_run_t miss = run_inc(dir, 4096);
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
