/* kc_store_snapshot: a consistent copy of a store that is being written to,
 * in a new directory, or nothing. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <stdatomic.h>
#include <sys/stat.h>

#include "kc_testutil.h"
#include "kcache/errors.h"
#include "kcache/store.h"

typedef kct_store_fx_t fixture_t;

static int setup(void **state)
{
    return kct_store_fx_setup(state, "test_snapshot");
}

static int teardown(void **state)
{
    return kct_store_fx_teardown(state);
}

static void publish(kc_store_t *st, uint64_t id)
{
    kct_pub_t p;
    assert_int_equal(kct_pub_make(&p, id, 3), KC_OK);
    assert_int_equal(kc_store_publish(st, &p.pub), KC_OK);
    kct_pub_free(&p);
}

static void test_a_snapshot_holds_every_record(void **state)
{
    fixture_t *f = *state;
    char dst[600];
    uint64_t bytes = 0, t = 0, b = 0, bl = 0;
    kc_store_t *snap = NULL;

    for (uint64_t id = 1; id <= 20; id++)
        publish(f->st, id);
    snprintf(dst, sizeof(dst), "%s.snap", f->root);
    assert_int_equal(kc_store_snapshot(f->st, dst, &bytes), KC_OK);
    assert_true(bytes > 0);
    assert_int_equal(kc_store_open(dst, NULL, &snap), KC_OK);
    assert_int_equal(kct_store_consistency(snap, &t, &b, &bl), 0);
    assert_int_equal(t, 20);
    assert_int_equal(b, 60);
    for (uint64_t id = 1; id <= 20; id++) {
        unsigned present = 0, intact = 0;
        assert_int_equal(kct_pub_state(snap, id, 3, &present, &intact), KC_OK);
        assert_int_equal(present, 7);
        assert_int_equal(intact, 7);
    }
    kc_store_close(snap);
    kct_rmrf(dst);
}

static void test_an_existing_destination_is_refused(void **state)
{
    fixture_t *f = *state;
    char dst[600];
    struct stat sb;

    publish(f->st, 1);
    snprintf(dst, sizeof(dst), "%s.snap", f->root);
    assert_int_equal(mkdir(dst, 0755), 0);
    assert_int_equal(kc_store_snapshot(f->st, dst, NULL), KC_EEXIST);
    assert_non_null(strstr(kc_store_errmsg(f->st), "exists"));
    snprintf(dst + strlen(dst), sizeof(dst) - strlen(dst), "/data.mdb");
    assert_int_not_equal(stat(dst, &sb), 0); /* nothing written into it */
    dst[strlen(dst) - strlen("/data.mdb")] = '\0';
    kct_rmrf(dst);
}

typedef struct writer {
    kc_store_t *st;
    atomic_int stop;
    uint64_t next;
} writer_t;

static void *write_on(void *arg)
{
    writer_t *w = arg;
    while (!atomic_load(&w->stop)) {
        kct_pub_t p;
        if (kct_pub_make(&p, w->next, 3) != KC_OK)
            break;
        if (kc_store_publish(w->st, &p.pub) == KC_OK)
            w->next++;
        kct_pub_free(&p);
    }
    return NULL;
}

static void test_snapshots_taken_during_writes_are_whole_commits(void **state)
{
    fixture_t *f = *state;
    writer_t w = {.st = f->st, .next = 1000};
    pthread_t th;

    atomic_init(&w.stop, 0);
    assert_int_equal(pthread_create(&th, NULL, write_on, &w), 0);
    for (int i = 0; i < 5; i++) {
        char dst[600];
        uint64_t t = 0, b = 0;
        kc_store_t *snap = NULL;
        snprintf(dst, sizeof(dst), "%s.snap%d", f->root, i);
        assert_int_equal(kc_store_snapshot(f->st, dst, NULL), KC_OK);
        assert_int_equal(kc_store_open(dst, NULL, &snap), KC_OK);
        /* Every publish is in it whole or not at all. */
        assert_int_equal(kct_store_consistency(snap, &t, &b, NULL), 0);
        assert_int_equal(b, 3 * t);
        kc_store_close(snap);
        kct_rmrf(dst);
    }
    atomic_store(&w.stop, 1);
    pthread_join(th, NULL);
    assert_true(w.next > 1000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_a_snapshot_holds_every_record, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_an_existing_destination_is_refused, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_snapshots_taken_during_writes_are_whole_commits, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
