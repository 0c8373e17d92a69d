/* Single flight across processes, on the simulation device with real
 * NVRTC-compiled cubins: eight processes that miss the same kernel at once
 * compile it once and tune it once; a launch that finds another process
 * tuning waits for it or runs untuned; a dead lease owner is taken over.
 *
 * Each process opens the store itself after fork (an LMDB environment
 * must not cross a fork), so the parent never holds the store open when it
 * forks. */
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
#include <unistd.h>

#include "kc_simkernels.h"
#include "kcache/launch.h"
#include "kcache/record.h"
#include "kcache/sim.h"
#include "kcache/store.h"
#include "launcher_int.h"

#define N_PROCS 8
#define N_CANDS 5

/* The block size of this process's last simulated launch. */
static unsigned last_block;

static int sim_vadd(void *user, const kc_sim_launch_t *l)
{
    last_block = l->block[0];
    return kcs_sim_vadd(user, l);
}

static const int64_t blocks[N_CANDS] = {64, 128, 256, 512, 1024};
static const kc_param_spec_t block_param[] = {{"BLOCK", blocks, N_CANDS}};

static kc_kernel_spec_t vadd_spec(void)
{
    return kcs_vadd_spec("race.vadd", block_param);
}

/* ---- fixture ------------------------------------------------------------- */

typedef struct fx {
    char dir[512];
} fx_t;

static int setup(void **state)
{
    fx_t *f = calloc(1, sizeof(*f));

    if (!f || kct_tmpdir("launch_race", f->dir, sizeof(f->dir)) != 0)
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

static kc_launcher_opts_t sim_opts(kc_sim_t *sim, const char *dir)
{
    kc_launcher_opts_t o = KC_LAUNCHER_OPTS_INIT;
    o.device = KC_DEVICE_SIM;
    o.sim = sim;
    o.store_dir = dir;
    o.budget_ms = 0.01;
    o.min_reps = 3;
    o.max_reps = 10;
    o.compile_threads = 2;
    o.lease_wait_ms = 120000; /* eight processes share two cores */
    return o;
}

static kc_sim_t *new_sim(void)
{
    kc_sim_t *sim = NULL;
    if (kc_sim_create(NULL, &sim) != KC_OK)
        return NULL;
    if (kc_sim_register(sim, "vadd", sim_vadd, kcs_cost_256, NULL) != KC_OK) {
        kc_sim_destroy(sim);
        return NULL;
    }
    return sim;
}

static uint64_t count_records(const fx_t *f, kc_rec_kind_t kind)
{
    kc_store_t *st = NULL;
    kc_store_stats_t s;
    assert_int_equal(kc_store_open(f->dir, NULL, &st), KC_OK);
    assert_int_equal(kc_store_stats(st, &s), KC_OK);
    kc_store_close(st);
    return s.records[kind];
}

/* ---- eight processes ----------------------------------------------------- */

typedef struct report {
    int rc;      /* of the launch */
    int correct; /* the output buffer holds a + b */
    kc_kernel_stats_t stats;
} report_t;

/* One racing process: everything up to the registration is ready before
 * the barrier (a pipe whose write end the parent closes), so that every
 * process registers (and starts compiling) and launches at once. */
static void racer(const fx_t *f, int barrier, int out)
{
    report_t r = {.rc = KC_EINVAL};
    kc_sim_t *sim = new_sim();
    kc_launcher_t *l = NULL;
    kc_kernel_t *k = NULL;
    kc_kernel_spec_t spec = vadd_spec();
    kcs_vecs_t v;
    char b;

    if (!sim || kcs_vecs_try_init(&v, 1000) != 0)
        _exit(3);
    kc_launcher_opts_t o = sim_opts(sim, f->dir);
    if (kc_launcher_create(&o, &l) != KC_OK)
        _exit(4);
    (void)!read(barrier, &b, 1);
    r.rc = kc_kernel_get(l, &spec, &k);
    if (r.rc == KC_OK)
        r.rc = kc_kernel_launch(k, NULL, v.args, 4);
    r.correct = r.rc == KC_OK && kcs_vecs_ok(&v);
    if (k)
        kc_kernel_stats(k, &r.stats);
    kc_launcher_destroy(l);
    kc_sim_destroy(sim);
    kcs_vecs_free(&v);
    (void)!write(out, &r, sizeof(r)); /* under PIPE_BUF: one atomic write */
    _exit(0);
}

static void test_eight_processes_compile_once_and_tune_once(void **state)
{
    fx_t *f = *state;
    int barrier[2], results[2];
    pid_t pids[N_PROCS];
    uint64_t compiles = 0, tunes = 0, reused = 0, hits = 0;

    assert_int_equal(pipe(barrier), 0);
    assert_int_equal(pipe(results), 0);
    for (int i = 0; i < N_PROCS; i++) {
        pids[i] = fork();
        assert_true(pids[i] >= 0);
        if (pids[i] == 0) {
            close(barrier[1]);
            close(results[0]);
            racer(f, barrier[0], results[1]);
        }
    }
    close(barrier[0]);
    close(results[1]);
    close(barrier[1]); /* go */
    for (int i = 0; i < N_PROCS; i++) {
        report_t r;
        assert_int_equal(read(results[0], &r, sizeof(r)), (ssize_t)sizeof(r));
        assert_int_equal(r.rc, KC_OK);
        assert_true(r.correct);
        compiles += r.stats.compiles;
        tunes += r.stats.tunes;
        reused += r.stats.builds_reused;
        hits += r.stats.store_hits;
    }
    close(results[0]);
    for (int i = 0; i < N_PROCS; i++) {
        int status;
        assert_int_equal(waitpid(pids[i], &status, 0), pids[i]);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    assert_int_equal(compiles, N_CANDS);
    assert_int_equal(tunes, 1);
    assert_int_equal(hits, N_PROCS - 1);
    assert_int_equal(compiles + reused, N_PROCS * N_CANDS);
    assert_int_equal(count_records(f, KC_REC_TUNING), 1);
    assert_int_equal(count_records(f, KC_REC_BUILD), N_CANDS);
    assert_int_equal(count_records(f, KC_REC_LEASE), 0);
}

/* ---- a lease held by another process ------------------------------------- */

/* The tuning key a launch of vadd on v will lease, computed by a launcher
 * without a store (the key does not depend on one). */
static kc_key_t vadd_tuning_key(const kcs_vecs_t *v)
{
    kc_sim_t *sim = new_sim();
    kc_launcher_t *l = NULL;
    kc_kernel_t *k = NULL;
    kc_kernel_spec_t spec = vadd_spec();
    kc_key_t key;

    assert_non_null(sim);
    kc_launcher_opts_t o = sim_opts(sim, NULL);
    o.no_store = 1;
    assert_int_equal(kc_launcher_create(&o, &l), KC_OK);
    assert_int_equal(kc_kernel_get(l, &spec, &k), KC_OK);
    assert_int_equal(kc__kernel_tuning_key(k, v->args, 4, &key), KC_OK);
    kc_launcher_destroy(l);
    kc_sim_destroy(sim);
    return key;
}

typedef struct holder {
    pid_t pid;
    int hold; /* closing it lets the holder exit, without releasing */
} holder_t;

/* A process that takes the lease on key and keeps it until told to exit. */
static holder_t spawn_holder(const fx_t *f, const kc_key_t *key)
{
    int rep[2], hold[2], rc = KC_EINVAL;
    holder_t h;

    assert_int_equal(pipe(rep), 0);
    assert_int_equal(pipe(hold), 0);
    h.pid = fork();
    assert_true(h.pid >= 0);
    if (h.pid == 0) {
        kc_store_t *st = NULL;
        char b;
        close(rep[0]);
        close(hold[1]);
        rc = kc_store_open(f->dir, NULL, &st);
        if (rc == KC_OK)
            rc = kc_store_lease_acquire(st, key, 600000, NULL);
        kc_store_close(st);
        (void)!write(rep[1], &rc, sizeof(rc));
        (void)!read(hold[0], &b, 1);
        _exit(0);
    }
    close(rep[1]);
    close(hold[0]);
    assert_int_equal(read(rep[0], &rc, sizeof(rc)), (ssize_t)sizeof(rc));
    close(rep[0]);
    assert_int_equal(rc, KC_OK);
    h.hold = hold[1];
    return h;
}

static void holder_end(holder_t *h)
{
    int status;
    close(h->hold);
    assert_int_equal(waitpid(h->pid, &status, 0), h->pid);
}

static void test_untuned_contention_launches_without_tuning_or_publishing(void **state)
{
    fx_t *f = *state;
    kcs_vecs_t v;
    assert_int_equal(kcs_vecs_try_init(&v, 1000), 0);
    kc_key_t key = vadd_tuning_key(&v);
    holder_t h = spawn_holder(f, &key);
    kc_sim_t *sim = new_sim();
    kc_launcher_t *l = NULL;
    kc_kernel_t *k = NULL;
    kc_kernel_spec_t spec = vadd_spec();
    kc_kernel_stats_t s;

    kc_launcher_opts_t o = sim_opts(sim, f->dir);
    o.contention = KC_CONTENTION_UNTUNED;
    assert_int_equal(kc_launcher_create(&o, &l), KC_OK);
    assert_int_equal(kc_kernel_get(l, &spec, &k), KC_OK);
    for (int i = 0; i < 2; i++) {
        memset(v.out, 0, (size_t)v.n * sizeof(float));
        assert_int_equal(kc_kernel_launch(k, NULL, v.args, 4), KC_OK);
        assert_true(kcs_vecs_ok(&v));
    }
    kc_kernel_stats(k, &s);
    assert_int_equal(s.tunes, 0);
    assert_int_equal(s.memo_hits, 0); /* not memoized: the store is asked again */
    assert_int_equal(s.compiles, N_CANDS);
    /* The spec's first config that compiled; no memo entry was made. */
    assert_int_equal(last_block, 64);
    kc_param_t p;
    size_t np = 0;
    assert_int_equal(kc_kernel_last_config(k, &p, 1, &np), KC_ENOTFOUND);
    kc_store_stats_t ss;
    assert_int_equal(kc_store_stats(kc_launcher_store(l), &ss), KC_OK);
    assert_int_equal(ss.records[KC_REC_TUNING], 0);
    /* Its builds were published for the holder, which may be waiting for
     * them. */
    assert_int_equal(ss.records[KC_REC_BUILD], N_CANDS);

    /* Once the holder is gone, its lease is dead: the next launch tunes. */
    holder_end(&h);
    memset(v.out, 0, (size_t)v.n * sizeof(float));
    assert_int_equal(kc_kernel_launch(k, NULL, v.args, 4), KC_OK);
    assert_true(kcs_vecs_ok(&v));
    kc_kernel_stats(k, &s);
    assert_int_equal(s.tunes, 1);
    assert_int_equal(kc_store_stats(kc_launcher_store(l), &ss), KC_OK);
    assert_int_equal(ss.records[KC_REC_TUNING], 1);
    assert_int_equal(ss.records[KC_REC_LEASE], 0);
    kc_launcher_destroy(l);
    kc_sim_destroy(sim);
    kcs_vecs_free(&v);
}

static void test_a_killed_lease_owner_is_taken_over_by_a_waiting_launch(void **state)
{
    fx_t *f = *state;
    kcs_vecs_t v;
    assert_int_equal(kcs_vecs_try_init(&v, 1000), 0);
    kc_key_t key = vadd_tuning_key(&v);
    holder_t h = spawn_holder(f, &key);
    kc_sim_t *sim = new_sim();
    kc_launcher_t *l = NULL;
    kc_kernel_t *k = NULL;
    kc_kernel_spec_t spec = vadd_spec();
    kc_kernel_stats_t s;
    kc_store_stats_t ss;
    int status;

    kill(h.pid, SIGKILL);
    assert_int_equal(waitpid(h.pid, &status, 0), h.pid);
    assert_true(WIFSIGNALED(status));
    close(h.hold);
    assert_int_equal(count_records(f, KC_REC_LEASE), 1);

    kc_launcher_opts_t o = sim_opts(sim, f->dir);
    o.contention = KC_CONTENTION_WAIT;
    assert_int_equal(kc_launcher_create(&o, &l), KC_OK);
    assert_int_equal(kc_kernel_get(l, &spec, &k), KC_OK);
    assert_int_equal(kc_kernel_launch(k, NULL, v.args, 4), KC_OK);
    assert_true(kcs_vecs_ok(&v));
    kc_kernel_stats(k, &s);
    assert_int_equal(s.tunes, 1);
    assert_int_equal(kc_store_stats(kc_launcher_store(l), &ss), KC_OK);
    assert_int_equal(ss.records[KC_REC_TUNING], 1);
    assert_int_equal(ss.records[KC_REC_LEASE], 0);
    kc_launcher_destroy(l);
    kc_sim_destroy(sim);
    kcs_vecs_free(&v);
}

static void test_a_wait_that_runs_out_launches_untuned(void **state)
{
    fx_t *f = *state;
    kcs_vecs_t v;
    assert_int_equal(kcs_vecs_try_init(&v, 1000), 0);
    kc_key_t key = vadd_tuning_key(&v);
    holder_t h = spawn_holder(f, &key);
    kc_sim_t *sim = new_sim();
    kc_launcher_t *l = NULL;
    kc_kernel_t *k = NULL;
    kc_kernel_spec_t spec = vadd_spec();
    kc_kernel_stats_t s;

    kc_launcher_opts_t o = sim_opts(sim, f->dir);
    o.contention = KC_CONTENTION_WAIT;
    o.lease_wait_ms = 100;
    assert_int_equal(kc_launcher_create(&o, &l), KC_OK);
    assert_int_equal(kc_kernel_get(l, &spec, &k), KC_OK);
    assert_int_equal(kc_kernel_launch(k, NULL, v.args, 4), KC_OK);
    assert_true(kcs_vecs_ok(&v));
    kc_kernel_stats(k, &s);
    assert_int_equal(s.tunes, 0);
    assert_int_equal(s.store_hits, 0);
    assert_int_equal(last_block, 64);
    kc_store_stats_t ss;
    assert_int_equal(kc_store_stats(kc_launcher_store(l), &ss), KC_OK);
    assert_int_equal(ss.records[KC_REC_TUNING], 0);
    assert_int_equal(ss.records[KC_REC_LEASE], 1); /* still the holder's */
    kc_launcher_destroy(l);
    kc_sim_destroy(sim);
    holder_end(&h);
    kcs_vecs_free(&v);
}

int main(void)
{
    /* The racing processes fork first, before this process has loaded
     * NVRTC or started any thread. */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_eight_processes_compile_once_and_tune_once,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_untuned_contention_launches_without_tuning_or_publishing, setup,
            teardown),
        cmocka_unit_test_setup_teardown(
            test_a_killed_lease_owner_is_taken_over_by_a_waiting_launch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_wait_that_runs_out_launches_untuned, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
