/* Crash safety: writer processes are SIGKILLed at random points while they
 * publish and run gc, many times over, on one store. After every kill the
 * store must open, every publish that returned KC_OK must be there in full,
 * the publish in flight must be there whole or not at all, and no tuning or
 * build may point at a missing record.
 *
 * Sizes: KC_CRASH_ITERS kills per test (default 150), KC_CRASH_MAX_MS the
 * longest random delay before a kill (default 40). Long run:
 *   KC_CRASH_ITERS=2000 ctest --test-dir build-rel -R crash --output-on-failure
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kc_testutil.h"
#include "kcache/store.h"

#define BUILDS_PER_PUB 3
/* Publish ids of kill iteration `it` are it * ID_STRIDE + k. */
#define ID_STRIDE 100000u

typedef struct fx {
    char dir[512];
} fx_t;

static int setup(void **state)
{
    fx_t *f = calloc(1, sizeof(*f));
    if (!f || kct_tmpdir("crash", f->dir, sizeof(f->dir)) != 0)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx_t *f = *state;
    kct_rmrf(f->dir);
    free(f);
    return 0;
}

static int write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* The writer: publish ids first_id, first_id + 1, ... forever, reporting each
 * id on fd only after kc_store_publish returned KC_OK. With gc_every, run a
 * size-bounded gc after every gc_every publishes. An unexpected error exits
 * with status 3 (store open) or 4 (publish) or 5 (gc). */
static void writer(const char *dir, uint64_t first_id, int fd, unsigned gc_every)
{
    kc_store_t *st = NULL;

    if (kc_store_open(dir, NULL, &st) != KC_OK)
        _exit(3);
    for (uint64_t id = first_id;; id++) {
        kct_pub_t p;
        if (kct_pub_make(&p, id, BUILDS_PER_PUB) != KC_OK)
            _exit(4);
        int rc = kc_store_publish(st, &p.pub);
        kct_pub_free(&p);
        if (rc != KC_OK)
            _exit(4);
        if (write_all(fd, &id, sizeof(id)) != 0)
            _exit(6);
        if (gc_every && (id - first_id) % gc_every == gc_every - 1) {
            kc_store_stats_t s;
            kc_gc_opts_t g = KC_GC_OPTS_INIT;
            if (kc_store_stats(st, &s) != KC_OK)
                _exit(5);
            /* Evict about a third of what is there. */
            g.max_bytes = (s.blob_stored_bytes * 2) / 3 + 1;
            if (kc_store_gc(st, &g, NULL) != KC_OK)
                _exit(5);
        }
    }
}

/* Run one writer for a random time under max_ms, SIGKILL it, and return the
 * ids it reported (*ids, *n: free with free). Fails the test if the writer
 * exited on its own. */
static void run_and_kill(const char *dir, uint64_t first_id, unsigned gc_every,
                         unsigned max_ms, uint64_t **ids, size_t *n)
{
    int fds[2], status;
    pid_t pid;
    size_t cap = 64;
    ssize_t got;
    char buf[4096];
    size_t have = 0;

    assert_int_equal(pipe(fds), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        writer(dir, first_id, fds[1], gc_every);
    }
    close(fds[1]);
    usleep((useconds_t)(rand() % (max_ms * 1000 + 1)));
    assert_int_equal(kill(pid, SIGKILL), 0);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (!(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL))
        fail_msg("writer exited on its own: status 0x%x", status);

    *ids = malloc(cap * sizeof(**ids));
    *n = 0;
    assert_non_null(*ids);
    /* An id is 8 bytes, written in one write(): pipe writes that small are
     * atomic, so a kill never leaves half of one. */
    while ((got = read(fds[0], buf + have, sizeof(buf) - have)) > 0) {
        have += (size_t)got;
        size_t whole = have / sizeof(uint64_t);
        for (size_t i = 0; i < whole; i++) {
            if (*n == cap) {
                cap *= 2;
                *ids = realloc(*ids, cap * sizeof(**ids));
                assert_non_null(*ids);
            }
            memcpy(&(*ids)[(*n)++], buf + i * sizeof(uint64_t), sizeof(uint64_t));
        }
        memmove(buf, buf + whole * sizeof(uint64_t), have - whole * sizeof(uint64_t));
        have -= whole * sizeof(uint64_t);
    }
    assert_int_equal(have, 0);
    close(fds[0]);
}

static void test_killed_publishers_never_lose_or_half_write_a_publish(void **state)
{
    fx_t *f = *state;
    unsigned iters = (unsigned)kct_env_u64("KC_CRASH_ITERS", 150);
    unsigned max_ms = (unsigned)kct_env_u64("KC_CRASH_MAX_MS", 40);
    uint64_t committed = 0, inflight_whole = 0, inflight_absent = 0;
    uint64_t *all = NULL;
    size_t n_all = 0;

    srand((unsigned)time(NULL));
    for (unsigned it = 0; it < iters; it++) {
        uint64_t *ids, first = (uint64_t)it * ID_STRIDE;
        size_t n;
        kc_store_t *st = NULL;
        unsigned present, intact;

        run_and_kill(f->dir, first, 0, max_ms, &ids, &n);
        /* The first kills may land before the store was ever created. */
        int rc = kc_store_open(f->dir, NULL, &st);
        if (rc != KC_OK)
            fail_msg("iteration %u: store does not open after a kill: %s: %s", it,
                     kc_strerror(rc), kc_store_open_errmsg());
        for (size_t i = 0; i < n; i++) {
            assert_int_equal(ids[i], first + i);
            assert_int_equal(kct_pub_state(st, ids[i], BUILDS_PER_PUB, &present, &intact),
                             KC_OK);
            if (present != 2 * BUILDS_PER_PUB + 1 || intact != 2 * BUILDS_PER_PUB + 1)
                fail_msg("iteration %u: committed publish %llu has %u of %u records, %u "
                         "intact",
                         it, (unsigned long long)ids[i], present, 2 * BUILDS_PER_PUB + 1,
                         intact);
        }
        /* The publish in flight at the kill: all or nothing. */
        assert_int_equal(kct_pub_state(st, first + n, BUILDS_PER_PUB, &present, &intact),
                         KC_OK);
        if (present == 0)
            inflight_absent++;
        else if (present == 2 * BUILDS_PER_PUB + 1 && intact == present)
            inflight_whole++;
        else
            fail_msg(
                "iteration %u: publish %llu in flight at the kill is partly visible: "
                "%u of %u records, %u intact",
                it, (unsigned long long)(first + n), present, 2 * BUILDS_PER_PUB + 1,
                intact);
        /* The store only grows here: walk all of it on the first iterations
         * and then every 25th, to keep long runs linear. */
        if (it < 50 || it % 25 == 0 || it == iters - 1)
            assert_int_equal(kct_store_consistency(st, NULL, NULL, NULL), 0);
        kc_store_close(st);

        committed += n;
        all = realloc(all, (n_all + n + 1) * sizeof(*all));
        assert_non_null(all);
        memcpy(all + n_all, ids, n * sizeof(*ids));
        n_all += n;
        free(ids);
    }

    /* Every committed publish is still there after all the later kills. */
    kc_store_t *st = NULL;
    uint64_t tunings = 0;
    assert_int_equal(kc_store_open(f->dir, NULL, &st), KC_OK);
    for (size_t i = 0; i < n_all; i++) {
        unsigned present, intact;
        assert_int_equal(kct_pub_state(st, all[i], BUILDS_PER_PUB, &present, &intact),
                         KC_OK);
        assert_int_equal(present, 2 * BUILDS_PER_PUB + 1);
        assert_int_equal(intact, 2 * BUILDS_PER_PUB + 1);
    }
    assert_int_equal(kct_store_consistency(st, &tunings, NULL, NULL), 0);
    assert_true(tunings >= committed);
    kc_store_close(st);
    int v = kct_cachectl_verify(f->dir, 0);
    if (v >= 0)
        assert_int_equal(v, 0);
    else
        print_message("cachectl not found: skipped its verify\n");
    free(all);
    print_message("crash: %u kills, %llu committed publishes all intact; in flight at "
                  "the kill: %llu whole, %llu absent; cachectl verify %s\n",
                  iters, (unsigned long long)committed,
                  (unsigned long long)inflight_whole, (unsigned long long)inflight_absent,
                  v == 0 ? "clean" : "not run");
    if (iters >= 20)
        assert_true(committed > 0);
}

static void test_killed_gc_and_publishers_leave_a_consistent_store(void **state)
{
    fx_t *f = *state;
    unsigned iters = (unsigned)kct_env_u64("KC_CRASH_ITERS", 150);
    unsigned max_ms = (unsigned)kct_env_u64("KC_CRASH_MAX_MS", 40);
    uint64_t committed = 0, evicted = 0;

    srand((unsigned)time(NULL) ^ 0x5eed);
    for (unsigned it = 0; it < iters; it++) {
        uint64_t *ids, tunings, builds, blobs;
        size_t n;
        kc_store_t *st = NULL;
        kc_store_stats_t s;

        run_and_kill(f->dir, (uint64_t)it * ID_STRIDE, 4, max_ms, &ids, &n);
        int rc = kc_store_open(f->dir, NULL, &st);
        if (rc != KC_OK)
            fail_msg("iteration %u: store does not open after a kill: %s: %s", it,
                     kc_strerror(rc), kc_store_open_errmsg());
        /* gc may evict any publish, but never leave a tuning without its
         * build, a build without its blob, or a damaged record. */
        long bad = kct_store_consistency(st, &tunings, &builds, &blobs);
        if (bad != 0)
            fail_msg("iteration %u: %ld dangling or damaged records (%llu tunings, %llu "
                     "builds, %llu blobs)",
                     it, bad, (unsigned long long)tunings, (unsigned long long)builds,
                     (unsigned long long)blobs);
        /* gc runs after every 4th publish: a publish reported after the
         * writer's last gc began must still be whole. */
        if (n > 0 && (n - 1) % 4 != 3) {
            unsigned present, intact;
            assert_int_equal(
                kct_pub_state(st, ids[n - 1], BUILDS_PER_PUB, &present, &intact), KC_OK);
            assert_int_equal(present, 2 * BUILDS_PER_PUB + 1);
            assert_int_equal(intact, 2 * BUILDS_PER_PUB + 1);
        }
        assert_int_equal(kc_store_stats(st, &s), KC_OK);
        evicted = s.counters[KC_COUNTER_EVICTIONS];
        kc_store_close(st);
        committed += n;
        free(ids);
    }
    int v = kct_cachectl_verify(f->dir, 0);
    if (v >= 0)
        assert_int_equal(v, 0);
    print_message("crash+gc: %u kills, %llu committed publishes, %llu records evicted by "
                  "gc; store consistent after every kill; cachectl verify %s\n",
                  iters, (unsigned long long)committed, (unsigned long long)evicted,
                  v == 0 ? "clean" : "not run");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_killed_publishers_never_lose_or_half_write_a_publish, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_killed_gc_and_publishers_leave_a_consistent_store, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
