/* cachectl train-dict: train a zstd dictionary on the stored cubins, keep
 * it in the store, recompress the blobs it shrinks, and show the ratio
 * (raw bytes / stored bytes) before and after. */
#include <inttypes.h>

#include "cachectl.h"

static const char help[] =
    "Options:\n"
    "  --size SIZE    dictionary size, 1Ki to 16Mi, e.g. 64Ki, 1Mi, 65536B\n"
    "                 (default 110Ki; 0: the default)\n"
    "  --dry-run      train and measure, but write nothing\n"
    "\n"
    "Needs at least 10 blobs. Blobs the dictionary would not make smaller are\n"
    "left as they are; older dictionaries stay for the blobs that use them.\n";

static const struct option longopts[] = {
    CTL_COMMON_LONGOPTS,
    {"size", required_argument, NULL, 'S'},
    {"dry-run", no_argument, NULL, 'n'},
    {0},
};

static int run(kc_ctx_t *ctx, int argc, char **argv)
{
    ctl_opts_t *o = &ctx->opts;
    const kc_cmd_t *self = ctx->cmd;
    uint64_t size = 0;
    int dry_run = 0, ch, rc;
    kc_store_t *st;
    kc_dict_report_t r;
    char a[32], b[32], c[32], d[32];

    while ((ch = getopt_long(argc, argv, CTL_COMMON_SHORTOPTS, longopts, NULL)) != -1) {
        if (ch == 'S') {
            if (kc_size_parse(optarg, &size) != KC_OK || size > SIZE_MAX)
                return ctl_usage_err(self->name, "'%s' is not a size", optarg);
        } else if (ch == 'n') {
            dry_run = 1;
        } else if ((rc = ctl_common_opt(o, self, ch, argv)) >= 0) {
            return rc;
        }
    }
    if (optind < argc)
        return ctl_usage_err(self->name, "unexpected argument '%s'", argv[optind]);
    if (!(st = ctl_store_open(o, !dry_run)))
        return CTL_EXIT_FAIL;
    rc = kc_store_train_dict(st, (size_t)size, dry_run, &r);
    if (rc != KC_OK) {
        ctl_err("train-dict: %s: %s", kc_strerror(rc), kc_store_errmsg(st));
        kc_store_close(st);
        return CTL_EXIT_FAIL;
    }
    kc_store_close(st);
    if (o->json) {
        json_t *doc = json_object();
        json_object_set_new(doc, "dry_run", json_boolean(dry_run));
        json_object_set_new(doc, "dict_id",
                            r.dict_id ? json_integer(r.dict_id) : json_null());
        json_object_set_new(doc, "dict_bytes", ctl_json_u64(r.dict_bytes));
        json_object_set_new(doc, "blobs", ctl_json_u64(r.blobs));
        json_object_set_new(doc, "samples", ctl_json_u64(r.samples));
        json_object_set_new(doc, "recompressed", ctl_json_u64(r.recompressed));
        json_object_set_new(doc, "raw_bytes", ctl_json_u64(r.raw_bytes));
        json_object_set_new(doc, "stored_before", ctl_json_u64(r.stored_before));
        json_object_set_new(doc, "stored_after", ctl_json_u64(r.stored_after));
        json_object_set_new(doc, "ratio_before",
                            r.stored_before
                                ? json_real((double)r.raw_bytes / r.stored_before)
                                : json_null());
        json_object_set_new(doc, "ratio_after",
                            r.stored_after
                                ? json_real((double)r.raw_bytes / r.stored_after)
                                : json_null());
        return ctl_json_print(doc);
    }
    if (r.dict_id)
        ctl_field("dictionary",
                  "dict.%" PRIu32 ", %s, trained on %" PRIu64 " of %" PRIu64 " blobs%s",
                  r.dict_id, ctl_fmt_size(r.dict_bytes, a, sizeof a), r.samples, r.blobs,
                  dry_run ? " (dry run: not stored)" : "");
    else
        ctl_field("dictionary", "none kept: it made no blob smaller");
    ctl_field(dry_run ? "would recompress" : "recompressed", "%" PRIu64 " blobs",
              r.recompressed);
    ctl_field("before", "%s raw, %s stored, ratio %s",
              ctl_fmt_size(r.raw_bytes, a, sizeof a),
              ctl_fmt_size(r.stored_before, b, sizeof b),
              ctl_fmt_ratio(r.raw_bytes, r.stored_before, c, sizeof c));
    ctl_field(dry_run ? "after (projected)" : "after",
              "%s raw, %s stored, ratio %s (%s with the dictionary)",
              ctl_fmt_size(r.raw_bytes, a, sizeof a),
              ctl_fmt_size(r.stored_after, b, sizeof b),
              ctl_fmt_ratio(r.raw_bytes, r.stored_after, c, sizeof c),
              ctl_fmt_ratio(r.raw_bytes, r.stored_after + (r.dict_id ? r.dict_bytes : 0),
                            d, sizeof d));
    return CTL_EXIT_OK;
}

const kc_cmd_t kc_cmd_train_dict = {
    .name = "train-dict",
    .summary = "train a zstd dictionary on the blobs and recompress them",
    .usage = "train-dict [--size SIZE] [--dry-run]",
    .help = help,
    .run = run,
};
