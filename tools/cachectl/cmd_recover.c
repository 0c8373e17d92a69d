/* cachectl recover: salvage the records of a damaged store into a new one. */
#include <inttypes.h>
#include <stdio.h>

#include "cachectl.h"

static const char help[] =
    "Reads every page of SRC/data.mdb (with pread, never mapping it, so no\n"
    "damage can crash it), pages unreachable from a broken tree included, and\n"
    "writes every record that passes its checks (record checksums, derived\n"
    "keys, a blob's hash against its key) into a new store in DST, the first\n"
    "good copy of each key. SRC is only read; DST must not hold a store.\n"
    "Usage stamps, leases and counters are not carried over. Prints, per\n"
    "kind, the records saved, the damaged ones, and those lost (the count\n"
    "SRC's own database record gave, where one was readable, minus those\n"
    "saved). Then put DST in SRC's place (mv), keeping SRC to inspect.\n";

static int run(kc_ctx_t *ctx, int argc, char **argv)
{
    ctl_opts_t *o = &ctx->opts;
    const kc_cmd_t *self = ctx->cmd;
    kc_recover_stats_t s;
    int rc = ctl_parse_plain(o, self, argc, argv);

    if (rc >= 0)
        return rc;
    if (optind + 2 > argc)
        return ctl_usage_err(self->name, "need SRC and DST");
    if (optind + 2 < argc)
        return ctl_usage_err(self->name, "unexpected argument '%s'", argv[optind + 2]);
    const char *src = argv[optind], *dst = argv[optind + 1];
    rc = kc_store_recover(src, dst, &s);
    if (rc != KC_OK) {
        ctl_err_code(rc, "recover: %s: %s", kc_strerror(rc), kc_store_open_errmsg());
        return CTL_EXIT_FAIL;
    }
    if (o->json) {
        json_t *doc = json_object(), *kinds = json_object();
        json_object_set_new(doc, "source", json_string(src));
        json_object_set_new(doc, "destination", json_string(dst));
        json_object_set_new(doc, "pages", ctl_json_u64(s.pages));
        for (int k = KC_REC_KIND_MIN; k <= KC_REC_KIND_MAX; k++) {
            if ((!s.found[k] && !s.expected[k]) || k == KC_REC_USAGE ||
                k == KC_REC_LEASE || k == KC_REC_META)
                continue;
            json_t *e = json_object();
            uint64_t lost = s.expected[k] > s.saved[k] ? s.expected[k] - s.saved[k] : 0;
            json_object_set_new(e, "saved", ctl_json_u64(s.saved[k]));
            json_object_set_new(e, "damaged", ctl_json_u64(s.damaged[k]));
            json_object_set_new(e, "expected", ctl_json_u64(s.expected[k]));
            json_object_set_new(e, "lost", ctl_json_u64(lost));
            json_object_set_new(kinds, kc_rec_kind_name(k), e);
        }
        json_object_set_new(doc, "kinds", kinds);
        return ctl_json_print(doc);
    }
    printf("recover %s -> %s: %" PRIu64 " pages scanned\n", src, dst, s.pages);
    printf("  %-8s %8s %8s %8s %8s\n", "kind", "saved", "damaged", "expected", "lost");
    for (int k = KC_REC_KIND_MIN; k <= KC_REC_KIND_MAX; k++) {
        if ((!s.found[k] && !s.expected[k]) || k == KC_REC_USAGE || k == KC_REC_LEASE ||
            k == KC_REC_META)
            continue;
        uint64_t lost = s.expected[k] > s.saved[k] ? s.expected[k] - s.saved[k] : 0;
        char exp[24] = "?", lst[24] = "?";
        if (s.expected[k]) {
            snprintf(exp, sizeof(exp), "%" PRIu64, s.expected[k]);
            snprintf(lst, sizeof(lst), "%" PRIu64, lost);
        }
        printf("  %-8s %8" PRIu64 " %8" PRIu64 " %8s %8s\n", kc_rec_kind_name(k),
               s.saved[k], s.damaged[k], exp, lst);
    }
    return CTL_EXIT_OK;
}

const kc_cmd_t kc_cmd_recover = {
    .name = "recover",
    .summary = "salvage every intact record of a damaged store into a new store",
    .usage = "recover SRC DST",
    .help = help,
    .run = run,
};
