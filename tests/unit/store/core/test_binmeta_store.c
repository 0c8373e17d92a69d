/* binmeta records in the store: put, get, iterate, find, stats and delete;
 * a binmeta lives beside its build (refused without it, deleted with it);
 * and a store made before the "binmeta" database existed still opens,
 * read-only (with no binmeta records) and read-write (which creates it). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <lmdb.h>

#include "kc_testutil.h"
#include "kcache/errors.h"
#include "kcache/record.h"
#include "kcache/store.h"

static const kc_binmeta_arg_t args[] = {{"x_ptr", "*fp32"}, {"n", "i32"}};
static const kc_binmeta_spec_t spec[] = {{0, KC_SPEC_ALIGN16}, {1, KC_SPEC_DIV16}};

static kc_record_t binmeta_for(const kc_key_t *build)
{
    kc_record_t r;
    memset(&r, 0, sizeof(r));
    r.kind = KC_REC_BINMETA;
    r.version = KC_RECORD_VERSION;
    r.u.binmeta = (kc_binmeta_rec_t){.build = *build,
                                     .entry = "kct",
                                     .arch = "sm_90",
                                     .threads_per_block = 128,
                                     .num_warps = 4,
                                     .warp_size = 32,
                                     .num_ctas = 1,
                                     .dyn_smem = 1024,
                                     .global_scratch_align = 1,
                                     .profile_scratch_align = 1,
                                     .flags = KC_BINMETA_TMA,
                                     .compiler = "triton",
                                     .compiler_version = "3.6.0",
                                     .args = args,
                                     .n_args = 2,
                                     .spec = spec,
                                     .n_spec = 2};
    return r;
}

typedef struct fixture {
    char root[512];
    char dir[600];
    kc_store_t *st;
    kct_pub_t pub;
} fixture_t;

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof(*f));
    if (!f || kct_tmpdir("test_binmeta_store", f->root, sizeof(f->root)) != 0)
        return -1;
    snprintf(f->dir, sizeof(f->dir), "%s/store", f->root);
    if (kc_store_open(f->dir, NULL, &f->st) != KC_OK)
        return -1;
    if (kct_pub_make(&f->pub, 1, 2) != KC_OK ||
        kc_store_publish(f->st, &f->pub.pub) != KC_OK)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    kc_store_close(f->st);
    kct_pub_free(&f->pub);
    kct_rmtree(f->root, 0);
    free(f);
    return 0;
}

typedef struct seen {
    unsigned binmeta, all;
    kc_key_t key;
} seen_t;

static int seen_fn(void *user, kc_rec_kind_t kind, const kc_key_t *key, const void *data,
                   size_t len)
{
    seen_t *s = user;
    (void)data;
    (void)len;
    s->all++;
    if (kind == KC_REC_BINMETA) {
        s->binmeta++;
        s->key = *key;
    }
    return 0;
}

static void test_put_get_iterate_find_stats_delete(void **state)
{
    fixture_t *f = *state;
    const kc_key_t *bk = &f->pub.build_keys[0];
    kc_record_t r = binmeta_for(bk);
    kc_record_t *got = NULL;

    assert_int_equal(kc_store_get(f->st, KC_REC_BINMETA, bk, &got), KC_ENOTFOUND);
    assert_int_equal(kc_store_put(f->st, bk, &r), KC_OK);
    assert_int_equal(kc_store_get(f->st, KC_REC_BINMETA, bk, &got), KC_OK);
    assert_int_equal(got->kind, KC_REC_BINMETA);
    assert_memory_equal(got->u.binmeta.build.b, bk->b, 16);
    assert_int_equal(got->u.binmeta.threads_per_block, 128);
    assert_string_equal(got->u.binmeta.args[0].type, "*fp32");
    kc_free(got);

    seen_t s = {0};
    assert_int_equal(kc_store_iterate(f->st, KC_REC_BINMETA, seen_fn, &s), KC_OK);
    assert_int_equal(s.binmeta, 1);
    assert_memory_equal(s.key.b, bk->b, 16);
    memset(&s, 0, sizeof(s));
    assert_int_equal(kc_store_iterate(f->st, 0, seen_fn, &s), KC_OK);
    assert_int_equal(s.binmeta, 1); /* kind 0 visits binmeta too */

    kc_key_prefix_t pre;
    kc_rec_kind_t kind;
    kc_key_t key;
    char hex[KC_KEY_HEX_LEN + 1];
    kc_key_to_hex(bk, hex);
    assert_int_equal(kc_key_prefix_parse(hex, &pre), KC_OK);
    assert_int_equal(kc_store_find(f->st, KC_REC_BINMETA, &pre, &kind, &key), KC_OK);
    assert_int_equal(kind, KC_REC_BINMETA);

    kc_store_stats_t st;
    assert_int_equal(kc_store_stats(f->st, &st), KC_OK);
    assert_int_equal(st.records[KC_REC_BINMETA], 1);
    assert_int_equal(st.records[KC_REC_BUILD], 2);

    /* Deleting the binmeta leaves the build and its usage stamp (the build
     * won its tuning, whose stamp stood for it at the publish: a use stamps
     * it). */
    assert_int_equal(kc_store_touch(f->st, KC_REC_BUILD, bk), KC_OK);
    assert_int_equal(kc_store_flush(f->st), KC_OK);
    assert_int_equal(kc_store_del(f->st, KC_REC_BINMETA, bk), KC_OK);
    assert_int_equal(kc_store_get(f->st, KC_REC_BINMETA, bk, &got), KC_ENOTFOUND);
    assert_int_equal(kc_store_get(f->st, KC_REC_BUILD, bk, &got), KC_OK);
    kc_free(got);
    assert_int_equal(kc_store_get(f->st, KC_REC_USAGE, bk, &got), KC_OK);
    kc_free(got);
    assert_int_equal(kc_store_del(f->st, KC_REC_BINMETA, bk), KC_ENOTFOUND);
}

static void test_a_binmeta_lives_beside_its_build(void **state)
{
    fixture_t *f = *state;
    const kc_key_t *bk = &f->pub.build_keys[1];
    kc_record_t r = binmeta_for(bk);
    kc_record_t *got = NULL;
    kc_key_t other = f->pub.build_keys[0];

    /* under another key than the build it names */
    assert_int_equal(kc_store_put(f->st, &other, &r), KC_EINVAL);
    /* naming a build the store does not hold */
    kc_key_t absent = *bk;
    absent.b[0] ^= 0xff;
    r.u.binmeta.build = absent;
    assert_int_equal(kc_store_put(f->st, &absent, &r), KC_EINVAL);
    assert_non_null(strstr(kc_store_errmsg(f->st), "does not hold"));
    void *enc = NULL;
    size_t len;
    assert_int_equal(kc_record_encode(&r, &enc, &len), KC_OK);
    assert_int_equal(kc_store_put_raw(f->st, KC_REC_BINMETA, &absent, enc, len),
                     KC_EINVAL);
    kc_free(enc);

    /* deleted with its build */
    r = binmeta_for(bk);
    assert_int_equal(kc_store_put(f->st, bk, &r), KC_OK);
    assert_int_equal(kc_store_del(f->st, KC_REC_BUILD, bk), KC_OK);
    assert_int_equal(kc_store_get(f->st, KC_REC_BINMETA, bk, &got), KC_ENOTFOUND);
}

/* Drop the "binmeta" database, as a store made before it would be. */
static void drop_binmeta_db(const char *dir)
{
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;

    assert_int_equal(mdb_env_create(&env), 0);
    assert_int_equal(mdb_env_set_maxdbs(env, 16), 0);
    assert_int_equal(mdb_env_open(env, dir, MDB_NOTLS, 0664), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, "binmeta", 0, &dbi), 0);
    assert_int_equal(mdb_drop(txn, dbi, 1), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);

    /* and it is gone */
    assert_int_equal(mdb_env_create(&env), 0);
    assert_int_equal(mdb_env_set_maxdbs(env, 16), 0);
    assert_int_equal(mdb_env_open(env, dir, MDB_NOTLS | MDB_RDONLY, 0664), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, "binmeta", 0, &dbi), MDB_NOTFOUND);
    mdb_txn_abort(txn);
    mdb_env_close(env);
}

static void test_a_store_made_before_binmeta_opens_read_only_and_read_write(void **state)
{
    fixture_t *f = *state;
    const kc_key_t *bk = &f->pub.build_keys[0];
    kc_record_t r = binmeta_for(bk);
    kc_record_t *got = NULL;

    assert_int_equal(kc_store_put(f->st, bk, &r), KC_OK);
    kc_store_close(f->st);
    f->st = NULL;
    drop_binmeta_db(f->dir);

    /* read-only: opens, and has no binmeta records */
    kc_store_opts_t o = KC_STORE_OPTS_INIT;
    o.flags = KC_STORE_RDONLY;
    kc_store_t *ro = NULL;
    assert_int_equal(kc_store_open(f->dir, &o, &ro), KC_OK);
    assert_int_equal(kc_store_get(ro, KC_REC_BINMETA, bk, &got), KC_ENOTFOUND);
    void *raw = NULL;
    size_t len = 0;
    assert_int_equal(kc_store_get_raw(ro, KC_REC_BINMETA, bk, &raw, &len), KC_ENOTFOUND);
    seen_t s = {0};
    assert_int_equal(kc_store_iterate(ro, KC_REC_BINMETA, seen_fn, &s), KC_OK);
    assert_int_equal(s.all, 0);
    assert_int_equal(kc_store_iterate(ro, 0, seen_fn, &s), KC_OK);
    assert_int_equal(s.binmeta, 0);
    assert_true(s.all >= 5); /* 2 blobs, 2 builds, 1 tuning, their stamps */
    kc_store_stats_t st;
    assert_int_equal(kc_store_stats(ro, &st), KC_OK);
    assert_int_equal(st.records[KC_REC_BINMETA], 0);
    assert_int_equal(st.records[KC_REC_BUILD], 2);
    assert_int_equal(kc_store_get(ro, KC_REC_BUILD, bk, &got), KC_OK);
    kc_free(got);
    kc_store_close(ro);

    /* read-write: opens, creates the database, and takes binmeta again */
    assert_int_equal(kc_store_open(f->dir, NULL, &f->st), KC_OK);
    assert_int_equal(kc_store_get(f->st, KC_REC_BINMETA, bk, &got), KC_ENOTFOUND);
    assert_int_equal(kc_store_put(f->st, bk, &r), KC_OK);
    assert_int_equal(kc_store_get(f->st, KC_REC_BINMETA, bk, &got), KC_OK);
    kc_free(got);
    kc_store_close(f->st);

    /* and a read-only open now sees it */
    assert_int_equal(kc_store_open(f->dir, &o, &ro), KC_OK);
    assert_int_equal(kc_store_get(ro, KC_REC_BINMETA, bk, &got), KC_OK);
    kc_free(got);
    kc_store_close(ro);
    assert_int_equal(kc_store_open(f->dir, NULL, &f->st), KC_OK);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_put_get_iterate_find_stats_delete, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_a_binmeta_lives_beside_its_build, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_a_store_made_before_binmeta_opens_read_only_and_read_write, setup,
            teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
