/* cachectl seal / unseal: make a store read-only for every process, root
 * included, or lift that. */
#include <stdio.h>

#include "cachectl.h"

static const char seal_help[] =
    "Marks the store sealed (the meta record \"sealed\"): every later open is\n"
    "read-only whatever the process's rights, root's included, who can write\n"
    "into a `chmod a-w` directory. In KCACHE_PATH a sealed store is a read-only\n"
    "layer: publishes go to the next writable one. For stores baked into\n"
    "container images. `cachectl unseal` lifts it.\n";

static const char unseal_help[] = "Lifts the seal of a store (cachectl seal).\n";

static int set(kc_ctx_t *ctx, int argc, char **argv, int sealed)
{
    ctl_opts_t *o = &ctx->opts;
    const kc_cmd_t *self = ctx->cmd;
    kc_store_opts_t so = KC_STORE_OPTS_INIT;
    kc_store_t *st = NULL;
    int rc = ctl_parse_plain(o, self, argc, argv);

    if (rc >= 0)
        return rc;
    if (optind < argc)
        return ctl_usage_err(self->name, "unexpected argument '%s'", argv[optind]);
    const char *dir = ctl_store_dir(o);
    if (!dir)
        return CTL_EXIT_FAIL;
    so.flags = KC_STORE_NOCREATE | KC_STORE_IGNORE_SEAL;
    rc = kc_store_open(dir, &so, &st);
    if (rc != KC_OK) {
        ctl_err_code(rc, "cannot open store at %s: %s: %s", dir, kc_strerror(rc),
                     kc_store_open_errmsg());
        return CTL_EXIT_FAIL;
    }
    rc = kc_store_set_sealed(st, sealed);
    if (rc != KC_OK) {
        ctl_err_code(rc, "%s: %s: %s", self->name, kc_strerror(rc), kc_store_errmsg(st));
        kc_store_close(st);
        return CTL_EXIT_FAIL;
    }
    kc_store_close(st);
    if (o->json) {
        json_t *doc = json_object();
        json_object_set_new(doc, "store", json_string(dir));
        json_object_set_new(doc, "sealed", json_boolean(sealed));
        return ctl_json_print(doc);
    }
    printf("%s %s\n", sealed ? "sealed" : "unsealed", dir);
    return CTL_EXIT_OK;
}

static int run_seal(kc_ctx_t *ctx, int argc, char **argv)
{
    return set(ctx, argc, argv, 1);
}

static int run_unseal(kc_ctx_t *ctx, int argc, char **argv)
{
    return set(ctx, argc, argv, 0);
}

const kc_cmd_t kc_cmd_seal = {
    .name = "seal",
    .summary = "make the store read-only for every process, root included",
    .usage = "seal",
    .help = seal_help,
    .run = run_seal,
};

const kc_cmd_t kc_cmd_unseal = {
    .name = "unseal",
    .summary = "lift a store's seal",
    .usage = "unseal",
    .help = unseal_help,
    .run = run_unseal,
};
