/* gc and binmeta: evicting a build removes its binmeta with it, a binmeta
 * whose build is gone is swept, and one whose build stays is kept. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <lmdb.h>

#include "kc_testutil.h"
#include "kcache/errors.h"
#include "kcache/record.h"
#include "kcache/store.h"

static kc_record_t binmeta_for(const kc_key_t *build)
{
    kc_record_t r;
    memset(&r, 0, sizeof(r));
    r.kind = KC_REC_BINMETA;
    r.version = KC_RECORD_VERSION;
    r.u.binmeta = (kc_binmeta_rec_t){.build = *build,
                                     .entry = "kct",
                                     .arch = "sm_90",
                                     .threads_per_block = 32,
                                     .num_warps = 1,
                                     .warp_size = 32,
                                     .num_ctas = 1,
                                     .global_scratch_align = 1,
                                     .profile_scratch_align = 1,
                                     .compiler = "triton",
                                     .compiler_version = "3.6.0"};
    return r;
}

static int has(kc_store_t *st, kc_rec_kind_t kind, const kc_key_t *key)
{
    kc_record_t *r = NULL;
    int rc = kc_store_get(st, kind, key, &r);
    kc_free(r);
    return rc == KC_OK;
}

/* Delete a build behind kcache's back, as an older kcache would, leaving
 * its binmeta without it. */
static void delete_build_raw(const char *dir, const kc_key_t *key)
{
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    MDB_val k = {16, (void *)key->b};

    assert_int_equal(mdb_env_create(&env), 0);
    assert_int_equal(mdb_env_set_maxdbs(env, 16), 0);
    assert_int_equal(mdb_env_open(env, dir, MDB_NOTLS, 0664), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, "build", 0, &dbi), 0);
    assert_int_equal(mdb_del(txn, dbi, &k, NULL), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
}

static void test_gc_removes_a_builds_binmeta_with_it_and_sweeps_orphans(void **state)
{
    (void)state;
    char root[512], dir[600];
    kc_store_t *st = NULL;
    kct_pub_t a, b;

    assert_int_equal(kct_tmpdir("test_binmeta_gc", root, sizeof(root)), 0);
    snprintf(dir, sizeof(dir), "%s/store", root);
    unsetenv("KCACHE_MAX_SIZE");
    assert_int_equal(kc_store_open(dir, NULL, &st), KC_OK);
    assert_int_equal(kct_pub_make(&a, 1, 2), KC_OK);
    assert_int_equal(kct_pub_make(&b, 2, 1), KC_OK);
    assert_int_equal(kc_store_publish(st, &a.pub), KC_OK);
    assert_int_equal(kc_store_publish(st, &b.pub), KC_OK);
    for (unsigned j = 0; j < 2; j++) {
        kc_record_t r = binmeta_for(&a.build_keys[j]);
        assert_int_equal(kc_store_put(st, &a.build_keys[j], &r), KC_OK);
    }
    kc_record_t r = binmeta_for(&b.build_keys[0]);
    assert_int_equal(kc_store_put(st, &b.build_keys[0], &r), KC_OK);

    /* A gc that evicts nothing keeps every binmeta. */
    kc_gc_opts_t o = KC_GC_OPTS_INIT;
    kc_gc_report_t rep;
    assert_int_equal(kc_store_gc(st, &o, &rep), KC_OK);
    assert_int_equal(rep.evicted[KC_REC_BINMETA], 0);
    assert_true(has(st, KC_REC_BINMETA, &a.build_keys[0]));

    /* Evicting everything (all used before now + 1 day) evicts the builds,
     * and their binmeta with them. */
    o.older_than = 1;
    o.now = (uint64_t)time(NULL) + 86400;
    assert_int_equal(kc_store_gc(st, &o, &rep), KC_OK);
    assert_int_equal(rep.evicted[KC_REC_BUILD], 3);
    assert_int_equal(rep.evicted[KC_REC_BINMETA], 3);
    for (unsigned j = 0; j < 2; j++) {
        assert_false(has(st, KC_REC_BUILD, &a.build_keys[j]));
        assert_false(has(st, KC_REC_BINMETA, &a.build_keys[j]));
    }
    assert_false(has(st, KC_REC_BINMETA, &b.build_keys[0]));

    /* A binmeta left without its build is swept by the next gc; one beside
     * its build stays. */
    assert_int_equal(kc_store_publish(st, &a.pub), KC_OK);
    for (unsigned j = 0; j < 2; j++) {
        kc_record_t m = binmeta_for(&a.build_keys[j]);
        assert_int_equal(kc_store_put(st, &a.build_keys[j], &m), KC_OK);
    }
    kc_store_close(st);
    delete_build_raw(dir, &a.build_keys[1]);
    assert_int_equal(kc_store_open(dir, NULL, &st), KC_OK);
    assert_true(has(st, KC_REC_BINMETA, &a.build_keys[1]));
    kc_gc_opts_t plain = KC_GC_OPTS_INIT;
    assert_int_equal(kc_store_gc(st, &plain, &rep), KC_OK);
    assert_int_equal(rep.evicted[KC_REC_BINMETA], 1);
    assert_false(has(st, KC_REC_BINMETA, &a.build_keys[1]));
    assert_true(has(st, KC_REC_BINMETA, &a.build_keys[0]));
    assert_true(has(st, KC_REC_BUILD, &a.build_keys[0]));

    kc_store_close(st);
    kct_pub_free(&a);
    kct_pub_free(&b);
    kct_rmtree(root, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gc_removes_a_builds_binmeta_with_it_and_sweeps_orphans),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
