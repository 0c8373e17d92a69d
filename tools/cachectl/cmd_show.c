/* show: every field of one record, decoded. */
#include "cachectl.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "kcache/shape.h"

static const char *source_kind_name(int k)
{
    return k == KC_SOURCE_CUDA       ? "cuda"
           : k == KC_SOURCE_PTX      ? "ptx"
           : k == KC_SOURCE_PREBUILT ? "prebuilt"
                                     : "unknown";
}

/* ---- show -------------------------------------------------------------- */

typedef struct users_ctx {
    const kc_key_t *blob;
    json_t *list; /* JSON array of build keys, or NULL to print them */
    size_t n;
} users_ctx_t;

static int find_users(void *user, kc_rec_kind_t kind, const kc_key_t *key,
                      const void *data, size_t len)
{
    users_ctx_t *u = user;
    kc_record_t *rec = NULL;
    char h[KC_KEY_HEX_LEN + 1];

    (void)kind;
    if (kc_record_decode(data, len, &rec) == KC_OK && rec->kind == KC_REC_BUILD &&
        kc_key_cmp(&rec->u.build.blob, u->blob) == 0) {
        if (u->list)
            json_array_append_new(u->list, ctl_json_key(key));
        else
            ctl_field(u->n ? "" : "used by", "build %s", ctl_hex(key, h));
        u->n++;
    }
    kc_free(rec);
    return 0;
}

static json_t *options_json(const char *const *opts, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(a, json_string(opts[i]));
    return a;
}

static void print_options(const char *const *opts, size_t n)
{
    char buf[1024];
    size_t len = 0;

    buf[0] = '\0';
    for (size_t i = 0; i < n && len < sizeof buf; i++) {
        int w = snprintf(buf + len, sizeof buf - len, "%s%s", i ? " " : "", opts[i]);
        if (w < 0)
            break;
        len += (size_t)w;
    }
    ctl_field("options", "%s", n ? buf : "-");
}

static void show_blob(kc_store_t *st, const kc_key_t *key, const kc_blob_rec_t *b,
                      size_t stored, json_t *j)
{
    char x[32], y[32], z[32];
    users_ctx_t u = {.blob = key};

    if (j) {
        json_object_set_new(j, "codec",
                            json_string(b->codec == KC_CODEC_ZSTD ? "zstd" : "unknown"));
        json_object_set_new(j, "dict_id", json_integer(b->dict_id));
        json_object_set_new(j, "raw_bytes", ctl_json_u64(b->raw_size));
        json_object_set_new(j, "frame_bytes", ctl_json_u64(b->frame.size));
        json_object_set_new(
            j, "ratio", json_real(stored ? (double)b->raw_size / (double)stored : 0.0));
        u.list = json_array();
        kc_store_iterate(st, KC_REC_BUILD, find_users, &u);
        json_object_set_new(j, "used_by", u.list);
        return;
    }
    ctl_field("codec", "%s", b->codec == KC_CODEC_ZSTD ? "zstd" : "unknown");
    if (b->dict_id)
        ctl_field("dictionary", "%" PRIu32, b->dict_id);
    else
        ctl_field("dictionary", "none");
    ctl_field("raw size", "%s (%" PRIu64 " bytes)",
              ctl_fmt_size(b->raw_size, x, sizeof x), b->raw_size);
    ctl_field("stored size", "%s (%zu bytes, frame %zu bytes)",
              ctl_fmt_size(stored, y, sizeof y), stored, b->frame.size);
    ctl_field("ratio", "%s", ctl_fmt_ratio(b->raw_size, stored, z, sizeof z));
    kc_store_iterate(st, KC_REC_BUILD, find_users, &u);
    if (u.n == 0)
        ctl_field("used by", "no build");
}

static void show_build(kc_store_t *st, const kc_build_rec_t *b, json_t *j)
{
    kc_build_desc_t *d = NULL;
    kc_record_t *blob = NULL;
    size_t blob_stored = 0;
    char h[KC_KEY_HEX_LEN + 1], x[32], y[32], z[160];
    int prc = kc_build_preimage_decode(b->preimage.data, b->preimage.size, &d);
    int brc = ctl_record_load(st, KC_REC_BLOB, &b->blob, &blob, &blob_stored);

    if (j) {
        json_t *pre = json_object();
        if (prc == KC_OK) {
            json_object_set_new(pre, "source_kind",
                                json_string(source_kind_name(d->source_kind)));
            json_object_set_new(pre, "source_digest", ctl_json_key(&d->source_digest));
            json_object_set_new(pre, "entry", json_string(d->entry));
            json_object_set_new(pre, "options", options_json(d->options, d->n_options));
            json_object_set_new(pre, "params", ctl_json_params(d->params, d->n_params));
            json_object_set_new(pre, "arch", json_string(d->arch));
            json_object_set_new(pre, "toolchain", json_string(d->toolchain));
        } else {
            json_object_set_new(pre, "error", json_string(kc_strerror(prc)));
        }
        json_object_set_new(pre, "bytes", ctl_json_u64(b->preimage.size));
        json_object_set_new(j, "preimage", pre);
        json_t *bl = json_object();
        json_object_set_new(bl, "key", ctl_json_key(&b->blob));
        if (brc == KC_OK) {
            json_object_set_new(bl, "raw_bytes", ctl_json_u64(blob->u.blob.raw_size));
            json_object_set_new(bl, "stored_bytes", ctl_json_u64(blob_stored));
            json_object_set_new(bl, "ratio",
                                json_real((double)blob->u.blob.raw_size / blob_stored));
        } else {
            json_object_set_new(bl, "error", json_string(kc_strerror(brc)));
        }
        json_object_set_new(j, "blob", bl);
        json_object_set_new(j, "symbol", json_string(b->entry));
        json_object_set_new(j, "registers", ctl_json_attr(b, b->registers));
        json_object_set_new(j, "static_smem", ctl_json_attr(b, b->static_smem));
        json_object_set_new(j, "max_threads", ctl_json_attr(b, b->max_threads));
        json_object_set_new(j, "local_bytes", ctl_json_attr(b, b->local_bytes));
        json_object_set_new(j, "compile_us", ctl_json_u64(b->compile_us));
        json_object_set_new(j, "created", ctl_json_u64(b->created));
        json_object_set_new(j, "created_utc",
                            ctl_json_str(ctl_fmt_iso(b->created, x, sizeof x)));
        goto done;
    }
    if (prc == KC_OK) {
        ctl_field("source kind", "%s", source_kind_name(d->source_kind));
        ctl_field("source digest", "%s", ctl_hex(&d->source_digest, h));
        ctl_field("entry", "%s", d->entry);
        print_options(d->options, d->n_options);
        ctl_field("params", "%s", ctl_fmt_params(d->params, d->n_params, z, sizeof z));
        ctl_field("arch", "%s", d->arch);
        ctl_field("toolchain", "%s", d->toolchain);
    } else {
        ctl_field("preimage", "%zu bytes, cannot decode: %s", b->preimage.size,
                  kc_strerror(prc));
    }
    ctl_field("blob", "%s", ctl_hex(&b->blob, h));
    if (brc == KC_OK)
        ctl_field("", "raw %s, stored %s, ratio %s",
                  ctl_fmt_size(blob->u.blob.raw_size, x, sizeof x),
                  ctl_fmt_size(blob_stored, y, sizeof y),
                  ctl_fmt_ratio(blob->u.blob.raw_size, blob_stored, z, sizeof z));
    else
        ctl_field("", "%s", brc == KC_ENOTFOUND ? "MISSING" : kc_strerror(brc));
    ctl_field("symbol", "%s", b->entry);
    if (ctl_build_attrs_known(b)) {
        ctl_field("registers", "%" PRIu32, b->registers);
        ctl_field("static smem", "%s", ctl_fmt_size(b->static_smem, x, sizeof x));
        ctl_field("max threads", "%" PRIu32, b->max_threads);
        ctl_field("local memory", "%s", ctl_fmt_size(b->local_bytes, x, sizeof x));
    } else {
        /* The driver reports them; a build made without a GPU has none. */
        ctl_field("registers", "? (unknown: not measured on a GPU)");
        ctl_field("static smem", "?");
        ctl_field("max threads", "?");
        ctl_field("local memory", "?");
    }
    ctl_field("compile time", "%s", ctl_fmt_us(b->compile_us, x, sizeof x));
    ctl_field("created", "%s", ctl_fmt_time(b->created, y, sizeof y));
done:
    kc_free(d);
    kc_free(blob);
}

/* A build of a binary kcache did not compile carries its launch metadata
 * (binmeta) under the same key: shown with the build. */
static void show_binmeta(kc_store_t *st, const kc_key_t *build, json_t *j)
{
    kc_record_t *rec = NULL;
    char x[32], args[512] = "";
    size_t len = 0;

    if (ctl_record_load(st, KC_REC_BINMETA, build, &rec, NULL) != KC_OK)
        return;
    const kc_binmeta_rec_t *m = &rec->u.binmeta;
    for (size_t a = 0; a < m->n_args && len < sizeof args; a++) {
        len += (size_t)snprintf(args + len, sizeof args - len, "%s%s: %s", a ? ", " : "",
                                m->args[a].name, m->args[a].type);
        for (size_t i = 0; i < m->n_spec && len < sizeof args; i++)
            if (m->spec[i].arg == a)
                len += (size_t)snprintf(args + len, sizeof args - len, " [%s]",
                                        kc_spec_prop_name(m->spec[i].prop));
    }
    if (j) {
        json_t *b = json_object();
        json_object_set_new(b, "compiler", json_string(m->compiler));
        json_object_set_new(b, "compiler_version", json_string(m->compiler_version));
        json_object_set_new(b, "entry", json_string(m->entry));
        json_object_set_new(b, "arch", json_string(m->arch));
        json_object_set_new(b, "threads_per_block", json_integer(m->threads_per_block));
        json_object_set_new(b, "num_warps", json_integer(m->num_warps));
        json_object_set_new(b, "num_ctas", json_integer(m->num_ctas));
        json_object_set_new(b, "dyn_smem", json_integer(m->dyn_smem));
        json_object_set_new(b, "global_scratch_size",
                            json_integer(m->global_scratch_size));
        json_object_set_new(b, "profile_scratch_size",
                            json_integer(m->profile_scratch_size));
        json_object_set_new(b, "flags", json_integer(m->flags));
        json_object_set_new(b, "signature", json_string(args));
        json_object_set_new(j, "binmeta", b);
    } else {
        ctl_field("launch metadata", "%s %s, %s", m->compiler, m->compiler_version,
                  m->arch);
        ctl_field("",
                  "%" PRIu32 " warps of %" PRIu32 " (%" PRIu32 " threads), %" PRIu32
                  " CTAs a cluster",
                  m->num_warps, m->warp_size, m->threads_per_block, m->num_ctas);
        ctl_field("",
                  "dynamic smem %s, global scratch %" PRIu32
                  " B, profile scratch %" PRIu32 " B, flags 0x%" PRIx32,
                  ctl_fmt_size(m->dyn_smem, x, sizeof x), m->global_scratch_size,
                  m->profile_scratch_size, m->flags);
        ctl_field("signature", "%s", args);
    }
    kc_free(rec);
}

static void show_tuning(const kc_tuning_rec_t *t, json_t *j)
{
    kc_tuning_desc_t *d = NULL;
    char h[KC_KEY_HEX_LEN + 1], x[64], sig[512], p[160];
    int prc = kc_tuning_preimage_decode(t->preimage.data, t->preimage.size, &d);
    int src = prc == KC_OK ? kc_shape_sig_format(d->shape_sig.data, d->shape_sig.size,
                                                 sig, sizeof sig)
                           : prc;

    if (src != KC_OK)
        snprintf(sig, sizeof sig, "(cannot decode: %s)", kc_strerror(src));
    if (j) {
        json_t *pre = json_object(), *cands = json_array();
        if (prc == KC_OK) {
            json_object_set_new(pre, "source_kind",
                                json_string(source_kind_name(d->source_kind)));
            json_object_set_new(pre, "source_digest", ctl_json_key(&d->source_digest));
            json_object_set_new(pre, "entry", json_string(d->entry));
            json_object_set_new(pre, "options", options_json(d->options, d->n_options));
            json_object_set_new(pre, "space_digest", ctl_json_key(&d->space_digest));
            json_object_set_new(pre, "shape", json_string(sig));
            json_object_set_new(pre, "arch", json_string(d->arch));
            json_object_set_new(pre, "sm_count", json_integer(d->sm_count));
            json_object_set_new(pre, "device_name", json_string(d->device_name));
        } else {
            json_object_set_new(pre, "error", json_string(kc_strerror(prc)));
        }
        json_object_set_new(j, "preimage", pre);
        json_object_set_new(j, "winner", ctl_json_params(t->winner, t->n_winner));
        json_object_set_new(j, "winner_build", ctl_json_key(&t->winner_build));
        for (size_t i = 0; i < t->n_candidates; i++) {
            const kc_candidate_t *c = &t->candidates[i];
            json_t *o = json_object();
            json_object_set_new(o, "params", ctl_json_params(c->params, c->n_params));
            json_object_set_new(o, "build", ctl_json_key(&c->build));
            json_object_set_new(o, "status", json_string(kc_cand_status_name(c->status)));
            json_object_set_new(o, "median_ns",
                                c->status == KC_CAND_OK ? ctl_json_u64(c->median_ns)
                                                        : json_null());
            json_object_set_new(o, "reason", json_string(c->reason ? c->reason : ""));
            json_array_append_new(cands, o);
        }
        json_object_set_new(j, "candidates", cands);
        json_object_set_new(j, "tuning_us", ctl_json_u64(t->tuning_us));
        json_object_set_new(j, "device_name", json_string(t->device_name));
        json_object_set_new(j, "arch", json_string(t->arch));
        json_object_set_new(j, "sm_count", json_integer(t->sm_count));
        json_object_set_new(j, "driver_version", json_integer(t->driver_version));
        json_object_set_new(j, "created", ctl_json_u64(t->created));
        json_object_set_new(j, "created_utc",
                            ctl_json_str(ctl_fmt_iso(t->created, x, sizeof x)));
        kc_free(d);
        return;
    }
    if (prc == KC_OK) {
        ctl_field("source kind", "%s", source_kind_name(d->source_kind));
        ctl_field("source digest", "%s", ctl_hex(&d->source_digest, h));
        ctl_field("entry", "%s", d->entry);
        print_options(d->options, d->n_options);
        ctl_field("space digest", "%s", ctl_hex(&d->space_digest, h));
        ctl_field("shape", "%s", sig);
        ctl_field("device class", "%s, %" PRIu32 " SMs, %s", d->arch, d->sm_count,
                  d->device_name);
    } else {
        ctl_field("preimage", "%zu bytes, cannot decode: %s", t->preimage.size,
                  kc_strerror(prc));
    }
    ctl_field("winner", "%s", ctl_fmt_params(t->winner, t->n_winner, p, sizeof p));
    ctl_field("winner build", "%s", ctl_hex(&t->winner_build, h));
    ctl_field("tuning time", "%s", ctl_fmt_us(t->tuning_us, x, sizeof x));
    ctl_field("device", "%s (%s, %" PRIu32 " SMs, driver %" PRIu32 ")", t->device_name,
              t->arch, t->sm_count, t->driver_version);
    ctl_field("created", "%s", ctl_fmt_time(t->created, x, sizeof x));
    printf("\ncandidates:\n");
    {
        static const char *const hdr[] = {"PARAMS", "STATUS", ">MEDIAN", "BUILD",
                                          "REASON"};
        ctl_table_t *tb = ctl_table_new(5, hdr);
        for (size_t i = 0; i < t->n_candidates; i++) {
            const kc_candidate_t *c = &t->candidates[i];
            char med[32], bh[KC_KEY_HEX_LEN + 1];
            if (c->status == KC_CAND_OK)
                snprintf(med, sizeof med, "%.3f us", c->median_ns / 1e3);
            else
                snprintf(med, sizeof med, "-");
            const char *row[] = {ctl_fmt_params(c->params, c->n_params, p, sizeof p),
                                 kc_cand_status_name(c->status), med,
                                 kc_key_is_zero(&c->build) ? "-" : ctl_hex(&c->build, bh),
                                 c->reason && *c->reason ? c->reason : "-"};
            ctl_table_row(tb, row);
        }
        ctl_table_print(tb);
        ctl_table_free(tb);
    }
    kc_free(d);
}

/* A group: its name, times and files, each with its size and blob. */
static void show_group(const kc_group_rec_t *g, json_t *j)
{
    char x[32], h[KC_KEY_HEX_LEN + 1];
    uint64_t total = 0;

    for (size_t i = 0; i < g->n_files; i++)
        total += g->files[i].size;
    if (j) {
        json_t *files = json_array();
        json_object_set_new(j, "name", json_string(g->name));
        json_object_set_new(j, "created", ctl_json_u64(g->created));
        json_object_set_new(j, "updated", ctl_json_u64(g->updated));
        json_object_set_new(j, "total_bytes", ctl_json_u64(total));
        for (size_t i = 0; i < g->n_files; i++) {
            json_t *f = json_object();
            json_object_set_new(f, "name", json_string(g->files[i].name));
            json_object_set_new(f, "size", ctl_json_u64(g->files[i].size));
            json_object_set_new(f, "blob", ctl_json_key(&g->files[i].blob));
            json_array_append_new(files, f);
        }
        json_object_set_new(j, "files", files);
        return;
    }
    ctl_field("name", "%s", g->name);
    ctl_field("created", "%s", ctl_fmt_time(g->created, x, sizeof x));
    ctl_field("updated", "%s", ctl_fmt_time(g->updated, x, sizeof x));
    ctl_field("files", "%zu, %s", g->n_files, ctl_fmt_size(total, x, sizeof x));
    if (g->n_files == 0)
        return;
    static const char *const hdr[] = {"FILE", ">SIZE", "BLOB"};
    ctl_table_t *t = ctl_table_new(3, hdr);
    for (size_t i = 0; i < g->n_files; i++) {
        const char *row[] = {g->files[i].name,
                             ctl_fmt_size(g->files[i].size, x, sizeof x),
                             ctl_hex(&g->files[i].blob, h)};
        ctl_table_row(t, row);
    }
    printf("\n");
    ctl_table_print(t);
    ctl_table_free(t);
}

static void show_other(const kc_record_t *rec, json_t *j)
{
    char x[64];

    switch (rec->kind) {
    case KC_REC_USAGE:
        if (j) {
            json_object_set_new(j, "last_use", ctl_json_u64(rec->u.usage.last_use));
            json_object_set_new(j, "uses", ctl_json_u64(rec->u.usage.uses));
            return;
        }
        ctl_field("last use", "%s", ctl_fmt_time(rec->u.usage.last_use, x, sizeof x));
        ctl_field("uses", "%" PRIu64, rec->u.usage.uses);
        return;
    case KC_REC_LEASE: {
        const kc_lease_rec_t *l = &rec->u.lease;
        if (j) {
            json_object_set_new(j, "host", json_string(l->host));
            json_object_set_new(j, "boot_id", json_string(l->boot_id));
            json_object_set_new(j, "pid", json_integer(l->pid));
            json_object_set_new(j, "start_ms", ctl_json_u64(l->start));
            json_object_set_new(j, "ttl_ms", ctl_json_u64(l->ttl_ms));
            return;
        }
        ctl_field("host", "%s", l->host);
        ctl_field("boot id", "%s", l->boot_id);
        ctl_field("pid", "%" PRIu32, l->pid);
        ctl_field("start", "%s", ctl_fmt_time(l->start / 1000, x, sizeof x));
        ctl_field("time to live", "%s", ctl_fmt_us(l->ttl_ms * 1000, x, sizeof x));
        return;
    }
    default:
        if (j) {
            json_object_set_new(j, "value_bytes", ctl_json_u64(rec->u.meta.value.size));
            return;
        }
        ctl_field("value", "%zu bytes", rec->u.meta.value.size);
        return;
    }
}

static int run(kc_ctx_t *ctx, int argc, char **argv)
{
    ctl_opts_t *o = &ctx->opts;
    const kc_cmd_t *self = ctx->cmd;
    kc_store_t *st;
    kc_rec_kind_t kind;
    kc_key_t key;
    kc_record_t *rec = NULL, *usage = NULL;
    size_t stored = 0;
    json_t *j = NULL;
    char h[KC_KEY_HEX_LEN + 1], x[32];
    int rc = ctl_parse_plain(o, self, argc, argv);

    if (rc >= 0)
        return rc;
    if (optind >= argc)
        return ctl_usage_err(self->name, "missing KEY");
    if (argc - optind > 1)
        return ctl_usage_err(self->name, "unexpected argument '%s'", argv[optind + 1]);
    if (!ctl_key_syntax_ok(argv[optind]))
        return ctl_usage_err(self->name, "'%s' is not a key: give %d to %d hex digits",
                             argv[optind], KC_KEY_PREFIX_MIN, KC_KEY_HEX_LEN);
    kc_layers_t *layers = ctl_layers_open(o);
    if (!layers)
        return CTL_EXIT_FAIL;
    if ((rc = ctl_key_resolve_layers(layers, self->name, argv[optind], 0, &kind, &key,
                                     &st)) != CTL_EXIT_OK)
        goto out;
    int lrc = ctl_record_load(st, kind, &key, &rec, &stored);
    if (lrc != KC_OK) {
        ctl_err("show: %s %s: cannot decode the record: %s", kc_rec_kind_name(kind),
                ctl_hex(&key, h), kc_strerror(lrc));
        rc = CTL_EXIT_FAIL;
        goto out;
    }
    /* Usage stamps are keyed by the record they describe. */
    if (kind != KC_REC_USAGE &&
        ctl_record_load(st, KC_REC_USAGE, &key, &usage, NULL) != KC_OK)
        usage = NULL;
    if (o->json) {
        j = json_object();
        json_object_set_new(j, "kind", json_string(kc_rec_kind_name(kind)));
        json_object_set_new(j, "key", ctl_json_key(&key));
        json_object_set_new(j, "version", json_integer(rec->version));
        json_object_set_new(j, "stored_bytes", ctl_json_u64(stored));
        json_object_set_new(j, "layer", json_string(kc_store_path(st)));
        if (usage) {
            json_object_set_new(j, "last_use", ctl_json_u64(usage->u.usage.last_use));
            json_object_set_new(j, "uses", ctl_json_u64(usage->u.usage.uses));
        }
    } else {
        ctl_field("kind", "%s", kc_rec_kind_name(kind));
        ctl_field("key", "%s", ctl_hex(&key, h));
        ctl_field("record", "%s, version %u", ctl_fmt_size(stored, x, sizeof x),
                  rec->version);
        if (kc_layers_count(layers) > 1)
            ctl_field("layer", "%s", kc_store_path(st));
        if (usage) {
            char t[32];
            ctl_field("last use", "%s (%" PRIu64 " uses)",
                      ctl_fmt_time(usage->u.usage.last_use, t, sizeof t),
                      usage->u.usage.uses);
        }
    }
    switch (kind) {
    case KC_REC_BLOB:
        show_blob(st, &key, &rec->u.blob, stored, j);
        break;
    case KC_REC_BUILD:
        show_build(st, &rec->u.build, j);
        show_binmeta(st, &key, j);
        break;
    case KC_REC_TUNING:
        show_tuning(&rec->u.tuning, j);
        break;
    case KC_REC_GROUP:
        show_group(&rec->u.group, j);
        break;
    default:
        show_other(rec, j);
        break;
    }
    rc = j ? ctl_json_print(j) : CTL_EXIT_OK;
out:
    kc_free(rec);
    kc_free(usage);
    kc_layers_close(layers);
    return rc;
}

const kc_cmd_t kc_cmd_show = {
    .name = "show",
    .summary = "every field of one record, decoded",
    .usage = "show KEY",
    .help = NULL,
    .run = run,
};
