/* Options structs that can grow (kcache/api.h, "Options structs"), for the
 * launcher and the simulation device: only the fields within opts->size
 * are read, so an older program's smaller struct still works; a size of 0
 * or one larger than the library's is KC_EINVAL; NULL is the defaults. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kc_testutil.h"
#include "kcache/launch.h"
#include "kcache/sim.h"

static void test_sim_opts_sizes(void **state)
{
    (void)state;
    kc_sim_t *sim = NULL;
    kc_sim_opts_t o = KC_SIM_OPTS_INIT;
    assert_int_equal(o.size, sizeof(kc_sim_opts_t));
    o.arch = "volta"; /* not an arch: refused when it is read */
    assert_int_equal(kc_sim_create(&o, &sim), KC_EINVAL);
    assert_null(sim);

    /* An older struct that ends before arch: arch is not read. */
    o.size = offsetof(kc_sim_opts_t, arch);
    assert_int_equal(kc_sim_create(&o, &sim), KC_OK);
    kc_sim_destroy(sim);
    sim = NULL;

    o.arch = "sm_80";
    o.size = 0;
    assert_int_equal(kc_sim_create(&o, &sim), KC_EINVAL);
    o.size = sizeof(o) + 8;
    assert_int_equal(kc_sim_create(&o, &sim), KC_EINVAL);
    assert_null(sim);
    assert_int_equal(kc_sim_create(NULL, &sim), KC_OK);
    kc_sim_destroy(sim);
}

static void test_launcher_opts_sizes(void **state)
{
    (void)state;
    char root[512], dir[600];
    kc_sim_t *sim = NULL;
    kc_launcher_t *l = NULL;
    assert_int_equal(kct_tmpdir("lopts", root, sizeof(root)), 0);
    snprintf(dir, sizeof(dir), "%s/store", root);
    assert_int_equal(kc_sim_create(NULL, &sim), KC_OK);

    kc_launcher_opts_t o = KC_LAUNCHER_OPTS_INIT;
    o.device = KC_DEVICE_SIM;
    o.sim = sim;
    o.store_dir = dir;
    o.no_store = 1;
    o.no_remote = 1;
    assert_int_equal(kc_launcher_create(&o, &l), KC_OK);
    assert_null(kc_launcher_store(l));
    kc_launcher_destroy(l);
    l = NULL;

    /* An older struct that ends before no_store: the launcher opens the
     * store it names, as that caller meant. */
    o.size = offsetof(kc_launcher_opts_t, no_store);
    assert_int_equal(kc_launcher_create(&o, &l), KC_OK);
    assert_non_null(kc_launcher_store(l));
    assert_string_equal(kc_store_path(kc_launcher_store(l)), dir);
    kc_launcher_destroy(l);
    l = NULL;

    /* Size not set, or too large: refused, with a message. */
    o.size = 0;
    assert_int_equal(kc_launcher_create(&o, &l), KC_EINVAL);
    assert_null(l);
    assert_non_null(strstr(kc_launcher_create_errmsg(), "KC_LAUNCHER_OPTS_INIT"));
    o.size = sizeof(o) + 16;
    assert_int_equal(kc_launcher_create(&o, &l), KC_EINVAL);
    assert_null(l);

    kc_sim_destroy(sim);
    kct_rmtree(root, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sim_opts_sizes),
        cmocka_unit_test(test_launcher_opts_sizes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
