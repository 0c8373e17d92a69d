/* Bundles carry groups with the blobs of their files; import checks a
 * group's key and that every file's blob is in the bundle or the store,
 * settles a group stored with other contents by prefer, and filters pick
 * groups by name. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "bundle_internal.h"
#include "kc_testutil.h"
#include "kcache/bundle.h"
#include "kcache/errors.h"
#include "kcache/record.h"
#include "kcache/store.h"

typedef struct two {
    char root[512];
    kc_store_t *a, *b;
} two_t;

static int setup(void **state)
{
    two_t *t = calloc(1, sizeof(*t));
    char da[600], db[600];
    if (!t || kct_tmpdir("test_group_bundle", t->root, sizeof(t->root)) != 0)
        return -1;
    snprintf(da, sizeof(da), "%s/a", t->root);
    snprintf(db, sizeof(db), "%s/b", t->root);
    if (kc_store_open(da, NULL, &t->a) != KC_OK ||
        kc_store_open(db, NULL, &t->b) != KC_OK)
        return -1;
    *state = t;
    return 0;
}

static int teardown(void **state)
{
    two_t *t = *state;
    kc_store_close(t->a);
    kc_store_close(t->b);
    kct_rmtree(t->root, 0);
    free(t);
    return 0;
}

static void export_mem(kc_store_t *st, const kc_bundle_filter_t *filter, char **buf,
                       size_t *len, kc_bundle_stats_t *s)
{
    FILE *m = open_memstream(buf, len);
    assert_non_null(m);
    assert_int_equal(kc_bundle_export(st, filter, m, s), KC_OK);
    fclose(m);
}

static const char json[] = "{\"name\": \"add_kernel\"}";
static const char cubin[] = "cubin bytes";

static void put_two(kc_store_t *st)
{
    kc_group_file_t f1[] = {{"add_kernel.json", json, sizeof(json)},
                            {"add_kernel.cubin", cubin, sizeof(cubin)},
                            {"empty.txt", NULL, 0}};
    kc_group_file_t f2[] = {{"other.json", "{}", 2}};
    assert_int_equal(kc_store_group_put(st, "hash_one", f1, 3, 0), KC_OK);
    assert_int_equal(kc_store_group_put(st, "hash_two", f2, 1, 0), KC_OK);
}

static void test_a_bundle_carries_groups_and_their_blobs(void **state)
{
    two_t *t = *state;
    char *buf = NULL;
    size_t len = 0;
    kc_bundle_stats_t es, is;

    put_two(t->a);
    export_mem(t->a, NULL, &buf, &len, &es);
    assert_int_equal(es.groups, 2);
    assert_int_equal(es.blobs, 4);
    assert_int_equal(es.damaged, 0);

    assert_int_equal(kc_bundle_import_mem(t->b, buf, len, NULL, &is), KC_OK);
    assert_int_equal(is.groups, 2);
    assert_int_equal(is.added, 6);
    void *data = NULL;
    size_t n = 0;
    assert_int_equal(kc_store_group_read(t->b, "hash_one", "add_kernel.json", &data, &n),
                     KC_OK);
    assert_int_equal(n, sizeof(json));
    assert_memory_equal(data, json, n);
    kc_free(data);
    assert_int_equal(kc_store_group_read(t->b, "hash_one", "empty.txt", &data, &n),
                     KC_OK);
    assert_int_equal(n, 0);
    kc_free(data);

    /* again: nothing changes */
    assert_int_equal(kc_bundle_import_mem(t->b, buf, len, NULL, &is), KC_OK);
    assert_int_equal(is.added, 0);
    assert_int_equal(is.present, 6);

    /* every truncation is refused and leaves a fresh store empty */
    kc_store_t *c = NULL;
    char dc[700];
    snprintf(dc, sizeof(dc), "%s/c", t->root);
    assert_int_equal(kc_store_open(dc, NULL, &c), KC_OK);
    for (size_t cut = 0; cut < len; cut += 5)
        assert_int_not_equal(kc_bundle_import_mem(c, buf, cut, NULL, NULL), KC_OK);
    kc_store_stats_t st;
    assert_int_equal(kc_store_stats(c, &st), KC_OK);
    assert_int_equal(st.records[KC_REC_GROUP], 0);
    assert_int_equal(st.records[KC_REC_BLOB], 0);
    kc_store_close(c);
    free(buf);
}

static void test_filters_pick_groups_by_name_and_arch_leaves_them_out(void **state)
{
    two_t *t = *state;
    char *buf = NULL;
    size_t len = 0;
    kc_bundle_stats_t es;

    put_two(t->a);
    kc_bundle_filter_t f = {.name = "*_two"};
    export_mem(t->a, &f, &buf, &len, &es);
    assert_int_equal(es.groups, 1);
    assert_int_equal(es.blobs, 1);
    assert_int_equal(kc_bundle_import_mem(t->b, buf, len, NULL, NULL), KC_OK);
    kc_record_t *rec = NULL;
    assert_int_equal(kc_store_group_get(t->b, "hash_two", &rec), KC_OK);
    kc_free(rec);
    assert_int_equal(kc_store_group_get(t->b, "hash_one", &rec), KC_ENOTFOUND);
    free(buf);

    kc_bundle_filter_t arch = {.arch = "sm_90"};
    buf = NULL;
    export_mem(t->a, &arch, &buf, &len, &es);
    assert_int_equal(es.groups, 0);
    assert_int_equal(es.blobs, 0);
    free(buf);
}

/* A bundle of one group record alone, under key. */
static void group_alone(kc_store_t *st, const char *name, const kc_key_t *key, char **buf,
                        size_t *len)
{
    kc_key_t k;
    void *rec = NULL;
    size_t rec_len = 0;
    assert_int_equal(kc_group_key(name, &k), KC_OK);
    assert_int_equal(kc_store_get_raw(st, KC_REC_GROUP, &k, &rec, &rec_len), KC_OK);
    FILE *m = open_memstream(buf, len);
    assert_non_null(m);
    kc__bw_t w;
    assert_int_equal(kc__bw_begin(&w, m, 1, "test"), KC_OK);
    assert_int_equal(kc__bw_frame(&w, KC_REC_GROUP, key ? key->b : k.b, 16, rec, rec_len),
                     KC_OK);
    assert_int_equal(kc__bw_finish(&w), KC_OK);
    fclose(m);
    kc_free(rec);
}

static void test_a_group_without_its_blobs_or_under_another_key_is_refused(void **state)
{
    two_t *t = *state;
    char *buf = NULL;
    size_t len = 0;

    put_two(t->a);
    group_alone(t->a, "hash_one", NULL, &buf, &len);
    assert_int_equal(kc_bundle_import_mem(t->b, buf, len, NULL, NULL), KC_ECORRUPT);
    assert_non_null(strstr(kc_store_errmsg(t->b), "the blob of one of its files"));
    kc_store_stats_t st;
    assert_int_equal(kc_store_stats(t->b, &st), KC_OK);
    assert_int_equal(st.records[KC_REC_GROUP], 0);
    /* a store that holds the blobs takes it */
    assert_int_equal(kc_bundle_import_mem(t->a, buf, len, NULL, NULL), KC_OK);
    free(buf);

    kc_key_t other;
    assert_int_equal(kc_group_key("hash_two", &other), KC_OK);
    buf = NULL;
    group_alone(t->a, "hash_one", &other, &buf, &len);
    assert_int_equal(kc_bundle_import_mem(t->a, buf, len, NULL, NULL), KC_ECORRUPT);
    assert_non_null(strstr(kc_store_errmsg(t->a), "hash of the group's name"));
    free(buf);
}

static void test_a_group_stored_with_other_files_is_settled_by_prefer(void **state)
{
    two_t *t = *state;
    char *buf = NULL;
    size_t len = 0;
    kc_bundle_stats_t is;
    kc_record_t *rec = NULL;
    kc_group_file_t mine[] = {{"mine.json", "{}", 2}};

    put_two(t->a);
    export_mem(t->a, NULL, &buf, &len, NULL);
    assert_int_equal(kc_store_group_put(t->b, "hash_two", mine, 1, 0), KC_OK);

    assert_int_equal(kc_bundle_import_mem(t->b, buf, len, NULL, &is), KC_OK);
    assert_int_equal(is.kept, 1);
    assert_int_equal(kc_store_group_get(t->b, "hash_two", &rec), KC_OK);
    assert_string_equal(rec->u.group.files[0].name, "mine.json");
    kc_free(rec);

    kc_bundle_import_opts_t o = KC_BUNDLE_IMPORT_OPTS_INIT;
    o.prefer = KC_PREFER_INCOMING;
    assert_int_equal(kc_bundle_import_mem(t->b, buf, len, &o, &is), KC_OK);
    assert_int_equal(is.replaced, 1);
    assert_int_equal(kc_store_group_get(t->b, "hash_two", &rec), KC_OK);
    assert_string_equal(rec->u.group.files[0].name, "other.json");
    kc_free(rec);
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_a_bundle_carries_groups_and_their_blobs,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_filters_pick_groups_by_name_and_arch_leaves_them_out, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_a_group_without_its_blobs_or_under_another_key_is_refused, setup,
            teardown),
        cmocka_unit_test_setup_teardown(
            test_a_group_stored_with_other_files_is_settled_by_prefer, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
