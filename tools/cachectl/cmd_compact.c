/* cachectl compact: return the store file's free pages to the filesystem. */
#include <stdio.h>

#include "cachectl.h"

static const char help[] =
    "Copies the store's live pages into a new data.mdb and renames it over the\n"
    "old one. Refused (exit 1) while another process has the store open.\n";

static int run(kc_ctx_t *ctx, int argc, char **argv)
{
    ctl_opts_t *o = &ctx->opts;
    const kc_cmd_t *self = ctx->cmd;
    kc_store_t *st;
    uint64_t before = 0, after = 0;
    char a[32], b[32], d[32];
    int rc = ctl_parse_plain(o, self, argc, argv);

    if (rc >= 0)
        return rc;
    if (optind < argc)
        return ctl_usage_err(self->name, "unexpected argument '%s'", argv[optind]);
    if (!(st = ctl_store_open(o, 1)))
        return CTL_EXIT_FAIL;
    rc = kc_store_compact(st, &before, &after);
    if (rc != KC_OK) {
        ctl_err("compact: %s: %s", kc_strerror(rc), kc_store_errmsg(st));
        kc_store_close(st);
        return CTL_EXIT_FAIL;
    }
    kc_store_close(st);
    if (o->json) {
        json_t *doc = json_object();
        json_object_set_new(doc, "file_before", ctl_json_u64(before));
        json_object_set_new(doc, "file_after", ctl_json_u64(after));
        return ctl_json_print(doc);
    }
    printf("data.mdb %s -> %s (%s reclaimed)\n", ctl_fmt_size(before, a, sizeof(a)),
           ctl_fmt_size(after, b, sizeof(b)),
           ctl_fmt_size(before > after ? before - after : 0, d, sizeof(d)));
    return CTL_EXIT_OK;
}

const kc_cmd_t kc_cmd_compact = {
    .name = "compact",
    .summary = "rewrite the store file without its free pages",
    .usage = "compact",
    .help = help,
    .run = run,
};
