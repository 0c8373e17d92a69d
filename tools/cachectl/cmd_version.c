/* cachectl version: the cachectl and format versions. */
#include "cachectl.h"

#include <stdio.h>

#include "kcache/version.h"

static int run(kc_ctx_t *ctx, int argc, char **argv)
{
    ctl_opts_t *o = &ctx->opts;
    const kc_cmd_t *self = ctx->cmd;
    int rc = ctl_parse_plain(o, self, argc, argv);

    if (rc >= 0)
        return rc;
    if (optind < argc)
        return ctl_usage_err(self->name, "unexpected argument '%s'", argv[optind]);
    if (o->json) {
        json_t *doc = json_object();
        json_object_set_new(doc, "cachectl", json_string(kc_version()));
        json_object_set_new(doc, "store_format", json_integer(KC_STORE_FORMAT_VERSION));
        json_object_set_new(doc, "record_version", json_integer(KC_RECORD_VERSION));
        json_object_set_new(doc, "key_schema", json_integer(KC_KEY_SCHEMA_VERSION));
        return ctl_json_print(doc);
    }
    printf("cachectl %s (store format %d, record version %d, key schema %d)\n",
           kc_version(), KC_STORE_FORMAT_VERSION, KC_RECORD_VERSION,
           KC_KEY_SCHEMA_VERSION);
    return CTL_EXIT_OK;
}

const kc_cmd_t kc_cmd_version = {
    .name = "version",
    .summary = "print the cachectl and format versions",
    .usage = "version",
    .help = NULL,
    .run = run,
};
