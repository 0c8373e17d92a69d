/* Usage stamps past the automatic-flush threshold reach the database while
 * the caller makes no call (the store's flusher thread writes them); close
 * joins the flusher and writes what is left; exit writes what a handle left
 * open holds; a full buffer drops and counts rather than waiting for a
 * write lock held elsewhere. That the flush no longer runs on the caller's
 * hit path is a matter of time, shown by kcache_bench_hits (BENCHMARKS.md),
 * not asserted here. */
#include <lmdb.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kc_testutil.h"
#include "kcache/errors.h"
#include "kcache/store.h"

typedef kct_store_fx_t fixture_t;

static int setup(void **state)
{
    return kct_store_fx_setup(state, "test_usage_flush");
}

static int teardown(void **state)
{
    return kct_store_fx_teardown(state);
}

static uint64_t usage_records(kc_store_t *st)
{
    kc_store_stats_t s;
    assert_int_equal(kc_store_stats(st, &s), KC_OK);
    return s.records[KC_REC_USAGE];
}

static kc_key_t key_of(uint32_t i)
{
    kc_key_t k;
    memset(&k, 0, sizeof(k));
    memcpy(k.b, &i, sizeof(i));
    k.b[15] = 0x5a;
    return k;
}

static void
test_stamps_past_the_threshold_reach_the_database_without_a_flush_call(void **state)
{
    fixture_t *f = *state;
    const uint32_t n = 4096 + 100; /* past the automatic flush */

    for (uint32_t i = 0; i < n; i++) {
        kc_key_t k = key_of(i);
        assert_int_equal(kc_store_touch(f->st, KC_REC_BLOB, &k), KC_OK);
    }
    /* The caller is idle: the stamps arrive anyway (bounded wait; no time
     * is asserted, only that the flusher did the work). */
    uint64_t seen = 0;
    for (int tries = 0; tries < 2000 && seen < 4096; tries++) {
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
        seen = usage_records(f->st);
    }
    assert_true(seen >= 4096);
    assert_true(seen <= n);
}

static void test_close_writes_every_pending_stamp(void **state)
{
    fixture_t *f = *state;
    const uint32_t n = 3 * 4096 + 7;

    for (uint32_t i = 0; i < n; i++) {
        kc_key_t k = key_of(i);
        assert_int_equal(kc_store_touch(f->st, KC_REC_BUILD, &k), KC_OK);
    }
    kc_store_close(f->st);
    assert_int_equal(kc_store_open(f->root, NULL, &f->st), KC_OK);
    assert_int_equal(usage_records(f->st), n);
}

static void test_close_writes_a_stamp_below_the_threshold(void **state)
{
    fixture_t *f = *state;
    kc_key_t k = key_of(1);
    assert_int_equal(kc_store_touch(f->st, KC_REC_BLOB, &k), KC_OK);
    kc_store_close(f->st);
    assert_int_equal(kc_store_open(f->root, NULL, &f->st), KC_OK);
    assert_int_equal(usage_records(f->st), 1);
}

/* A child opens its own handle, stamps keys and leaves, by exit() or by
 * _exit() (which runs no exit handlers); returns the child's status. */
static int child_stamps_and_leaves(const char *root, uint32_t n, int run_exit_handlers)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        kc_store_t *st = NULL;
        if (kc_store_open(root, NULL, &st) != KC_OK)
            _exit(10);
        for (uint32_t i = 0; i < n; i++) {
            kc_key_t k = key_of(1000 + i);
            if (kc_store_touch(st, KC_REC_BLOB, &k) != KC_OK)
                _exit(11);
        }
        if (run_exit_handlers)
            exit(0); /* the handle is left open */
        _exit(0);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    return status;
}

static void test_exit_writes_the_stamps_of_a_handle_left_open(void **state)
{
    fixture_t *f = *state;

    /* Without exit handlers the 10 buffered stamps are lost: what the next
     * child shows is the exit flush's doing. */
    assert_int_equal(child_stamps_and_leaves(f->root, 10, 0), 0);
    assert_int_equal(usage_records(f->st), 0);
    assert_int_equal(child_stamps_and_leaves(f->root, 10, 1), 0);
    assert_int_equal(usage_records(f->st), 10);
}

/* Holds the store's LMDB write lock in a child until told to let go. */
static pid_t hold_write_lock(const char *root, int *release_fd)
{
    int ready[2], release[2];
    assert_int_equal(pipe(ready), 0);
    assert_int_equal(pipe(release), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        MDB_env *env = NULL;
        MDB_txn *txn = NULL;
        char c = 1;
        alarm(120); /* never outlive a stuck test */
        if (mdb_env_create(&env) != 0 || mdb_env_set_maxdbs(env, 32) != 0 ||
            mdb_env_open(env, root, 0, 0664) != 0 ||
            mdb_txn_begin(env, NULL, 0, &txn) != 0)
            _exit(20);
        if (write(ready[1], &c, 1) != 1 || read(release[0], &c, 1) != 1)
            _exit(21);
        mdb_txn_abort(txn);
        mdb_env_close(env);
        _exit(0);
    }
    char c;
    assert_int_equal(read(ready[0], &c, 1), 1);
    close(ready[0]);
    close(ready[1]);
    close(release[0]);
    *release_fd = release[1];
    return pid;
}

static void test_a_full_buffer_drops_and_counts_instead_of_waiting(void **state)
{
    fixture_t *f = *state;
    const uint32_t n = 40000; /* far past what the buffer holds */
    int release_fd;
    pid_t holder = hold_write_lock(f->root, &release_fd);

    /* The flusher blocks on the lock; every touch still returns. */
    for (uint32_t i = 0; i < n; i++) {
        kc_key_t k = key_of(i);
        assert_int_equal(kc_store_touch(f->st, KC_REC_BLOB, &k), KC_OK);
    }
    kc_store_stats_t s;
    assert_int_equal(write(release_fd, "x", 1), 1);
    close(release_fd);
    int status = 0;
    assert_int_equal(waitpid(holder, &status, 0), holder);
    assert_int_equal(status, 0);
    /* Every stamp is either written or counted as dropped. (The count is
     * read after close: the part of it the blocked flusher took along is
     * neither persisted nor buffered until that flush commits.) */
    kc_store_close(f->st);
    assert_int_equal(kc_store_open(f->root, NULL, &f->st), KC_OK);
    assert_int_equal(kc_store_stats(f->st, &s), KC_OK);
    uint64_t dropped = s.counters[KC_COUNTER_USAGE_DROPPED];
    assert_true(dropped > 0);
    assert_int_equal(usage_records(f->st) + dropped, n);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_stamps_past_the_threshold_reach_the_database_without_a_flush_call, setup,
            teardown),
        cmocka_unit_test_setup_teardown(test_close_writes_every_pending_stamp, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_close_writes_a_stamp_below_the_threshold,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_exit_writes_the_stamps_of_a_handle_left_open,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_a_full_buffer_drops_and_counts_instead_of_waiting, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
