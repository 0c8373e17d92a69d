/* Single flight across machines: 16 processes, each with its own empty
 * store (its own "machine"), one redis-server, start the same kernel at the
 * same instant, for three signatures in turn, on the simulation device with
 * real NVRTC cubins. Each signature is tuned exactly once in total: one
 * process takes its remote lease and tunes, the others wait for its tuning
 * and pull it. Counted from the processes' own statistics and from their
 * stores' counters and records. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kc_redis.h"
#include "kc_simkernels.h"
#include "kcache/launch.h"
#include "kcache/store.h"

#define N_PROCS 16
#define N_SIGS 3

static const int64_t blocks[] = {64, 128, 256, 512};
static const kc_param_spec_t params[] = {{"BLOCK", blocks, 4}};
static const int sizes[N_SIGS] = {1000, 5000, 40000};

static kct_redis_t g_redis;
static char g_root[512];

typedef struct result {
    int rc[N_SIGS];
    int all_ones[N_SIGS];
    uint64_t tunes[N_SIGS], remote_hits[N_SIGS], store_hits[N_SIGS];
} result_t;

static int group_setup(void **state)
{
    (void)state;
    if (kct_tmpdir("test_remote_flight", g_root, sizeof(g_root)) != 0)
        return -1;
    return kct_redis_start(&g_redis, 0) == 0 ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    kct_redis_stop(&g_redis);
    kct_rmtree(g_root, 1);
    return 0;
}

static int read_all(int fd, void *buf, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, (char *)buf + got, n - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        got += (size_t)r;
    }
    return 0;
}

/* One machine: wait for the start, then each signature through a fresh
 * launcher on its own store; the results go back up the pipe. */
static void child(int i, int go, int out)
{
    char dir[700];
    result_t res;
    char c;

    memset(&res, 0, sizeof(res));
    snprintf(dir, sizeof(dir), "%s/m%02d", g_root, i);
    if (read_all(go, &c, 1) != 0)
        _exit(3);
    for (int s = 0; s < N_SIGS; s++) {
        kcs_inc_run_t r = kcs_run_inc(dir, "flight.inc", params, sizes[s]);
        res.rc[s] = r.rc;
        res.all_ones[s] = r.all_ones;
        res.tunes[s] = r.st.tunes;
        res.remote_hits[s] = r.st.remote_hits;
        res.store_hits[s] = r.st.store_hits;
    }
    if (write(out, &res, sizeof(res)) != (ssize_t)sizeof(res))
        _exit(4);
    _exit(0);
}

static void test_each_signature_is_tuned_once_across_16_machines(void **state)
{
    (void)state;
    int go[2], out[N_PROCS][2];
    pid_t pids[N_PROCS];
    result_t res[N_PROCS];
    uint64_t tunes[N_SIGS] = {0}, pulled[N_SIGS] = {0}, counted = 0, tunings = 0;

    setenv("KCACHE_REMOTE", g_redis.url, 1);
    setenv("KCACHE_REMOTE_PREFIX", "flight:", 1);
    /* 16 processes compiling on a small shared machine: a command may wait
     * for its process to be scheduled longer than the default 250 ms, and
     * a timeout fails open into a local tuning, which is not what this
     * test is about (test_launch_remote_faults is). */
    setenv("KCACHE_REMOTE_TIMEOUT_MS", "10000", 1);
    assert_int_equal(pipe(go), 0);
    for (int i = 0; i < N_PROCS; i++) {
        assert_int_equal(pipe(out[i]), 0);
        pids[i] = fork();
        assert_true(pids[i] >= 0);
        if (pids[i] == 0) {
            close(go[1]);
            close(out[i][0]);
            child(i, go[0], out[i][1]);
        }
        close(out[i][1]);
    }
    close(go[0]);
    /* All at once. */
    char starts[N_PROCS];
    memset(starts, 'g', sizeof(starts));
    assert_int_equal(write(go[1], starts, sizeof(starts)), (ssize_t)sizeof(starts));
    close(go[1]);

    for (int i = 0; i < N_PROCS; i++) {
        int status = 0;
        assert_int_equal(read_all(out[i][0], &res[i], sizeof(res[i])), 0);
        close(out[i][0]);
        assert_int_equal(waitpid(pids[i], &status, 0), pids[i]);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        for (int s = 0; s < N_SIGS; s++) {
            assert_int_equal(res[i].rc[s], KC_OK);
            assert_true(res[i].all_ones[s]);
            tunes[s] += res[i].tunes[s];
            pulled[s] += res[i].remote_hits[s];
        }
    }
    for (int s = 0; s < N_SIGS; s++) {
        print_message("signature %d (n=%d): %llu tuning(s), %llu remote hits\n", s,
                      sizes[s], (unsigned long long)tunes[s],
                      (unsigned long long)pulled[s]);
        assert_int_equal(tunes[s], 1);
        assert_int_equal(pulled[s], N_PROCS - 1);
    }
    /* The stores agree: 3 tunings counted in all, every store holds the 3. */
    for (int i = 0; i < N_PROCS; i++) {
        char dir[700];
        kc_store_t *st = NULL;
        kc_store_stats_t ss;
        snprintf(dir, sizeof(dir), "%s/m%02d", g_root, i);
        assert_int_equal(kc_store_open(dir, NULL, &st), KC_OK);
        assert_int_equal(kc_store_stats(st, &ss), KC_OK);
        counted += ss.counters[KC_COUNTER_TUNES];
        tunings += ss.records[KC_REC_TUNING];
        kc_store_close(st);
    }
    assert_int_equal(counted, N_SIGS);
    assert_int_equal(tunings, (uint64_t)N_PROCS * N_SIGS);
    unsetenv("KCACHE_REMOTE");
    unsetenv("KCACHE_REMOTE_PREFIX");
    unsetenv("KCACHE_REMOTE_TIMEOUT_MS");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_each_signature_is_tuned_once_across_16_machines),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
