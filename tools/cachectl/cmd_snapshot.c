/* cachectl snapshot: a consistent, compacted copy of a live store. */
#include <stdio.h>

#include "cachectl.h"

static const char help[] =
    "Copies the store into the new directory DIR under one read transaction\n"
    "(LMDB's own copy, compacted): the copy holds exactly one committed state\n"
    "even while other processes write to the store, which `cp` of data.mdb\n"
    "does not guarantee. DIR must not exist; the copy is made beside it and\n"
    "renamed, so DIR is either absent or a whole store. Use it to put a store\n"
    "into a container image.\n";

static int run(kc_ctx_t *ctx, int argc, char **argv)
{
    ctl_opts_t *o = &ctx->opts;
    const kc_cmd_t *self = ctx->cmd;
    kc_store_t *st;
    uint64_t bytes = 0;
    char b[32];
    int rc = ctl_parse_plain(o, self, argc, argv);

    if (rc >= 0)
        return rc;
    if (optind >= argc)
        return ctl_usage_err(self->name, "missing DIR");
    if (optind + 1 < argc)
        return ctl_usage_err(self->name, "unexpected argument '%s'", argv[optind + 1]);
    const char *dst = argv[optind];
    if (!(st = ctl_store_open(o, 0)))
        return CTL_EXIT_FAIL;
    rc = kc_store_snapshot(st, dst, &bytes);
    if (rc != KC_OK) {
        ctl_err("snapshot: %s: %s", kc_strerror(rc), kc_store_errmsg(st));
        kc_store_close(st);
        return CTL_EXIT_FAIL;
    }
    kc_store_close(st);
    if (o->json) {
        json_t *doc = json_object();
        json_object_set_new(doc, "snapshot", json_string(dst));
        json_object_set_new(doc, "bytes", ctl_json_u64(bytes));
        return ctl_json_print(doc);
    }
    printf("snapshot %s: data.mdb %s\n", dst, ctl_fmt_size(bytes, b, sizeof(b)));
    return CTL_EXIT_OK;
}

const kc_cmd_t kc_cmd_snapshot = {
    .name = "snapshot",
    .summary = "a consistent, compacted copy of a live store in a new directory",
    .usage = "snapshot DIR",
    .help = help,
    .run = run,
};
