/* Leases: single flight across processes. Other owners are real processes
 * (fork), each opening the store itself: an LMDB environment must not be
 * used across fork, so the parent never has the store open when it forks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kcache/record.h"
#include "kcache/store.h"

typedef struct fx {
    char dir[512];
    kc_key_t key;
} fx_t;

static int setup(void **state)
{
    const char *base = getenv("KC_TEST_TMP");
    char tmpl[512];
    fx_t *f = calloc(1, sizeof(*f));

    if (!f)
        return -1;
    if (!base || !base[0])
        base = "/tmp";
    snprintf(tmpl, sizeof(tmpl), "%s", base);
    for (char *p = tmpl + 1; *p; p++)
        if (*p == '/') {
            *p = '\0';
            (void)!mkdir(tmpl, 0755);
            *p = '/';
        }
    (void)!mkdir(tmpl, 0755);
    snprintf(f->dir, sizeof(f->dir), "%.480s/lease.XXXXXX", tmpl);
    if (!mkdtemp(f->dir))
        return -1;
    f->key = kc_key_hash("a tuning preimage", 17);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx_t *f = *state;
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
    (void)!system(cmd);
    free(f);
    return 0;
}

static kc_store_t *open_store(const fx_t *f, unsigned flags)
{
    kc_store_opts_t o = {.size = sizeof(kc_store_opts_t), .flags = flags};
    kc_store_t *st = NULL;
    assert_int_equal(kc_store_open(f->dir, &o, &st), KC_OK);
    return st;
}

/* A child that opens the store and acquires the lease with ttl_ms, tells
 * the parent the result on *report, then waits until the parent closes
 * *hold and exits without releasing. */
typedef struct child {
    pid_t pid;
    int report; /* read end */
    int hold;   /* write end */
} child_t;

static child_t spawn_holder(const fx_t *f, uint64_t ttl_ms)
{
    int rep[2], hold[2];
    child_t c;

    assert_int_equal(pipe(rep), 0);
    assert_int_equal(pipe(hold), 0);
    c.pid = fork();
    assert_true(c.pid >= 0);
    if (c.pid == 0) {
        kc_store_t *st = NULL;
        char b;
        int rc;

        close(rep[0]);
        close(hold[1]);
        rc = kc_store_open(f->dir, NULL, &st);
        if (rc == KC_OK)
            rc = kc_store_lease_acquire(st, &f->key, ttl_ms, NULL);
        kc_store_close(st);
        (void)!write(rep[1], &rc, sizeof(rc));
        (void)!read(hold[0], &b, 1);
        _exit(0);
    }
    close(rep[1]);
    close(hold[0]);
    c.report = rep[0];
    c.hold = hold[1];
    return c;
}

static int child_result(child_t *c)
{
    int rc = 1;
    assert_int_equal(read(c->report, &rc, sizeof(rc)), (ssize_t)sizeof(rc));
    return rc;
}

static void child_end(child_t *c)
{
    int status;
    close(c->hold);
    close(c->report);
    assert_int_equal(waitpid(c->pid, &status, 0), c->pid);
}

/* The pid recorded in the stored lease on the fixture's key. */
static uint32_t lease_pid(const fx_t *f)
{
    kc_store_t *st = open_store(f, 0);
    kc_record_t *rec = NULL;
    uint32_t pid;

    assert_int_equal(kc_store_get(st, KC_REC_LEASE, &f->key, &rec), KC_OK);
    pid = rec->u.lease.pid;
    kc_free(rec);
    kc_store_close(st);
    return pid;
}

static void test_acquire_renew_and_release(void **state)
{
    fx_t *f = *state;
    kc_store_t *st = open_store(f, 0);
    kc_record_t *rec = NULL;

    assert_int_equal(kc_store_lease_acquire(st, &f->key, 60000, NULL), KC_OK);
    assert_int_equal(kc_store_get(st, KC_REC_LEASE, &f->key, &rec), KC_OK);
    assert_int_equal(rec->u.lease.pid, (uint32_t)getpid());
    assert_int_equal(rec->u.lease.ttl_ms, 60000);
    uint64_t start = rec->u.lease.start;
    kc_free(rec);
    /* Taking it again renews it. */
    struct timespec ts = {0, 5 * 1000000L};
    nanosleep(&ts, NULL);
    assert_int_equal(kc_store_lease_acquire(st, &f->key, 60000, NULL), KC_OK);
    assert_int_equal(kc_store_get(st, KC_REC_LEASE, &f->key, &rec), KC_OK);
    assert_true(rec->u.lease.start > start);
    kc_free(rec);

    assert_int_equal(kc_store_lease_release(st, &f->key), KC_OK);
    assert_int_equal(kc_store_get(st, KC_REC_LEASE, &f->key, &rec), KC_ENOTFOUND);
    assert_int_equal(kc_store_lease_release(st, &f->key), KC_ENOTFOUND);
    assert_int_equal(kc_store_lease_acquire(st, &f->key, 0, NULL), KC_EINVAL);
    kc_store_close(st);
}

static void test_a_live_owner_in_another_process_makes_acquire_busy(void **state)
{
    fx_t *f = *state;
    child_t c = spawn_holder(f, 60000);
    kc_lease_rec_t holder = {0};
    char host[256] = "";
    kc_store_t *st;

    assert_int_equal(child_result(&c), KC_OK);
    st = open_store(f, 0);
    assert_int_equal(kc_store_lease_acquire(st, &f->key, 60000, &holder), KC_EBUSY);
    assert_int_equal(holder.pid, (uint32_t)c.pid);
    gethostname(host, sizeof(host) - 1);
    assert_string_equal(holder.host, host);
    assert_int_equal(holder.ttl_ms, 60000);
    /* Not ours: release leaves it. */
    assert_int_equal(kc_store_lease_release(st, &f->key), KC_ENOTFOUND);
    kc_store_close(st);
    assert_int_equal(lease_pid(f), (uint32_t)c.pid);
    child_end(&c);
}

static void test_a_dead_owners_lease_is_taken_over(void **state)
{
    fx_t *f = *state;
    child_t c = spawn_holder(f, 60000);
    kc_store_t *st;

    assert_int_equal(child_result(&c), KC_OK);
    child_end(&c); /* it exits without releasing */
    assert_int_equal(lease_pid(f), (uint32_t)c.pid);

    st = open_store(f, 0);
    assert_int_equal(kc_store_lease_acquire(st, &f->key, 60000, NULL), KC_OK);
    kc_store_close(st);
    assert_int_equal(lease_pid(f), (uint32_t)getpid());
}

static void test_a_killed_owners_lease_is_taken_over(void **state)
{
    fx_t *f = *state;
    child_t c = spawn_holder(f, 60000);
    int status;
    kc_store_t *st;

    assert_int_equal(child_result(&c), KC_OK);
    kill(c.pid, SIGKILL);
    assert_int_equal(waitpid(c.pid, &status, 0), c.pid);
    assert_true(WIFSIGNALED(status));
    close(c.hold);
    close(c.report);

    st = open_store(f, 0);
    assert_int_equal(kc_store_lease_acquire(st, &f->key, 60000, NULL), KC_OK);
    kc_store_close(st);
    assert_int_equal(lease_pid(f), (uint32_t)getpid());
}

static void test_an_expired_lease_of_a_live_owner_is_taken_over(void **state)
{
    fx_t *f = *state;
    child_t c = spawn_holder(f, 1);
    struct timespec ts = {0, 20 * 1000000L};
    kc_store_t *st;

    assert_int_equal(child_result(&c), KC_OK);
    nanosleep(&ts, NULL);
    st = open_store(f, 0);
    assert_int_equal(kc_store_lease_acquire(st, &f->key, 60000, NULL), KC_OK);
    kc_store_close(st);
    assert_int_equal(lease_pid(f), (uint32_t)getpid());
    child_end(&c);
}

static void test_a_read_only_store_takes_no_lease(void **state)
{
    fx_t *f = *state;
    kc_store_t *st = open_store(f, 0);
    kc_record_t *rec = NULL;

    kc_store_close(st);
    st = open_store(f, KC_STORE_RDONLY);
    assert_int_equal(kc_store_lease_acquire(st, &f->key, 60000, NULL), KC_EREADONLY);
    assert_int_equal(kc_store_lease_release(st, &f->key), KC_EREADONLY);
    assert_int_equal(kc_store_get(st, KC_REC_LEASE, &f->key, &rec), KC_ENOTFOUND);
    kc_store_close(st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_acquire_renew_and_release, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_a_live_owner_in_another_process_makes_acquire_busy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_dead_owners_lease_is_taken_over, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_a_killed_owners_lease_is_taken_over, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_an_expired_lease_of_a_live_owner_is_taken_over, setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_read_only_store_takes_no_lease, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
