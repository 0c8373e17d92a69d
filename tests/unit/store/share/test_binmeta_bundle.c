/* Bundles carry binmeta records: each travels after its build, is checked
 * on import like the other kinds, and stays out when its build does. */
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

static kc_record_t binmeta_for(const kc_key_t *build, uint32_t smem)
{
    kc_record_t r;
    memset(&r, 0, sizeof(r));
    r.kind = KC_REC_BINMETA;
    r.version = KC_RECORD_VERSION;
    r.u.binmeta = (kc_binmeta_rec_t){.build = *build,
                                     .entry = "kct",
                                     .arch = "sm_90",
                                     .threads_per_block = 64,
                                     .num_warps = 2,
                                     .warp_size = 32,
                                     .num_ctas = 1,
                                     .dyn_smem = smem,
                                     .global_scratch_align = 1,
                                     .profile_scratch_align = 1,
                                     .flags = KC_BINMETA_PDL,
                                     .compiler = "triton",
                                     .compiler_version = "3.6.0"};
    return r;
}

static void export_mem(kc_store_t *st, const kc_bundle_filter_t *filter, char **buf,
                       size_t *len, kc_bundle_stats_t *s)
{
    FILE *m = open_memstream(buf, len);
    assert_non_null(m);
    assert_int_equal(kc_bundle_export(st, filter, m, s), KC_OK);
    fclose(m);
}

static void test_a_bundle_carries_binmeta_after_its_build(void **state)
{
    (void)state;
    char root[512], da[600], db[600];
    kc_store_t *a = NULL, *b = NULL;
    kct_pub_t p;

    assert_int_equal(kct_tmpdir("test_binmeta_bundle", root, sizeof(root)), 0);
    snprintf(da, sizeof(da), "%s/a", root);
    snprintf(db, sizeof(db), "%s/b", root);
    assert_int_equal(kc_store_open(da, NULL, &a), KC_OK);
    assert_int_equal(kc_store_open(db, NULL, &b), KC_OK);
    assert_int_equal(kct_pub_make(&p, 7, 3), KC_OK);
    assert_int_equal(kc_store_publish(a, &p.pub), KC_OK);
    for (unsigned j = 0; j < 2; j++) { /* build 2 has none */
        kc_record_t r = binmeta_for(&p.build_keys[j], 1000 + j);
        assert_int_equal(kc_store_put(a, &p.build_keys[j], &r), KC_OK);
    }

    char *buf = NULL;
    size_t len = 0;
    kc_bundle_stats_t es, is;
    export_mem(a, NULL, &buf, &len, &es);
    assert_int_equal(es.builds, 3);
    assert_int_equal(es.binmeta, 2);
    assert_int_equal(es.damaged, 0);
    assert_int_equal(es.records, 3 + 3 + 1 + 2);

    assert_int_equal(kc_bundle_import_mem(b, buf, len, NULL, &is), KC_OK);
    assert_int_equal(is.binmeta, 2);
    assert_int_equal(is.added, 9);
    for (unsigned j = 0; j < 2; j++) {
        kc_record_t *r = NULL;
        assert_int_equal(kc_store_get(b, KC_REC_BINMETA, &p.build_keys[j], &r), KC_OK);
        assert_int_equal(r->u.binmeta.dyn_smem, 1000 + j);
        assert_int_equal(r->u.binmeta.flags, KC_BINMETA_PDL);
        kc_free(r);
    }
    kc_record_t *none = NULL;
    assert_int_equal(kc_store_get(b, KC_REC_BINMETA, &p.build_keys[2], &none),
                     KC_ENOTFOUND);
    /* twice: nothing changes */
    assert_int_equal(kc_bundle_import_mem(b, buf, len, NULL, &is), KC_OK);
    assert_int_equal(is.added, 0);
    assert_int_equal(is.present, 9);
    free(buf);

    /* A filter that leaves the builds out leaves their binmeta out. */
    kc_bundle_filter_t flt = {0};
    flt.arch = "sm_80";
    buf = NULL;
    export_mem(a, &flt, &buf, &len, &es);
    assert_int_equal(es.builds, 0);
    assert_int_equal(es.binmeta, 0);
    free(buf);

    kc_store_close(a);
    kc_store_close(b);
    kct_pub_free(&p);
    kct_rmtree(root, 0);
}

static void test_a_binmeta_without_its_build_is_refused(void **state)
{
    (void)state;
    char root[512], da[600], db[600];
    kc_store_t *a = NULL, *b = NULL;
    kct_pub_t p;

    assert_int_equal(kct_tmpdir("test_binmeta_bundle", root, sizeof(root)), 0);
    snprintf(da, sizeof(da), "%s/a", root);
    snprintf(db, sizeof(db), "%s/b", root);
    assert_int_equal(kc_store_open(da, NULL, &a), KC_OK);
    assert_int_equal(kc_store_open(db, NULL, &b), KC_OK);
    assert_int_equal(kct_pub_make(&p, 8, 1), KC_OK);
    assert_int_equal(kc_store_publish(a, &p.pub), KC_OK);
    kc_record_t r = binmeta_for(&p.build_keys[0], 0);
    assert_int_equal(kc_store_put(a, &p.build_keys[0], &r), KC_OK);

    char *buf = NULL;
    size_t len = 0;
    kc_bundle_stats_t es;
    export_mem(a, NULL, &buf, &len, &es);
    assert_int_equal(es.binmeta, 1);

    /* Every truncation is refused and leaves b empty. */
    for (size_t cut = 0; cut < len; cut += 7)
        assert_int_not_equal(kc_bundle_import_mem(b, buf, cut, NULL, NULL), KC_OK);
    kc_store_stats_t st;
    assert_int_equal(kc_store_stats(b, &st), KC_OK);
    assert_int_equal(st.records[KC_REC_BINMETA], 0);
    assert_int_equal(st.records[KC_REC_BUILD], 0);
    free(buf);

    /* A bundle of the binmeta alone: refused by a store without its build,
     * taken by one that has it. */
    void *rec = NULL;
    size_t rec_len = 0;
    assert_int_equal(
        kc_store_get_raw(a, KC_REC_BINMETA, &p.build_keys[0], &rec, &rec_len), KC_OK);
    buf = NULL;
    FILE *m = open_memstream(&buf, &len);
    assert_non_null(m);
    kc__bw_t w;
    assert_int_equal(kc__bw_begin(&w, m, 1, "test"), KC_OK);
    assert_int_equal(
        kc__bw_frame(&w, KC_REC_BINMETA, p.build_keys[0].b, 16, rec, rec_len), KC_OK);
    assert_int_equal(kc__bw_finish(&w), KC_OK);
    fclose(m);
    assert_int_equal(kc_bundle_import_mem(b, buf, len, NULL, NULL), KC_ECORRUPT);
    assert_non_null(strstr(kc_store_errmsg(b), "its build"));
    assert_int_equal(kc_bundle_import_mem(a, buf, len, NULL, NULL), KC_OK);

    /* ... and one under a key other than its build's is refused. */
    free(buf);
    buf = NULL;
    m = open_memstream(&buf, &len);
    assert_non_null(m);
    kc_key_t other = p.build_keys[0];
    other.b[15] ^= 1;
    assert_int_equal(kc__bw_begin(&w, m, 1, "test"), KC_OK);
    assert_int_equal(kc__bw_frame(&w, KC_REC_BINMETA, other.b, 16, rec, rec_len), KC_OK);
    assert_int_equal(kc__bw_finish(&w), KC_OK);
    fclose(m);
    assert_int_equal(kc_bundle_import_mem(a, buf, len, NULL, NULL), KC_ECORRUPT);
    assert_non_null(strstr(kc_store_errmsg(a), "build key"));
    kc_free(rec);
    free(buf);

    kc_store_close(a);
    kc_store_close(b);
    kct_pub_free(&p);
    kct_rmtree(root, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_bundle_carries_binmeta_after_its_build),
        cmocka_unit_test(test_a_binmeta_without_its_build_is_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
