/* A program that uses an installed kcache the way a user's would: only the
 * public headers, built with pkg-config or find_package against the shared
 * library or the static archives (scripts/test-install.sh).
 *
 *   consumer DIR   opens (creating) the store in DIR, puts a cubin, reads it
 *                  back, creates and destroys a launcher on the simulation
 *                  device, and prints "kcache VERSION ok".
 *
 * Built with KC_CONSUMER_STORE_ONLY for an install without the launcher
 * (KC_BUILD_LAUNCHER=OFF).
 */
#include <stdio.h>
#include <string.h>

#ifndef KC_CONSUMER_STORE_ONLY
#include <kcache/launch.h>
#include <kcache/sim.h>
#endif
#include <kcache/store.h>
#include <kcache/version.h>

static int fail(const char *what, int rc, const char *detail)
{
    fprintf(stderr, "consumer: %s: %s (%s)\n", what, kc_strerror(rc), detail);
    return 1;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: consumer DIR\n");
        return 2;
    }
    /* The library the loader found must be the one the headers describe. */
    if (kc_version_number() != KC_VERSION_NUMBER) {
        fprintf(stderr, "consumer: headers %s, library %s\n", KC_VERSION_STRING,
                kc_version());
        return 1;
    }

    kc_store_opts_t so = KC_STORE_OPTS_INIT;
    kc_store_t *st = NULL;
    int rc = kc_store_open(argv[1], &so, &st);
    if (rc != KC_OK)
        return fail("kc_store_open", rc, kc_store_open_errmsg());

    static const char cubin[] = "not really a cubin, but bytes to keep";
    kc_key_t key;
    void *back = NULL;
    size_t len = 0;
    rc = kc_store_put_cubin(st, cubin, sizeof cubin, &key);
    if (rc == KC_OK)
        rc = kc_store_get_cubin(st, &key, &back, &len);
    if (rc != KC_OK)
        return fail("put/get", rc, kc_store_errmsg(st));
    if (len != sizeof cubin || memcmp(back, cubin, len) != 0) {
        fprintf(stderr, "consumer: the cubin read back differs\n");
        return 1;
    }
    kc_free(back);
    kc_store_close(st);

#ifdef KC_CONSUMER_STORE_ONLY
    printf("kcache %s ok (store only)\n", kc_version());
#else
    /* The launcher, on the CPU simulation device, without a store. */
    kc_sim_opts_t simo = KC_SIM_OPTS_INIT;
    kc_sim_t *sim = NULL;
    rc = kc_sim_create(&simo, &sim);
    if (rc != KC_OK)
        return fail("kc_sim_create", rc, "");
    kc_launcher_opts_t lo = KC_LAUNCHER_OPTS_INIT;
    lo.device = KC_DEVICE_SIM;
    lo.sim = sim;
    lo.no_store = 1;
    lo.no_remote = 1;
    kc_launcher_t *l = NULL;
    rc = kc_launcher_create(&lo, &l);
    if (rc != KC_OK)
        return fail("kc_launcher_create", rc, kc_launcher_create_errmsg());
    printf("kcache %s ok (launcher arch %s)\n", kc_version(), kc_launcher_arch(l));
    kc_launcher_destroy(l);
    kc_sim_destroy(sim);
#endif
    return 0;
}
