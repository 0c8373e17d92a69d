/* Groups in a store: put (replace and merge), get, read, delete, usage
 * stamps, the layered lookup, names refused, a read-only store, a store
 * made before groups, stats; and gc: a group keeps its blobs, a removed
 * group frees them, and groups are evicted least recently used first. */
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
#include "kcache/layers.h"
#include "kcache/record.h"
#include "kcache/store.h"

typedef struct fixture {
    char dir[4096];
    kc_store_t *st;
} fixture_t;

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof(*f));
    if (!f || kct_store_scratch("group", f->dir, sizeof(f->dir), &f->st) != 0)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    kct_store_scratch_free(f->dir, f->st);
    free(f);
    return 0;
}

static const char cubin[] = "\x7f"
                            "ELF cubin bytes of add_kernel";
static const char json[] = "{\"name\": \"add_kernel\", \"num_warps\": 4}";
static const char ptx[] = ".version 8.4\n.target sm_90a\n";

static void read_is(kc_store_t *st, const char *g, const char *fname, const void *want,
                    size_t want_len)
{
    void *data = NULL;
    size_t len = 99;
    assert_int_equal(kc_store_group_read(st, g, fname, &data, &len), KC_OK);
    assert_int_equal(len, want_len);
    if (want_len)
        assert_memory_equal(data, want, len);
    kc_free(data);
}

static int blob_present(kc_store_t *st, const kc_key_t *k)
{
    void *c = NULL;
    size_t n = 0;
    int rc = kc_store_get_cubin(st, k, &c, &n);
    kc_free(c);
    return rc == KC_OK;
}

static void test_a_group_put_is_read_back_file_by_file(void **state)
{
    fixture_t *f = *state;
    kc_group_file_t files[] = {
        {"add_kernel.ptx", ptx, sizeof(ptx) - 1},
        {"add_kernel.cubin", cubin, sizeof(cubin) - 1},
        {"add_kernel.json", json, sizeof(json) - 1},
        {"empty.source", NULL, 0},
    };
    kc_record_t *rec = NULL;

    assert_int_equal(kc_store_group_put(f->st, "abc123", files, 4, 0), KC_OK);
    assert_int_equal(kc_store_group_get(f->st, "abc123", &rec), KC_OK);
    assert_int_equal(rec->kind, KC_REC_GROUP);
    const kc_group_rec_t *g = &rec->u.group;
    assert_string_equal(g->name, "abc123");
    assert_int_equal(g->n_files, 4);
    /* sorted by name */
    assert_string_equal(g->files[0].name, "add_kernel.cubin");
    assert_string_equal(g->files[1].name, "add_kernel.json");
    assert_string_equal(g->files[2].name, "add_kernel.ptx");
    assert_string_equal(g->files[3].name, "empty.source");
    assert_true(g->files[3].size == 0);
    assert_true(g->created == g->updated && g->created > 0);
    /* each file is an ordinary blob, keyed by its bytes */
    kc_key_t k = kc_key_hash(cubin, sizeof(cubin) - 1);
    assert_memory_equal(g->files[0].blob.b, k.b, 16);
    void *c = NULL;
    size_t n = 0;
    assert_int_equal(kc_store_get_cubin(f->st, &g->files[2].blob, &c, &n), KC_OK);
    assert_int_equal(n, sizeof(ptx) - 1);
    kc_free(c);
    kc_free(rec);

    read_is(f->st, "abc123", "add_kernel.json", json, sizeof(json) - 1);
    read_is(f->st, "abc123", "add_kernel.cubin", cubin, sizeof(cubin) - 1);
    read_is(f->st, "abc123", "empty.source", NULL, 0); /* a 0-byte blob works */
    void *data = (void *)1;
    size_t len = 1;
    assert_int_equal(kc_store_group_read(f->st, "abc123", "nope", &data, &len),
                     KC_ENOTFOUND);
    assert_null(data);
    assert_int_equal(len, 0);
    assert_int_equal(kc_store_group_read(f->st, "other", "add_kernel.json", &data, &len),
                     KC_ENOTFOUND);
    assert_int_equal(kc_store_group_get(f->st, "other", &rec), KC_ENOTFOUND);
    assert_null(rec);

    kc_store_stats_t s;
    assert_int_equal(kc_store_stats(f->st, &s), KC_OK);
    assert_int_equal(s.records[KC_REC_GROUP], 1);
    assert_int_equal(s.records[KC_REC_BLOB], 4);
}

static void test_merge_adds_and_replaces_and_replace_makes_exactly(void **state)
{
    fixture_t *f = *state;
    kc_group_file_t first[] = {{"a.json", json, 5}, {"a.ptx", ptx, sizeof(ptx) - 1}};
    kc_group_file_t more[] = {{"a.json", json, 10}, {"a.cubin", cubin, 4}};
    kc_record_t *rec = NULL;

    assert_int_equal(kc_store_group_put(f->st, "k", first, 2, 1), KC_OK); /* new */
    assert_int_equal(kc_store_group_get(f->st, "k", &rec), KC_OK);
    uint64_t created = rec->u.group.created;
    kc_free(rec);

    assert_int_equal(kc_store_group_put(f->st, "k", more, 2, 1), KC_OK);
    assert_int_equal(kc_store_group_get(f->st, "k", &rec), KC_OK);
    assert_int_equal(rec->u.group.n_files, 3);
    assert_string_equal(rec->u.group.files[0].name, "a.cubin");
    assert_string_equal(rec->u.group.files[1].name, "a.json");
    assert_string_equal(rec->u.group.files[2].name, "a.ptx");
    assert_true(rec->u.group.created == created);
    assert_true(rec->u.group.updated >= created);
    kc_free(rec);
    read_is(f->st, "k", "a.json", json, 10); /* replaced */
    read_is(f->st, "k", "a.ptx", ptx, sizeof(ptx) - 1);

    assert_int_equal(kc_store_group_put(f->st, "k", more + 1, 1, 0), KC_OK);
    assert_int_equal(kc_store_group_get(f->st, "k", &rec), KC_OK);
    assert_int_equal(rec->u.group.n_files, 1);
    assert_string_equal(rec->u.group.files[0].name, "a.cubin");
    kc_free(rec);

    assert_int_equal(kc_store_group_put(f->st, "k", NULL, 0, 0), KC_OK);
    assert_int_equal(kc_store_group_get(f->st, "k", &rec), KC_OK);
    assert_int_equal(rec->u.group.n_files, 0);
    kc_free(rec);
}

static void test_bad_names_are_refused_with_a_message(void **state)
{
    fixture_t *f = *state;
    kc_group_file_t files[2] = {{"ok", json, 3}, {"ok", json, 4}};
    char big[KC_GROUP_NAME_MAX + 2];
    memset(big, 'x', sizeof(big));
    big[sizeof(big) - 1] = '\0';

    assert_int_equal(kc_store_group_put(f->st, "", files, 1, 0), KC_EINVAL);
    assert_int_equal(kc_store_group_put(f->st, big, files, 1, 0), KC_EINVAL);
    assert_int_equal(kc_store_group_put(f->st, NULL, files, 1, 0), KC_EINVAL);
    assert_int_equal(kc_store_group_put(f->st, "g", files, 2, 0), KC_EINVAL);
    assert_non_null(strstr(kc_store_errmsg(f->st), "given twice"));
    static const char *const bad[] = {"", ".", "..", "a/b"};
    for (size_t i = 0; i < 4; i++) {
        files[1].name = bad[i];
        assert_int_equal(kc_store_group_put(f->st, "g", files, 2, 1), KC_EINVAL);
        assert_non_null(strstr(kc_store_errmsg(f->st), "file 1: bad name"));
    }
    files[1] = (kc_group_file_t){"nodata", NULL, 3};
    assert_int_equal(kc_store_group_put(f->st, "g", files, 2, 0), KC_EINVAL);
    kc_record_t *rec = NULL;
    assert_int_equal(kc_store_group_get(f->st, "g", &rec), KC_ENOTFOUND);
    assert_int_equal(kc_store_group_get(f->st, "", &rec), KC_EINVAL);
    kc_store_stats_t s;
    assert_int_equal(kc_store_stats(f->st, &s), KC_OK);
    assert_int_equal(s.records[KC_REC_BLOB], 0); /* nothing written */
}

static void test_a_group_is_deleted_found_and_layered_like_other_kinds(void **state)
{
    fixture_t *f = *state;
    kc_group_file_t files[] = {{"x.json", json, 7}};
    kc_key_t key;
    kc_record_t *rec = NULL;

    assert_int_equal(kc_store_group_put(f->st, "layered", files, 1, 0), KC_OK);
    assert_int_equal(kc_group_key("layered", &key), KC_OK);
    assert_int_equal(kc_store_get(f->st, KC_REC_GROUP, &key, &rec), KC_OK);
    kc_free(rec);

    kc_layers_t *l = NULL;
    size_t layer = 9;
    assert_int_equal(kc_layers_wrap(f->st, &l), KC_OK);
    assert_int_equal(kc_layers_get(l, KC_REC_GROUP, &key, &rec, &layer), KC_OK);
    assert_int_equal(layer, 0);
    assert_string_equal(rec->u.group.name, "layered");
    kc_free(rec);

    /* a group under another key is refused by put */
    kc_record_t r = {.kind = KC_REC_GROUP, .version = KC_RECORD_VERSION};
    r.u.group = (kc_group_rec_t){"other", 1, 1, NULL, 0};
    assert_int_equal(kc_store_put(f->st, &key, &r), KC_EINVAL);

    assert_int_equal(kc_store_del(f->st, KC_REC_GROUP, &key), KC_OK);
    assert_int_equal(kc_store_group_get(f->st, "layered", &rec), KC_ENOTFOUND);
    assert_int_equal(kc_layers_get(l, KC_REC_GROUP, &key, &rec, &layer), KC_ENOTFOUND);
    assert_int_equal(kc_store_del(f->st, KC_REC_GROUP, &key), KC_ENOTFOUND);
    kc_layers_close(l);
}

static void test_a_read_only_store_refuses_a_put_and_serves_a_get(void **state)
{
    fixture_t *f = *state;
    kc_group_file_t files[] = {{"x.json", json, 7}};
    assert_int_equal(kc_store_group_put(f->st, "ro", files, 1, 0), KC_OK);

    kc_store_opts_t o = KC_STORE_OPTS_INIT;
    o.flags = KC_STORE_RDONLY;
    kc_store_t *ro = NULL;
    assert_int_equal(kc_store_open(f->dir, &o, &ro), KC_OK);
    assert_int_equal(kc_store_group_put(ro, "ro", files, 1, 1), KC_EREADONLY);
    read_is(ro, "ro", "x.json", json, 7);
    kc_store_close(ro);
}

/* Drop the "group" database, as a store made before revision 1.2 has none. */
static void drop_group_db(const char *dir)
{
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;

    assert_int_equal(mdb_env_create(&env), 0);
    assert_int_equal(mdb_env_set_maxdbs(env, 16), 0);
    assert_int_equal(mdb_env_open(env, dir, MDB_NOTLS, 0664), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, "group", 0, &dbi), 0);
    assert_int_equal(mdb_drop(txn, dbi, 1), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
}

static void test_a_store_made_before_groups_opens_both_ways(void **state)
{
    fixture_t *f = *state;
    kc_group_file_t files[] = {{"x.json", json, 7}};
    kc_store_close(f->st);
    f->st = NULL;
    drop_group_db(f->dir);

    kc_store_opts_t o = KC_STORE_OPTS_INIT;
    o.flags = KC_STORE_RDONLY;
    kc_store_t *ro = NULL;
    kc_record_t *rec = NULL;
    assert_int_equal(kc_store_open(f->dir, &o, &ro), KC_OK);
    assert_int_equal(kc_store_group_get(ro, "x", &rec), KC_ENOTFOUND);
    kc_store_stats_t s;
    assert_int_equal(kc_store_stats(ro, &s), KC_OK);
    assert_int_equal(s.records[KC_REC_GROUP], 0);
    kc_gc_opts_t go = KC_GC_OPTS_INIT;
    go.dry_run = 1;
    go.max_bytes = 1;
    kc_gc_report_t rep;
    assert_int_equal(kc_store_gc(ro, &go, &rep), KC_OK);
    kc_store_close(ro);

    assert_int_equal(kc_store_open(f->dir, NULL, &f->st), KC_OK);
    assert_int_equal(kc_store_group_put(f->st, "x", files, 1, 0), KC_OK);
    read_is(f->st, "x", "x.json", json, 7);
}

/* ---- gc ------------------------------------------------------------------ */

static void set_last_use(kc_store_t *st, const char *group, uint64_t t)
{
    kc_key_t key;
    kc_record_t u = {.kind = KC_REC_USAGE, .version = KC_RECORD_VERSION};
    u.u.usage = (kc_usage_rec_t){t, 1};
    assert_int_equal(kc_group_key(group, &key), KC_OK);
    assert_int_equal(kc_store_flush(st), KC_OK);
    assert_int_equal(kc_store_put(st, &key, &u), KC_OK);
}

static void test_gc_keeps_a_groups_blobs_and_frees_them_after_it_goes(void **state)
{
    fixture_t *f = *state;
    kc_group_file_t files[] = {{"a.cubin", cubin, sizeof(cubin) - 1},
                               {"a.json", json, sizeof(json) - 1}};
    kc_key_t kc = kc_key_hash(cubin, sizeof(cubin) - 1);
    kc_key_t kj = kc_key_hash(json, sizeof(json) - 1);
    kc_gc_opts_t o = KC_GC_OPTS_INIT;
    kc_gc_report_t rep;

    assert_int_equal(kc_store_group_put(f->st, "g", files, 2, 0), KC_OK);
    /* long past the grace of unreferenced blobs: the group's stay */
    o.now = (uint64_t)time(NULL) + 3600;
    assert_int_equal(kc_store_gc(f->st, &o, &rep), KC_OK);
    assert_int_equal(rep.evicted[KC_REC_BLOB], 0);
    assert_true(blob_present(f->st, &kc));
    assert_true(blob_present(f->st, &kj));

    /* replaced by a group without the json: that blob is now free */
    assert_int_equal(kc_store_group_put(f->st, "g", files, 1, 0), KC_OK);
    assert_int_equal(kc_store_gc(f->st, &o, &rep), KC_OK);
    assert_int_equal(rep.evicted[KC_REC_BLOB], 1);
    assert_true(blob_present(f->st, &kc));
    assert_false(blob_present(f->st, &kj));

    kc_key_t key;
    assert_int_equal(kc_group_key("g", &key), KC_OK);
    assert_int_equal(kc_store_del(f->st, KC_REC_GROUP, &key), KC_OK);
    assert_int_equal(kc_store_gc(f->st, &o, &rep), KC_OK);
    assert_int_equal(rep.evicted[KC_REC_BLOB], 1);
    assert_false(blob_present(f->st, &kc));
}

static void test_gc_evicts_the_least_recently_used_group_with_its_blobs(void **state)
{
    fixture_t *f = *state;
    static const char shared[] = "shared launcher stub";
    static const char only_old[] = "the old group's own cubin";
    static const char only_new[] = "the new group's own cubin";
    kc_group_file_t old_files[] = {{"s.so", shared, sizeof(shared)},
                                   {"k.cubin", only_old, sizeof(only_old)}};
    kc_group_file_t new_files[] = {{"s.so", shared, sizeof(shared)},
                                   {"k.cubin", only_new, sizeof(only_new)}};
    kc_key_t ks = kc_key_hash(shared, sizeof(shared));
    kc_key_t ko = kc_key_hash(only_old, sizeof(only_old));
    kc_key_t kn = kc_key_hash(only_new, sizeof(only_new));
    kc_record_t *rec = NULL;
    kc_gc_report_t rep;
    kc_gc_opts_t o = KC_GC_OPTS_INIT;

    assert_int_equal(kc_store_group_put(f->st, "old", old_files, 2, 0), KC_OK);
    assert_int_equal(kc_store_group_put(f->st, "new", new_files, 2, 0), KC_OK);
    set_last_use(f->st, "old", 1000);
    set_last_use(f->st, "new", 2000);

    /* older_than: only "old" was last used before the cutoff */
    o.now = 2500;
    o.older_than = 1000;
    o.dry_run = 1;
    o.list = 1;
    assert_int_equal(kc_store_gc(f->st, &o, &rep), KC_OK);
    assert_int_equal(rep.evicted[KC_REC_GROUP], 1);
    assert_int_equal(rep.evicted[KC_REC_BLOB], 1);
    assert_int_equal(rep.items[0].kind, KC_REC_GROUP);
    kc_free(rep.items);

    /* a size limit the two groups exceed: the older goes first */
    kc_gc_opts_t l = KC_GC_OPTS_INIT;
    l.max_bytes = rep.size_before - 1;
    l.now = 2500;
    assert_int_equal(kc_store_gc(f->st, &l, &rep), KC_OK);
    assert_int_equal(rep.evicted[KC_REC_GROUP], 1);
    assert_int_equal(rep.evicted[KC_REC_BLOB], 1);
    assert_int_equal(kc_store_group_get(f->st, "old", &rec), KC_ENOTFOUND);
    assert_int_equal(kc_store_group_get(f->st, "new", &rec), KC_OK);
    kc_free(rec);
    assert_false(blob_present(f->st, &ko));
    assert_true(blob_present(f->st, &ks)); /* "new" still lists it */
    assert_true(blob_present(f->st, &kn));
}

static void test_a_get_touches_the_groups_usage(void **state)
{
    fixture_t *f = *state;
    kc_group_file_t files[] = {{"x", json, 3}};
    kc_record_t *rec = NULL;
    kc_gc_report_t rep;
    kc_gc_opts_t o = KC_GC_OPTS_INIT;

    assert_int_equal(kc_store_group_put(f->st, "a", files, 1, 0), KC_OK);
    assert_int_equal(kc_store_group_put(f->st, "b", files, 1, 0), KC_OK);
    set_last_use(f->st, "a", 1000);
    set_last_use(f->st, "b", 1000);
    assert_int_equal(kc_store_group_get(f->st, "a", &rec), KC_OK); /* a use: now */
    kc_free(rec);
    o.older_than = 3600; /* gc flushes the stamp first */
    assert_int_equal(kc_store_gc(f->st, &o, &rep), KC_OK);
    assert_int_equal(rep.evicted[KC_REC_GROUP], 1);
    assert_int_equal(kc_store_group_get(f->st, "b", &rec), KC_ENOTFOUND);
    assert_int_equal(kc_store_group_get(f->st, "a", &rec), KC_OK);
    kc_free(rec);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_a_group_put_is_read_back_file_by_file, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_merge_adds_and_replaces_and_replace_makes_exactly, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_names_are_refused_with_a_message, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_a_group_is_deleted_found_and_layered_like_other_kinds, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_a_read_only_store_refuses_a_put_and_serves_a_get, setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_store_made_before_groups_opens_both_ways,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_gc_keeps_a_groups_blobs_and_frees_them_after_it_goes, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_gc_evicts_the_least_recently_used_group_with_its_blobs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_get_touches_the_groups_usage, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
