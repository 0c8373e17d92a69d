/* Importing a Triton cache (kcache/triton.h) from hand-made hash
 * directories: a good entry's records, each malformed case failing the
 * whole import with the store unchanged, the skipped cases with their
 * reasons, idempotent re-import, dry runs, and the signature parser. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "kc_testutil.h"
#include "kcache/errors.h"
#include "kcache/store.h"
#include "kcache/triton.h"
#include "triton_cache.h"

static const char good_json[] =
    "{\"hash\": \"H\", \"target\": {\"backend\": \"cuda\", \"arch\": 90, \"warp_size\": "
    "32},"
    " \"num_warps\": 4, \"num_ctas\": 1, \"num_stages\": 3, \"warp_size\": 32,"
    " \"launch_cooperative_grid\": false, \"launch_pdl\": true,"
    " \"triton_version\": \"3.9.0\", \"tensordesc_meta\": [], \"shared\": 1024,"
    " \"tmem_size\": 0, \"global_scratch_size\": 0, \"global_scratch_align\": 1,"
    " \"profile_scratch_size\": 0, \"profile_scratch_align\": 1, \"name\": \"NAME\"}";

static const char good_source[] =
    "#loc = loc(\"/x.py\":1:0)\nmodule {\n"
    "  tt.func public @NAME(%x_ptr: !tt.ptr<f32> {tt.divisibility = 16 : i32} "
    "loc(\"x_ptr\"(#loc)), %n: i32 {tt.divisibility = 16 : i32} loc(\"n\"(#loc)), "
    "%arg2: i64 loc(\"m\"(#loc)), %s: f32 loc(\"s, (\\\"odd\\\")\"(#loc)), "
    "%o: !tt.ptr<bf16, 1> loc(#loc)) attributes {noinline = false} {\n"
    "    tt.return loc(#loc)\n  } loc(#loc)\n} loc(#loc)\n";

static const char good_ptx[] = "//\n.version 8.4\n.target sm_90a\n.address_size 64\n";

typedef struct fixture {
    char root[512];
    char cache[600];
    kc_store_t *st;
} fixture_t;

/* s with every "from" replaced by "to" (malloc'd). */
static char *subst(const char *s, const char *from, const char *to)
{
    size_t fl = strlen(from), tl = strlen(to), n = 0;
    const char *p;
    char *out, *o;

    for (p = s; (p = strstr(p, from)); p += fl)
        n++;
    out = malloc(strlen(s) + n * tl + 1);
    assert_non_null(out);
    for (o = out; (p = strstr(s, from)); s = p + fl) {
        memcpy(o, s, (size_t)(p - s));
        o += p - s;
        memcpy(o, to, tl);
        o += tl;
    }
    strcpy(o, s);
    return out;
}

static void write_file(const char *dir, const char *name, const void *data, size_t len)
{
    char path[1024];
    FILE *f;

    assert_true(snprintf(path, sizeof path, "%s/%s", dir, name) < (int)sizeof path);
    assert_non_null(f = fopen(path, "wb"));
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

/* A minimal cubin: a 64-bit ELF header for EM_CUDA and the kernel's name. */
static size_t make_cubin(const char *name, uint8_t *out, size_t cap)
{
    size_t n = strlen(name) + 1;

    assert_true(64 + n <= cap);
    memset(out, 0, 64);
    memcpy(out,
           "\x7f"
           "ELF",
           4);
    out[4] = 2;    /* 64-bit */
    out[5] = 1;    /* little-endian */
    out[6] = 1;    /* version */
    out[18] = 190; /* EM_CUDA */
    memcpy(out + 64, name, n);
    return 64 + n;
}

typedef struct entry_spec {
    const char *json;   /* NULL: good_json */
    const char *source; /* NULL: good_source */
    int no_cubin;
    const void *cubin; /* NULL: make_cubin */
    size_t cubin_len;
} entry_spec_t;

/* Write hash directory <cache>/<hash> for kernel name. */
static void make_entry(const char *cache, const char *hash, const char *name,
                       const entry_spec_t *es)
{
    char dir[1024], file[256], grp[2048];
    uint8_t cubin[256];
    entry_spec_t none = {0};

    if (!es)
        es = &none;
    mkdir(cache, 0755);
    snprintf(dir, sizeof dir, "%s/%s", cache, hash);
    assert_int_equal(mkdir(dir, 0755), 0);
    char *json = subst(es->json ? es->json : good_json, "NAME", name);
    char qhash[64];
    snprintf(qhash, sizeof qhash, "\"%s\"", hash);
    char *json2 = subst(json, "\"H\"", qhash);
    char *src = subst(es->source ? es->source : good_source, "NAME", name);
    /* The group file names the directory Triton wrote, since moved. */
    snprintf(grp, sizeof grp,
             "{\"child_paths\": {\"%s.json\": \"/gone/%s/%s.json\", "
             "\"%s.cubin\": \"/gone/%s/%s.cubin\"}}",
             name, hash, name, name, hash, name);
    snprintf(file, sizeof file, "__grp__%s.json", name);
    write_file(dir, file, grp, strlen(grp));
    snprintf(file, sizeof file, "%s.json", name);
    write_file(dir, file, json2, strlen(json2));
    snprintf(file, sizeof file, "%s.source", name);
    write_file(dir, file, src, strlen(src));
    snprintf(file, sizeof file, "%s.ptx", name);
    write_file(dir, file, good_ptx, strlen(good_ptx));
    if (!es->no_cubin) {
        snprintf(file, sizeof file, "%s.cubin", name);
        if (es->cubin)
            write_file(dir, file, es->cubin, es->cubin_len);
        else
            write_file(dir, file, cubin, make_cubin(name, cubin, sizeof cubin));
    }
    free(json);
    free(json2);
    free(src);
}

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof(*f));
    char dir[700];

    if (!f || kct_tmpdir("test_triton_import", f->root, sizeof(f->root)) != 0)
        return -1;
    snprintf(f->cache, sizeof f->cache, "%s/cache", f->root);
    snprintf(dir, sizeof dir, "%s/store", f->root);
    if (mkdir(f->cache, 0755) != 0 || kc_store_open(dir, NULL, &f->st) != KC_OK)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    kc_store_close(f->st);
    kct_rmtree(f->root, 0);
    free(f);
    return 0;
}

/* The records an import may add: blobs, builds, tunings and binmetas. */
static uint64_t n_records(kc_store_t *st)
{
    kc_store_stats_t s;
    uint64_t n = 0;

    assert_int_equal(kc_store_stats(st, &s), KC_OK);
    n = s.records[KC_REC_BLOB] + s.records[KC_REC_BUILD] + s.records[KC_REC_TUNING];
    return n + s.records[KC_REC_BINMETA];
}

static void test_a_good_entry_loads_with_every_field(void **state)
{
    fixture_t *f = *state;
    kc_triton_entry_t *e = NULL;
    char dir[1024], err[512];

    make_entry(f->cache, "HASHA", "add_kernel", NULL);
    snprintf(dir, sizeof dir, "%s/HASHA", f->cache);
    assert_int_equal(kc_triton_entry_load(dir, &e, err, sizeof err), KC_OK);
    assert_string_equal(e->dir_name, "HASHA");
    assert_string_equal(e->name, "add_kernel");
    assert_string_equal(e->triton_hash, "HASHA");
    assert_string_equal(e->version, "3.9.0");
    assert_string_equal(e->arch, "sm_90a"); /* the PTX's suffix */
    assert_int_equal(e->num_stages, 3);
    assert_int_equal(e->cubin.size, 64 + strlen("add_kernel") + 1);

    const kc_binmeta_rec_t *m = &e->binmeta;
    assert_memory_equal(m->build.b, e->build_key.b, 16);
    assert_string_equal(m->compiler, "triton");
    assert_string_equal(m->compiler_version, "3.9.0");
    assert_string_equal(m->entry, "add_kernel");
    assert_int_equal(m->threads_per_block, 128);
    assert_int_equal(m->num_warps, 4);
    assert_int_equal(m->warp_size, 32);
    assert_int_equal(m->num_ctas, 1);
    assert_int_equal(m->dyn_smem, 1024);
    assert_int_equal(m->flags, KC_BINMETA_PDL);
    assert_int_equal(m->n_args, 5);
    static const char *const want[][2] = {
        {"x_ptr", "*fp32"}, {"n", "i32"}, {"arg2", "i64"}, {"s", "fp32"}, {"o", "*bf16"}};
    for (size_t i = 0; i < 5; i++) {
        assert_string_equal(m->args[i].name, want[i][0]);
        assert_string_equal(m->args[i].type, want[i][1]);
    }
    assert_int_equal(m->n_spec, 2);
    assert_int_equal(m->spec[0].arg, 0);
    assert_int_equal(m->spec[0].prop, KC_SPEC_ALIGN16);
    assert_int_equal(m->spec[1].arg, 1);
    assert_int_equal(m->spec[1].prop, KC_SPEC_DIV16);

    /* The build preimage: prebuilt, the cubin's key, Triton's hash. */
    kc_key_t blob = kc_key_hash(e->cubin.data, e->cubin.size), key;
    const char *opt[] = {"triton-hash=HASHA"};
    kc_build_desc_t d = {.source_kind = KC_SOURCE_PREBUILT,
                         .source_digest = blob,
                         .entry = "add_kernel",
                         .options = opt,
                         .n_options = 1,
                         .arch = "sm_90a",
                         .toolchain = "triton-3.9.0"};
    assert_int_equal(kc_build_key(&d, &key), KC_OK);
    assert_memory_equal(key.b, e->build_key.b, 16);
    assert_memory_equal(e->build.blob.b, blob.b, 16);
    assert_string_equal(e->build.entry, "add_kernel");
    assert_int_equal(e->build.compile_us, 0);
    kc_triton_entry_free(e);
    kc_triton_entry_free(NULL);
}

static void test_import_stores_exactly_what_was_parsed(void **state)
{
    fixture_t *f = *state;
    kc_triton_report_t *r = NULL;
    kc_triton_entry_t *e = NULL;
    kc_record_t *build = NULL, *meta = NULL;
    void *cubin = NULL;
    size_t len = 0;
    char dir[1024], err[512];

    make_entry(f->cache, "HASHA", "add_kernel", NULL);
    make_entry(f->cache, "HASHB", "mul_kernel", NULL);
    assert_int_equal(kc_triton_import(f->st, f->cache, NULL, &r), KC_OK);
    assert_int_equal(r->n_items, 2);
    assert_int_equal(r->imported, 2);
    assert_int_equal(r->present + r->skipped, 0);
    assert_string_equal(r->items[0].dir_name, "HASHA");
    assert_int_equal(r->items[0].status, KC_TRITON_IMPORTED);
    kc_triton_report_free(r);

    snprintf(dir, sizeof dir, "%s/HASHA", f->cache);
    assert_int_equal(kc_triton_entry_load(dir, &e, err, sizeof err), KC_OK);
    assert_int_equal(kc_store_get_build_cubin(f->st, &e->build_key, &build, &cubin, &len),
                     KC_OK);
    assert_int_equal(len, e->cubin.size);
    assert_memory_equal(cubin, e->cubin.data, len);
    assert_int_equal(build->u.build.preimage.size, e->build.preimage.size);
    assert_memory_equal(build->u.build.preimage.data, e->build.preimage.data,
                        e->build.preimage.size);
    assert_int_equal(kc_store_get(f->st, KC_REC_BINMETA, &e->build_key, &meta), KC_OK);
    void *a = NULL, *b = NULL;
    size_t al, bl;
    kc_record_t want = {.kind = KC_REC_BINMETA, .version = KC_RECORD_VERSION};
    want.u.binmeta = e->binmeta;
    assert_int_equal(kc_record_encode(meta, &a, &al), KC_OK);
    assert_int_equal(kc_record_encode(&want, &b, &bl), KC_OK);
    assert_int_equal(al, bl);
    assert_memory_equal(a, b, al);
    kc_free(a);
    kc_free(b);
    kc_free(meta);
    kc_free(build);
    kc_free(cubin);
    kc_triton_entry_free(e);
}

static void test_each_malformed_entry_fails_the_import_and_changes_nothing(void **state)
{
    fixture_t *f = *state;
    static const uint8_t not_elf[] = "MZ this is no cubin at all, not even close......"
                                     "................................";
    char *no_key = subst(good_json, "\"num_warps\": 4, ", "");
    char *wrong_type = subst(good_json, "\"shared\": 1024", "\"shared\": \"1024\"");
    char *no_pow2 =
        subst(good_json, "\"global_scratch_align\": 1", "\"global_scratch_align\": 3");
    char *bad_sig = subst(good_source, "%n: i32", "%n i32");
    char *unbalanced = subst(good_source, "loc(\"n\"(#loc))", "loc(\"n\"(#loc)");
    struct {
        const char *what, *file, *msg;
        entry_spec_t es;
    } cases[] = {
        {"bad json", "bad_kernel.json", "not valid JSON", {.json = "{\"hash\": "}},
        {"missing key", "bad_kernel.json", "'num_warps' missing", {.json = no_key}},
        {"wrong type",
         "bad_kernel.json",
         "'shared' is not an integer",
         {.json = wrong_type}},
        {"bad alignment", "bad_kernel.json", "power of two", {.json = no_pow2}},
        {"bad signature", "bad_kernel.source", "no name and type", {.source = bad_sig}},
        {"unbalanced", "bad_kernel.source", "signature", {.source = unbalanced}},
        {"no func line",
         "bad_kernel.source",
         "tt.func public @bad_kernel(",
         {.source = "module {}"}},
        {"non-ELF cubin",
         "bad_kernel.cubin",
         "not an ELF",
         {.cubin = not_elf, .cubin_len = sizeof not_elf}},
    };

    make_entry(f->cache, "AGOOD", "add_kernel", NULL);
    assert_int_equal(kc_triton_import(f->st, f->cache, NULL, NULL), KC_OK);
    uint64_t before = n_records(f->st);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char hash[32], dir[1024];
        kc_triton_report_t *r = (kc_triton_report_t *)1;

        snprintf(hash, sizeof hash, "BAD%zu", i);
        make_entry(f->cache, hash, "bad_kernel", &cases[i].es);
        make_entry(f->cache, "ZNEW", "new_kernel", NULL); /* good, but not imported */
        assert_int_equal(kc_triton_import(f->st, f->cache, NULL, &r), KC_ECORRUPT);
        assert_null(r);
        const char *msg = kc_store_errmsg(f->st);
        if (!strstr(msg, cases[i].file) || !strstr(msg, cases[i].msg)) {
            print_error("%s: message \"%s\" lacks \"%s\" or \"%s\"\n", cases[i].what, msg,
                        cases[i].file, cases[i].msg);
            fail();
        }
        assert_int_equal(n_records(f->st), before);
        snprintf(dir, sizeof dir, "%s/%s", f->cache, hash);
        kct_rmtree(dir, 0);
        snprintf(dir, sizeof dir, "%s/ZNEW", f->cache);
        kct_rmtree(dir, 0);
    }
    free(no_key);
    free(wrong_type);
    free(no_pow2);
    free(bad_sig);
    free(unbalanced);
}

static void test_missing_files_tma_and_old_triton_are_skipped_with_reasons(void **state)
{
    fixture_t *f = *state;
    kc_triton_report_t *r = NULL;
    char path[1024];
    char *old = subst(good_json, "3.9.0", "3.5.1");
    char *none = subst(good_json, "\"triton_version\": \"3.9.0\", ", "");
    char *tma_meta =
        subst(good_json, "\"tensordesc_meta\": []", "\"tensordesc_meta\": [{}]");
    char *tma_sig = subst(good_source, "%arg2: i64",
                          "%d: !tt.tensordesc<tensor<32x32xf16, #shared>>");
    char *hip = subst(good_json, "\"cuda\"", "\"hip\"");
    char *warp64 = subst(good_json, "\"warp_size\": 32}, ", "\"warp_size\": 64}, ");
    char *warp64b = subst(warp64, "\"warp_size\": 32,", "\"warp_size\": 64,");
    char *fp8 = subst(good_source, "!tt.ptr<bf16, 1>", "!tt.ptr<f8E5M2>");

    make_entry(f->cache, "A_OK", "add_kernel", NULL);
    make_entry(f->cache, "B_NOCUBIN", "k", &(entry_spec_t){.no_cubin = 1});
    make_entry(f->cache, "C_OLD", "k", &(entry_spec_t){.json = old});
    make_entry(f->cache, "D_NOVERSION", "k", &(entry_spec_t){.json = none});
    make_entry(f->cache, "E_TMA", "k", &(entry_spec_t){.json = tma_meta});
    make_entry(f->cache, "F_TMASIG", "k", &(entry_spec_t){.source = tma_sig});
    make_entry(f->cache, "G_HIP", "k", &(entry_spec_t){.json = hip});
    make_entry(f->cache, "H_WARP64", "k", &(entry_spec_t){.json = warp64b});
    make_entry(f->cache, "I_FP8", "k", &(entry_spec_t){.source = fp8});
    snprintf(path, sizeof path, "%s/J_AUTOTUNE", f->cache);
    assert_int_equal(mkdir(path, 0755), 0);
    write_file(path, "k.autotune.json", "{}", 2);
    write_file(f->cache, "stray.txt", "x", 1);

    assert_int_equal(kc_triton_import(f->st, f->cache, NULL, &r), KC_OK);
    assert_int_equal(r->n_items, 11);
    assert_int_equal(r->imported, 1);
    assert_int_equal(r->skipped, 10);
    static const char *const reasons[] = {
        "",
        "missing",
        "older than 3.6",
        "no triton_version",
        "uses tensor descriptors (TMA): not supported yet",
        "uses tensor descriptors (TMA): not supported yet",
        "backend 'hip' is not cuda",
        "warp size 64 is not 32",
        "not supported",
        "not a Triton kernel entry",
        "not a Triton kernel entry",
    };
    for (size_t i = 0; i < r->n_items; i++) {
        if (!strstr(r->items[i].reason, reasons[i])) {
            print_error("%s: reason \"%s\" lacks \"%s\"\n", r->items[i].dir_name,
                        r->items[i].reason, reasons[i]);
            fail();
        }
        assert_int_equal(r->items[i].status, i ? KC_TRITON_SKIPPED : KC_TRITON_IMPORTED);
        assert_true(i ? r->items[i].entry == NULL : r->items[i].entry != NULL);
    }
    assert_non_null(strstr(r->items[1].reason, "k.cubin"));
    kc_triton_report_free(r);
    free(old);
    free(none);
    free(tma_meta);
    free(tma_sig);
    free(hip);
    free(warp64);
    free(warp64b);
    free(fp8);
}

static void test_reimport_finds_everything_present(void **state)
{
    fixture_t *f = *state;
    kc_triton_report_t *r = NULL;

    make_entry(f->cache, "HASHA", "add_kernel", NULL);
    make_entry(f->cache, "HASHB", "mul_kernel", NULL);
    assert_int_equal(kc_triton_import(f->st, f->cache, NULL, NULL), KC_OK);
    uint64_t n = n_records(f->st);
    assert_int_equal(n, 6); /* two blobs, builds and binmetas */
    assert_int_equal(kc_triton_import(f->st, f->cache, NULL, &r), KC_OK);
    assert_int_equal(r->imported, 0);
    assert_int_equal(r->present, 2);
    assert_int_equal(r->items[1].status, KC_TRITON_PRESENT);
    assert_int_equal(n_records(f->st), n);
    kc_triton_report_free(r);

    /* A single hash directory is an import of its own. */
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/HASHB", f->cache);
    assert_int_equal(kc_triton_import(f->st, dir, NULL, &r), KC_OK);
    assert_int_equal(r->n_items, 1);
    assert_int_equal(r->present, 1);
    kc_triton_report_free(r);
}

/* A copy of entry directory from, every file, as to. */
static void copy_entry(const char *cache, const char *from, const char *to)
{
    char src[1024], dst[1024], path[1400];
    struct dirent *d;
    DIR *dir;

    snprintf(src, sizeof src, "%s/%s", cache, from);
    snprintf(dst, sizeof dst, "%s/%s", cache, to);
    assert_int_equal(mkdir(dst, 0755), 0);
    assert_non_null(dir = opendir(src));
    while ((d = readdir(dir))) {
        if (d->d_name[0] == '.')
            continue;
        snprintf(path, sizeof path, "%s/%s", src, d->d_name);
        FILE *f = fopen(path, "rb");
        assert_non_null(f);
        static char buf[1 << 16];
        size_t n = fread(buf, 1, sizeof buf, f);
        fclose(f);
        write_file(dst, d->d_name, buf, n);
    }
    closedir(dir);
}

/* Entries of one binary (a cache copied under another hash): the first is
 * imported, the others are present, found by their build key among the
 * entries before them. */
static void test_entries_of_one_binary_import_once(void **state)
{
    fixture_t *f = *state;
    kc_triton_report_t *r = NULL;

    make_entry(f->cache, "HASHA", "add_kernel", NULL);
    make_entry(f->cache, "HASHB", "mul_kernel", NULL);
    copy_entry(f->cache, "HASHA", "HASHC");
    copy_entry(f->cache, "HASHB", "HASHD");
    copy_entry(f->cache, "HASHA", "HASHE");
    assert_int_equal(kc_triton_import(f->st, f->cache, NULL, &r), KC_OK);
    assert_int_equal(r->n_items, 5);
    assert_int_equal(r->imported, 2);
    assert_int_equal(r->present, 3);
    assert_int_equal(r->items[0].status, KC_TRITON_IMPORTED);
    assert_int_equal(r->items[1].status, KC_TRITON_IMPORTED);
    for (int i = 2; i < 5; i++)
        assert_int_equal(r->items[i].status, KC_TRITON_PRESENT);
    assert_int_equal(n_records(f->st), 6); /* two blobs, builds and binmetas */
    kc_triton_report_free(r);
}

static void test_a_dry_run_writes_nothing(void **state)
{
    fixture_t *f = *state;
    kc_triton_import_opts_t o = KC_TRITON_IMPORT_OPTS_INIT;
    kc_triton_report_t *r = NULL;

    o.dry_run = 1;
    make_entry(f->cache, "HASHA", "add_kernel", NULL);
    assert_int_equal(kc_triton_import(f->st, f->cache, &o, &r), KC_OK);
    assert_int_equal(r->imported, 1);
    assert_int_equal(n_records(f->st), 0);
    kc_triton_report_free(r);
    o.size = 0;
    assert_int_equal(kc_triton_import(f->st, f->cache, &o, &r), KC_EINVAL);
}

static void test_a_dir_without_entries_is_not_found(void **state)
{
    fixture_t *f = *state;
    char path[1024];

    assert_int_equal(kc_triton_import(f->st, f->cache, NULL, NULL), KC_ENOTFOUND);
    assert_non_null(strstr(kc_store_errmsg(f->st), "no Triton kernel entry"));
    write_file(f->cache, "x.autotune.json", "{}", 2);
    assert_int_equal(kc_triton_import(f->st, f->cache, NULL, NULL), KC_ENOTFOUND);
    snprintf(path, sizeof path, "%s/nonexistent", f->cache);
    assert_int_equal(kc_triton_import(f->st, path, NULL, NULL), KC_ENOTFOUND);
    assert_int_equal(kc_triton_entry_load(path, NULL, NULL, 0), KC_EINVAL);
}

/* The parser from memory, as the fuzz target drives it. */
static void test_the_signature_parser_keeps_argN_names_and_refuses_junk(void **state)
{
    (void)state;
    kc__triton_meta_t m;
    char err[256];
    static const char *const bad[] = {
        "tt.func public @k(",
        "tt.func public @k(%a: i32",
        "tt.func public @k(%a: i32 loc(\"a\"",
        "tt.func public @k(%: i32)",
        "tt.func public @k(%a: )",
        "tt.func public @k(%a: i32 %b: i32)",
        "tt.func public @kk(%a: i32)",
    };

    memset(&m, 0, sizeof m);
    assert_int_equal(
        kc__triton_parse_signature("tt.func public @k(%arg0: i1, %arg1: "
                                   "!tt.ptr<i8> {tt.divisibility = 16 : i32})",
                                   "k", "ir", &m, err, sizeof err),
        KC_OK);
    assert_int_equal(m.n_args, 2);
    assert_string_equal(m.args[0].name, "arg0");
    assert_string_equal(m.args[0].type, "i1");
    assert_string_equal(m.args[1].type, "*i8");
    assert_int_equal(m.n_spec, 1);
    kc__triton_meta_free(&m);
    assert_int_equal(kc__triton_parse_signature("x tt.func public @k() {", "k", "ir", &m,
                                                err, sizeof err),
                     KC_OK);
    assert_int_equal(m.n_args, 0);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        memset(&m, 0, sizeof m);
        if (kc__triton_parse_signature(bad[i], "k", "ir", &m, err, sizeof err) !=
            KC_ECORRUPT) {
            print_error("accepted: %s\n", bad[i]);
            fail();
        }
        kc__triton_meta_free(&m);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
        T(test_a_good_entry_loads_with_every_field),
        T(test_import_stores_exactly_what_was_parsed),
        T(test_each_malformed_entry_fails_the_import_and_changes_nothing),
        T(test_missing_files_tma_and_old_triton_are_skipped_with_reasons),
        T(test_reimport_finds_everything_present),
        T(test_entries_of_one_binary_import_once),
        T(test_a_dry_run_writes_nothing),
        T(test_a_dir_without_entries_is_not_found),
        cmocka_unit_test(test_the_signature_parser_keeps_argN_names_and_refuses_junk),
#undef T
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
