/* Options structs that can grow (kcache/api.h, "Options structs"): the
 * store's calls read only the fields within opts->size, so a program built
 * against an older, smaller struct still works and what lies past its
 * struct is never read; a size of 0 or one larger than the library's is
 * KC_EINVAL; NULL options are the defaults. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kc_testutil.h"
#include "kcache/bundle.h"
#include "kcache/layers.h"
#include "kcache/remote.h"
#include "kcache/store.h"

typedef struct fixture {
    char root[512];
    char dir[600];
} fixture_t;

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof(*f));
    if (!f || kct_tmpdir("opts", f->root, sizeof(f->root)) != 0)
        return -1;
    snprintf(f->dir, sizeof(f->dir), "%s/store", f->root);
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

/* Create the store, with one published kernel, and close it. */
static void make_store(const fixture_t *f)
{
    kc_store_t *st = NULL;
    kct_pub_t p;
    assert_int_equal(kc_store_open(f->dir, NULL, &st), KC_OK);
    assert_int_equal(kct_pub_make(&p, 7, 2), 0);
    assert_int_equal(kc_store_publish(st, &p.pub), KC_OK);
    kct_pub_free(&p);
    kc_store_close(st);
}

static void test_store_opts_sizes(void **state)
{
    fixture_t *f = *state;
    kc_store_t *st = NULL;
    make_store(f);

    /* The initializer: the size is set, every option at its default. */
    kc_store_opts_t o = KC_STORE_OPTS_INIT;
    assert_int_equal(o.size, sizeof(kc_store_opts_t));
    assert_int_equal(o.flags, 0);
    o.flags = KC_STORE_RDONLY;
    assert_int_equal(kc_store_open(f->dir, &o, &st), KC_OK);
    assert_true(kc_store_is_readonly(st));
    kc_store_close(st);

    /* An older caller's struct that ends before flags: flags, past its
     * size, is not read (the store opens writable). */
    o.size = offsetof(kc_store_opts_t, flags);
    assert_int_equal(kc_store_open(f->dir, &o, &st), KC_OK);
    assert_false(kc_store_is_readonly(st));
    kc_store_close(st);

    /* One that ends after flags, before map_size: flags is read. */
    o.size = offsetof(kc_store_opts_t, map_size);
    assert_int_equal(kc_store_open(f->dir, &o, &st), KC_OK);
    assert_true(kc_store_is_readonly(st));
    kc_store_close(st);

    /* Size not set, or from a newer kcache than this one: refused, with a
     * message that says how to set it. */
    kc_store_opts_t zero;
    memset(&zero, 0, sizeof(zero));
    zero.flags = KC_STORE_RDONLY;
    assert_int_equal(kc_store_open(f->dir, &zero, &st), KC_EINVAL);
    assert_null(st);
    assert_non_null(strstr(kc_store_open_errmsg(), "KC_STORE_OPTS_INIT"));
    o.size = sizeof(kc_store_opts_t) + 8;
    assert_int_equal(kc_store_open(f->dir, &o, &st), KC_EINVAL);
    assert_null(st);

    /* Layers take the same options. */
    kc_layers_t *l = NULL;
    assert_int_equal(kc_layers_open(f->dir, &zero, &l), KC_EINVAL);
    assert_null(l);
    o.size = offsetof(kc_store_opts_t, flags);
    assert_int_equal(kc_layers_open(f->dir, &o, &l), KC_OK);
    assert_non_null(kc_layers_writable(l));
    kc_layers_close(l);
    o.size = sizeof(o);
    assert_int_equal(kc_layers_open(f->dir, &o, &l), KC_OK);
    assert_null(kc_layers_writable(l));
    kc_layers_close(l);

    /* NULL: every default. */
    assert_int_equal(kc_store_open(f->dir, NULL, &st), KC_OK);
    assert_false(kc_store_is_readonly(st));
    kc_store_close(st);
}

static void test_gc_opts_sizes(void **state)
{
    fixture_t *f = *state;
    kc_store_t *st = NULL;
    kc_gc_report_t r;
    make_store(f);
    assert_int_equal(kc_store_open(f->dir, NULL, &st), KC_OK);

    /* A dry run of "evict everything" with the list asked for. */
    kc_gc_opts_t o = KC_GC_OPTS_INIT;
    o.max_bytes = 1;
    o.dry_run = 1;
    o.list = 1;
    assert_int_equal(kc_store_gc(st, &o, &r), KC_OK);
    assert_true(r.n_items > 0);
    assert_non_null(r.items);
    kc_free(r.items);

    /* An older struct that ends before list: no list, still a dry run. */
    o.size = offsetof(kc_gc_opts_t, list);
    assert_int_equal(kc_store_gc(st, &o, &r), KC_OK);
    assert_true(r.evicted[KC_REC_TUNING] > 0);
    assert_null(r.items);
    assert_int_equal(r.n_items, 0);

    o.size = 0;
    assert_int_equal(kc_store_gc(st, &o, &r), KC_EINVAL);
    assert_non_null(strstr(kc_store_errmsg(st), "KC_GC_OPTS_INIT"));
    o.size = sizeof(o) + 1;
    assert_int_equal(kc_store_gc(st, &o, &r), KC_EINVAL);

    /* Nothing was evicted by any of it. */
    kc_store_stats_t s;
    assert_int_equal(kc_store_stats(st, &s), KC_OK);
    assert_int_equal(s.records[KC_REC_TUNING], 1);
    kc_store_close(st);
}

static void test_bundle_import_opts_sizes(void **state)
{
    fixture_t *f = *state;
    kc_store_t *st = NULL;
    char *buf = NULL;
    size_t len = 0;
    make_store(f);
    assert_int_equal(kc_store_open(f->dir, NULL, &st), KC_OK);
    FILE *mem = open_memstream(&buf, &len);
    assert_non_null(mem);
    assert_int_equal(kc_bundle_export(st, NULL, mem, NULL), KC_OK);
    assert_int_equal(fclose(mem), 0);

    /* A trusted key makes the unsigned bundle fail... */
    kc_bundle_key_t key;
    memset(&key, 0, sizeof(key));
    key.pk[0] = 1;
    kc_bundle_import_opts_t o = KC_BUNDLE_IMPORT_OPTS_INIT;
    o.trust = &key;
    assert_int_equal(kc_bundle_import_mem(st, buf, len, &o, NULL), KC_ESIGNATURE);

    /* ... unless the caller's struct ends before trust. */
    o.size = offsetof(kc_bundle_import_opts_t, trust);
    kc_bundle_stats_t s;
    assert_int_equal(kc_bundle_import_mem(st, buf, len, &o, &s), KC_OK);
    assert_true(s.present > 0);
    assert_int_equal(s.added, 0);

    o.size = 0;
    assert_int_equal(kc_bundle_import_mem(st, buf, len, &o, NULL), KC_EINVAL);
    o.size = sizeof(o) + sizeof(void *);
    assert_int_equal(kc_bundle_import_mem(st, buf, len, &o, NULL), KC_EINVAL);
    assert_int_equal(kc_bundle_import_mem(st, buf, len, NULL, NULL), KC_OK);
    free(buf);
    kc_store_close(st);
}

static void test_remote_opts_sizes(void **state)
{
    (void)state;
    kc_remote_t *r = NULL;
    kc_remote_opts_t o = KC_REMOTE_OPTS_INIT;
    o.retry_after_ms = 5;
    assert_int_equal(kc_remote_open("redis://127.0.0.1:1", &o, &r), KC_OK);
    kc_remote_close(r);
    o.size = offsetof(kc_remote_opts_t, retry_after_ms);
    assert_int_equal(kc_remote_open("redis://127.0.0.1:1", &o, &r), KC_OK);
    kc_remote_close(r);
    o.size = 0;
    assert_int_equal(kc_remote_open("redis://127.0.0.1:1", &o, &r), KC_EINVAL);
    assert_null(r);
    o.size = sizeof(o) + 4;
    assert_int_equal(kc_remote_open("redis://127.0.0.1:1", &o, &r), KC_EINVAL);
    assert_null(r);
    assert_int_equal(kc_remote_open("redis://127.0.0.1:1", NULL, &r), KC_OK);
    kc_remote_close(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_store_opts_sizes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gc_opts_sizes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bundle_import_opts_sizes, setup, teardown),
        cmocka_unit_test(test_remote_opts_sizes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
