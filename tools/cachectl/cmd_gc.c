/* cachectl gc: evict least recently used records and sweep unreferenced
 * blobs. */
#include <stdio.h>
#include <string.h>

#include "cachectl.h"

/* kc_gc_opts_t.progress: a line on stderr when it is a terminal. */
static void gc_progress(void *user, const char *phase, uint64_t done, uint64_t total)
{
    ctl_progress_t *p = user;
    const char *what = strcmp(phase, "scan") == 0 ? "gc: scanned" : "gc: evicted";

    if (p->what != what) {
        ctl_progress_end(p);
        p->what = what;
    }
    ctl_progress_tick(p, done, total);
}

static const char help[] =
    "      --max-size SIZE        evict least recently used records until the store\n"
    "                             holds at most SIZE: a number of GiB, or a number\n"
    "                             with K, M, G, T (powers of 1000), Ki, Mi, Gi, Ti\n"
    "                             (powers of 1024) or B, e.g. 500M, 1.5GiB, 4096B;\n"
    "                             0: no limit\n"
    "      --older-than DURATION  evict records last used longer ago than DURATION:\n"
    "                             seconds, or a number with s, m, h, d or w, e.g.\n"
    "                             30d, 12h, 1.5h, 3600s\n"
    "      --dry-run              list what would be evicted and change nothing\n\n"
    "The size is the sum of the stored (compressed) bytes of blob, build and\n"
    "tuning records. A build counts as used when a tuning that picked it was,\n"
    "so it leaves with or after those tunings, and a blob leaves once no build\n"
    "references it. With neither limit, gc only sweeps unreferenced blobs.\n"
    "Freed pages are reused by later writes; 'cachectl compact' returns them\n"
    "to the filesystem. On a terminal, progress goes to stderr.\n";

enum { OPT_MAX_SIZE = 1000, OPT_OLDER_THAN, OPT_DRY_RUN };
static const struct option longopts[] = {
    CTL_COMMON_LONGOPTS,
    {"max-size", required_argument, NULL, OPT_MAX_SIZE},
    {"older-than", required_argument, NULL, OPT_OLDER_THAN},
    {"dry-run", no_argument, NULL, OPT_DRY_RUN},
    {0},
};

static json_t *item_json(const kc_gc_item_t *it)
{
    char iso[40];
    json_t *e = json_object();

    json_object_set_new(e, "kind", json_string(kc_rec_kind_name(it->kind)));
    json_object_set_new(e, "key", ctl_json_key(&it->key));
    json_object_set_new(e, "last_use",
                        ctl_json_str(ctl_fmt_iso(it->last_use, iso, sizeof(iso))));
    json_object_set_new(e, "bytes", ctl_json_u64(it->bytes));
    return e;
}

static int gc_print_json(const kc_gc_opts_t *go, const kc_gc_report_t *r,
                         const kc_store_t *st, size_t layer)
{
    json_t *doc = json_object(), *list = json_array(), *counts = json_object();

    json_object_set_new(doc, "store", json_string(kc_store_path(st)));
    json_object_set_new(doc, "layer",
                        layer == (size_t)-1 ? json_null() : ctl_json_u64(layer));

    for (size_t i = 0; i < r->n_items; i++)
        json_array_append_new(list, item_json(&r->items[i]));
    json_object_set_new(counts, "tunings", ctl_json_u64(r->evicted[KC_REC_TUNING]));
    json_object_set_new(counts, "builds", ctl_json_u64(r->evicted[KC_REC_BUILD]));
    json_object_set_new(counts, "blobs", ctl_json_u64(r->evicted[KC_REC_BLOB]));
    json_object_set_new(doc, "dry_run", json_boolean(go->dry_run));
    json_object_set_new(doc, "max_size",
                        go->max_bytes ? ctl_json_u64(go->max_bytes) : json_null());
    json_object_set_new(doc, "older_than_s",
                        go->older_than ? ctl_json_u64(go->older_than) : json_null());
    json_object_set_new(doc, "evicted", list);
    json_object_set_new(doc, "counts", counts);
    json_object_set_new(doc, "bytes_freed", ctl_json_u64(r->bytes_freed));
    json_object_set_new(doc, "size_before", ctl_json_u64(r->size_before));
    json_object_set_new(doc, "size_after", ctl_json_u64(r->size_after));
    json_object_set_new(doc, "file_before", ctl_json_u64(r->file_before));
    json_object_set_new(doc, "file_after", ctl_json_u64(r->file_after));
    json_object_set_new(doc, "skipped", ctl_json_u64(r->skipped));
    json_object_set_new(doc, "usage_swept", ctl_json_u64(r->usage_swept));
    json_object_set_new(doc, "leases_swept", ctl_json_u64(r->leases_swept));
    return ctl_json_print(doc);
}

static void gc_print_human(const kc_gc_opts_t *go, const kc_gc_report_t *r)
{
    static const char *const headers[] = {"KIND", "KEY", "LAST USE", ">SIZE"};
    char h[KC_KEY_HEX_LEN + 1], t[40], sz[32], a[32], b[32];

    if (r->n_items) {
        ctl_table_t *tab = ctl_table_new(4, headers);
        for (size_t i = 0; i < r->n_items; i++) {
            const kc_gc_item_t *it = &r->items[i];
            const char *cells[4] = {kc_rec_kind_name(it->kind), ctl_hex(&it->key, h),
                                    ctl_fmt_time(it->last_use, t, sizeof(t)),
                                    ctl_fmt_size(it->bytes, sz, sizeof(sz))};
            ctl_table_row(tab, cells);
        }
        ctl_table_print(tab);
        ctl_table_free(tab);
        printf("\n");
    }
    printf("%s %llu tunings, %llu builds, %llu blobs: %s %s\n",
           go->dry_run ? "would evict" : "evicted",
           (unsigned long long)r->evicted[KC_REC_TUNING],
           (unsigned long long)r->evicted[KC_REC_BUILD],
           (unsigned long long)r->evicted[KC_REC_BLOB],
           ctl_fmt_size(r->bytes_freed, sz, sizeof(sz)),
           go->dry_run ? "would be freed" : "freed");
    printf("size     %s -> %s", ctl_fmt_size(r->size_before, a, sizeof(a)),
           ctl_fmt_size(r->size_after, b, sizeof(b)));
    if (go->max_bytes)
        printf(" (limit %s)", ctl_fmt_size(go->max_bytes, sz, sizeof(sz)));
    printf("\ndata.mdb %s", ctl_fmt_size(r->file_after, a, sizeof(a)));
    if (!go->dry_run && r->bytes_freed)
        printf(" (freed pages are reused; 'cachectl compact' shrinks the file)");
    printf("\n");
    if (r->skipped)
        printf("kept %llu records that were used or republished during gc\n",
               (unsigned long long)r->skipped);
    if (r->usage_swept || r->leases_swept)
        printf("removed %llu usage stamps of records no longer stored and %llu expired "
               "leases\n",
               (unsigned long long)r->usage_swept, (unsigned long long)r->leases_swept);
}

static int run(kc_ctx_t *ctx, int argc, char **argv)
{
    ctl_opts_t *o = &ctx->opts;
    const kc_cmd_t *self = ctx->cmd;
    kc_gc_opts_t go = KC_GC_OPTS_INIT;
    kc_gc_report_t r;
    size_t layer;
    kc_store_t *st;
    int c, rc;

    while ((c = getopt_long(argc, argv, CTL_COMMON_SHORTOPTS, longopts, NULL)) != -1) {
        switch (c) {
        case OPT_MAX_SIZE:
            if (kc_size_parse(optarg, &go.max_bytes) != KC_OK)
                return ctl_usage_err(self->name,
                                     "invalid size '%s': give a number of GiB, or a "
                                     "number with K, M, G, T, Ki, Mi, Gi, Ti or B, "
                                     "e.g. 500M, 1.5GiB",
                                     optarg);
            break;
        case OPT_OLDER_THAN:
            if (kc_duration_parse(optarg, &go.older_than) != KC_OK || go.older_than == 0)
                return ctl_usage_err(self->name,
                                     "invalid duration '%s': give seconds or a number "
                                     "with s, m, h, d or w, e.g. 30d",
                                     optarg);
            break;
        case OPT_DRY_RUN:
            go.dry_run = 1;
            break;
        default:
            if ((rc = ctl_common_opt(o, self, c, argv)) >= 0)
                return rc;
        }
    }
    if (optind < argc)
        return ctl_usage_err(self->name, "unexpected argument '%s'", argv[optind]);
    /* With KCACHE_PATH: the first writable layer, which publishes fill. */
    if (!(st = ctl_store_open_target(o, !go.dry_run, &layer)))
        return CTL_EXIT_FAIL;
    go.list = 1;
    ctl_progress_t prog;
    ctl_progress_begin(&prog, "gc: scanned");
    go.progress = gc_progress;
    go.progress_user = &prog;
    rc = kc_store_gc(st, &go, &r);
    ctl_progress_end(&prog);
    if (rc != KC_OK) {
        ctl_err("gc: %s: %s", kc_strerror(rc), kc_store_errmsg(st));
        kc_store_close(st);
        return CTL_EXIT_FAIL;
    }
    if (o->json) {
        rc = gc_print_json(&go, &r, st, layer);
    } else {
        printf("store    %s", kc_store_path(st));
        if (layer != (size_t)-1)
            printf(" (layer %zu of KCACHE_PATH, the first writable one)", layer);
        printf("\n");
        gc_print_human(&go, &r);
    }
    kc_free(r.items);
    kc_store_close(st);
    return rc;
}

const kc_cmd_t kc_cmd_gc = {
    .name = "gc",
    .summary = "evict least recently used records and sweep unreferenced blobs",
    .usage = "gc [--max-size SIZE] [--older-than DURATION] [--dry-run]",
    .help = help,
    .run = run,
};
