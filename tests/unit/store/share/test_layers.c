/* Layered stores: lookups search the layers in order, publishes go to the
 * first writable one, and a read-only layer (a store baked into an image)
 * serves hits. */
#include <errno.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "kc_testutil.h"
#include "kcache/layers.h"

typedef struct fixture {
    char root[512];
    char lower[600], upper[600], missing[600];
} fixture_t;

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof(*f));

    if (!f || kct_tmpdir("test_layers", f->root, sizeof(f->root)) != 0 ||
        chmod(f->root, 0755) != 0)
        return -1;
    snprintf(f->lower, sizeof(f->lower), "%s/lower", f->root);
    snprintf(f->upper, sizeof(f->upper), "%s/upper", f->root);
    snprintf(f->missing, sizeof(f->missing), "%s/missing", f->root);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    kct_rmtree(f->root, 1);
    free(f);
    return 0;
}

/* A kernel's worth of records: one cubin, its build, a tuning naming it. */
typedef struct kernel_recs {
    uint8_t cubin[256];
    kc_key_t blob, build, tuning;
    void *bpre, *tpre;
    size_t bpre_len, tpre_len;
    kc_build_rec_t b;
    kc_tuning_rec_t t;
    kc_param_t param;
} kernel_recs_t;

static void make_kernel(kernel_recs_t *k, const char *entry, int64_t block)
{
    static const char *const opts[] = {"-O3"};
    memset(k, 0, sizeof(*k));
    memcpy(k->cubin,
           "\x7f"
           "ELF",
           4);
    for (size_t i = 4; i < sizeof(k->cubin); i++)
        k->cubin[i] = (uint8_t)(i * 7 + (uint8_t)block + (uint8_t)entry[0]);
    k->blob = kc_key_hash(k->cubin, sizeof(k->cubin));
    k->param = (kc_param_t){"BLOCK", block};
    kc_build_desc_t bd = {KC_SOURCE_CUDA,
                          kc_key_hash(entry, strlen(entry)),
                          entry,
                          opts,
                          1,
                          &k->param,
                          1,
                          "sm_90",
                          "nvrtc-13.0"};
    assert_int_equal(kc_build_preimage_encode(&bd, &k->bpre, &k->bpre_len), KC_OK);
    k->build = kc_key_hash(k->bpre, k->bpre_len);
    k->b = (kc_build_rec_t){.preimage = {k->bpre, k->bpre_len},
                            .blob = k->blob,
                            .entry = entry,
                            .registers = 16,
                            .max_threads = 1024,
                            .created = 1};
    uint8_t sig[] = {1, 0, 0, 0};
    kc_tuning_desc_t td = {
        KC_SOURCE_CUDA,          bd.source_digest,   entry,   opts, 1,
        kc_key_hash("space", 5), {sig, sizeof(sig)}, "sm_90", 132,  "H100"};
    assert_int_equal(kc_tuning_preimage_encode(&td, &k->tpre, &k->tpre_len), KC_OK);
    k->tuning = kc_key_hash(k->tpre, k->tpre_len);
    k->t = (kc_tuning_rec_t){.preimage = {k->tpre, k->tpre_len},
                             .winner = &k->param,
                             .n_winner = 1,
                             .winner_build = k->build,
                             .device_name = "H100",
                             .arch = "sm_90",
                             .sm_count = 132,
                             .created = 1};
}

static void free_kernel(kernel_recs_t *k)
{
    kc_free(k->bpre);
    kc_free(k->tpre);
}

static void publish(kc_store_t *st, kernel_recs_t *k)
{
    kc_buf_t c = {k->cubin, sizeof(k->cubin)};
    kc_publish_t pub = {&c, 1, &k->b, 1, &k->t, NULL, 0};
    assert_int_equal(kc_store_publish(st, &pub), KC_OK);
}

static void fill_store(const char *dir, kernel_recs_t *k)
{
    kc_store_t *st = NULL;
    assert_int_equal(kc_store_open(dir, NULL, &st), KC_OK);
    publish(st, k);
    kc_store_close(st);
}

static uint64_t count(kc_store_t *st, kc_rec_kind_t kind)
{
    kc_store_stats_t s;
    assert_int_equal(kc_store_stats(st, &s), KC_OK);
    return s.records[kind];
}

static int chmod_ro(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)ftw;
    return chmod(path, flag == FTW_D || flag == FTW_DP ? 0555 : 0444);
}

/* In a child that gave up root: the lower store is read-only, the upper
 * writable. Each failed check exits with its own status. */
static int image_child(const fixture_t *f, kernel_recs_t *base, kernel_recs_t *fresh)
{
    char path[1300];
    kc_layers_t *l = NULL;
    kc_record_t *rec = NULL;
    void *cubin = NULL;
    size_t len = 0, layer = 99;

    if (setgid(65534) != 0 || setuid(65534) != 0)
        return 10;
    if (access(f->lower, W_OK) == 0)
        return 11;
    snprintf(path, sizeof(path), "%s:%s", f->upper, f->lower);
    if (kc_layers_open(path, NULL, &l) != KC_OK || kc_layers_count(l) != 2)
        return 12;
    if (!kc_store_is_readonly(kc_layers_store(l, 1)) ||
        kc_layers_writable(l) != kc_layers_store(l, 0))
        return 13;
    /* The image's tuning and cubin are hits, from layer 1. */
    if (kc_layers_get(l, KC_REC_TUNING, &base->tuning, &rec, &layer) != KC_OK ||
        layer != 1)
        return 14;
    kc_free(rec);
    rec = NULL;
    if (kc_layers_get_build_cubin(l, &base->build, &rec, &cubin, &len, &layer) != KC_OK ||
        layer != 1 || len != sizeof(base->cubin) || memcmp(cubin, base->cubin, len) != 0)
        return 15;
    kc_free(rec);
    kc_free(cubin);
    /* A publish lands in the writable layer. */
    kc_buf_t c = {fresh->cubin, sizeof(fresh->cubin)};
    kc_publish_t pub = {&c, 1, &fresh->b, 1, &fresh->t, NULL, 0};
    if (kc_store_publish(kc_layers_writable(l), &pub) != KC_OK)
        return 16;
    if (kc_layers_get(l, KC_REC_TUNING, &fresh->tuning, &rec, &layer) != KC_OK ||
        layer != 0)
        return 17;
    kc_free(rec);
    kc_layers_close(l);
    return 0;
}

static void
test_read_only_layer_serves_hits_while_publishes_go_to_the_writable_one(void **state)
{
    fixture_t *f = *state;
    kernel_recs_t base, fresh;
    int status;

    make_kernel(&base, "softmax", 128);
    make_kernel(&fresh, "matmul", 16);
    fill_store(f->lower, &base);
    assert_int_equal(nftw(f->lower, chmod_ro, 16, FTW_PHYS), 0);
    assert_int_equal(mkdir(f->upper, 0777), 0);
    assert_int_equal(chmod(f->upper, 0777), 0);

    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(image_child(f, &base, &fresh));
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);

    /* The image layer is as it was; the new records are in the upper one. */
    kc_store_t *lower = NULL, *upper = NULL;
    kc_store_opts_t ro = {.size = sizeof(kc_store_opts_t), .flags = KC_STORE_RDONLY};
    assert_int_equal(kc_store_open(f->lower, &ro, &lower), KC_OK);
    assert_int_equal(kc_store_open(f->upper, &ro, &upper), KC_OK);
    assert_int_equal(count(lower, KC_REC_TUNING), 1);
    assert_int_equal(count(upper, KC_REC_TUNING), 1);
    kc_record_t *rec = NULL;
    assert_int_equal(kc_store_get(upper, KC_REC_TUNING, &fresh.tuning, &rec), KC_OK);
    kc_free(rec);
    assert_int_equal(kc_store_get(lower, KC_REC_TUNING, &fresh.tuning, &rec),
                     KC_ENOTFOUND);
    kc_store_close(lower);
    kc_store_close(upper);
    free_kernel(&base);
    free_kernel(&fresh);
}

static void test_upper_layer_wins_and_a_build_may_find_its_blob_below(void **state)
{
    fixture_t *f = *state;
    kernel_recs_t k;
    char path[1300];
    kc_layers_t *l = NULL;
    kc_record_t *rec = NULL;
    void *cubin = NULL;
    size_t len = 0, layer = 99;

    make_kernel(&k, "reduce", 256);
    fill_store(f->lower, &k);
    /* The upper layer holds only the build (as if imported on top). */
    kc_store_t *up = NULL;
    assert_int_equal(kc_store_open(f->upper, NULL, &up), KC_OK);
    assert_int_equal(kc_store_put_cubin(up, k.cubin, sizeof(k.cubin), NULL), KC_OK);
    kc_record_t brec = {.kind = KC_REC_BUILD, .version = KC_RECORD_VERSION};
    brec.u.build = k.b;
    assert_int_equal(kc_store_put(up, &k.build, &brec), KC_OK);
    assert_int_equal(kc_store_del(up, KC_REC_BLOB, &k.blob), KC_OK);
    kc_store_close(up);

    snprintf(path, sizeof(path), "%s:%s", f->upper, f->lower);
    assert_int_equal(kc_layers_open(path, NULL, &l), KC_OK);
    assert_int_equal(kc_layers_get(l, KC_REC_BUILD, &k.build, &rec, &layer), KC_OK);
    assert_int_equal(layer, 0);
    kc_free(rec);
    rec = NULL;
    assert_int_equal(kc_layers_get_build_cubin(l, &k.build, &rec, &cubin, &len, &layer),
                     KC_OK);
    assert_int_equal(layer, 0);
    assert_int_equal(len, sizeof(k.cubin));
    assert_memory_equal(cubin, k.cubin, len);
    kc_free(rec);
    kc_free(cubin);
    assert_int_equal(kc_layers_get(l, KC_REC_TUNING, &k.tuning, &rec, &layer), KC_OK);
    assert_int_equal(layer, 1);
    kc_free(rec);
    kc_layers_close(l);
    free_kernel(&k);
}

static void
test_missing_lower_layer_is_skipped_and_missing_top_layer_is_created(void **state)
{
    fixture_t *f = *state;
    char path[2000];
    kc_layers_t *l = NULL;
    struct stat st;

    /* upper does not exist yet: as the first layer it is created. */
    snprintf(path, sizeof(path), "%s::%s", f->upper, f->missing);
    assert_int_equal(kc_layers_open(path, NULL, &l), KC_OK);
    assert_int_equal(kc_layers_count(l), 1);
    assert_non_null(kc_layers_writable(l));
    assert_int_equal(stat(f->upper, &st), 0);
    assert_int_equal(stat(f->missing, &st), -1);
    assert_non_null(strstr(kc_layers_warnings(l), "missing: skipped: no such directory"));
    kc_layers_close(l);
}

static void test_bad_paths_give_clear_errors(void **state)
{
    fixture_t *f = *state;
    kc_layers_t *l = (kc_layers_t *)1;
    char path[4096] = "";

    assert_int_equal(kc_layers_open(":::", NULL, &l), KC_EINVAL);
    assert_null(l);
    assert_non_null(strstr(kc_store_open_errmsg(), "names no store"));
    for (int i = 0; i <= KC_LAYERS_MAX; i++)
        snprintf(path + strlen(path), sizeof(path) - strlen(path), "%s%s/d%d",
                 i ? ":" : "", f->root, i);
    assert_int_equal(kc_layers_open(path, NULL, &l), KC_EINVAL);
    assert_non_null(strstr(kc_store_open_errmsg(), "more than"));
    kc_store_opts_t ro = {.size = sizeof(kc_store_opts_t), .flags = KC_STORE_RDONLY};
    assert_int_equal(kc_layers_open(f->missing, &ro, &l), KC_ENOTFOUND);
    assert_non_null(strstr(kc_store_open_errmsg(), "no such directory"));
}

static void test_kcache_path_is_read_by_open_default(void **state)
{
    fixture_t *f = *state;
    char path[1300];
    kernel_recs_t k;
    kc_layers_t *l = NULL;
    kc_record_t *rec = NULL;

    make_kernel(&k, "axpy", 64);
    fill_store(f->lower, &k);
    snprintf(path, sizeof(path), "%s:%s", f->upper, f->lower);
    setenv("KCACHE_PATH", path, 1);
    assert_int_equal(kc_layers_open_default(NULL, &l), KC_OK);
    unsetenv("KCACHE_PATH");
    assert_int_equal(kc_layers_count(l), 2);
    assert_int_equal(kc_layers_get(l, KC_REC_TUNING, &k.tuning, &rec, NULL), KC_OK);
    kc_free(rec);
    kc_layers_close(l);
    free_kernel(&k);
}

static int read_file(const char *path, void **data, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    long n;

    if (!fp)
        return -1;
    if (fseek(fp, 0, SEEK_END) != 0 || (n = ftell(fp)) < 0 ||
        fseek(fp, 0, SEEK_SET) != 0 || !(*data = malloc((size_t)n + 1)) ||
        fread(*data, 1, (size_t)n, fp) != (size_t)n) {
        fclose(fp);
        return -1;
    }
    *len = (size_t)n;
    fclose(fp);
    return 0;
}

/* "ro=DIR" opens DIR read-only whoever runs (these tests run as root, who
 * could write there): it serves hits, publishes go to the next writable
 * layer, and its data.mdb keeps every byte. */
static void test_layer_marked_ro_is_read_only_for_root_too(void **state)
{
    fixture_t *f = *state;
    kernel_recs_t base, fresh;
    char path[2000], mdb[700];
    void *before = NULL, *after = NULL;
    size_t before_len = 0, after_len = 0, layer = 99;
    kc_layers_t *l = NULL;
    kc_record_t *rec = NULL;
    struct stat st0, st1;

    make_kernel(&base, "softmax", 128);
    make_kernel(&fresh, "matmul", 16);
    fill_store(f->lower, &base);
    snprintf(mdb, sizeof(mdb), "%s/data.mdb", f->lower);
    assert_int_equal(read_file(mdb, &before, &before_len), 0);
    assert_int_equal(stat(mdb, &st0), 0);

    snprintf(path, sizeof(path), KC_LAYERS_RO_PREFIX "%s:%s", f->lower, f->upper);
    assert_int_equal(kc_layers_open(path, NULL, &l), KC_OK);
    assert_int_equal(kc_layers_count(l), 2);
    assert_true(kc_store_is_readonly(kc_layers_store(l, 0)));
    assert_string_equal(kc_store_path(kc_layers_store(l, 0)), f->lower);
    assert_non_null(strstr(kc_layers_readonly_why(l, 0), "ro="));
    assert_null(kc_layers_readonly_why(l, 1));
    assert_ptr_equal(kc_layers_writable(l), kc_layers_store(l, 1));
    assert_int_equal(kc_layers_get(l, KC_REC_TUNING, &base.tuning, &rec, &layer), KC_OK);
    assert_int_equal(layer, 0);
    kc_free(rec);
    publish(kc_layers_writable(l), &fresh);
    assert_int_equal(kc_layers_get(l, KC_REC_TUNING, &fresh.tuning, &rec, &layer), KC_OK);
    assert_int_equal(layer, 1);
    kc_free(rec);
    /* A write to the marked layer itself is refused. */
    kc_buf_t c = {fresh.cubin, sizeof(fresh.cubin)};
    kc_publish_t pub = {&c, 1, &fresh.b, 1, &fresh.t, NULL, 0};
    assert_int_equal(kc_store_publish(kc_layers_store(l, 0), &pub), KC_EREADONLY);
    kc_layers_close(l);

    assert_int_equal(read_file(mdb, &after, &after_len), 0);
    assert_int_equal(after_len, before_len);
    assert_memory_equal(after, before, before_len);
    assert_int_equal(stat(mdb, &st1), 0);
    assert_int_equal(st1.st_mtim.tv_sec, st0.st_mtim.tv_sec);
    assert_int_equal(st1.st_mtim.tv_nsec, st0.st_mtim.tv_nsec);
    free(before);
    free(after);

    /* The same through KCACHE_PATH; a marked layer is never created. */
    snprintf(path, sizeof(path), "%s:" KC_LAYERS_RO_PREFIX "%s:" KC_LAYERS_RO_PREFIX,
             f->upper, f->missing);
    setenv("KCACHE_PATH", path, 1);
    assert_int_equal(kc_layers_open_default(NULL, &l), KC_OK);
    unsetenv("KCACHE_PATH");
    assert_int_equal(kc_layers_count(l), 1);
    assert_int_equal(stat(f->missing, &st1), -1);
    assert_non_null(strstr(kc_layers_warnings(l), "missing: skipped: no such directory"));
    assert_non_null(strstr(kc_layers_warnings(l), "ro=: skipped: names no directory"));
    kc_layers_close(l);
    /* Only marked layers: no writable one. */
    snprintf(path, sizeof(path), KC_LAYERS_RO_PREFIX "%s", f->lower);
    assert_int_equal(kc_layers_open(path, NULL, &l), KC_OK);
    assert_null(kc_layers_writable(l));
    kc_layers_close(l);
    free_kernel(&base);
    free_kernel(&fresh);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_read_only_layer_serves_hits_while_publishes_go_to_the_writable_one,
            setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_upper_layer_wins_and_a_build_may_find_its_blob_below, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_missing_lower_layer_is_skipped_and_missing_top_layer_is_created, setup,
            teardown),
        cmocka_unit_test_setup_teardown(test_bad_paths_give_clear_errors, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_kcache_path_is_read_by_open_default, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_layer_marked_ro_is_read_only_for_root_too,
                                        setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
