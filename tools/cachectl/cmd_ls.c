/* ls: list records, filtered by kind, arch and kernel name.
 *
 * Rows are printed as the store is walked, in fixed-width columns, so that
 * the first line comes at once however large the store is and `ls | head`
 * or --limit stop the walk early. Builds are listed before blobs: a blob is
 * shown by the builds (and group files) that use it, which are gathered
 * while they are listed (or in a first pass when builds are not listed).
 * --sort collects every row and prints an aligned table in that order;
 * --json builds one document. */
#include "cachectl.h"

#include <fnmatch.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char help[] =
    "  --kind KIND   blob, build, binmeta, tuning, group, usage, lease or all\n"
    "                (default: blob, build, binmeta, tuning and group; binmeta is\n"
    "                the launch metadata of a binary kcache did not compile, a\n"
    "                group named files stored together)\n"
    "  --arch ARCH   only records for this target, e.g. sm_90 (a blob matches\n"
    "                through the builds that use it)\n"
    "  --name GLOB   only records whose kernel entry (a group: its name) matches\n"
    "                GLOB, e.g. 'gemm_*'\n"
    "  --limit N     stop after N records\n"
    "  --sort FIELD  collect every row and print them sorted by FIELD: size\n"
    "                (largest first), name or key; without it rows stream in\n"
    "                store order (by kind: builds, binmeta, tunings, groups,\n"
    "                blobs; by key within a kind)\n";

static const struct option longopts[] = {
    CTL_COMMON_LONGOPTS,
    {"kind", required_argument, NULL, 'k'},
    {"arch", required_argument, NULL, 'a'},
    {"name", required_argument, NULL, 'n'},
    {"limit", required_argument, NULL, 'l'},
    {"sort", required_argument, NULL, 'o'},
    {0},
};

/* ---- ls ---------------------------------------------------------------- */

/* What a build says about its blob: a blob has no arch or name of its own,
 * so ls shows and filters it by the builds that produced it. */
typedef struct blob_use {
    kc_key_t blob;
    char arch[32];
    char entry[128];
} blob_use_t;

typedef struct ls_ctx {
    kc_store_t *st;
    int layered;  /* more than one layer: rows say which */
    size_t layer; /* the layer being listed */
    const char *layer_path;
    const char *arch, *name;
    blob_use_t *uses;
    size_t n_uses, cap_uses;
    json_t *list;
    size_t count, n_corrupt;
    uint64_t total_bytes;
    int json;
    size_t limit; /* 0: none */
    int sort;     /* SORT_*: 0 streams */
    int header_done;
    int collect_uses; /* gather blob uses while listing builds and groups */
    /* Rows kept for --sort. */
    struct row *rows;
    size_t n_rows, cap_rows;
} ls_ctx_t;

enum { SORT_NONE, SORT_SIZE, SORT_NAME, SORT_KEY };

#define NCOLS 7
typedef struct row {
    uint64_t size;
    char *cells[NCOLS]; /* LAYER KIND KEY ARCH NAME SIZE DETAILS */
} row_t;

/* What iterate returns when --limit is reached (not a KC_E* code). */
#define LS_STOP 1

static int use_cmp(const void *a, const void *b)
{
    return kc_key_cmp(&((const blob_use_t *)a)->blob, &((const blob_use_t *)b)->blob);
}

static blob_use_t *add_use(ls_ctx_t *c)
{
    if (c->n_uses == c->cap_uses) {
        size_t cap = c->cap_uses ? 2 * c->cap_uses : 64;
        blob_use_t *u = realloc(c->uses, cap * sizeof *u);
        if (!u)
            return NULL;
        c->uses = u;
        c->cap_uses = cap;
    }
    return &c->uses[c->n_uses++];
}

/* A build's blob is shown by its arch and entry; a group file's blob by
 * the file's name, with no arch. */
static int collect_use(void *user, kc_rec_kind_t kind, const kc_key_t *key,
                       const void *data, size_t len)
{
    ls_ctx_t *c = user;
    kc_record_t *rec = NULL;
    kc_build_desc_t *d = NULL;
    blob_use_t *u;

    (void)kind;
    (void)key;
    if (kc_record_decode(data, len, &rec) != KC_OK)
        goto done;
    if (rec->kind == KC_REC_GROUP) {
        for (size_t i = 0; i < rec->u.group.n_files && (u = add_use(c)); i++) {
            u->blob = rec->u.group.files[i].blob;
            u->arch[0] = '\0';
            snprintf(u->entry, sizeof u->entry, "%s", rec->u.group.files[i].name);
        }
        goto done;
    }
    if (rec->kind != KC_REC_BUILD ||
        kc_build_preimage_decode(rec->u.build.preimage.data, rec->u.build.preimage.size,
                                 &d) != KC_OK)
        goto done;
    if (!(u = add_use(c)))
        goto done;
    u->blob = rec->u.build.blob;
    snprintf(u->arch, sizeof u->arch, "%s", d->arch);
    snprintf(u->entry, sizeof u->entry, "%s", d->entry);
done:
    kc_free(d);
    kc_free(rec);
    return 0;
}

static int match(const ls_ctx_t *c, const char *arch, const char *name)
{
    if (c->arch && (!arch || strcmp(c->arch, arch) != 0))
        return 0;
    if (c->name && (!name || fnmatch(c->name, name, 0) != 0))
        return 0;
    return 1;
}

/* The first build of blob that passes the filters, and how many builds
 * use the blob in all. */
static const blob_use_t *blob_match(const ls_ctx_t *c, const kc_key_t *blob,
                                    size_t *n_users)
{
    blob_use_t probe = {.blob = *blob};
    const blob_use_t *hit = bsearch(&probe, c->uses, c->n_uses, sizeof probe, use_cmp);
    const blob_use_t *first = NULL;
    size_t lo, hi;

    *n_users = 0;
    if (!hit)
        return NULL;
    lo = hi = (size_t)(hit - c->uses);
    while (lo > 0 && kc_key_cmp(&c->uses[lo - 1].blob, blob) == 0)
        lo--;
    while (hi + 1 < c->n_uses && kc_key_cmp(&c->uses[hi + 1].blob, blob) == 0)
        hi++;
    *n_users = hi - lo + 1;
    for (size_t i = lo; i <= hi && !first; i++)
        if (match(c, c->uses[i].arch, c->uses[i].entry))
            first = &c->uses[i];
    return first;
}

/* Column widths of streamed rows: a kind name, a full key, an arch; longer
 * cells push the row along rather than being cut. */
static const int widths[NCOLS] = {5, 7, KC_KEY_HEX_LEN, 8, 24, 9, 0};
static const char *const headers[NCOLS] = {"LAYER", "KIND",  "KEY",    "ARCH",
                                           "NAME",  ">SIZE", "DETAILS"};

/* One streamed row (the LAYER column only when there are layers). */
static void print_row(ls_ctx_t *c, const char *const *cells)
{
    if (!c->header_done) {
        c->header_done = 1;
        print_row(c, headers);
    }
    for (size_t i = c->layered ? 0 : 1; i < NCOLS; i++) {
        const char *s = cells[i] ? cells[i] : "-";
        if (s[0] == '>' && cells == headers)
            s++;
        if (i + 1 == NCOLS)
            printf("%s\n", s);
        else if (i == 5)
            printf("%*s  ", widths[i], s);
        else
            printf("%-*s  ", widths[i], s);
    }
}

static char *dup_cell(const char *s)
{
    char *d = strdup(s ? s : "-");
    if (!d) {
        ctl_err("ls: out of memory");
        exit(CTL_EXIT_FAIL);
    }
    return d;
}

static void keep_row(ls_ctx_t *c, const char *const *cells, uint64_t size)
{
    if (c->n_rows == c->cap_rows) {
        size_t cap = c->cap_rows ? 2 * c->cap_rows : 256;
        row_t *r = realloc(c->rows, cap * sizeof *r);
        if (!r) {
            ctl_err("ls: out of memory");
            exit(CTL_EXIT_FAIL);
        }
        c->rows = r;
        c->cap_rows = cap;
    }
    row_t *r = &c->rows[c->n_rows++];
    r->size = size;
    for (size_t i = 0; i < NCOLS; i++)
        r->cells[i] = dup_cell(cells[i]);
}

static int sort_field;

static int row_cmp(const void *a, const void *b)
{
    const row_t *x = a, *y = b;
    int d;

    if (sort_field == SORT_SIZE && x->size != y->size)
        return x->size < y->size ? 1 : -1;
    if (sort_field == SORT_NAME && (d = strcmp(x->cells[4], y->cells[4])) != 0)
        return d;
    return strcmp(x->cells[2], y->cells[2]);
}

/* --sort: every row, sorted, as an aligned table. */
static void print_sorted(ls_ctx_t *c)
{
    ctl_table_t *t =
        ctl_table_new(c->layered ? NCOLS : NCOLS - 1, c->layered ? headers : headers + 1);

    sort_field = c->sort;
    if (c->n_rows)
        qsort(c->rows, c->n_rows, sizeof *c->rows, row_cmp);
    for (size_t i = 0; i < c->n_rows; i++) {
        const char *const *cells = (const char *const *)c->rows[i].cells;
        ctl_table_row(t, c->layered ? cells : cells + 1);
    }
    if (c->n_rows)
        ctl_table_print(t);
    ctl_table_free(t);
}

static void free_rows(ls_ctx_t *c)
{
    for (size_t i = 0; i < c->n_rows; i++)
        for (size_t j = 0; j < NCOLS; j++)
            free(c->rows[i].cells[j]);
    free(c->rows);
}

static int ls_one(void *user, kc_rec_kind_t kind, const kc_key_t *key, const void *data,
                  size_t len)
{
    ls_ctx_t *c = user;
    kc_record_t *rec = NULL;
    kc_build_desc_t *bd = NULL;
    kc_tuning_desc_t *td = NULL;
    const char *arch = NULL, *name = NULL;
    char name_buf[160], info[320], p[160], a[32], b[32], khex[KC_KEY_HEX_LEN + 1];
    json_t *j = NULL;
    int rc;

    info[0] = '\0';
    rc = kc_record_decode(data, len, &rec);
    if (rc == KC_OK && rec->kind != kind)
        rc = KC_ECORRUPT;
    if (rc != KC_OK) {
        /* A filtered listing cannot tell what a damaged record was for. */
        if (c->arch || c->name)
            goto done;
        c->n_corrupt++;
        snprintf(info, sizeof info, "DAMAGED: %s (run 'cachectl verify')",
                 kc_strerror(rc));
        if (c->json) {
            j = json_object();
            json_object_set_new(j, "error", json_string(kc_strerror(rc)));
        }
        goto emit;
    }
    if (c->json)
        j = json_object();
    switch (kind) {
    case KC_REC_BLOB: {
        const kc_blob_rec_t *bl = &rec->u.blob;
        size_t n_users;
        const blob_use_t *u = blob_match(c, key, &n_users);
        if ((c->arch || c->name) && !u)
            goto done;
        if (!u) {
            name = "(unused)";
        } else {
            arch = u->arch;
            if (n_users > 1)
                snprintf(name_buf, sizeof name_buf, "%s (+%zu)", u->entry, n_users - 1);
            else
                snprintf(name_buf, sizeof name_buf, "%s", u->entry);
            name = name_buf;
        }
        snprintf(info, sizeof info, "raw %s, ratio %s",
                 ctl_fmt_size(bl->raw_size, a, sizeof a),
                 ctl_fmt_ratio(bl->raw_size, len, b, sizeof b));
        if (j) {
            json_object_set_new(j, "raw_bytes", ctl_json_u64(bl->raw_size));
            json_object_set_new(j, "ratio",
                                json_real((double)bl->raw_size / (double)len));
            json_object_set_new(j, "builds", ctl_json_u64(n_users));
        }
        break;
    }
    case KC_REC_BUILD: {
        const kc_build_rec_t *br = &rec->u.build;
        rc = kc_build_preimage_decode(br->preimage.data, br->preimage.size, &bd);
        if (rc == KC_OK) {
            arch = bd->arch;
            name = bd->entry;
        }
        if (!match(c, arch, name))
            goto done;
        if (bd && bd->n_params == 0)
            snprintf(p, sizeof p, "no params");
        else if (bd)
            ctl_fmt_params(bd->params, bd->n_params, p, sizeof p);
        else
            snprintf(p, sizeof p, "preimage damaged");
        if (ctl_build_attrs_known(br))
            snprintf(info, sizeof info, "%s -> blob %.8s, %" PRIu32 " regs", p,
                     ctl_hex(&br->blob, khex), br->registers);
        else /* compiled without a GPU: never measured */
            snprintf(info, sizeof info, "%s -> blob %.8s, ? regs", p,
                     ctl_hex(&br->blob, khex));
        if (j) {
            json_object_set_new(j, "blob", ctl_json_key(&br->blob));
            if (bd) {
                json_object_set_new(j, "params",
                                    ctl_json_params(bd->params, bd->n_params));
                json_object_set_new(j, "toolchain", json_string(bd->toolchain));
            }
            json_object_set_new(j, "registers", ctl_json_attr(br, br->registers));
            json_object_set_new(j, "created", ctl_json_u64(br->created));
        }
        break;
    }
    case KC_REC_TUNING: {
        const kc_tuning_rec_t *tr = &rec->u.tuning;
        rc = kc_tuning_preimage_decode(tr->preimage.data, tr->preimage.size, &td);
        arch = tr->arch;
        name = rc == KC_OK ? td->entry : NULL;
        if (!match(c, arch, name))
            goto done;
        snprintf(info, sizeof info, "winner %s on %s, %zu candidates",
                 ctl_fmt_params(tr->winner, tr->n_winner, p, sizeof p), tr->device_name,
                 tr->n_candidates);
        if (j) {
            json_object_set_new(j, "winner", ctl_json_params(tr->winner, tr->n_winner));
            json_object_set_new(j, "winner_build", ctl_json_key(&tr->winner_build));
            json_object_set_new(j, "device", json_string(tr->device_name));
            json_object_set_new(j, "candidates", ctl_json_u64(tr->n_candidates));
            json_object_set_new(j, "created", ctl_json_u64(tr->created));
        }
        break;
    }
    case KC_REC_BINMETA: {
        /* A binary kcache did not compile (a Triton kernel): its launch
         * metadata, under the key of its build. */
        const kc_binmeta_rec_t *bm = &rec->u.binmeta;
        arch = bm->arch;
        name = bm->entry;
        if (!match(c, arch, name))
            goto done;
        snprintf(info, sizeof info,
                 "%s %s, %" PRIu32 " warps, %" PRIu32 " B smem, %zu args", bm->compiler,
                 bm->compiler_version, bm->num_warps, bm->dyn_smem, bm->n_args);
        if (j) {
            json_object_set_new(j, "compiler", json_string(bm->compiler));
            json_object_set_new(j, "compiler_version", json_string(bm->compiler_version));
            json_object_set_new(j, "num_warps", json_integer(bm->num_warps));
            json_object_set_new(j, "num_ctas", json_integer(bm->num_ctas));
            json_object_set_new(j, "dyn_smem", json_integer(bm->dyn_smem));
            json_object_set_new(j, "global_scratch",
                                json_integer(bm->global_scratch_size));
            json_object_set_new(j, "args", ctl_json_u64(bm->n_args));
        }
        break;
    }
    case KC_REC_GROUP: {
        /* Named files stored together: a group has a name, no arch. */
        const kc_group_rec_t *g = &rec->u.group;
        uint64_t total = 0;
        name = g->name;
        if (!match(c, NULL, name))
            goto done;
        for (size_t i = 0; i < g->n_files; i++)
            total += g->files[i].size;
        snprintf(info, sizeof info, "%zu file%s, %s, updated %s", g->n_files,
                 g->n_files == 1 ? "" : "s", ctl_fmt_size(total, b, sizeof b),
                 ctl_fmt_time(g->updated, a, sizeof a));
        if (j) {
            json_object_set_new(j, "files", ctl_json_u64(g->n_files));
            json_object_set_new(j, "total_bytes", ctl_json_u64(total));
            json_object_set_new(j, "created", ctl_json_u64(g->created));
            json_object_set_new(j, "updated", ctl_json_u64(g->updated));
        }
        break;
    }
    case KC_REC_USAGE:
        if (c->arch || c->name)
            goto done;
        snprintf(info, sizeof info, "last use %s, %" PRIu64 " uses",
                 ctl_fmt_time(rec->u.usage.last_use, a, sizeof a), rec->u.usage.uses);
        if (j) {
            json_object_set_new(j, "last_use", ctl_json_u64(rec->u.usage.last_use));
            json_object_set_new(j, "uses", ctl_json_u64(rec->u.usage.uses));
        }
        break;
    case KC_REC_LEASE:
        if (c->arch || c->name)
            goto done;
        snprintf(info, sizeof info, "held by %s pid %" PRIu32, rec->u.lease.host,
                 rec->u.lease.pid);
        if (j) {
            json_object_set_new(j, "host", json_string(rec->u.lease.host));
            json_object_set_new(j, "pid", json_integer(rec->u.lease.pid));
        }
        break;
    default:
        if (c->arch || c->name)
            goto done;
        snprintf(info, sizeof info, "%zu bytes of value", rec->u.meta.value.size);
        break;
    }
emit:
    c->count++;
    c->total_bytes += len;
    if (c->json) {
        json_t *o = json_object();
        json_object_set_new(o, "kind", json_string(kc_rec_kind_name(kind)));
        json_object_set_new(o, "key", ctl_json_key(key));
        json_object_set_new(o, "stored_bytes", ctl_json_u64(len));
        json_object_set_new(o, "arch", ctl_json_str(arch));
        json_object_set_new(o, "name", ctl_json_str(name));
        json_object_set_new(o, "layer", ctl_json_u64(c->layer));
        json_object_set_new(o, "layer_path", json_string(c->layer_path));
        json_object_update(o, j);
        json_array_append_new(c->list, o);
    } else {
        char size[32], lay[24];
        snprintf(lay, sizeof lay, "%zu", c->layer);
        const char *row[] = {lay,
                             kc_rec_kind_name(kind),
                             ctl_hex(key, khex),
                             arch,
                             name,
                             ctl_fmt_size(len, size, sizeof size),
                             info};
        if (c->sort)
            keep_row(c, row, len);
        else
            print_row(c, row);
    }
done:
    json_decref(j);
    kc_free(bd);
    kc_free(td);
    kc_free(rec);
    return c->limit && c->count >= c->limit ? LS_STOP : 0;
}

/* The walk's callback: gathers what blobs are shown by, then lists. */
static int ls_walk(void *user, kc_rec_kind_t kind, const kc_key_t *key, const void *data,
                   size_t len)
{
    ls_ctx_t *c = user;

    if (c->collect_uses && (kind == KC_REC_BUILD || kind == KC_REC_GROUP))
        collect_use(c, kind, key, data, len);
    return ls_one(c, kind, key, data, len);
}

static int run(kc_ctx_t *ctx, int argc, char **argv)
{
    ctl_opts_t *o = &ctx->opts;
    const kc_cmd_t *self = ctx->cmd;
    /* Builds before blobs: a blob's row needs the builds that use it. */
    static const int default_kinds[] = {KC_REC_BUILD, KC_REC_BINMETA, KC_REC_TUNING,
                                        KC_REC_GROUP, KC_REC_BLOB};
    int kinds[KC_REC_KIND_MAX];
    size_t n_kinds = 0;
    const char *kind_arg = NULL, *sort_arg = NULL;
    ls_ctx_t c = {0};
    kc_store_t *st = NULL;
    int ch, rc, lists_blobs = 0, lists_uses = 0;
    char *end;

    while ((ch = getopt_long(argc, argv, CTL_COMMON_SHORTOPTS, longopts, NULL)) != -1) {
        switch (ch) {
        case 'k':
            kind_arg = optarg;
            break;
        case 'a':
            if (!(c.arch = ctl_arch_arg(self->name, optarg, &rc)))
                return rc;
            break;
        case 'n':
            c.name = optarg;
            break;
        case 'l':
            c.limit = strtoull(optarg, &end, 10);
            if (!*optarg || *end || c.limit == 0)
                return ctl_usage_err(self->name,
                                     "--limit wants a count above 0, not '%s'", optarg);
            break;
        case 'o':
            sort_arg = optarg;
            break;
        default:
            if ((rc = ctl_common_opt(o, self, ch, argv)) >= 0)
                return rc;
        }
    }
    if (optind < argc)
        return ctl_usage_err(self->name, "unexpected argument '%s'", argv[optind]);
    if (sort_arg) {
        c.sort = strcmp(sort_arg, "size") == 0   ? SORT_SIZE
                 : strcmp(sort_arg, "name") == 0 ? SORT_NAME
                 : strcmp(sort_arg, "key") == 0  ? SORT_KEY
                                                 : -1;
        if (c.sort < 0)
            return ctl_usage_err(
                self->name, "unknown --sort field '%s' (size, name or key)", sort_arg);
    }
    if (!kind_arg) {
        for (size_t i = 0; i < sizeof default_kinds / sizeof default_kinds[0]; i++)
            kinds[n_kinds++] = default_kinds[i];
    } else if (strcmp(kind_arg, "all") == 0) {
        for (int k = KC_REC_KIND_MIN; k <= KC_REC_KIND_MAX; k++)
            if (k != KC_REC_META && k != KC_REC_BLOB)
                kinds[n_kinds++] = k;
        kinds[n_kinds++] = KC_REC_BLOB;
    } else if ((kinds[0] = kc_rec_kind_from_name(kind_arg)) != 0 &&
               kinds[0] != KC_REC_META) {
        /* Meta records are keyed by name, not by key: stats shows them. */
        n_kinds = 1;
    } else {
        return ctl_usage_err(self->name,
                             "unknown kind '%s' (blob, build, binmeta, tuning, group, "
                             "usage, lease or all)",
                             kind_arg);
    }
    for (size_t i = 0; i < n_kinds; i++) {
        lists_blobs |= kinds[i] == KC_REC_BLOB;
        lists_uses |= kinds[i] == KC_REC_BUILD || kinds[i] == KC_REC_GROUP;
    }
    kc_layers_t *layers = ctl_layers_open(o);
    if (!layers)
        return CTL_EXIT_FAIL;
    c.layered = kc_layers_count(layers) > 1;
    c.json = o->json;
    if (c.json)
        c.list = json_array();
    for (c.layer = 0; c.layer < kc_layers_count(layers); c.layer++) {
        st = c.st = kc_layers_store(layers, c.layer);
        c.layer_path = kc_store_path(st);
        c.n_uses = 0;
        c.collect_uses = lists_blobs;
        /* Blobs alone: gather the builds and groups that use them first. */
        if (lists_blobs && !lists_uses) {
            rc = kc_store_iterate(st, KC_REC_BUILD, collect_use, &c);
            if (rc == KC_OK || rc == KC_ENOTFOUND)
                rc = kc_store_iterate(st, KC_REC_GROUP, collect_use, &c);
            if (rc != KC_OK && rc != KC_ENOTFOUND)
                goto fail;
        }
        for (size_t i = 0; i < n_kinds; i++) {
            if (kinds[i] == KC_REC_BLOB && c.n_uses)
                qsort(c.uses, c.n_uses, sizeof *c.uses, use_cmp);
            rc = kc_store_iterate(st, kinds[i], ls_walk, &c);
            if (rc == LS_STOP)
                break;
            if (rc != KC_OK && rc != KC_ENOTFOUND)
                goto fail;
        }
        if (c.limit && c.count >= c.limit)
            break;
    }
    if (c.n_corrupt)
        ctl_err("warning: %zu damaged record%s; run 'cachectl verify'", c.n_corrupt,
                c.n_corrupt == 1 ? "" : "s");
    free(c.uses);
    if (c.json) {
        json_t *doc = json_object();
        json_object_set_new(doc, "store",
                            json_string(kc_store_path(kc_layers_store(layers, 0))));
        json_object_set_new(doc, "layers", ctl_json_layers(layers));
        json_object_set_new(doc, "count", ctl_json_u64(c.count));
        json_object_set_new(doc, "records", c.list);
        kc_layers_close(layers);
        return ctl_json_print(doc);
    }
    if (c.sort)
        print_sorted(&c);
    free_rows(&c);
    if (c.count > 0) {
        char tot[32];
        printf("%zu record%s, %s%s\n", c.count, c.count == 1 ? "" : "s",
               ctl_fmt_size(c.total_bytes, tot, sizeof tot),
               c.limit && c.count >= c.limit ? " (--limit reached)" : "");
    } else {
        printf("no records\n");
    }
    if (c.layered)
        ctl_print_layers(layers);
    kc_layers_close(layers);
    return CTL_EXIT_OK;
fail:
    ctl_err("ls: cannot read the store: %s: %s", kc_strerror(rc), kc_store_errmsg(st));
    free(c.uses);
    free_rows(&c);
    json_decref(c.list);
    kc_layers_close(layers);
    return CTL_EXIT_FAIL;
}

const kc_cmd_t kc_cmd_ls = {
    .name = "ls",
    .summary = "list records",
    .usage = "ls [--kind KIND] [--arch ARCH] [--name GLOB] [--limit N] [--sort FIELD]",
    .help = help,
    .run = run,
};
