/* Prebuilt candidates on the simulation device: binaries kcache did not
 * compile, stored with their launch metadata (binmeta), launched under
 * their ABI. Real NVRTC cubins stand in for Triton's (the sim runs a C
 * function by entry name); the records are what `cachectl import-triton`
 * writes. Checked: block and shared memory from the metadata (with the
 * opt-in above 48 KiB), the two scratch pointers Triton appends (a buffer
 * of grid x num_ctas x size, aligned; NULL for size 0), clusters and PDL
 * through launch_ex, the specialization refused naming the argument, TMA
 * and another arch refused at registration, one candidate launched without
 * timing, several tuned with the choice kept across launchers (processes),
 * and the JSON form of a spec. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kc_simkernels.h"
#include "kc_testutil.h"
#include "kcache/launch.h"
#include "kcache/record.h"
#include "kcache/sim.h"
#include "kcache/store.h"
#include "compiler.h"
#include "launcher_int.h"
#include "nvrtc_dl.h"
#include "pool.h"

static const char tadd_src[] =
    "extern \"C\" __global__ void tadd(float *x, float *y, int n, void *gs, void *ps)\n"
    "{ int i = blockIdx.x * blockDim.x + threadIdx.x; if (i < n) y[i] = x[i] + 1.0f; }\n";

/* What the sim saw at the last launch of tadd. */
typedef struct seen {
    unsigned grid[3], block[3], shared, cluster_x;
    uint32_t flags;
    uint64_t gscratch, pscratch;
    unsigned launches;
    uint64_t cost_per_block; /* the sim's cost model: per thread block */
} seen_t;

/* y[i] = x[i] + 1 over n, and a write over the whole global scratch (the
 * sim's allocator checks nothing, so the test checks the size itself). */
static int sim_tadd(void *user, const kc_sim_launch_t *l)
{
    seen_t *s = user;
    float *x = *(float **)l->params[0], *y = *(float **)l->params[1];
    int n = *(int *)l->params[2];
    s->gscratch = *(uint64_t *)l->params[3];
    s->pscratch = *(uint64_t *)l->params[4];
    memcpy(s->grid, l->grid, sizeof(s->grid));
    memcpy(s->block, l->block, sizeof(s->block));
    s->shared = l->shared;
    s->cluster_x = l->cluster_x;
    s->flags = l->flags;
    s->launches++;
    for (int i = 0; i < n; i++)
        y[i] = x[i] + 1.0f;
    return 0;
}

static uint64_t cost_tadd(void *user, const kc_sim_launch_t *l)
{
    (void)user;
    /* Faster with more threads per block: the 256-thread binary wins. */
    return 1000000u / l->block[0];
}

typedef struct fx {
    char dir[512];
    kc_sim_t *sim;
    kc_store_t *st;
    kc_launcher_t *l;
    seen_t seen;
    void *cubin;
    size_t cubin_len;
} fx_t;

static int setup(void **state)
{
    fx_t *f = calloc(1, sizeof(*f));
    kct_nvrtc_t nv;
    char err[2048];
    const char *opts[] = {"--gpu-architecture=sm_90"};

    if (!f || kct_tmpdir("prebuilt", f->dir, sizeof(f->dir)) != 0)
        return -1;
    if (kct_nvrtc_load(&nv, err, sizeof(err)) != 0 ||
        kct_nvrtc_compile(&nv, tadd_src, "tadd.cu", opts, 1, &f->cubin, &f->cubin_len,
                          err, sizeof(err)) != 0) {
        fprintf(stderr, "NVRTC: %s\n", err);
        return -1;
    }
    kct_nvrtc_unload(&nv);
    kc_sim_opts_t so = KC_SIM_OPTS_INIT;
    so.arch = "sm_90";
    if (kc_sim_create(&so, &f->sim) != KC_OK ||
        kc_sim_register(f->sim, "tadd", sim_tadd, cost_tadd, &f->seen) != KC_OK ||
        kc_store_open(f->dir, NULL, &f->st) != KC_OK)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx_t *f = *state;
    kc_launcher_destroy(f->l);
    kc_store_close(f->st);
    kc_sim_destroy(f->sim);
    free(f->cubin);
    kct_rmrf(f->dir);
    free(f);
    return 0;
}

static void new_launcher(fx_t *f)
{
    kc_launcher_opts_t o = KC_LAUNCHER_OPTS_INIT;
    kc_launcher_destroy(f->l);
    f->l = NULL;
    o.device = KC_DEVICE_SIM;
    o.sim = f->sim;
    o.store = f->st;
    o.budget_ms = 0.01;
    o.min_reps = 3;
    o.max_reps = 5;
    o.no_remote = 1;
    assert_int_equal(kc_launcher_create(&o, &f->l), KC_OK);
}

/* The binmeta a Triton import would write for tadd, varied by the test. */
typedef struct meta {
    unsigned warps, ctas, smem, gsize, galign;
    uint32_t flags;
    const char *arch, *tag;
} meta_t;

static const kc_binmeta_arg_t tadd_args[] = {
    {"x_ptr", "*fp32"}, {"y_ptr", "*fp32"}, {"n", "i32"}};
static const kc_binmeta_spec_t tadd_spec_props[] = {
    {0, KC_SPEC_ALIGN16}, {1, KC_SPEC_ALIGN16}, {2, KC_SPEC_DIV16}};

/* Store the cubin, a prebuilt build and its binmeta; the build key. */
static kc_key_t put_prebuilt(fx_t *f, const meta_t *m)
{
    kc_key_t blob, build;
    const char *opt = m->tag;
    kc_build_desc_t d = {.source_kind = KC_SOURCE_PREBUILT,
                         .entry = "tadd",
                         .options = &opt,
                         .n_options = 1,
                         .arch = m->arch ? m->arch : "sm_90",
                         .toolchain = "triton-3.6.0"};
    void *pre;
    size_t pre_len;

    assert_int_equal(kc_store_put_cubin(f->st, f->cubin, f->cubin_len, &blob), KC_OK);
    d.source_digest = blob;
    assert_int_equal(kc_build_preimage_encode(&d, &pre, &pre_len), KC_OK);
    build = kc_key_hash(pre, pre_len);
    kc_record_t b = {.kind = KC_REC_BUILD};
    b.u.build = (kc_build_rec_t){
        .preimage = {pre, pre_len}, .blob = blob, .entry = "tadd", .created = 1};
    assert_int_equal(kc_store_put(f->st, &build, &b), KC_OK);
    kc_free(pre);
    kc_record_t r = {.kind = KC_REC_BINMETA};
    r.u.binmeta = (kc_binmeta_rec_t){
        .build = build,
        .entry = "tadd",
        .arch = m->arch ? m->arch : "sm_90",
        .threads_per_block = m->warps * 32,
        .num_warps = m->warps,
        .warp_size = 32,
        .num_ctas = m->ctas ? m->ctas : 1,
        .dyn_smem = m->smem,
        .global_scratch_size = m->gsize,
        .global_scratch_align = m->galign ? m->galign : 1,
        .profile_scratch_size = 0,
        .profile_scratch_align = 1,
        .flags = m->flags,
        .compiler = "triton",
        .compiler_version = "3.6.0",
        .args = tadd_args,
        .n_args = 3,
        .spec = tadd_spec_props,
        .n_spec = 3,
    };
    assert_int_equal(kc_store_put(f->st, &build, &r), KC_OK);
    return build;
}

static const kc_arg_spec_t args3[] = {
    {"x", KC_ARG_POINTER, KC_DTYPE_F32, KC_ACCESS_IN, 0},
    {"y", KC_ARG_POINTER, KC_DTYPE_F32, KC_ACCESS_OUT, 0},
    {"n", KC_ARG_SCALAR, KC_DTYPE_I32, 0, 0},
};

static kc_kernel_spec_t prebuilt_spec(const char *name, const kc_prebuilt_t *c, size_t n)
{
    kc_kernel_spec_t s = {0};
    s.name = name;
    s.source_kind = KC_SOURCE_PREBUILT;
    s.prebuilt = c;
    s.n_prebuilt = n;
    s.args = args3;
    s.n_args = 3;
    s.grid[0] = "cdiv(n, XBLOCK)";
    return s;
}

typedef struct bufs {
    float *x, *y;
    int64_t dim;
    kc_arg_t a[3];
} bufs_t;

static void bufs_init(bufs_t *b, int n)
{
    b->x = kcs_falloc((size_t)n * 4);
    b->y = kcs_falloc((size_t)n * 4);
    for (int i = 0; i < n; i++)
        b->x[i] = (float)i, b->y[i] = -1;
    b->dim = n;
    b->a[0] = (kc_arg_t){.ptr = (uint64_t)(uintptr_t)b->x, .rank = 1, .dims = &b->dim};
    b->a[1] = (kc_arg_t){.ptr = (uint64_t)(uintptr_t)b->y, .rank = 1, .dims = &b->dim};
    b->a[2] = (kc_arg_t){.value.i = n};
}

static void bufs_check(const bufs_t *b)
{
    for (int64_t i = 0; i < b->dim; i++)
        assert_true(b->y[i] == b->x[i] + 1.0f);
}

static void bufs_free(bufs_t *b)
{
    free(b->x);
    free(b->y);
}

static void test_one_candidate_launches_untimed_under_its_abi(void **state)
{
    fx_t *f = *state;
    meta_t m = {.warps = 4, .smem = 64 * 1024, .gsize = 96, .galign = 128, .tag = "a"};
    kc_key_t build = put_prebuilt(f, &m);
    kc_param_t cfg[] = {{"XBLOCK", 128}};
    kc_prebuilt_t c[] = {{build, cfg, 1}};
    kc_kernel_spec_t s = prebuilt_spec("tadd1", c, 1);
    kc_kernel_t *k;
    kc_kernel_stats_t st;
    bufs_t b;

    new_launcher(f);
    assert_int_equal(kc_kernel_get(f->l, &s, &k), KC_OK);
    bufs_init(&b, 1024);
    assert_int_equal(kc_kernel_launch(k, NULL, b.a, 3), KC_OK);
    bufs_check(&b);
    /* One candidate: one launch, the real one, nothing timed. */
    assert_int_equal(f->seen.launches, 1);
    assert_int_equal(f->seen.grid[0], 8);
    assert_int_equal(f->seen.block[0], 128); /* 4 warps, not the spec's "1" */
    assert_int_equal(f->seen.shared, 64 * 1024);
    assert_int_equal(f->seen.cluster_x, 1);
    assert_int_not_equal(f->seen.gscratch, 0);
    assert_int_equal(f->seen.gscratch % 128, 0);
    assert_int_equal(f->seen.pscratch, 0); /* size 0: NULL, as Triton passes */
    assert_int_equal(kc_kernel_stats(k, &st), KC_OK);
    assert_int_equal(st.tunes, 1);
    assert_int_equal(st.compiles, 0);
    assert_int_equal(st.builds_reused, 1);
    /* The memo path launches the same way. */
    assert_int_equal(kc_kernel_launch(k, NULL, b.a, 3), KC_OK);
    assert_int_equal(f->seen.launches, 2);
    assert_int_equal(f->seen.block[0], 128);
    assert_int_equal(f->seen.shared, 64 * 1024);
    bufs_free(&b);
}

/* First in the list: nothing before it in this process asked for NVRTC
 * (the fixture compiles with its own loader, tests/support/nvrtc_dl.c). */
static void test_prebuilt_kernels_never_load_nvrtc(void **state)
{
    fx_t *f = *state;
    meta_t m = {.warps = 4, .smem = 0, .tag = "n"};
    kc_key_t build = put_prebuilt(f, &m);
    kc_param_t cfg[] = {{"XBLOCK", 128}};
    kc_prebuilt_t c[] = {{build, cfg, 1}};
    kc_kernel_spec_t s = prebuilt_spec("tadd_n", c, 1);
    kc_kernel_t *k;
    bufs_t b;

    assert_int_equal(kc__nvrtc_attempted(), 0);
    new_launcher(f);
    assert_int_equal(kc_kernel_get(f->l, &s, &k), KC_OK);
    bufs_init(&b, 1024);
    assert_int_equal(kc_kernel_launch(k, NULL, b.a, 3), KC_OK);
    bufs_check(&b);
    bufs_free(&b);
    kc_launcher_destroy(f->l);
    f->l = NULL;
    assert_int_equal(kc__nvrtc_attempted(), 0);
}

static void test_clusters_and_pdl_go_through_launch_ex(void **state)
{
    fx_t *f = *state;
    meta_t m = {.warps = 8, .ctas = 2, .flags = KC_BINMETA_PDL, .tag = "cluster"};
    kc_key_t build = put_prebuilt(f, &m);
    kc_param_t cfg[] = {{"XBLOCK", 256}};
    kc_prebuilt_t c[] = {{build, cfg, 1}};
    kc_kernel_spec_t s = prebuilt_spec("tadd_cluster", c, 1);
    kc_kernel_t *k;
    bufs_t b;

    new_launcher(f);
    assert_int_equal(kc_kernel_get(f->l, &s, &k), KC_OK);
    bufs_init(&b, 1024);
    assert_int_equal(kc_kernel_launch(k, NULL, b.a, 3), KC_OK);
    bufs_check(&b);
    assert_int_equal(f->seen.grid[0], 4 * 2); /* 4 clusters of 2 CTAs */
    assert_int_equal(f->seen.cluster_x, 2);
    assert_int_equal(f->seen.flags, KC_BINMETA_PDL);
    assert_int_equal(f->seen.block[0], 256);
    bufs_free(&b);
}

static void test_a_specialization_violation_is_refused_naming_the_argument(void **state)
{
    fx_t *f = *state;
    meta_t m = {.warps = 4, .tag = "spec"};
    kc_key_t build = put_prebuilt(f, &m);
    kc_param_t cfg[] = {{"XBLOCK", 128}};
    kc_prebuilt_t c[] = {{build, cfg, 1}};
    kc_kernel_spec_t s = prebuilt_spec("tadd_spec", c, 1);
    kc_kernel_t *k;
    bufs_t b;

    new_launcher(f);
    assert_int_equal(kc_kernel_get(f->l, &s, &k), KC_OK);
    bufs_init(&b, 1000); /* n = 1000 is not a multiple of 16 */
    assert_int_equal(kc_kernel_launch(k, NULL, b.a, 3), KC_EINVAL);
    assert_non_null(strstr(kc_launcher_errmsg(f->l), "argument 'n' = 1000"));
    assert_non_null(strstr(kc_launcher_errmsg(f->l), "divisible by 16"));
    assert_int_equal(f->seen.launches, 0);
    /* A misaligned pointer, likewise. */
    b.a[2].value.i = 992;
    b.a[0].ptr += 4;
    assert_int_equal(kc_kernel_launch(k, NULL, b.a, 3), KC_EINVAL);
    assert_non_null(strstr(kc_launcher_errmsg(f->l), "argument 'x'"));
    assert_non_null(strstr(kc_launcher_errmsg(f->l), "16-byte aligned"));
    assert_int_equal(f->seen.launches, 0);
    b.a[0].ptr -= 4;
    assert_int_equal(kc_kernel_launch(k, NULL, b.a, 3), KC_OK);
    assert_int_equal(f->seen.launches, 1);
    bufs_free(&b);
}

static void test_tma_another_arch_and_missing_metadata_fail_registration(void **state)
{
    fx_t *f = *state;
    meta_t tma = {.warps = 4, .flags = KC_BINMETA_TMA, .tag = "tma"};
    meta_t sm80 = {.warps = 4, .arch = "sm_80", .tag = "sm80"};
    kc_param_t cfg[] = {{"XBLOCK", 128}};
    kc_prebuilt_t c[] = {{put_prebuilt(f, &tma), cfg, 1}};
    kc_kernel_spec_t s = prebuilt_spec("tadd_tma", c, 1);
    kc_kernel_t *k;

    new_launcher(f);
    assert_int_equal(kc_kernel_get(f->l, &s, &k), KC_EUNSUPPORTED);
    assert_non_null(strstr(kc_launcher_errmsg(f->l), "not supported yet"));
    c[0].build = put_prebuilt(f, &sm80);
    s.name = "tadd_sm80";
    assert_int_equal(kc_kernel_get(f->l, &s, &k), KC_ESPEC);
    assert_non_null(strstr(kc_launcher_errmsg(f->l), "for sm_80, the device is sm_90"));
    memset(&c[0].build, 0x5a, sizeof(c[0].build));
    s.name = "tadd_missing";
    assert_int_equal(kc_kernel_get(f->l, &s, &k), KC_ESPEC);
    assert_non_null(strstr(kc_launcher_errmsg(f->l), "no launch metadata"));
    /* What a prebuilt kernel must not have. */
    c[0].build = put_prebuilt(f, &(meta_t){.warps = 4, .tag = "ok"});
    s.block[0] = "128";
    assert_int_equal(kc_kernel_get(f->l, &s, &k), KC_ESPEC);
    assert_non_null(strstr(kc_launcher_errmsg(f->l), "metadata"));
    s.block[0] = NULL;
    s.source = "x";
    assert_int_equal(kc_kernel_get(f->l, &s, &k), KC_ESPEC);
    assert_non_null(
        strstr(kc_launcher_errmsg(f->l), "source: a prebuilt kernel has none"));
}

static void test_candidates_are_tuned_and_the_choice_persists(void **state)
{
    fx_t *f = *state;
    kc_param_t c64[] = {{"XBLOCK", 64}}, c256[] = {{"XBLOCK", 256}},
               c128[] = {{"XBLOCK", 128}};
    kc_prebuilt_t c[] = {
        {put_prebuilt(f, &(meta_t){.warps = 2, .tag = "w2"}), c64, 1},
        {put_prebuilt(f, &(meta_t){.warps = 8, .tag = "w8"}), c256, 1},
        {put_prebuilt(f, &(meta_t){.warps = 4, .tag = "w4"}), c128, 1},
    };
    kc_kernel_spec_t s = prebuilt_spec("tadd_tuned", c, 3);
    kc_kernel_t *k;
    kc_kernel_stats_t st;
    kc_param_t last[1];
    size_t n;
    bufs_t b;

    new_launcher(f);
    assert_int_equal(kc_kernel_get(f->l, &s, &k), KC_OK);
    bufs_init(&b, 4096);
    assert_int_equal(kc_kernel_launch(k, NULL, b.a, 3), KC_OK);
    bufs_check(&b);
    assert_true(f->seen.launches > 3); /* timed */
    assert_int_equal(kc_kernel_last_config(k, last, 1, &n), KC_OK);
    assert_int_equal(last[0].value, 256); /* 8 warps: the cheapest in the sim */
    assert_int_equal(f->seen.block[0], 256);
    assert_int_equal(kc_kernel_stats(k, &st), KC_OK);
    assert_int_equal(st.tunes, 1);

    /* A new launcher (a fresh process): the stored tuning, no timing. */
    new_launcher(f);
    f->seen.launches = 0;
    for (int i = 0; i < 4096; i++)
        b.y[i] = -1;
    assert_int_equal(kc_kernel_get(f->l, &s, &k), KC_OK);
    assert_int_equal(kc_kernel_launch(k, NULL, b.a, 3), KC_OK);
    bufs_check(&b);
    assert_int_equal(f->seen.launches, 1);
    assert_int_equal(f->seen.block[0], 256);
    assert_int_equal(f->seen.grid[0], 16);
    assert_int_equal(kc_kernel_stats(k, &st), KC_OK);
    assert_int_equal(st.tunes, 0);
    assert_int_equal(st.store_hits, 1);
    bufs_free(&b);
}

/* A process whose prebuilt kernel's tuning is stored starts no thread: the
 * registration holds the candidates' tasks (nothing compiles) and the
 * first launch loads the stored winner on the caller. A signature the
 * store lacks then starts them and tunes as before. */
static void test_a_stored_prebuilt_kernel_runs_without_a_thread(void **state)
{
    fx_t *f = *state;
    kc_param_t c64[] = {{"XBLOCK", 64}}, c256[] = {{"XBLOCK", 256}};
    kc_prebuilt_t c[] = {
        {put_prebuilt(f, &(meta_t){.warps = 2, .tag = "w2"}), c64, 1},
        {put_prebuilt(f, &(meta_t){.warps = 8, .tag = "w8"}), c256, 1},
    };
    kc_kernel_spec_t s = prebuilt_spec("tadd_threadless", c, 2);
    kc_kernel_t *k;
    kc_kernel_stats_t st;
    bufs_t b, b2;

    new_launcher(f);
    assert_int_equal(kc_kernel_get(f->l, &s, &k), KC_OK);
    bufs_init(&b, 4096);
    assert_int_equal(kc_kernel_launch(k, NULL, b.a, 3), KC_OK); /* tunes */
    assert_int_equal(kc_kernel_stats(k, &st), KC_OK);
    assert_int_equal(st.tunes, 1);

    new_launcher(f);
    f->seen.launches = 0;
    assert_int_equal(kc_kernel_get(f->l, &s, &k), KC_OK);
    assert_int_equal(kc_kernel_launch(k, NULL, b.a, 3), KC_OK);
    bufs_check(&b);
    assert_int_equal(f->seen.launches, 1);
    assert_int_equal(f->seen.block[0], 256);
    assert_int_equal(kc_kernel_stats(k, &st), KC_OK);
    assert_int_equal(st.store_hits, 1);
    assert_int_equal(st.builds_reused, 0); /* the candidates' tasks did not run */
    assert_int_equal(kc__pool_started(f->l->pool), 0);
    /* Candidates are reported once their tasks ran: not yet. */
    size_t n;
    kc_param_t p[1];
    assert_int_equal(kc_kernel_candidate(k, 0, p, 1, &n, NULL), KC_EBUSY);

    /* Another size: no stored tuning, so the candidates are needed. */
    bufs_init(&b2, 1024);
    assert_int_equal(kc_kernel_launch(k, NULL, b2.a, 3), KC_OK);
    bufs_check(&b2);
    assert_int_equal(kc_kernel_stats(k, &st), KC_OK);
    assert_int_equal(st.tunes, 1);
    assert_int_equal(st.builds_reused, 2);
    assert_int_equal(kc_kernel_candidate(k, 0, p, 1, &n, NULL), KC_OK);
    assert_int_equal(kc_kernel_wait_compiled(k), KC_OK);
    bufs_free(&b);
    bufs_free(&b2);
}

static void test_a_json_spec_with_candidates_loads_and_launches(void **state)
{
    fx_t *f = *state;
    kc_key_t b1 = put_prebuilt(f, &(meta_t){.warps = 4, .tag = "j1"});
    char hex[KC_KEY_HEX_LEN + 1], path[600];
    kc_kernel_t **ks = NULL;
    size_t n = 0;
    bufs_t b;

    kc_key_to_hex(&b1, hex);
    snprintf(path, sizeof(path), "%s/spec.json", f->dir);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fprintf(fp,
            "{\"version\": 1, \"kernels\": [{\"name\": \"tadd_json\", \"source_kind\": "
            "\"prebuilt\", \"candidates\": [{\"build\": \"%s\", \"config\": {\"XBLOCK\": "
            "128, \"num_warps\": 4}}], \"args\": [{\"name\": \"x\", \"type\": \"f32*\", "
            "\"access\": \"in\"}, {\"name\": \"y\", \"type\": \"f32*\", \"access\": "
            "\"out\"}, {\"name\": \"n\", \"type\": \"i32\"}], \"grid\": [\"cdiv(n, "
            "XBLOCK)\"]}]}",
            hex);
    fclose(fp);
    new_launcher(f);
    assert_int_equal(kc_kernel_load_file(f->l, path, &ks, &n), KC_OK);
    assert_int_equal(n, 1);
    bufs_init(&b, 512);
    assert_int_equal(kc_kernel_launch(ks[0], NULL, b.a, 3), KC_OK);
    bufs_check(&b);
    assert_int_equal(f->seen.grid[0], 4);
    assert_int_equal(f->seen.block[0], 128);
    kc_free(ks);
    bufs_free(&b);

    /* The same document from memory (what the Python package passes). */
    char doc[2048];
    int len =
        snprintf(doc, sizeof(doc),
                 "{\"version\": 1, \"kernels\": [{\"name\": \"tadd_mem\", "
                 "\"source_kind\": \"prebuilt\", \"candidates\": [{\"build\": "
                 "\"%s\", \"config\": {\"XBLOCK\": 256}}], \"args\": [{\"name\": "
                 "\"x\", \"type\": \"f32*\", \"access\": \"in\"}, {\"name\": \"y\", "
                 "\"type\": \"f32*\", \"access\": \"out\"}, {\"name\": \"n\", "
                 "\"type\": \"i32\"}], \"grid\": [\"cdiv(n, XBLOCK)\"]}]}",
                 hex);
    assert_int_equal(kc_kernel_load_json(f->l, doc, (size_t)len, "python", NULL, &ks, &n),
                     KC_OK);
    assert_int_equal(n, 1);
    bufs_init(&b, 512);
    assert_int_equal(kc_kernel_launch(ks[0], NULL, b.a, 3), KC_OK);
    bufs_check(&b);
    assert_int_equal(f->seen.grid[0], 2);
    kc_free(ks);
    bufs_free(&b);
    assert_int_equal(kc_kernel_load_json(f->l, "{", 1, "python", NULL, &ks, &n),
                     KC_ESPEC);
    assert_non_null(strstr(kc_launcher_errmsg(f->l), "python"));

    /* A JSON prebuilt kernel with a block, or with source, says why. */
    fp = fopen(path, "w");
    fprintf(fp, "{\"version\": 1, \"kernels\": [{\"name\": \"bad\", \"source_kind\": "
                "\"prebuilt\", \"source\": \"x\", \"candidates\": [], \"grid\": [1]}]}");
    fclose(fp);
    assert_int_equal(kc_kernel_load_file(f->l, path, &ks, &n), KC_ESPEC);
    assert_non_null(
        strstr(kc_launcher_errmsg(f->l), "source: a prebuilt kernel has none"));
    fp = fopen(path, "w");
    fprintf(fp, "{\"version\": 1, \"kernels\": [{\"name\": \"bad\", \"source_kind\": "
                "\"prebuilt\", \"candidates\": [{\"build\": \"xyz\"}], \"grid\": [1]}]}");
    fclose(fp);
    assert_int_equal(kc_kernel_load_file(f->l, path, &ks, &n), KC_ESPEC);
    assert_non_null(strstr(kc_launcher_errmsg(f->l), "candidates[0]: build"));
}

/* Imported binaries in a lower layer (an image's store): the tuning goes
 * to the writable layer above, with the winner's build and its binmeta
 * copied up beside it, so the next process finds all three there. The
 * binary asks for 64 KiB of shared memory: the second process's store hit
 * launches it only if loading the stored winner made the opt-in. */
static void test_a_winner_from_a_lower_layer_is_copied_up_with_its_metadata(void **state)
{
    fx_t *f = *state;
    kc_param_t cfg[] = {{"XBLOCK", 128}};
    kc_prebuilt_t c[] = {
        {put_prebuilt(f, &(meta_t){.warps = 4, .smem = 64 * 1024, .tag = "lower"}), cfg,
         1}};
    kc_kernel_spec_t s = prebuilt_spec("tadd_layers", c, 1);
    kc_launcher_opts_t o = KC_LAUNCHER_OPTS_INIT;
    kc_kernel_t *k;
    kc_kernel_stats_t st;
    char path[1200], upper[600];
    kc_record_t *rec = NULL;
    bufs_t b;

    kc_store_close(f->st); /* one handle per store and process */
    f->st = NULL;
    snprintf(upper, sizeof(upper), "%s/up", f->dir);
    snprintf(path, sizeof(path), "%s:%s", upper, f->dir);
    o.device = KC_DEVICE_SIM;
    o.sim = f->sim;
    o.store_dir = path;
    o.no_remote = 1;
    bufs_init(&b, 1024);
    for (int round = 0; round < 2; round++) {
        assert_int_equal(kc_launcher_create(&o, &f->l), KC_OK);
        assert_int_equal(kc_kernel_get(f->l, &s, &k), KC_OK);
        assert_int_equal(kc_kernel_launch(k, NULL, b.a, 3), KC_OK);
        bufs_check(&b);
        assert_int_equal(kc_kernel_stats(k, &st), KC_OK);
        assert_int_equal(st.tunes, round == 0 ? 1 : 0);
        assert_int_equal(st.store_hits, round == 0 ? 0 : 1);
        kc_launcher_destroy(f->l);
        f->l = NULL;
    }
    bufs_free(&b);
    kc_store_t *up = NULL;
    assert_int_equal(kc_store_open(upper, NULL, &up), KC_OK);
    assert_int_equal(kc_store_get(up, KC_REC_BUILD, &c[0].build, &rec), KC_OK);
    kc_free(rec);
    assert_int_equal(kc_store_get(up, KC_REC_BINMETA, &c[0].build, &rec), KC_OK);
    assert_int_equal(rec->u.binmeta.threads_per_block, 128);
    kc_free(rec);
    kc_store_close(up);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_prebuilt_kernels_never_load_nvrtc, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_one_candidate_launches_untimed_under_its_abi,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_clusters_and_pdl_go_through_launch_ex, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_a_specialization_violation_is_refused_naming_the_argument, setup,
            teardown),
        cmocka_unit_test_setup_teardown(
            test_tma_another_arch_and_missing_metadata_fail_registration, setup,
            teardown),
        cmocka_unit_test_setup_teardown(
            test_a_stored_prebuilt_kernel_runs_without_a_thread, setup, teardown),
        cmocka_unit_test_setup_teardown(test_candidates_are_tuned_and_the_choice_persists,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_a_json_spec_with_candidates_loads_and_launches, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_a_winner_from_a_lower_layer_is_copied_up_with_its_metadata, setup,
            teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
