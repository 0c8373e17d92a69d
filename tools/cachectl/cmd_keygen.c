/* cachectl keygen: an Ed25519 key pair to sign bundles with. */
#include "cachectl.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "kcache/bundle.h"

static const char help[] =
    "  -o, --output NAME   write the secret key to NAME.key (mode 0600) and the\n"
    "                      public key to NAME.pub (mode 0644)\n\n"
    "An Ed25519 key pair for signing bundles: export --sign NAME.key, and\n"
    "import --trust NAME.pub (or KCACHE_TRUST=NAME.pub) where bundles are\n"
    "accepted. Existing files are never overwritten. Keep NAME.key secret:\n"
    "whoever holds it can sign bundles that every trusting store accepts.\n";

static const struct option longopts[] = {
    CTL_COMMON_LONGOPTS,
    {"output", required_argument, NULL, 'o'},
    {0},
};

static int run(kc_ctx_t *ctx, int argc, char **argv)
{
    ctl_opts_t *o = &ctx->opts;
    const kc_cmd_t *self = ctx->cmd;
    kc_bundle_key_t key;
    const char *base = NULL;
    char id[KC_BUNDLE_KEY_ID_LEN + 1];
    int c, rc;

    while ((c = getopt_long(argc, argv, CTL_COMMON_SHORTOPTS "o:", longopts, NULL)) !=
           -1) {
        if (c == 'o')
            base = optarg;
        else if ((rc = ctl_common_opt(o, self, c, argv)) >= 0)
            return rc;
    }
    if (optind < argc)
        return ctl_usage_err(self->name, "unexpected argument '%s'", argv[optind]);
    if (!base || !*base)
        return ctl_usage_err(self->name, "missing -o NAME");
    rc = kc_bundle_keygen(base, &key);
    if (rc == KC_EEXIST) {
        ctl_err("keygen: %s.key or %s.pub already exists; not overwriting it", base,
                base);
        return CTL_EXIT_FAIL;
    }
    if (rc != KC_OK) {
        ctl_err("keygen: cannot write %s.key and %s.pub: %s", base, base,
                rc == KC_EIO ? strerror(errno) : kc_strerror(rc));
        return CTL_EXIT_FAIL;
    }
    kc_bundle_key_id(key.pk, id);
    kc_bundle_key_wipe(&key);
    if (o->json) {
        json_t *doc = json_object();
        json_object_set_new(doc, "key_id", json_string(id));
        json_object_set_new(doc, "secret_key", json_sprintf("%s.key", base));
        json_object_set_new(doc, "public_key", json_sprintf("%s.pub", base));
        return ctl_json_print(doc);
    }
    printf("key %s: secret key %s.key (keep it private), public key %s.pub\n", id, base,
           base);
    return CTL_EXIT_OK;
}

const kc_cmd_t kc_cmd_keygen = {
    .name = "keygen",
    .summary = "make a key pair for signing bundles: NAME.key, NAME.pub",
    .usage = "keygen -o NAME",
    .help = help,
    .run = run,
};
