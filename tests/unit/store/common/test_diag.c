/* Diagnostics (store/src/common/diag.c): one per-thread message slot, owned
 * by the object whose call failed. The store, the launcher, the remote tier
 * and the devices all report through it, so these rules hold for each. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "diag.h"
#include "kcache/errors.h"
#include "kcache/remote.h"
#include "kcache/store.h"

static void test_a_message_is_seen_only_through_its_owner(void **state)
{
    int a = 0, b = 0;
    (void)state;
    assert_int_equal(kc__diag_fail(&a, KC_EIO, "disk %d failed", 3), KC_EIO);
    assert_string_equal(kc__diag_get(&a), "disk 3 failed");
    assert_string_equal(kc__diag_get(&b), "");
    assert_string_equal(kc__diag_get(NULL), "");
    assert_true(kc__diag_owns(&a));
    assert_false(kc__diag_owns(&b));
}

static void test_release_forgets_only_the_owners_message(void **state)
{
    int a = 0, b = 0;
    (void)state;
    kc__diag_fail(&a, KC_EIO, "a failed");
    kc__diag_release(&b);
    assert_string_equal(kc__diag_get(&a), "a failed");
    kc__diag_release(&a);
    assert_string_equal(kc__diag_get(&a), "");
}

static void test_a_long_message_is_cut_not_overrun(void **state)
{
    char big[3 * KC__DIAG_SIZE];
    int a = 0;
    (void)state;
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    kc__diag_fail(&a, KC_EINVAL, "%s", big);
    assert_int_equal(strlen(kc__diag_get(&a)), KC__DIAG_SIZE - 1);
}

/* A launcher wraps its device's message in its own: the slot is both an
 * argument and the destination. */
static void test_an_owner_can_wrap_another_owners_message(void **state)
{
    int dev = 0, launcher = 0;
    (void)state;
    kc__diag_fail(&dev, KC_ECUDA, "CUDA_ERROR_ILLEGAL_ADDRESS");
    kc__diag_fail(&launcher, KC_ESTICKY, "kernel vadd: %s", kc__diag_get(&dev));
    assert_string_equal(kc__diag_get(&launcher),
                        "kernel vadd: CUDA_ERROR_ILLEGAL_ADDRESS");
    assert_string_equal(kc__diag_get(&dev), "");
}

static int other_owner;

static void *fail_elsewhere(void *arg)
{
    (void)arg;
    kc__diag_fail(&other_owner, KC_EIO, "failed on another thread");
    return NULL;
}

static void test_messages_are_per_thread(void **state)
{
    pthread_t t;
    (void)state;
    kc__diag_clear();
    assert_int_equal(pthread_create(&t, NULL, fail_elsewhere, NULL), 0);
    pthread_join(t, NULL);
    assert_string_equal(kc__diag_get(&other_owner), "");
}

/* The public errmsg calls are views of the same slot: a failed open's
 * message is read by kc_store_open_errmsg, a bad URL's by
 * kc_remote_errmsg(NULL), and one does not hide behind the other. */
static void test_open_failures_report_through_their_own_owner(void **state)
{
    kc_store_t *st = NULL;
    kc_remote_t *r = NULL;
    (void)state;
    assert_int_equal(kc_store_open("", NULL, &st), KC_EINVAL);
    assert_non_null(strstr(kc_store_open_errmsg(), "no directory"));
    assert_string_equal(kc_remote_errmsg(NULL), "");
    assert_int_equal(kc_remote_open("http://x", NULL, &r), KC_EINVAL);
    assert_non_null(strstr(kc_remote_errmsg(NULL), "redis://"));
    assert_string_equal(kc_store_open_errmsg(), "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_message_is_seen_only_through_its_owner),
        cmocka_unit_test(test_release_forgets_only_the_owners_message),
        cmocka_unit_test(test_a_long_message_is_cut_not_overrun),
        cmocka_unit_test(test_an_owner_can_wrap_another_owners_message),
        cmocka_unit_test(test_messages_are_per_thread),
        cmocka_unit_test(test_open_failures_report_through_their_own_owner),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
