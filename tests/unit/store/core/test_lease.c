/* Leases: single flight across processes. Other owners are real processes
 * (fork), each opening the store itself: an LMDB environment must not be
 * used across fork, so the parent never has the store open when it forks.
 * Also the grouped writes that lease calls from several threads share
 * (kc__env_write_grouped), through the store's internals. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
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
#include "store_internal.h"

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

static void test_release_many_releases_ours_and_leaves_the_rest(void **state)
{
    fx_t *f = *state;
    child_t c = spawn_holder(f, 60000); /* holds f->key */
    kc_key_t keys[4] = {f->key, kc_key_hash("b", 1), kc_key_hash("c", 1),
                        kc_key_hash("never taken", 11)};
    kc_record_t *rec = NULL;
    size_t released = 99;
    kc_store_t *st;

    assert_int_equal(child_result(&c), KC_OK);
    st = open_store(f, 0);
    assert_int_equal(kc_store_lease_acquire(st, &keys[1], 60000, NULL), KC_OK);
    assert_int_equal(kc_store_lease_acquire(st, &keys[2], 60000, NULL), KC_OK);
    assert_int_equal(kc_store_lease_release_many(st, keys, 4, &released), KC_OK);
    assert_int_equal(released, 2);
    assert_int_equal(kc_store_get(st, KC_REC_LEASE, &keys[1], &rec), KC_ENOTFOUND);
    assert_int_equal(kc_store_get(st, KC_REC_LEASE, &keys[2], &rec), KC_ENOTFOUND);
    /* The other process's lease stays, and stays its. */
    assert_int_equal(kc_store_get(st, KC_REC_LEASE, &keys[0], &rec), KC_OK);
    assert_int_equal(rec->u.lease.pid, (uint32_t)c.pid);
    kc_free(rec);
    /* Nothing held: still KC_OK, none released. */
    assert_int_equal(kc_store_lease_release_many(st, keys, 4, &released), KC_OK);
    assert_int_equal(released, 0);
    assert_int_equal(kc_store_lease_release_many(st, NULL, 0, &released), KC_OK);
    assert_int_equal(kc_store_lease_release_many(st, NULL, 2, &released), KC_EINVAL);
    assert_int_equal(kc_store_lease_release_many(NULL, keys, 1, &released), KC_EINVAL);
    kc_store_close(st);
    st = open_store(f, KC_STORE_RDONLY);
    assert_int_equal(kc_store_lease_release_many(st, keys, 4, NULL), KC_EREADONLY);
    kc_store_close(st);
    child_end(&c);
}

/* ---- grouped writes (kc__env_write_grouped) ------------------------------ */

#define GROUP_THREADS 6

typedef struct group_fx {
    kc_store_t *st;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int hold;                     /* writer 0 waits inside its transaction */
    int holding;                  /* ... and is there */
    int fail_one;                 /* writer 3 fails on its first run */
    size_t txn_of[GROUP_THREADS]; /* the transaction each fn last ran in */
    int runs_of[GROUP_THREADS];   /* how often each fn ran */
    int rc_of[GROUP_THREADS];
} group_fx_t;

typedef struct group_arg {
    group_fx_t *g;
    int i;
} group_arg_t;

static kc_key_t writer_key(int i)
{
    char name[16];
    snprintf(name, sizeof(name), "w%d", i);
    return kc_key_hash(name, strlen(name));
}

static int group_fn(MDB_txn *txn, void *arg)
{
    group_arg_t *a = arg;
    group_fx_t *g = a->g;
    kc_key_t k = writer_key(a->i);
    MDB_val key = kc__key_val(&k), val = {sizeof(a->i), &a->i};

    pthread_mutex_lock(&g->mu);
    g->txn_of[a->i] = mdb_txn_id(txn);
    g->runs_of[a->i]++;
    if (a->i == 0 && g->hold) {
        g->holding = 1;
        pthread_cond_broadcast(&g->cv);
        while (g->hold)
            pthread_cond_wait(&g->cv, &g->mu);
    }
    int fail = g->fail_one && a->i == 3 && g->runs_of[3] == 1;
    pthread_mutex_unlock(&g->mu);
    if (fail)
        return KC_EINVAL;
    return mdb_put(txn, g->st->env->dbi[KC_REC_LEASE], &key, &val, 0);
}

static void *group_writer(void *arg)
{
    group_arg_t *a = arg;
    a->g->rc_of[a->i] = kc__env_write_grouped(a->g->st->env, group_fn, a);
    return NULL;
}

/* 0 if writer i's value is stored under its key. */
static int written_fn(MDB_txn *txn, void *arg)
{
    group_arg_t *a = arg;
    kc_key_t k = writer_key(a->i);
    MDB_val key = kc__key_val(&k), val;
    int rc = mdb_get(txn, a->g->st->env->dbi[KC_REC_LEASE], &key, &val);
    if (rc != 0)
        return rc;
    return val.mv_size == sizeof(int) && memcmp(val.mv_data, &a->i, sizeof(int)) == 0
               ? 0
               : MDB_CORRUPTED;
}

static size_t queued(kc__env_t *env)
{
    size_t n = 0;
    pthread_mutex_lock(&env->group_mu);
    for (kc__env_group_req_t *r = env->group_queue; r; r = r->next)
        n++;
    pthread_mutex_unlock(&env->group_mu);
    return n;
}

/* Writer 0 commits alone and waits inside its transaction until writers
 * 1..5 have queued behind it; they then commit as the next group. */
static void run_group_round(fx_t *f, group_fx_t *g)
{
    pthread_t th[GROUP_THREADS];
    group_arg_t args[GROUP_THREADS];

    g->st = open_store(f, 0);
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->cv, NULL);
    g->hold = 1;
    for (int i = 0; i < GROUP_THREADS; i++)
        args[i] = (group_arg_t){g, i};
    assert_int_equal(pthread_create(&th[0], NULL, group_writer, &args[0]), 0);
    pthread_mutex_lock(&g->mu);
    while (!g->holding)
        pthread_cond_wait(&g->cv, &g->mu);
    pthread_mutex_unlock(&g->mu);
    for (int i = 1; i < GROUP_THREADS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, group_writer, &args[i]), 0);
    /* Without grouping they would wait for the write lock instead, never
     * queued: 5 s is the bound. */
    size_t waited_ms = 0;
    while (queued(g->st->env) < GROUP_THREADS - 1 && waited_ms++ < 5000) {
        struct timespec ts = {0, 1000000L};
        nanosleep(&ts, NULL);
    }
    size_t seen = queued(g->st->env);
    pthread_mutex_lock(&g->mu);
    g->hold = 0;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
    for (int i = 0; i < GROUP_THREADS; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(seen, GROUP_THREADS - 1);
    /* Every write is there, with its writer's value. */
    for (int i = 0; i < GROUP_THREADS; i++) {
        group_arg_t probe = {g, i};
        assert_int_equal(g->rc_of[i], 0);
        assert_int_equal(kc__env_read(g->st->env, written_fn, &probe), 0);
    }
    kc_store_close(g->st);
    pthread_cond_destroy(&g->cv);
    pthread_mutex_destroy(&g->mu);
}

static void test_writes_queued_behind_a_commit_share_one_transaction(void **state)
{
    group_fx_t g = {0};

    run_group_round(*state, &g);
    assert_int_equal(g.runs_of[0], 1);
    for (int i = 1; i < GROUP_THREADS; i++) {
        assert_int_equal(g.runs_of[i], 1);
        assert_int_equal(g.txn_of[i], g.txn_of[1]);
    }
    assert_true(g.txn_of[1] > g.txn_of[0]);
}

static void test_a_failing_group_runs_each_write_alone(void **state)
{
    group_fx_t g = {.fail_one = 1};

    run_group_round(*state, &g);
    /* The group stopped at writer 3 (those queued after it had not run).
     * Nothing of it stayed; each ran again in a transaction of its own,
     * where writer 3 succeeded. */
    assert_int_equal(g.runs_of[3], 2);
    for (int i = 1; i < GROUP_THREADS; i++) {
        assert_in_range(g.runs_of[i], 1, 2);
        for (int j = 1; j < i; j++)
            assert_int_not_equal(g.txn_of[i], g.txn_of[j]);
    }
}

typedef struct acquirer {
    kc_store_t *st;
    kc_key_t key;
    int rc;
    kc_lease_rec_t holder;
    char host[256];
} acquirer_t;

static void *acquire_thread(void *arg)
{
    acquirer_t *a = arg;
    a->rc = kc_store_lease_acquire(a->st, &a->key, 60000, &a->holder);
    /* The holder's strings are this thread's until its next lease call. */
    if (a->rc == KC_EBUSY)
        snprintf(a->host, sizeof(a->host), "%s", a->holder.host);
    return NULL;
}

static void test_leases_taken_from_threads_at_once(void **state)
{
    fx_t *f = *state;
    child_t c = spawn_holder(f, 60000); /* holds f->key */
    acquirer_t a[8];
    pthread_t th[8];
    kc_key_t keys[8];
    char host[256] = "";
    size_t released = 0;
    kc_store_t *st;

    assert_int_equal(child_result(&c), KC_OK);
    st = open_store(f, 0);
    for (int i = 0; i < 8; i++) {
        char name[16];
        snprintf(name, sizeof(name), "k%d", i);
        a[i] = (acquirer_t){.st = st, .key = i == 5 ? f->key : kc_key_hash(name, 2)};
        keys[i] = a[i].key;
    }
    for (int i = 0; i < 8; i++)
        assert_int_equal(pthread_create(&th[i], NULL, acquire_thread, &a[i]), 0);
    for (int i = 0; i < 8; i++)
        pthread_join(th[i], NULL);
    gethostname(host, sizeof(host) - 1);
    for (int i = 0; i < 8; i++) {
        kc_record_t *rec = NULL;
        if (i == 5) {
            assert_int_equal(a[i].rc, KC_EBUSY);
            assert_int_equal(a[i].holder.pid, (uint32_t)c.pid);
            assert_string_equal(a[i].host, host);
            continue;
        }
        assert_int_equal(a[i].rc, KC_OK);
        assert_int_equal(kc_store_get(st, KC_REC_LEASE, &a[i].key, &rec), KC_OK);
        assert_int_equal(rec->u.lease.pid, (uint32_t)getpid());
        kc_free(rec);
    }
    assert_int_equal(kc_store_lease_release_many(st, keys, 8, &released), KC_OK);
    assert_int_equal(released, 7);
    kc_store_close(st);
    assert_int_equal(lease_pid(f), (uint32_t)c.pid);
    child_end(&c);
}

/* A forked child goes on with its parent's handle: its lease calls work,
 * even when the parent had a group queued behind a commit at the fork (the
 * child's queue and lock are made anew, not inherited half-held). */
static void test_lease_calls_in_a_forked_child(void **state)
{
    fx_t *f = *state;
    group_fx_t g = {0};
    pthread_t th[2];
    group_arg_t args[2] = {{&g, 0}, {&g, 1}};
    kc_key_t mine = kc_key_hash("child's", 7);

    g.st = open_store(f, 0);
    pthread_mutex_init(&g.mu, NULL);
    pthread_cond_init(&g.cv, NULL);
    g.hold = 1;
    /* Writer 0 leads and waits inside its transaction; writer 1 queues. */
    assert_int_equal(pthread_create(&th[0], NULL, group_writer, &args[0]), 0);
    pthread_mutex_lock(&g.mu);
    while (!g.holding)
        pthread_cond_wait(&g.cv, &g.mu);
    pthread_mutex_unlock(&g.mu);
    assert_int_equal(pthread_create(&th[1], NULL, group_writer, &args[1]), 0);
    for (int i = 0; i < 5000 && queued(g.st->env) < 1; i++) {
        struct timespec ts = {0, 1000000L};
        nanosleep(&ts, NULL);
    }
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        size_t released = 0;
        kc_record_t *rec = NULL;
        if (kc_store_lease_acquire(g.st, &mine, 60000, NULL) != KC_OK)
            _exit(1);
        if (kc_store_get(g.st, KC_REC_LEASE, &mine, &rec) != KC_OK ||
            rec->u.lease.pid != (uint32_t)getpid())
            _exit(2);
        kc_free(rec);
        if (kc_store_lease_release_many(g.st, &mine, 1, &released) != KC_OK ||
            released != 1)
            _exit(3);
        _exit(0);
    }
    pthread_mutex_lock(&g.mu);
    g.hold = 0;
    pthread_cond_broadcast(&g.cv);
    pthread_mutex_unlock(&g.mu);
    pthread_join(th[0], NULL);
    pthread_join(th[1], NULL);
    /* A child stuck on a lock it inherited held is killed after 10 s. */
    int status = 0;
    pid_t got = 0;
    for (int i = 0; i < 10000 && (got = waitpid(pid, &status, WNOHANG)) == 0; i++) {
        struct timespec ts = {0, 1000000L};
        nanosleep(&ts, NULL);
    }
    if (got == 0) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        fail_msg("the child's lease calls hung");
    }
    assert_int_equal(got, pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_int_equal(g.rc_of[0], 0);
    assert_int_equal(g.rc_of[1], 0);
    kc_store_close(g.st);
    pthread_cond_destroy(&g.cv);
    pthread_mutex_destroy(&g.mu);
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
        cmocka_unit_test_setup_teardown(
            test_release_many_releases_ours_and_leaves_the_rest, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_writes_queued_behind_a_commit_share_one_transaction, setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_failing_group_runs_each_write_alone, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_leases_taken_from_threads_at_once, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_lease_calls_in_a_forked_child, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
