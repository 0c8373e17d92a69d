/* Concurrency: many processes, each with several threads, read, publish,
 * export and import bundles, run gc, walk and verify the store, and run
 * `cachectl verify` and `cachectl stats`, all at once on one store for a
 * bounded time, while readers are SIGKILLed inside read transactions. At the
 * end: no unexpected error anywhere, every publish that returned KC_OK is
 * there in full, nothing dangles, `cachectl verify` is clean, and the reader
 * slots of the killed readers have been reclaimed.
 *
 * Sizes: KC_STRESS_SECONDS (default 10), KC_STRESS_PROCS (default 4: a
 * publisher, two readers and a maintainer, in turn), KC_STRESS_THREADS per
 * process (default 3). Long run:
 *   KC_STRESS_SECONDS=120 KC_STRESS_PROCS=8 ctest --test-dir build-rel -R stress
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kc_testutil.h"
#include "kcache/bundle.h"
#include "kcache/store.h"

#define BUILDS 2
#define PINNED 20
#define MAX_PROCS 32

enum {
    OP_PUBLISH,
    OP_READ,
    OP_ITERATE,
    OP_WALK,
    OP_GC,
    OP_EXPORT,
    OP_IMPORT,
    OP_STATS,
    OP_KINDS
};
static const char *const op_names[OP_KINDS] = {
    "publish", "read", "iterate", "verify-walk", "gc", "export", "import", "stats"};

typedef struct tally {
    uint64_t ops[OP_KINDS];
    uint64_t errors;
    char first_error[256];
} tally_t;

typedef struct worker {
    kc_store_t *st;
    int role, proc, thread;
    uint64_t deadline_ms;
    int log_fd; /* publishers: committed ids */
    tally_t t;
} worker_t;

static void error(worker_t *w, const char *what, int rc, const char *msg)
{
    if (w->t.errors++ == 0)
        snprintf(w->t.first_error, sizeof(w->t.first_error), "%s: %s: %s", what,
                 kc_strerror(rc), msg);
}

typedef struct keys {
    kc_key_t k[64];
    size_t n;
    unsigned skip;
} keys_t;

/* Collect up to 64 tuning keys, from a rotating start, without reading
 * anything else inside the read transaction. */
static int collect(void *user, kc_rec_kind_t kind, const kc_key_t *key, const void *data,
                   size_t len)
{
    keys_t *ks = user;
    (void)kind;
    (void)data;
    (void)len;
    if (ks->skip > 0) {
        ks->skip--;
        return 0;
    }
    ks->k[ks->n++] = *key;
    return ks->n == 64;
}

static void do_read(worker_t *w, unsigned *seed)
{
    keys_t ks = {.skip = (unsigned)rand_r(seed) % 256};
    int rc = kc_store_iterate(w->st, KC_REC_TUNING, collect, &ks);

    w->t.ops[OP_ITERATE]++;
    if (rc != KC_OK && rc != 1 && rc != KC_ENOTFOUND)
        return error(w, "iterate", rc, kc_store_errmsg(w->st));
    for (size_t i = 0; i < ks.n; i++) {
        kc_record_t *t = NULL, *b = NULL;
        void *c = NULL;
        size_t len = 0;

        rc = kc_store_get(w->st, KC_REC_TUNING, &ks.k[i], &t);
        if (rc == KC_OK)
            rc = kc_store_get_build_cubin(w->st, &t->u.tuning.winner_build, &b, &c, &len);
        if (rc == KC_OK && !kct_cubin_intact(c, len))
            rc = KC_ECORRUPT;
        /* Nothing is ever evicted here, so a miss is an error too. */
        if (rc != KC_OK)
            error(w, "read", rc, kc_store_errmsg(w->st));
        if (rc == KC_OK && (rand_r(seed) & 3) == 0) {
            void *c2 = NULL;
            size_t l2 = 0;
            rc = kc_store_get_cubin(w->st, &b->u.build.blob, &c2, &l2);
            if (rc != KC_OK || l2 != len || memcmp(c, c2, len) != 0)
                error(w, "get_cubin", rc, kc_store_errmsg(w->st));
            kc_free(c2);
            kc_store_touch(w->st, KC_REC_TUNING, &ks.k[i]);
        }
        kc_free(t);
        kc_free(b);
        kc_free(c);
        w->t.ops[OP_READ]++;
    }
}

static void do_publish(worker_t *w, uint64_t id)
{
    kct_pub_t p;
    int rc = kct_pub_make(&p, id, BUILDS);

    if (rc == KC_OK)
        rc = kc_store_publish(w->st, &p.pub);
    kct_pub_free(&p);
    w->t.ops[OP_PUBLISH]++;
    if (rc != KC_OK)
        return error(w, "publish", rc, kc_store_errmsg(w->st));
    if (write(w->log_fd, &id, sizeof(id)) != (ssize_t)sizeof(id))
        error(w, "log", KC_EIO, strerror(errno));
}

static void do_maintain(worker_t *w, unsigned step)
{
    int rc;

    switch (step % 4) {
    case 0: {
        long bad = kct_store_consistency(w->st, NULL, NULL, NULL);
        w->t.ops[OP_WALK]++;
        if (bad != 0)
            error(w, "verify walk", bad < 0 ? (int)bad : KC_ECORRUPT, "bad records");
        break;
    }
    case 1: {
        /* Plans everything, evicts nothing (no record is 10 years old):
         * gc's transactions run against the others without losing data. */
        kc_gc_opts_t g = {.size = sizeof(kc_gc_opts_t),
                          .older_than = 10ull * 365 * 86400};
        kc_gc_report_t r;
        rc = kc_store_gc(w->st, &g, &r);
        w->t.ops[OP_GC]++;
        if (rc != KC_OK)
            error(w, "gc", rc, kc_store_errmsg(w->st));
        else if (r.evicted[KC_REC_TUNING] + r.evicted[KC_REC_BUILD] +
                     r.evicted[KC_REC_BLOB] !=
                 0)
            error(w, "gc", KC_EINTERNAL, "evicted records that are not old");
        break;
    }
    case 2: {
        /* Export the records of the last seconds and import them again. */
        kc_bundle_filter_t flt = {.since = (uint64_t)time(NULL) - 2};
        char *buf = NULL;
        size_t len = 0;
        FILE *mf = open_memstream(&buf, &len);
        if (!mf)
            return error(w, "open_memstream", KC_ENOMEM, strerror(errno));
        rc = kc_bundle_export(w->st, &flt, mf, NULL);
        fclose(mf);
        w->t.ops[OP_EXPORT]++;
        if (rc != KC_OK) {
            error(w, "export", rc, kc_store_errmsg(w->st));
        } else {
            rc = kc_bundle_import_mem(w->st, buf, len, NULL, NULL);
            w->t.ops[OP_IMPORT]++;
            if (rc != KC_OK)
                error(w, "import", rc, kc_store_errmsg(w->st));
        }
        free(buf);
        break;
    }
    default: {
        kc_store_stats_t s;
        rc = kc_store_stats(w->st, &s);
        if (rc == KC_OK)
            rc = kc_store_flush(w->st);
        w->t.ops[OP_STATS]++;
        if (rc != KC_OK)
            error(w, "stats", rc, kc_store_errmsg(w->st));
        break;
    }
    }
}

static void *work(void *arg)
{
    worker_t *w = arg;
    unsigned seed = (unsigned)(w->proc * 7919 + w->thread * 104729 + getpid());
    /* Disjoint id ranges per thread, however long the run. */
    uint64_t next_id = ((uint64_t)(w->proc + 1) << 40) | ((uint64_t)w->thread << 32);

    for (unsigned step = 0; kct_now_ms() < w->deadline_ms; step++) {
        if (w->role == 0)
            do_publish(w, next_id++);
        else if (w->role == 3)
            do_maintain(w, step + (unsigned)w->thread);
        else
            do_read(w, &seed);
    }
    return NULL;
}

/* One stress process: threads of one role on one handle. Sends the summed
 * tally on out_fd. */
static void stress_proc(const char *dir, int proc, unsigned threads, uint64_t deadline,
                        int log_fd, int out_fd)
{
    kc_store_t *st = NULL;
    worker_t w[16];
    pthread_t tids[16];
    tally_t sum = {0};
    int rc = kc_store_open(dir, NULL, &st);

    if (rc != KC_OK) {
        sum.errors = 1;
        snprintf(sum.first_error, sizeof(sum.first_error), "open: %s",
                 kc_store_open_errmsg());
        goto out;
    }
    for (unsigned i = 0; i < threads; i++) {
        w[i] = (worker_t){.st = st,
                          .role = proc % 4,
                          .proc = proc,
                          .thread = (int)i,
                          .deadline_ms = deadline,
                          .log_fd = log_fd};
        pthread_create(&tids[i], NULL, work, &w[i]);
    }
    for (unsigned i = 0; i < threads; i++) {
        pthread_join(tids[i], NULL);
        for (int k = 0; k < OP_KINDS; k++)
            sum.ops[k] += w[i].t.ops[k];
        if (w[i].t.errors && !sum.errors)
            memcpy(sum.first_error, w[i].t.first_error, sizeof(sum.first_error));
        sum.errors += w[i].t.errors;
    }
    kc_store_close(st);
out:
    (void)!write(out_fd, &sum, sizeof(sum));
    _exit(0);
}

/* A reader that walks slowly inside one read transaction, to be killed. */
static int slow(void *user, kc_rec_kind_t kind, const kc_key_t *key, const void *data,
                size_t len)
{
    (void)user;
    (void)kind;
    (void)key;
    (void)data;
    (void)len;
    usleep(200);
    return 0;
}

static pid_t start_doomed_reader(const char *dir)
{
    pid_t pid = fork();
    if (pid == 0) {
        kc_store_t *st = NULL;
        if (kc_store_open(dir, NULL, &st) != KC_OK)
            _exit(2);
        for (;;)
            kc_store_iterate(st, 0, slow, NULL);
    }
    return pid;
}

static int run_cachectl(const char *dir, const char *cmd)
{
    const char *ctl = kct_cachectl();
    pid_t pid;
    int status;

    if (!ctl)
        return 0;
    pid = fork();
    if (pid == 0) {
        int fd = open("/dev/null", O_WRONLY);
        dup2(fd, 1);
        dup2(fd, 2);
        execl(ctl, ctl, "-s", dir, cmd, (char *)NULL);
        _exit(127);
    }
    if (pid < 0 || waitpid(pid, &status, 0) != pid)
        return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* Stale reader slots, counted (and freed) by raw LMDB in a child process. */
static int raw_reader_check(const char *dir)
{
    pid_t pid = fork();
    int status;

    if (pid == 0) {
        MDB_env *env;
        int dead = -1;
        if (mdb_env_create(&env) != 0 || mdb_env_set_maxdbs(env, 8) != 0 ||
            mdb_env_open(env, dir, MDB_NOTLS, 0664) != 0 ||
            mdb_reader_check(env, &dead) != 0)
            _exit(255);
        mdb_env_close(env);
        _exit(dead);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    return WEXITSTATUS(status);
}

static uint64_t *read_ids(const char *path, size_t *n)
{
    FILE *fp = fopen(path, "rb");
    uint64_t *ids = NULL;
    long size;

    assert_non_null(fp);
    fseek(fp, 0, SEEK_END);
    size = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    assert_int_equal(size % 8, 0);
    *n = (size_t)size / 8;
    ids = malloc((size_t)size + 8);
    assert_non_null(ids);
    assert_int_equal(fread(ids, 8, *n, fp), *n);
    fclose(fp);
    return ids;
}

static void test_concurrent_work_loses_nothing_and_errs_nowhere(void **state)
{
    char dir[512], log_path[600];
    unsigned seconds = (unsigned)kct_env_u64("KC_STRESS_SECONDS", 10);
    unsigned procs = (unsigned)kct_env_u64("KC_STRESS_PROCS", 4);
    unsigned threads = (unsigned)kct_env_u64("KC_STRESS_THREADS", 3);
    pid_t pids[MAX_PROCS];
    int out[MAX_PROCS][2];
    tally_t total = {0};
    kc_store_t *keep = NULL;
    uint64_t kills = 0, ctl_runs = 0, ctl_failures = 0;
    int log_fd;

    (void)state;
    if (procs > MAX_PROCS)
        procs = MAX_PROCS;
    if (threads > 16)
        threads = 16;
    assert_int_equal(kct_tmpdir("stress", dir, sizeof(dir)), 0);
    snprintf(log_path, sizeof(log_path), "%s.ids", dir);
    log_fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0644);
    assert_true(log_fd >= 0);

    /* The parent keeps the store open throughout, as a long-lived process
     * does, so that the reader table is never reset behind our back. */
    assert_int_equal(kc_store_open(dir, NULL, &keep), KC_OK);
    for (uint64_t id = 0; id < PINNED; id++) {
        kct_pub_t p;
        assert_int_equal(kct_pub_make(&p, id, BUILDS), KC_OK);
        assert_int_equal(kc_store_publish(keep, &p.pub), KC_OK);
        kct_pub_free(&p);
    }

    uint64_t deadline = kct_now_ms() + (uint64_t)seconds * 1000;
    for (unsigned i = 0; i < procs; i++) {
        assert_int_equal(pipe(out[i]), 0);
        pids[i] = fork();
        assert_true(pids[i] >= 0);
        if (pids[i] == 0) {
            close(out[i][0]);
            stress_proc(dir, (int)i, threads, deadline, log_fd, out[i][1]);
        }
        close(out[i][1]);
    }

    /* Meanwhile: readers killed mid-read, and cachectl. */
    srand((unsigned)time(NULL));
    while (kct_now_ms() < deadline) {
        pid_t r = start_doomed_reader(dir);
        assert_true(r > 0);
        usleep((useconds_t)(5000 + rand() % 30000));
        kill(r, SIGKILL);
        waitpid(r, NULL, 0);
        kills++;
        if (kills % 8 == 0) {
            ctl_runs += 2;
            ctl_failures += run_cachectl(dir, "verify") != 0;
            ctl_failures += run_cachectl(dir, "stats") != 0;
        }
    }
    for (unsigned i = 0; i < procs; i++) {
        tally_t t;
        int status;
        assert_int_equal(read(out[i][0], &t, sizeof(t)), (ssize_t)sizeof(t));
        close(out[i][0]);
        assert_int_equal(waitpid(pids[i], &status, 0), pids[i]);
        if (t.errors)
            fail_msg("process %u (role %u): %llu errors, first: %s", i, i % 4,
                     (unsigned long long)t.errors, t.first_error);
        for (int k = 0; k < OP_KINDS; k++)
            total.ops[k] += t.ops[k];
    }
    close(log_fd);
    assert_int_equal(ctl_failures, 0);

    /* Every committed publish, and the pinned ones, in full; nothing
     * dangles; cachectl verify is clean. */
    size_t n_ids;
    uint64_t *ids = read_ids(log_path, &n_ids);
    uint64_t tunings;
    for (size_t i = 0; i < n_ids + PINNED; i++) {
        uint64_t id = i < n_ids ? ids[i] : i - n_ids;
        unsigned present, intact;
        assert_int_equal(kct_pub_state(keep, id, BUILDS, &present, &intact), KC_OK);
        if (intact != 2 * BUILDS + 1)
            fail_msg("publish %llu: %u of %u records intact", (unsigned long long)id,
                     intact, 2 * BUILDS + 1);
    }
    assert_int_equal(kct_store_consistency(keep, &tunings, NULL, NULL), 0);
    assert_int_equal(tunings, n_ids + PINNED);
    free(ids);
    assert_int_equal(run_cachectl(dir, "verify"), 0);

    /* The killed readers' slots: the doomed readers' own opens freed those
     * of the ones before them; one more open frees the last. */
    kc_store_t *again = NULL;
    pid_t pid = fork();
    if (pid == 0)
        _exit(kc_store_open(dir, NULL, &again) == KC_OK ? 0 : 1);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_int_equal(raw_reader_check(dir), 0);
    kc_store_close(keep);

    uint64_t sum = 0;
    char line[512];
    size_t len = 0;
    for (int k = 0; k < OP_KINDS; k++) {
        sum += total.ops[k];
        len += (size_t)snprintf(line + len, sizeof(line) - len, " %s %llu", op_names[k],
                                (unsigned long long)total.ops[k]);
    }
    print_message("stress: %u s, %u processes x %u threads: %llu operations (%s), %llu "
                  "readers killed mid-read, %llu cachectl runs; 0 errors, %zu publishes "
                  "all intact\n",
                  seconds, procs, threads, (unsigned long long)sum, line + 1,
                  (unsigned long long)kills, (unsigned long long)ctl_runs,
                  n_ids + PINNED);
    assert_true(total.ops[OP_PUBLISH] > 0);
    assert_true(total.ops[OP_READ] > 0);
    assert_true(kills > 0);
    kct_rmrf(dir);
    unlink(log_path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_concurrent_work_loses_nothing_and_errs_nowhere),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
