/* cachectl stats: record counts, sizes, compression ratio and counters.
 * Opens the store read-only, or every layer of KCACHE_PATH. */
#include "cachectl.h"

#include <inttypes.h>
#include <stdio.h>
#include <unistd.h>

static const char help[] =
    "  --zero   reset the persistent counters to 0 (opens the store writable)\n\n"
    "Counters: hits; misses, and misses by reason (no tuning for the signature, or\n"
    "a tuning whose build was unusable); corrupt records found; bytes stored;\n"
    "publishes, compiles, tunes, evictions; and the compile and tuning time that\n"
    "store hits saved (in seconds; microseconds in --json).\n\n"
    "On disk: data.mdb's size over the stored bytes of every blob, build, tuning,\n"
    "binmeta and group record (and the pages in use over them). Counts and sizes\n"
    "are kept by the store and read in constant time; a store made before kcache\n"
    "kept them is scanned (\"scanned\").\n";

static const struct option longopts[] = {
    CTL_COMMON_LONGOPTS,
    {"zero", no_argument, NULL, 'z'},
    {0},
};

/* Counters kept in microseconds, shown in seconds. */
static int is_us_counter(int c)
{
    return c == KC_COUNTER_COMPILE_US_SAVED || c == KC_COUNTER_TUNE_US_SAVED;
}

/* One store's stats: printed, or as a JSON document in *doc_out when json. */
static int stats_one(kc_store_t *st, int json, json_t **doc_out)
{
    kc_store_stats_t s;
    char a[32], b[32], r[32];

    int rc = kc_store_stats(st, &s);
    if (rc != KC_OK) {
        ctl_err("stats: %s: %s", kc_strerror(rc), kc_store_errmsg(st));
        return CTL_EXIT_FAIL;
    }
    if (json) {
        json_t *doc = json_object(), *recs = json_object(), *ctr = json_object();
        json_object_set_new(doc, "path", json_string(kc_store_path(st)));
        json_object_set_new(doc, "format_version", json_integer(s.format_version));
        json_object_set_new(doc, "readonly", json_boolean(s.readonly));
        for (int k = KC_REC_KIND_MIN; k <= KC_REC_KIND_MAX; k++)
            json_object_set_new(recs, kc_rec_kind_name(k), ctl_json_u64(s.records[k]));
        json_object_set_new(doc, "records", recs);
        json_object_set_new(doc, "blob_raw_bytes", ctl_json_u64(s.blob_raw_bytes));
        json_object_set_new(doc, "blob_stored_bytes", ctl_json_u64(s.blob_stored_bytes));
        json_object_set_new(doc, "compression_ratio",
                            s.blob_stored_bytes ? json_real((double)s.blob_raw_bytes /
                                                            s.blob_stored_bytes)
                                                : json_null());
        json_object_set_new(doc, "file_bytes", ctl_json_u64(s.file_bytes));
        json_object_set_new(doc, "map_bytes", ctl_json_u64(s.map_bytes));
        json_object_set_new(doc, "used_bytes", ctl_json_u64(s.used_bytes));
        json_object_set_new(doc, "record_bytes", ctl_json_u64(s.record_bytes));
        json_object_set_new(doc, "disk_ratio",
                            s.record_bytes
                                ? json_real((double)s.file_bytes / (double)s.record_bytes)
                                : json_null());
        json_object_set_new(doc, "used_ratio",
                            s.record_bytes
                                ? json_real((double)s.used_bytes / (double)s.record_bytes)
                                : json_null());
        json_object_set_new(doc, "totals_scanned", json_boolean(s.totals_scanned));
        for (int c = 0; c < KC_COUNTER_COUNT_; c++)
            json_object_set_new(ctr, kc_counter_name(c), ctl_json_u64(s.counters[c]));
        json_object_set_new(doc, "counters", ctr);
        *doc_out = doc;
        return CTL_EXIT_OK;
    }
    ctl_field("store", "%s", kc_store_path(st));
    ctl_field("format", "%" PRIu32, s.format_version);
    ctl_field("file", "%s (%s in use, map %s)", ctl_fmt_size(s.file_bytes, a, sizeof a),
              ctl_fmt_size(s.used_bytes, b, sizeof b),
              ctl_fmt_size(s.map_bytes, r, sizeof r));
    ctl_field("blobs", "%s raw, %s stored, ratio %s",
              ctl_fmt_size(s.blob_raw_bytes, a, sizeof a),
              ctl_fmt_size(s.blob_stored_bytes, b, sizeof b),
              ctl_fmt_ratio(s.blob_raw_bytes, s.blob_stored_bytes, r, sizeof r));
    if (s.record_bytes) {
        char u[32];
        ctl_field("on disk", "%s of records; file %s, in use %s%s",
                  ctl_fmt_size(s.record_bytes, a, sizeof a),
                  ctl_fmt_ratio(s.file_bytes, s.record_bytes, b, sizeof b),
                  ctl_fmt_ratio(s.used_bytes, s.record_bytes, u, sizeof u),
                  s.totals_scanned ? " (scanned)" : "");
    }
    printf("\n");
    {
        static const char *const hdr[] = {"KIND", ">RECORDS"};
        ctl_table_t *t = ctl_table_new(2, hdr);
        for (int k = KC_REC_KIND_MIN; k <= KC_REC_KIND_MAX; k++) {
            char n[32];
            snprintf(n, sizeof n, "%" PRIu64, s.records[k]);
            const char *row[] = {kc_rec_kind_name(k), n};
            ctl_table_row(t, row);
        }
        ctl_table_print(t);
        ctl_table_free(t);
    }
    printf("\n");
    {
        static const char *const hdr[] = {"COUNTER", ">VALUE"};
        ctl_table_t *t = ctl_table_new(2, hdr);
        for (int c = 0; c < KC_COUNTER_COUNT_; c++) {
            char n[32];
            if (c == KC_COUNTER_BYTES_STORED)
                ctl_fmt_size(s.counters[c], n, sizeof n);
            else if (is_us_counter(c))
                snprintf(n, sizeof n, "%.1f s", s.counters[c] / 1e6);
            else
                snprintf(n, sizeof n, "%" PRIu64, s.counters[c]);
            const char *name = c == KC_COUNTER_COMPILE_US_SAVED ? "compile_saved"
                               : c == KC_COUNTER_TUNE_US_SAVED  ? "tune_saved"
                                                                : kc_counter_name(c);
            const char *row[] = {name, n};
            ctl_table_row(t, row);
        }
        ctl_table_print(t);
        ctl_table_free(t);
    }
    return CTL_EXIT_OK;
}

static int run(kc_ctx_t *ctx, int argc, char **argv)
{
    ctl_opts_t *o = &ctx->opts;
    const kc_cmd_t *self = ctx->cmd;
    json_t *doc = NULL;
    int ch, rc, zero = 0;

    while ((ch = getopt_long(argc, argv, CTL_COMMON_SHORTOPTS, longopts, NULL)) != -1) {
        if (ch == 'z')
            zero = 1;
        else if ((rc = ctl_common_opt(o, self, ch, argv)) >= 0)
            return rc;
    }
    if (optind < argc)
        return ctl_usage_err(self->name, "unexpected argument '%s'", argv[optind]);
    if (zero) {
        kc_store_t *st = ctl_store_open(o, 1);
        if (!st)
            return CTL_EXIT_FAIL;
        if ((rc = kc_store_counters_zero(st)) != KC_OK) {
            ctl_err("stats --zero: %s: %s", kc_strerror(rc), kc_store_errmsg(st));
            kc_store_close(st);
            return CTL_EXIT_FAIL;
        }
        rc = stats_one(st, o->json, &doc);
        kc_store_close(st);
        return rc == CTL_EXIT_OK && doc ? ctl_json_print(doc) : rc;
    }
    kc_layers_t *layers = ctl_layers_open(o);
    if (!layers)
        return CTL_EXIT_FAIL;
    size_t n = kc_layers_count(layers);
    json_t *all = o->json && n > 1 ? json_array() : NULL;
    rc = CTL_EXIT_OK;
    for (size_t i = 0; i < n && rc == CTL_EXIT_OK; i++) {
        kc_store_t *st = kc_layers_store(layers, i);
        if (n > 1 && !o->json)
            printf("%s== layer %zu: %s ==\n", i ? "\n" : "", i, kc_store_path(st));
        rc = stats_one(st, o->json, &doc);
        if (rc == CTL_EXIT_OK && all) {
            json_object_set_new(doc, "layer", ctl_json_u64(i));
            json_array_append_new(all, doc);
            doc = NULL;
        }
    }
    kc_layers_close(layers);
    if (rc != CTL_EXIT_OK) {
        json_decref(all);
        json_decref(doc);
        return rc;
    }
    if (all) {
        json_t *top = json_object();
        json_object_set_new(top, "layers", all);
        return ctl_json_print(top);
    }
    return doc ? ctl_json_print(doc) : CTL_EXIT_OK;
}

const kc_cmd_t kc_cmd_stats = {
    .name = "stats",
    .summary = "record counts, sizes, compression ratio and counters",
    .usage = "stats [--zero]",
    .help = help,
    .run = run,
};
