/* The launch flow end to end on the simulation device, with real
 * NVRTC-compiled cubins and a real store: miss -> compile -> tune ->
 * publish -> launch, then hits from the memo and from the store. The sim's
 * C functions really compute, so results are checked element by element;
 * its cost model makes BLOCK = 256 the fastest config. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <jansson.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "compiler.h"
#include "kc_simkernels.h"
#include "kcache/launch.h"
#include "kcache/record.h"
#include "kcache/sim.h"
#include "kcache/store.h"

/* ---- kernels: CUDA C for NVRTC, C functions for the sim ----------------- */

/* Fails to compile for one config only. */
static const char flaky_src[] = "#if BLOCK == 512\n"
                                "#error BLOCK 512 is not supported\n"
                                "#endif\n"
                                "extern \"C\" __global__ void flaky(float *x, int n)\n"
                                "{\n"
                                "    int i = blockIdx.x * BLOCK + threadIdx.x;\n"
                                "    if (i < n)\n"
                                "        x[i] += 1.0f;\n"
                                "}\n";

/* ---- specs --------------------------------------------------------------- */

static const int64_t blocks5[] = {64, 128, 256, 512, 1024};
static const kc_param_spec_t block_param5[] = {{"BLOCK", blocks5, 5}};
static const int64_t block_one[] = {256};
static const kc_param_spec_t block_param1[] = {{"BLOCK", block_one, 1}};
static const int64_t flaky_blocks[] = {128, 256, 512, 1024, 2048};
static const kc_param_spec_t flaky_param[] = {{"BLOCK", flaky_blocks, 5}};

static kc_kernel_spec_t vadd_spec(void)
{
    return kcs_vadd_spec("test.vadd", block_param5);
}

static kc_kernel_spec_t inc_spec(const char *name, const char *src, const char *entry,
                                 const kc_param_spec_t *params)
{
    return kcs_inc_like_spec(name, src, entry, params);
}

/* ---- fixture ------------------------------------------------------------- */

static int setup(void **state)
{
    return kcs_fx_setup(state, "launch_flow", 1);
}

static int teardown(void **state)
{
    return kcs_fx_teardown(state);
}

/* ---- helpers ------------------------------------------------------------- */

static uint64_t store_count(kcs_fx_t *f, kc_rec_kind_t kind)
{
    kc_store_stats_t s;
    kc_store_t *st = kc_launcher_store(f->l);
    assert_non_null(st);
    assert_int_equal(kc_store_stats(st, &s), KC_OK);
    return s.records[kind];
}

static int64_t last_block(kc_kernel_t *k)
{
    kc_param_t p[4];
    size_t n = 0;
    assert_int_equal(kc_kernel_last_config(k, p, 4, &n), KC_OK);
    assert_int_equal(n, 1);
    assert_string_equal(p[0].name, "BLOCK");
    return p[0].value;
}

static uint64_t sim_launches(kcs_fx_t *f)
{
    kc_sim_counters_t c;
    kc_sim_counters(f->sim, &c);
    return c.launches;
}

/* The single tuning record in the store (the caller frees it). */
static int grab_tuning(void *user, kc_rec_kind_t kind, const kc_key_t *key,
                       const void *data, size_t len)
{
    (void)kind;
    (void)key;
    kc_record_t **out = user;
    if (*out)
        return 2; /* more than one */
    return kc_record_decode(data, len, out) == KC_OK ? 0 : 3;
}

static kc_record_t *the_tuning(kcs_fx_t *f)
{
    kc_record_t *rec = NULL;
    assert_int_equal(
        kc_store_iterate(kc_launcher_store(f->l), KC_REC_TUNING, grab_tuning, &rec), 0);
    assert_non_null(rec);
    return rec;
}

static const kc_candidate_t *cand_with_block(const kc_tuning_rec_t *t, int64_t block)
{
    for (size_t i = 0; i < t->n_candidates; i++)
        if (t->candidates[i].n_params == 1 && t->candidates[i].params[0].value == block)
            return &t->candidates[i];
    fail_msg("no candidate with BLOCK=%lld", (long long)block);
    return NULL;
}

/* ---- tests --------------------------------------------------------------- */

static void test_first_launch_compiles_tunes_publishes_and_computes(void **state)
{
    kcs_fx_t *f = *state;
    kc_kernel_spec_t spec = vadd_spec();
    kc_kernel_t *k;
    kc_kernel_stats_t s;
    kcs_vecs_t v;

    kcs_vecs_init(&v, 1000);
    assert_int_equal(kc_kernel_get(f->l, &spec, &k), KC_OK);
    assert_int_equal(kc_kernel_launch(k, NULL, v.args, 4), KC_OK);
    kcs_vecs_check(&v);

    assert_int_equal(kc_kernel_stats(k, &s), KC_OK);
    assert_int_equal(s.compiles, 5);
    assert_int_equal(s.builds_reused, 0);
    assert_int_equal(s.tunes, 1);
    assert_int_equal(s.store_hits, 0);
    assert_int_equal(s.publishes, 1);
    assert_int_equal(last_block(k), 256);
    assert_int_equal(store_count(f, KC_REC_BUILD), 5);
    assert_int_equal(store_count(f, KC_REC_TUNING), 1);

    kc_record_t *rec = the_tuning(f);
    const kc_tuning_rec_t *t = &rec->u.tuning;
    assert_int_equal(t->n_candidates, 5);
    assert_int_equal(t->n_winner, 1);
    assert_int_equal(t->winner[0].value, 256);
    assert_int_equal(cand_with_block(t, 256)->median_ns, 1000);
    assert_int_equal(cand_with_block(t, 64)->median_ns, 1192);
    assert_int_equal(cand_with_block(t, 1024)->status, KC_CAND_OK);
    assert_string_equal(t->arch, "sm_90");
    assert_string_equal(t->device_name, "kcache simulated GPU");
    assert_int_equal(t->sm_count, 132);
    kc_free(rec);

    /* The same signature again: a memo hit and exactly one more launch. */
    uint64_t before = sim_launches(f);
    memset(v.out, 0, (size_t)v.n * sizeof(float));
    assert_int_equal(kc_kernel_launch(k, NULL, v.args, 4), KC_OK);
    kcs_vecs_check(&v);
    assert_int_equal(sim_launches(f), before + 1);
    kc_kernel_stats(k, &s);
    assert_int_equal(s.memo_hits, 1);
    assert_int_equal(s.tunes, 1);
    kcs_vecs_free(&v);
}

static void test_written_buffers_hold_one_launch_after_tuning(void **state)
{
    kcs_fx_t *f = *state;
    kc_kernel_spec_t spec = inc_spec("test.inc", kcs_inc_src, "inc", block_param5);
    kc_kernel_t *k;
    kc_sim_counters_t c;
    enum { N = 777 };
    float *x = kcs_falloc(N * sizeof(float) + 64);
    int64_t dims[1] = {N};
    kc_arg_t args[2] = {{.ptr = (uint64_t)(uintptr_t)x, .rank = 1, .dims = dims}};

    args[1].value.i = N;
    for (int i = 0; i < N; i++)
        x[i] = (float)i * 0.5f;
    assert_int_equal(kc_kernel_get(f->l, &spec, &k), KC_OK);
    assert_int_equal(kc_kernel_launch(k, NULL, args, 2), KC_OK);
    for (int i = 0; i < N; i++)
        if (x[i] != (float)i * 0.5f + 1.f)
            fail_msg("x[%d] = %g after one launch, expected %g", i, x[i], i * 0.5 + 1);
    kc_sim_counters(f->sim, &c);
    /* The tuner ran the kernel many times; the user sees one run. */
    assert_true(c.launches > 5 * 3);
    /* The saved copy went to "device" memory, which had room, and was freed. */
    assert_int_equal(c.peak_bytes, N * sizeof(float));
    assert_int_equal(c.bytes_allocated, 0);
    free(x);
}

static void test_saved_buffers_go_to_host_memory_when_device_memory_is_short(void **state)
{
    kcs_fx_t *f = *state;
    kc_sim_opts_t so = {.size = sizeof(kc_sim_opts_t), .mem_limit = 1 << 20};
    kc_kernel_spec_t spec = inc_spec("test.inc", kcs_inc_src, "inc", block_param5);
    kc_kernel_t *k;
    kc_sim_counters_t c;
    enum { N = 4096 };
    float *x = kcs_falloc(N * sizeof(float));
    int64_t dims[1] = {N};
    kc_arg_t args[2] = {{.ptr = (uint64_t)(uintptr_t)x, .rank = 1, .dims = dims}};

    args[1].value.i = N;
    for (int i = 0; i < N; i++)
        x[i] = 3.f;
    kc_launcher_destroy(f->l);
    f->l = NULL;
    kcs_new_sim(f, &so);
    kcs_new_launcher(f);
    assert_int_equal(kc_kernel_get(f->l, &spec, &k), KC_OK);
    assert_int_equal(kc_kernel_launch(k, NULL, args, 2), KC_OK);
    for (int i = 0; i < N; i++)
        assert_true(x[i] == 4.f);
    kc_sim_counters(f->sim, &c);
    assert_int_equal(c.peak_bytes, 0);
    free(x);
}

static void test_second_launcher_on_the_same_store_hits_without_compiling(void **state)
{
    kcs_fx_t *f = *state;
    kc_kernel_spec_t spec = vadd_spec();
    kc_kernel_t *k;
    kc_kernel_stats_t s;
    kc_sim_counters_t c;
    kcs_vecs_t v;

    kcs_vecs_init(&v, 1000);
    assert_int_equal(kc_kernel_get(f->l, &spec, &k), KC_OK);
    assert_int_equal(kc_kernel_launch(k, NULL, v.args, 4), KC_OK);

    /* A new process, in effect: a fresh sim and launcher on the store. */
    kc_launcher_destroy(f->l);
    f->l = NULL;
    kcs_new_sim(f, NULL);
    kcs_new_launcher(f);
    kcs_vecs_free(&v);
    kcs_vecs_init(&v, 1000);
    assert_int_equal(kc_kernel_get(f->l, &spec, &k), KC_OK);
    assert_int_equal(kc_kernel_launch(k, NULL, v.args, 4), KC_OK);
    kcs_vecs_check(&v);
    assert_int_equal(kc_kernel_wait_compiled(k), KC_OK);
    kc_kernel_stats(k, &s);
    assert_int_equal(s.store_hits, 1);
    assert_int_equal(s.compiles, 0);
    assert_int_equal(s.tunes, 0);
    assert_int_equal(s.publishes, 0);
    assert_int_equal(last_block(k), 256);
    kc_sim_counters(f->sim, &c);
    assert_int_equal(c.launches, 1);
    assert_int_equal(c.modules_loaded, 1);
    kcs_vecs_free(&v);
}

/* Collects every blob key in the store. */
typedef struct {
    kc_key_t keys[64];
    size_t n;
} keylist_t;

static int collect_key(void *user, kc_rec_kind_t kind, const kc_key_t *key,
                       const void *data, size_t len)
{
    (void)kind;
    (void)data;
    (void)len;
    keylist_t *kl = user;
    if (kl->n < 64)
        kl->keys[kl->n++] = *key;
    return 0;
}

static void test_warm_hit_reads_only_the_winners_cubin(void **state)
{
    kcs_fx_t *f = *state;
    kc_kernel_spec_t spec = vadd_spec();
    kc_kernel_t *k;
    kc_kernel_stats_t s;
    kc_record_t *tuning, *build = NULL;
    keylist_t blobs = {0};
    kcs_vecs_t v;

    kcs_vecs_init(&v, 1000);
    assert_int_equal(kc_kernel_get(f->l, &spec, &k), KC_OK);
    assert_int_equal(kc_kernel_launch(k, NULL, v.args, 4), KC_OK);
    kcs_vecs_free(&v);

    /* Leave only the winner's cubin in the store. */
    kc_store_t *st = kc_launcher_store(f->l);
    tuning = the_tuning(f);
    assert_int_equal(
        kc_store_get(st, KC_REC_BUILD, &tuning->u.tuning.winner_build, &build), KC_OK);
    assert_int_equal(kc_store_iterate(st, KC_REC_BLOB, collect_key, &blobs), 0);
    assert_int_equal(blobs.n, 5);
    for (size_t i = 0; i < blobs.n; i++)
        if (kc_key_cmp(&blobs.keys[i], &build->u.build.blob) != 0)
            assert_int_equal(kc_store_del(st, KC_REC_BLOB, &blobs.keys[i]), KC_OK);
    kc_free(build);
    kc_free(tuning);

    /* A new process hits without touching the other candidates' cubins:
     * had it fetched them, it would have found them gone and recompiled. */
    kcs_new_sim(f, NULL);
    kcs_new_launcher(f);
    kcs_vecs_init(&v, 1000);
    assert_int_equal(kc_kernel_get(f->l, &spec, &k), KC_OK);
    assert_int_equal(kc_kernel_launch(k, NULL, v.args, 4), KC_OK);
    kcs_vecs_check(&v);
    assert_int_equal(kc_kernel_wait_compiled(k), KC_OK);
    kc_kernel_stats(k, &s);
    assert_int_equal(s.store_hits, 1);
    assert_int_equal(s.compiles, 0);
    assert_int_equal(s.builds_reused, 5);
    kcs_vecs_free(&v);

    /* A new signature must tune: the four lost cubins compile again. */
    kcs_vecs_init(&v, 4096);
    assert_int_equal(kc_kernel_launch(k, NULL, v.args, 4), KC_OK);
    kcs_vecs_check(&v);
    kc_kernel_stats(k, &s);
    assert_int_equal(s.compiles, 4);
    assert_int_equal(s.tunes, 1);
    assert_int_equal(last_block(k), 256);
    kcs_vecs_free(&v);
}

static void test_registration_prefetches_stored_winners_unless_told_not_to(void **state)
{
    kcs_fx_t *f = *state;
    kc_kernel_spec_t spec = vadd_spec();
    kc_kernel_t *k;
    kc_kernel_stats_t s;
    kc_sim_counters_t c;
    kcs_vecs_t v;

    /* Two signatures tuned: their winners are the same build (BLOCK=256). */
    kcs_vecs_init(&v, 1000);
    assert_int_equal(kc_kernel_get(f->l, &spec, &k), KC_OK);
    assert_int_equal(kc_kernel_launch(k, NULL, v.args, 4), KC_OK);
    kcs_vecs_free(&v);
    kcs_vecs_init(&v, 4096);
    assert_int_equal(kc_kernel_launch(k, NULL, v.args, 4), KC_OK);
    kcs_vecs_free(&v);
    assert_int_equal(store_count(f, KC_REC_TUNING), 2);

    /* A new process: registration alone loads the one stored winner. */
    kcs_new_sim(f, NULL);
    kcs_new_launcher(f);
    assert_int_equal(kc_kernel_get(f->l, &spec, &k), KC_OK);
    assert_int_equal(kc_kernel_wait_compiled(k), KC_OK);
    kc_kernel_stats(k, &s);
    assert_int_equal(s.prefetched, 1);
    kc_sim_counters(f->sim, &c);
    assert_int_equal(c.modules_loaded, 1);
    assert_int_equal(c.launches, 0);
    kcs_vecs_init(&v, 4096);
    assert_int_equal(kc_kernel_launch(k, NULL, v.args, 4), KC_OK);
    kcs_vecs_check(&v);
    kc_sim_counters(f->sim, &c);
    assert_int_equal(c.modules_loaded, 1); /* the launch loaded nothing */
    kc_kernel_stats(k, &s);
    assert_int_equal(s.store_hits, 1);
    kcs_vecs_free(&v);

    /* With no_prefetch, nothing is loaded until a launch needs it. */
    kcs_new_sim(f, NULL);
    kc_launcher_opts_t o = kcs_sim_opts(f);
    o.no_prefetch = 1;
    kc_launcher_destroy(f->l);
    f->l = NULL;
    assert_int_equal(kc_launcher_create(&o, &f->l), KC_OK);
    assert_int_equal(kc_kernel_get(f->l, &spec, &k), KC_OK);
    assert_int_equal(kc_kernel_wait_compiled(k), KC_OK);
    kc_kernel_stats(k, &s);
    assert_int_equal(s.prefetched, 0);
    kc_sim_counters(f->sim, &c);
    assert_int_equal(c.modules_loaded, 0);
    kcs_vecs_init(&v, 1000);
    assert_int_equal(kc_kernel_launch(k, NULL, v.args, 4), KC_OK);
    kcs_vecs_check(&v);
    kc_sim_counters(f->sim, &c);
    assert_int_equal(c.modules_loaded, 1);
    kcs_vecs_free(&v);
}

/* A launch right after registration races the prefetch for the same
 * stored winner: whichever starts loading it first loads it, the other
 * takes that module (or, the prefetch, leaves it), so each process loads
 * the module once, however the two threads interleave. */
static void test_a_launch_racing_the_prefetch_loads_the_winner_once(void **state)
{
    kcs_fx_t *f = *state;
    kc_kernel_spec_t spec = vadd_spec();
    kc_kernel_t *k;
    kc_kernel_stats_t s;
    kc_sim_counters_t c;
    kcs_vecs_t v;

    kcs_vecs_init(&v, 1000);
    assert_int_equal(kc_kernel_get(f->l, &spec, &k), KC_OK);
    assert_int_equal(kc_kernel_launch(k, NULL, v.args, 4), KC_OK);
    kcs_vecs_free(&v);
    for (int round = 0; round < 40; round++) {
        kcs_new_sim(f, NULL);
        kcs_new_launcher(f);
        assert_int_equal(kc_kernel_get(f->l, &spec, &k), KC_OK);
        kcs_vecs_init(&v, 1000);
        assert_int_equal(kc_kernel_launch(k, NULL, v.args, 4), KC_OK);
        kcs_vecs_check(&v);
        kcs_vecs_free(&v);
        assert_int_equal(kc_kernel_wait_compiled(k), KC_OK);
        kc_kernel_stats(k, &s);
        kc_sim_counters(f->sim, &c);
        assert_int_equal(s.store_hits, 1);
        assert_int_equal(c.modules_loaded, 1);
        assert_true(s.prefetched <= 1);
    }
}

static void test_new_signature_retunes_but_reuses_stored_builds(void **state)
{
    kcs_fx_t *f = *state;
    kc_kernel_spec_t spec = vadd_spec();
    kc_kernel_t *k;
    kc_kernel_stats_t s;
    kcs_vecs_t v;

    kcs_vecs_init(&v, 1000);
    assert_int_equal(kc_kernel_get(f->l, &spec, &k), KC_OK);
    assert_int_equal(kc_kernel_launch(k, NULL, v.args, 4), KC_OK);
    kcs_vecs_free(&v);

    kc_launcher_destroy(f->l);
    f->l = NULL;
    kcs_new_sim(f, NULL);
    kcs_new_launcher(f);
    kcs_vecs_init(&v, 4096); /* other dims, and n is now a multiple of 16 */
    assert_int_equal(kc_kernel_get(f->l, &spec, &k), KC_OK);
    assert_int_equal(kc_kernel_launch(k, NULL, v.args, 4), KC_OK);
    kcs_vecs_check(&v);
    kc_kernel_stats(k, &s);
    assert_int_equal(s.compiles, 0);
    assert_int_equal(s.builds_reused, 5);
    assert_int_equal(s.tunes, 1);
    assert_int_equal(s.store_hits, 0);
    assert_int_equal(store_count(f, KC_REC_BUILD), 5);
    assert_int_equal(store_count(f, KC_REC_TUNING), 2);
    kcs_vecs_free(&v);
}

static void
test_failed_candidates_are_recorded_with_their_reason_and_skipped(void **state)
{
    kcs_fx_t *f = *state;
    /* 128 fails at launch, 512 does not compile, 1024 is over this device's
     * 512 threads, 2048 over CUDA's 1024: only 256 runs. */
    kc_sim_opts_t so = {.size = sizeof(kc_sim_opts_t), .max_threads = 512};
    kc_kernel_spec_t spec = inc_spec("test.flaky", flaky_src, "flaky", flaky_param);
    kc_kernel_t *k;
    kc_kernel_stats_t s;
    enum { N = 300 };
    float x[N];
    int64_t dims[1] = {N};
    kc_arg_t args[2] = {{.ptr = (uint64_t)(uintptr_t)x, .rank = 1, .dims = dims}};

    args[1].value.i = N;
    memset(x, 0, sizeof(x));
    kc_launcher_destroy(f->l);
    f->l = NULL;
    kcs_new_sim(f, &so);
    kcs_new_launcher(f);
    f->bh.fail_block = 128;
    assert_int_equal(kc_kernel_get(f->l, &spec, &k), KC_OK);
    assert_int_equal(kc_kernel_launch(k, NULL, args, 2), KC_OK);
    for (int i = 0; i < N; i++)
        assert_true(x[i] == 1.f);
    assert_int_equal(last_block(k), 256);
    kc_kernel_stats(k, &s);
    assert_int_equal(s.candidates_failed, 4);
    assert_int_equal(s.tunes, 1);
    /* Builds are published for the four that compiled. */
    assert_int_equal(store_count(f, KC_REC_BUILD), 4);

    kc_record_t *rec = the_tuning(f);
    const kc_tuning_rec_t *t = &rec->u.tuning;
    const kc_candidate_t *c;
    assert_int_equal(t->n_candidates, 5);
    c = cand_with_block(t, 256);
    assert_int_equal(c->status, KC_CAND_OK);
    assert_string_equal(c->reason, "");
    assert_false(kc_key_is_zero(&c->build));
    c = cand_with_block(t, 128);
    assert_int_equal(c->status, KC_CAND_LAUNCH_FAILED);
    assert_non_null(strstr(c->reason, "LAUNCH_FAILED"));
    c = cand_with_block(t, 512);
    assert_int_equal(c->status, KC_CAND_COMPILE_ERROR);
    assert_non_null(strstr(c->reason, "BLOCK 512 is not supported"));
    assert_true(kc_key_is_zero(&c->build));
    c = cand_with_block(t, 1024);
    assert_int_equal(c->status, KC_CAND_RESOURCES);
    assert_non_null(strstr(c->reason, "threads"));
    c = cand_with_block(t, 2048);
    assert_int_equal(c->status, KC_CAND_RESOURCES);
    assert_non_null(strstr(c->reason, "block[0]"));
    kc_free(rec);
}

static void test_sticky_error_stops_tuning(void **state)
{
    kcs_fx_t *f = *state;
    kc_kernel_spec_t spec = inc_spec("test.inc", kcs_inc_src, "inc", block_param5);
    kc_kernel_t *k;
    kc_kernel_stats_t s;
    enum { N = 100 };
    float x[N] = {0};
    int64_t dims[1] = {N};
    kc_arg_t args[2] = {{.ptr = (uint64_t)(uintptr_t)x, .rank = 1, .dims = dims}};

    args[1].value.i = N;
    f->bh.sticky_block = 128;
    assert_int_equal(kc_kernel_get(f->l, &spec, &k), KC_OK);
    assert_int_equal(kc_kernel_launch(k, NULL, args, 2), KC_ESTICKY);
    assert_non_null(strstr(kc_launcher_errmsg(f->l), "context"));
    assert_non_null(strstr(kc_launcher_errmsg(f->l), "ILLEGAL_ADDRESS"));
    kc_kernel_stats(k, &s);
    assert_int_equal(s.tunes, 0);
    assert_int_equal(store_count(f, KC_REC_TUNING), 0);
}

static void test_one_candidate_spec_skips_timing(void **state)
{
    kcs_fx_t *f = *state;
    kc_kernel_spec_t spec = inc_spec("test.inc1", kcs_inc_src, "inc", block_param1);
    kc_kernel_t *k;
    enum { N = 100 };
    float x[N] = {0};
    int64_t dims[1] = {N};
    kc_arg_t args[2] = {{.ptr = (uint64_t)(uintptr_t)x, .rank = 1, .dims = dims}};

    args[1].value.i = N;
    assert_int_equal(kc_kernel_get(f->l, &spec, &k), KC_OK);
    assert_int_equal(kc_kernel_launch(k, NULL, args, 2), KC_OK);
    assert_int_equal(sim_launches(f), 1);
    for (int i = 0; i < N; i++)
        assert_true(x[i] == 1.f);
    assert_int_equal(store_count(f, KC_REC_TUNING), 1);
    assert_int_equal(store_count(f, KC_REC_BUILD), 1);
}

static void test_bad_spec_and_bad_expression_name_field_and_column(void **state)
{
    kcs_fx_t *f = *state;
    kc_kernel_spec_t spec = vadd_spec();
    kc_kernel_t *k = (kc_kernel_t *)1;

    spec.grid[0] = "cdiv(n, BLOKC)";
    assert_int_equal(kc_kernel_get(f->l, &spec, &k), KC_EEXPR);
    assert_null(k);
    assert_non_null(strstr(kc_launcher_errmsg(f->l), "grid[0]"));
    assert_non_null(strstr(kc_launcher_errmsg(f->l), "column 9"));
    assert_non_null(strstr(kc_launcher_errmsg(f->l), "BLOKC"));

    spec = vadd_spec();
    spec.entry = NULL;
    assert_int_equal(kc_kernel_get(f->l, &spec, &k), KC_ESPEC);
    assert_non_null(strstr(kc_launcher_errmsg(f->l), "entry"));
    assert_non_null(strstr(kc_launcher_errmsg(f->l), "test.vadd"));
}

static void test_launcher_without_a_store_still_tunes_and_launches(void **state)
{
    kcs_fx_t *f = *state;
    kc_launcher_opts_t o = kcs_sim_opts(f);
    kc_kernel_spec_t spec = vadd_spec();
    kc_kernel_t *k;
    kc_kernel_stats_t s;
    kcs_vecs_t v;

    o.no_store = 1;
    kc_launcher_destroy(f->l);
    f->l = NULL;
    assert_int_equal(kc_launcher_create(&o, &f->l), KC_OK);
    assert_null(kc_launcher_store(f->l));
    kcs_vecs_init(&v, 500);
    assert_int_equal(kc_kernel_get(f->l, &spec, &k), KC_OK);
    assert_int_equal(kc_kernel_launch(k, NULL, v.args, 4), KC_OK);
    kcs_vecs_check(&v);
    kc_kernel_stats(k, &s);
    assert_int_equal(s.tunes, 1);
    assert_int_equal(s.publishes, 0);
    assert_int_equal(last_block(k), 256);
    kcs_vecs_free(&v);
}

static int path_exists(const char *dir, const char *name)
{
    char path[1200];
    struct stat sb;
    snprintf(path, sizeof(path), "%s%s", dir, name);
    return stat(path, &sb) == 0;
}

/* kc_launcher_create reads which store, and opens it at the first
 * registration: until then no directory or file is made. The first
 * kc_kernel_get opens it, and the launch publishes into it as before. */
static void test_store_is_opened_at_the_first_kernel_not_at_create(void **state)
{
    kcs_fx_t *f = *state;
    kc_launcher_opts_t o = kcs_sim_opts(f);
    kc_kernel_spec_t spec = vadd_spec();
    kc_kernel_t *k;
    kc_kernel_stats_t s;
    kcs_vecs_t v;
    char dir[600];

    snprintf(dir, sizeof(dir), "%s/lazy", f->dir);
    o.store_dir = dir;
    kc_launcher_destroy(f->l);
    f->l = NULL;
    assert_int_equal(kc_launcher_create(&o, &f->l), KC_OK);
    assert_false(path_exists(dir, ""));
    assert_int_equal(kc_kernel_get(f->l, &spec, &k), KC_OK);
    assert_true(path_exists(dir, "/data.mdb"));
    assert_non_null(kc_launcher_store(f->l));
    assert_string_equal(kc_store_path(kc_launcher_store(f->l)), dir);
    kcs_vecs_init(&v, 500);
    assert_int_equal(kc_kernel_launch(k, NULL, v.args, 4), KC_OK);
    kcs_vecs_check(&v);
    kc_kernel_stats(k, &s);
    assert_int_equal(s.tunes, 1);
    assert_int_equal(s.publishes, 1);
    kcs_vecs_free(&v);

    /* kc_launcher_store is a first use too. */
    kc_launcher_destroy(f->l);
    f->l = NULL;
    snprintf(dir, sizeof(dir), "%s/lazy2", f->dir);
    assert_int_equal(kc_launcher_create(&o, &f->l), KC_OK);
    assert_false(path_exists(dir, ""));
    assert_non_null(kc_launcher_store(f->l));
    assert_true(path_exists(dir, "/data.mdb"));
}

typedef struct first_use_arg {
    kc_launcher_t *l;
    kc_kernel_t *k;
    kc_store_t *st;
    int rc;
} first_use_arg_t;

static void *first_use_thread(void *p)
{
    first_use_arg_t *a = p;
    kc_kernel_spec_t spec = vadd_spec();
    a->rc = kc_kernel_get(a->l, &spec, &a->k);
    a->st = kc_launcher_store(a->l);
    return NULL;
}

/* Threads whose first calls on a new launcher race open its store once:
 * one store for all, one kernel. */
static void test_threads_racing_to_the_first_kernel_open_one_store(void **state)
{
    kcs_fx_t *f = *state;
    kc_launcher_opts_t o = kcs_sim_opts(f);
    enum { N = 8 };
    pthread_t th[N];
    first_use_arg_t a[N];
    char dir[600];

    snprintf(dir, sizeof(dir), "%s/race", f->dir);
    o.store_dir = dir;
    kc_launcher_destroy(f->l);
    f->l = NULL;
    assert_int_equal(kc_launcher_create(&o, &f->l), KC_OK);
    for (int i = 0; i < N; i++) {
        a[i] = (first_use_arg_t){.l = f->l};
        assert_int_equal(pthread_create(&th[i], NULL, first_use_thread, &a[i]), 0);
    }
    for (int i = 0; i < N; i++)
        assert_int_equal(pthread_join(th[i], NULL), 0);
    for (int i = 0; i < N; i++) {
        assert_int_equal(a[i].rc, KC_OK);
        assert_non_null(a[i].st);
        assert_ptr_equal(a[i].st, a[0].st);
        assert_ptr_equal(a[i].k, a[0].k);
    }
    assert_string_equal(kc_store_path(a[0].st), dir);
}

/* The environment is read at kc_launcher_create, as before: a KCACHE_DIR
 * changed between the creation and the first kernel does not move the
 * store. */
static void test_store_named_by_the_environment_at_create_is_the_one_opened(void **state)
{
    kcs_fx_t *f = *state;
    kc_launcher_opts_t o = kcs_sim_opts(f);
    kc_kernel_spec_t spec = vadd_spec();
    kc_kernel_t *k;
    char a[600], b[600];
    const char *had_path = getenv("KCACHE_PATH");
    const char *had_dir = getenv("KCACHE_DIR");
    char *saved_path = had_path ? strdup(had_path) : NULL;
    char *saved_dir = had_dir ? strdup(had_dir) : NULL;

    snprintf(a, sizeof(a), "%s/env-a", f->dir);
    snprintf(b, sizeof(b), "%s/env-b", f->dir);
    o.store_dir = NULL;
    unsetenv("KCACHE_PATH");
    setenv("KCACHE_DIR", a, 1);
    kc_launcher_destroy(f->l);
    f->l = NULL;
    assert_int_equal(kc_launcher_create(&o, &f->l), KC_OK);
    setenv("KCACHE_DIR", b, 1);
    assert_int_equal(kc_kernel_get(f->l, &spec, &k), KC_OK);
    if (saved_path)
        setenv("KCACHE_PATH", saved_path, 1);
    if (saved_dir)
        setenv("KCACHE_DIR", saved_dir, 1);
    else
        unsetenv("KCACHE_DIR");
    free(saved_path);
    free(saved_dir);
    assert_true(path_exists(a, "/data.mdb"));
    assert_false(path_exists(b, ""));
}

/* A store that cannot be opened is still a warning, logged now at the
 * first kernel, which registers and launches without a store. */
static void test_unopenable_store_is_told_at_the_first_kernel(void **state)
{
    kcs_fx_t *f = *state;
    kc_launcher_opts_t o = kcs_sim_opts(f);
    kc_kernel_spec_t spec = vadd_spec();
    kc_kernel_t *k;
    kcs_vecs_t v;
    char path[600];
    FILE *fp;

    snprintf(path, sizeof(path), "%s/not-a-dir", f->dir);
    fp = fopen(path, "w");
    assert_non_null(fp);
    fclose(fp);
    o.store_dir = path;
    kc_launcher_destroy(f->l);
    f->l = NULL;
    f->log[0] = '\0';
    assert_int_equal(kc_launcher_create(&o, &f->l), KC_OK);
    assert_null(strstr(f->log, "not-a-dir"));
    assert_int_equal(kc_kernel_get(f->l, &spec, &k), KC_OK);
    assert_non_null(strstr(f->log, "not-a-dir"));
    assert_null(kc_launcher_store(f->l));
    kcs_vecs_init(&v, 500);
    assert_int_equal(kc_kernel_launch(k, NULL, v.args, 4), KC_OK);
    kcs_vecs_check(&v);
    kcs_vecs_free(&v);
}

static void test_no_device_compiles_and_publishes_builds(void **state)
{
    kcs_fx_t *f = *state;
    kc_launcher_opts_t o = KC_LAUNCHER_OPTS_INIT;
    kc_kernel_spec_t spec = vadd_spec();
    kc_kernel_t *k;
    kc_kernel_stats_t s;
    kcs_vecs_t v;

    o.device = KC_DEVICE_NONE;
    o.arch = "sm_80";
    o.store_dir = f->dir;
    kc_launcher_destroy(f->l);
    f->l = NULL;
    assert_int_equal(kc_launcher_create(&o, &f->l), KC_OK);
    assert_string_equal(kc_launcher_arch(f->l), "sm_80");
    assert_int_equal(kc_kernel_get(f->l, &spec, &k), KC_OK);
    assert_int_equal(kc_kernel_wait_compiled(k), KC_OK);
    kc_kernel_stats(k, &s);
    assert_int_equal(s.compiles, 5);
    assert_int_equal(s.publishes, 1);
    assert_int_equal(store_count(f, KC_REC_BUILD), 5);
    assert_int_equal(store_count(f, KC_REC_TUNING), 0);
    kcs_vecs_init(&v, 10);
    assert_int_equal(kc_kernel_launch(k, NULL, v.args, 4), KC_ENODEVICE);
    kcs_vecs_free(&v);
}

static void test_no_device_needs_an_arch(void **state)
{
    (void)state;
    kc_launcher_opts_t o = KC_LAUNCHER_OPTS_INIT;
    kc_launcher_t *l = (kc_launcher_t *)1;
    o.device = KC_DEVICE_NONE;
    o.no_store = 1;
    assert_int_equal(kc_launcher_create(&o, &l), KC_EINVAL);
    assert_null(l);
    assert_non_null(strstr(kc_launcher_create_errmsg(), "arch"));
}

static void test_registering_the_same_spec_twice_gives_one_kernel(void **state)
{
    kcs_fx_t *f = *state;
    kc_kernel_spec_t spec = vadd_spec();
    kc_kernel_t *k1, *k2, *found;

    assert_int_equal(kc_kernel_get(f->l, &spec, &k1), KC_OK);
    assert_int_equal(kc_kernel_get(f->l, &spec, &k2), KC_OK);
    assert_ptr_equal(k1, k2);
    assert_int_equal(kc_kernel_find(f->l, "test.vadd", &found), KC_OK);
    assert_ptr_equal(found, k1);
    assert_int_equal(kc_kernel_find(f->l, "nope", &found), KC_ENOTFOUND);
}

static void test_spec_file_kernels_launch_and_match_their_c_twin(void **state)
{
    kcs_fx_t *f = *state;
    kc_kernel_spec_t spec = vadd_spec();
    kc_kernel_t **ks = NULL, *found, *twin;
    size_t n = 0;
    char path[600];
    kcs_vecs_t v;

    json_t *doc = json_pack(
        "{s:i, s:[{s:s, s:s, s:s, s:s, s:{s:[i,i,i,i,i]}, s:[{s:s, s:s, s:s}, {s:s, s:s, "
        "s:s},"
        " {s:s, s:s, s:s}, {s:s, s:s}], s:[s], s:[s]}]}",
        "version", 1, "kernels", "name", "test.vadd", "source_kind", "cuda", "source",
        kcs_vadd_src, "entry", "vadd", "params", "BLOCK", 64, 128, 256, 512, 1024, "args",
        "name", "a", "type", "f32*", "access", "in", "name", "b", "type", "f32*",
        "access", "in", "name", "out", "type", "f32*", "access", "out", "name", "n",
        "type", "i32", "grid", "cdiv(n, BLOCK)", "block", "BLOCK");
    assert_non_null(doc);
    snprintf(path, sizeof(path), "%s/specs.json", f->dir);
    assert_int_equal(json_dump_file(doc, path, 0), 0);
    json_decref(doc);

    assert_int_equal(kc_kernel_load_file(f->l, path, &ks, &n), KC_OK);
    assert_int_equal(n, 1);
    assert_int_equal(kc_kernel_find(f->l, "test.vadd", &found), KC_OK);
    assert_ptr_equal(found, ks[0]);
    /* The same kernel given as a C struct is the same kernel. */
    assert_int_equal(kc_kernel_get(f->l, &spec, &twin), KC_OK);
    assert_ptr_equal(twin, ks[0]);
    kcs_vecs_init(&v, 300);
    assert_int_equal(kc_kernel_launch(ks[0], NULL, v.args, 4), KC_OK);
    kcs_vecs_check(&v);
    assert_int_equal(last_block(ks[0]), 256);
    kcs_vecs_free(&v);
    kc_free(ks);
}

static void test_bad_spec_file_names_the_file_and_field(void **state)
{
    kcs_fx_t *f = *state;
    kc_kernel_t **ks = (kc_kernel_t **)1;
    size_t n = 7;
    char path[600];
    FILE *fp;

    snprintf(path, sizeof(path), "%s/bad.json", f->dir);
    fp = fopen(path, "w");
    assert_non_null(fp);
    fputs("{\"version\": 1, \"kernels\": [{\"name\": \"k\", \"source_kind\": \"cuda\", "
          "\"source\": \"x\", \"entry\": \"k\", \"args\": [], \"grid\": [\"1 +\"], "
          "\"block\": [\"1\"]}]}",
          fp);
    fclose(fp);
    assert_int_equal(kc_kernel_load_file(f->l, path, &ks, &n), KC_EEXPR);
    assert_null(ks);
    assert_int_equal(n, 0);
    assert_non_null(strstr(kc_launcher_errmsg(f->l), "bad.json"));
    assert_non_null(strstr(kc_launcher_errmsg(f->l), "grid[0]"));
}

typedef struct racer {
    kc_kernel_t *k;
    pthread_barrier_t *go;
    kcs_vecs_t v;
    int rc;
} racer_t;

static void *race(void *arg)
{
    racer_t *r = arg;
    pthread_barrier_wait(r->go);
    r->rc = kc_kernel_launch(r->k, NULL, r->v.args, 4);
    return NULL;
}

static void test_eight_threads_missing_at_once_tune_once(void **state)
{
    kcs_fx_t *f = *state;
    enum { T = 8 };
    kc_kernel_spec_t spec = vadd_spec();
    kc_kernel_t *k;
    kc_kernel_stats_t s;
    pthread_barrier_t go;
    pthread_t th[T];
    racer_t r[T];

    assert_int_equal(kc_kernel_get(f->l, &spec, &k), KC_OK);
    pthread_barrier_init(&go, NULL, T);
    for (int i = 0; i < T; i++) {
        r[i] = (racer_t){.k = k, .go = &go};
        kcs_vecs_init(&r[i].v, 2000);
        assert_int_equal(pthread_create(&th[i], NULL, race, &r[i]), 0);
    }
    for (int i = 0; i < T; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < T; i++) {
        assert_int_equal(r[i].rc, KC_OK);
        kcs_vecs_check(&r[i].v);
        kcs_vecs_free(&r[i].v);
    }
    pthread_barrier_destroy(&go);
    kc_kernel_stats(k, &s);
    assert_int_equal(s.tunes, 1);
    assert_int_equal(s.launches, T);
    assert_int_equal(store_count(f, KC_REC_TUNING), 1);
}

/* The launcher's messages are owned by the launcher (the common
 * diagnostics): a failed call on one launcher says why through
 * kc_launcher_errmsg of that launcher, and only of that one. */
static void test_a_failure_is_told_by_its_own_launcher_only(void **state)
{
    kcs_fx_t *f = *state;
    kc_launcher_opts_t o = kcs_sim_opts(f);
    kc_launcher_t *other = NULL;
    kc_kernel_t *k = NULL;
    kc_kernel_spec_t bad = kcs_vadd_spec("vadd_bad", block_param1);

    assert_int_equal(kc_launcher_create(&o, &other), KC_OK);
    bad.grid[0] = "cdiv(n, NOPE)"; /* names no parameter or argument */
    assert_int_not_equal(kc_kernel_get(f->l, &bad, &k), KC_OK);
    assert_null(k);
    assert_non_null(strstr(kc_launcher_errmsg(f->l), "NOPE"));
    assert_string_equal(kc_launcher_errmsg(other), "");
    assert_string_equal(kc_launcher_errmsg(NULL), "");
    kc_launcher_destroy(other);
}

static int toolchain_of_builds(void *user, kc_rec_kind_t kind, const kc_key_t *key,
                               const void *data, size_t len)
{
    char *toolchain = user;
    kc_record_t *rec = NULL;
    kc_build_desc_t *d = NULL;
    (void)key;
    if (kind != KC_REC_BUILD || kc_record_decode(data, len, &rec) != KC_OK)
        return 0;
    if (kc_build_preimage_decode(rec->u.build.preimage.data, rec->u.build.preimage.size,
                                 &d) == KC_OK)
        snprintf(toolchain, 64, "%s", d->toolchain);
    kc_free(d);
    kc_free(rec);
    return 0;
}

/* A PTX kernel on a device without a driver JIT (the simulation, as on a
 * CPU-only machine): nvJitLink compiles every candidate, tuning and
 * publishing go on as for CUDA C, and the builds name nvJitLink as their
 * toolchain. */
static void test_ptx_kernels_compile_with_nvjitlink_without_a_driver(void **state)
{
    kcs_fx_t *f = *state;
    static const char src[] = "extern \"C\" __global__ void vadd(const float *a, const "
                              "float *b, float *out, int n)\n"
                              "{\n"
                              "    int i = blockIdx.x * blockDim.x + threadIdx.x;\n"
                              "    if (i < n)\n"
                              "        out[i] = a[i] + b[i];\n"
                              "}\n";
    kc__compile_in_t in = {.source = src, .entry = "vadd", .arch = "sm_90"};
    kc__compile_out_t ptx;
    kc_kernel_t *k;
    kc_kernel_stats_t s;
    kcs_vecs_t v;
    char toolchain[64] = "";

    assert_int_equal(kc__nvrtc_compile_ptx(&in, &ptx), KC_OK);
    kc_kernel_spec_t spec = kcs_vadd_spec("test.vadd_ptx", block_param5);
    spec.source_kind = KC_SOURCE_PTX;
    spec.source = ptx.cubin;
    kcs_vecs_init(&v, 1000);
    assert_int_equal(kc_kernel_get(f->l, &spec, &k), KC_OK);
    assert_int_equal(kc_kernel_launch(k, NULL, v.args, 4), KC_OK);
    kcs_vecs_check(&v);
    assert_int_equal(kc_kernel_stats(k, &s), KC_OK);
    assert_int_equal(s.candidates_failed, 0);
    assert_int_equal(s.tunes, 1);
    assert_int_equal(store_count(f, KC_REC_TUNING), 1);
    /* The five configs of one PTX text are one cubin: five builds, one blob. */
    assert_int_equal(store_count(f, KC_REC_BUILD), 5);
    assert_int_equal(store_count(f, KC_REC_BLOB), 1);
    assert_int_equal(kc_store_iterate(kc_launcher_store(f->l), KC_REC_BUILD,
                                      toolchain_of_builds, toolchain),
                     KC_OK);
    assert_string_equal(toolchain, kc__nvjitlink_toolchain_id());
    kcs_vecs_free(&v);
    kc__compile_out_free(&ptx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_store_is_opened_at_the_first_kernel_not_at_create, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_store_named_by_the_environment_at_create_is_the_one_opened, setup,
            teardown),
        cmocka_unit_test_setup_teardown(test_unopenable_store_is_told_at_the_first_kernel,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_threads_racing_to_the_first_kernel_open_one_store, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_ptx_kernels_compile_with_nvjitlink_without_a_driver, setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_failure_is_told_by_its_own_launcher_only,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_first_launch_compiles_tunes_publishes_and_computes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_written_buffers_hold_one_launch_after_tuning,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_saved_buffers_go_to_host_memory_when_device_memory_is_short, setup,
            teardown),
        cmocka_unit_test_setup_teardown(
            test_second_launcher_on_the_same_store_hits_without_compiling, setup,
            teardown),
        cmocka_unit_test_setup_teardown(
            test_new_signature_retunes_but_reuses_stored_builds, setup, teardown),
        cmocka_unit_test_setup_teardown(test_warm_hit_reads_only_the_winners_cubin, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_registration_prefetches_stored_winners_unless_told_not_to, setup,
            teardown),
        cmocka_unit_test_setup_teardown(
            test_a_launch_racing_the_prefetch_loads_the_winner_once, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_failed_candidates_are_recorded_with_their_reason_and_skipped, setup,
            teardown),
        cmocka_unit_test_setup_teardown(test_sticky_error_stops_tuning, setup, teardown),
        cmocka_unit_test_setup_teardown(test_one_candidate_spec_skips_timing, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_bad_spec_and_bad_expression_name_field_and_column, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_launcher_without_a_store_still_tunes_and_launches, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_device_compiles_and_publishes_builds,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_device_needs_an_arch, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_registering_the_same_spec_twice_gives_one_kernel, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_spec_file_kernels_launch_and_match_their_c_twin, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_spec_file_names_the_file_and_field,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_eight_threads_missing_at_once_tune_once,
                                        setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
