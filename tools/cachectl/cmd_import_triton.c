/* cachectl import-triton DIR: add the kernels of a Triton cache to the
 * store (kcache/triton.h), and optionally write a spec file naming them. */
#include "cachectl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifdef KC_HAVE_LAUNCH
#include "kcache/triton.h"
#endif

static const char help[] =
    "Options:\n"
    "      --spec-out FILE       also write a JSON spec file (docs/SPEC.md) with one\n"
    "                            kernel per (name, arch, signature), its builds as\n"
    "                            candidates\n"
    "      --grid NAME=EXPR[;EXPR;EXPR]\n"
    "                            the grid of kernel NAME in that spec file (one to\n"
    "                            three expressions); without it the kernel has no\n"
    "                            \"grid\", left for you to fill in. Repeatable\n"
    "      --dry-run             validate and report, write nothing (needs an\n"
    "                            existing store)\n"
    "      --strip-debug         store each cubin without its debug sections (PTX\n"
    "                            text, line tables: about half of a Triton binary,\n"
    "                            never read by a launch); its blob and build are then\n"
    "                            new keys, and SASS-to-source tools find no lines\n"
    "\n"
    "DIR is a Triton cache directory ($TRITON_CACHE_DIR, one <hash>/ directory per\n"
    "kernel) or a single hash directory. Every entry is validated first; if one is\n"
    "malformed nothing is imported and the exit status is 1. Entries that are not\n"
    "kernels, miss files, or use what kcache cannot launch yet (tensor descriptors,\n"
    "other backends) are skipped and listed with the reason. Each cubin is stored\n"
    "byte for byte (unless --strip-debug) with a prebuilt build record and its launch "
    "metadata (binmeta),\n"
    "all in one transaction; importing again changes nothing. A missing store is\n"
    "created.\n";

static const struct option longopts[] = {
    CTL_COMMON_LONGOPTS,
    {"spec-out", required_argument, NULL, 'o'},
    {"grid", required_argument, NULL, 'g'},
    {"dry-run", no_argument, NULL, 'n'},
    {"strip-debug", no_argument, NULL, 's'},
    {0},
};

#ifndef KC_HAVE_LAUNCH

static int run(kc_ctx_t *ctx, int argc, char **argv)
{
    (void)argc;
    (void)argv;
    (void)longopts;
    ctl_err("%s: this cachectl was built without the launcher (KC_BUILD_LAUNCHER=OFF)",
            ctx->cmd->name);
    return CTL_EXIT_FAIL;
}

#else

#define MAX_GRIDS 256

typedef struct grid_opt {
    char *name;   /* the kernel's name, before '=' */
    json_t *dims; /* array of 1..3 expression strings */
} grid_opt_t;

/* NAME=EXPR[;EXPR;EXPR] */
static int parse_grid(const char *arg, grid_opt_t *g)
{
    const char *eq = strchr(arg, '=');
    char *exprs, *save = NULL, *tok;

    g->name = NULL;
    g->dims = NULL;
    if (!eq || eq == arg || !eq[1])
        return -1;
    g->name = strndup(arg, (size_t)(eq - arg));
    g->dims = json_array();
    exprs = strdup(eq + 1);
    if (!g->name || !g->dims || !exprs) {
        free(exprs);
        return -1;
    }
    for (tok = strtok_r(exprs, ";", &save); tok; tok = strtok_r(NULL, ";", &save)) {
        while (*tok == ' ')
            tok++;
        if (!*tok || json_array_size(g->dims) == 3) {
            free(exprs);
            return -1;
        }
        json_array_append_new(g->dims, json_string(tok));
    }
    free(exprs);
    return json_array_size(g->dims) ? 0 : -1;
}

/* A Triton type string as a kcache spec dtype ("*fp32" -> "f32*"). */
static const char *spec_type(const char *t, char *buf, size_t cap)
{
    static const char *const map[][2] = {
        {"i1", "bool"},   {"i8", "i8"},    {"i16", "i16"},
        {"i32", "i32"},   {"i64", "i64"},  {"fp16", "f16"},
        {"bf16", "bf16"}, {"fp32", "f32"}, {"fp64", "f64"},
    };
    int ptr = t[0] == '*';
    const char *base = t + ptr;

    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
        if (strcmp(map[i][0], base) == 0) {
            /* A bool pointer is bytes to the launcher. */
            snprintf(buf, cap, "%s%s", ptr && i == 0 ? "u8" : map[i][1], ptr ? "*" : "");
            return buf;
        }
    snprintf(buf, cap, "%s", t);
    return buf;
}

static json_t *kernel_json(const kc_triton_entry_t *e, const char *name,
                           const grid_opt_t *grids, size_t n_grids)
{
    json_t *k = json_object(), *args = json_array();
    char buf[32];

    json_object_set_new(k, "name", json_string(name));
    json_object_set_new(k, "source_kind", json_string("prebuilt"));
    json_object_set_new(k, "candidates", json_array());
    for (size_t i = 0; i < e->binmeta.n_args; i++) {
        const kc_binmeta_arg_t *a = &e->binmeta.args[i];
        json_t *j = json_object();
        json_object_set_new(j, "name", json_string(a->name));
        json_object_set_new(j, "type", json_string(spec_type(a->type, buf, sizeof buf)));
        if (a->type[0] == '*')
            json_object_set_new(j, "access", json_string("inout"));
        json_array_append_new(args, j);
    }
    json_object_set_new(k, "args", args);
    for (size_t g = 0; g < n_grids; g++)
        if (strcmp(grids[g].name, e->name) == 0)
            json_object_set(k, "grid", grids[g].dims);
    return k;
}

/* The signature that groups entries into one spec kernel (its name, arch
 * and the arguments' names and types), as a string: each part with its length,
 * so that no two groups share one. NULL without memory. */
static char *group_key(const kc_triton_entry_t *e)
{
    const kc_binmeta_rec_t *m = &e->binmeta;
    size_t cap = strlen(e->name) + strlen(e->arch) + 64, len;
    char *k;

    for (size_t i = 0; i < m->n_args; i++)
        cap += strlen(m->args[i].name) + strlen(m->args[i].type) + 48;
    if (!(k = malloc(cap)))
        return NULL;
    len = (size_t)snprintf(k, cap, "%zu:%s%zu:%s%zu;", strlen(e->name), e->name,
                           strlen(e->arch), e->arch, m->n_args);
    for (size_t i = 0; i < m->n_args; i++)
        len +=
            (size_t)snprintf(k + len, cap - len, "%zu:%s%zu:%s", strlen(m->args[i].name),
                             m->args[i].name, strlen(m->args[i].type), m->args[i].type);
    return k;
}

/* One kernel per (name, arch, signature); a name that several share gets
 * its arch ("_sm90a"), then a number, so that names stay unique. Groups,
 * names shared and names given are found in hash tables (jansson's
 * objects): a cache of thousands of entries costs linear time. */
static json_t *spec_json(const kc_triton_report_t *r, const grid_opt_t *grids,
                         size_t n_grids)
{
    json_t *kernels = json_array(), *doc = json_object();
    json_t *groups = json_object();   /* group key -> its index in obj */
    json_t *first_of = json_object(); /* entry name -> its first group's key */
    json_t *shared = json_object();   /* entry names of several groups */
    json_t *taken = json_object();    /* kernel names given */
    json_t **obj = calloc(r->n_items + 1, sizeof(*obj));
    char **keys = calloc(r->n_items + 1, sizeof(*keys)); /* each entry's group */
    size_t n = 0;
    char hex[KC_KEY_HEX_LEN + 1], name[512];
    int ok = kernels && doc && groups && first_of && shared && taken && obj && keys;

    /* The names that several groups share, which get their arch. */
    for (size_t i = 0; ok && i < r->n_items; i++) {
        const kc_triton_entry_t *e = r->items[i].entry;
        if (!e)
            continue;
        if (!(keys[i] = group_key(e))) {
            ok = 0;
            break;
        }
        json_t *first = json_object_get(first_of, e->name);
        if (!first)
            ok = json_object_set_new_nocheck(first_of, e->name,
                                             json_string_nocheck(keys[i])) == 0;
        else if (strcmp(json_string_value(first), keys[i]) != 0)
            ok = json_object_set_new_nocheck(shared, e->name, json_true()) == 0;
    }
    for (size_t i = 0; ok && i < r->n_items; i++) {
        const kc_triton_entry_t *e = r->items[i].entry;
        size_t g;
        if (!e)
            continue;
        json_t *known = json_object_get(groups, keys[i]);
        if (known) {
            g = (size_t)json_integer_value(known);
        } else {
            snprintf(name, sizeof name, "%s", e->name);
            if (json_object_get(shared, e->name)) {
                const char *a = e->arch + 3; /* past "sm_" */
                snprintf(name, sizeof name, "%s_sm%s", e->name, a);
            }
            for (int suffix = 2; json_object_get(taken, name); suffix++)
                snprintf(name, sizeof name, "%s_sm%s_%d", e->name, e->arch + 3, suffix);
            g = n++;
            obj[g] = kernel_json(e, name, grids, n_grids);
            ok = obj[g] && json_array_append_new(kernels, obj[g]) == 0 &&
                 json_object_set_new_nocheck(taken, name, json_true()) == 0 &&
                 json_object_set_new_nocheck(groups, keys[i],
                                             json_integer((json_int_t)g)) == 0;
            if (!ok)
                break;
        }
        json_t *c = json_object(), *cfg = json_object();
        json_object_set_new(c, "build", json_string(ctl_hex(&e->build_key, hex)));
        json_object_set_new(cfg, "num_warps", json_integer(e->binmeta.num_warps));
        json_object_set_new(cfg, "num_stages", json_integer(e->num_stages));
        if (e->binmeta.num_ctas > 1)
            json_object_set_new(cfg, "num_ctas", json_integer(e->binmeta.num_ctas));
        json_object_set_new(c, "config", cfg);
        json_array_append_new(json_object_get(obj[g], "candidates"), c);
    }
    for (size_t i = 0; keys && i < r->n_items; i++)
        free(keys[i]);
    free(keys);
    free(obj);
    json_decref(groups);
    json_decref(first_of);
    json_decref(shared);
    json_decref(taken);
    if (!ok) {
        json_decref(kernels);
        json_decref(doc);
        return NULL;
    }
    json_object_set_new(doc, "version", json_integer(1));
    json_object_set_new(doc, "kernels", kernels);
    return doc;
}

/* Written beside path and renamed over it once complete. */
static int write_spec(const char *path, json_t *doc)
{
    size_t n = strlen(path) + 16;
    char *tmp = malloc(n);
    int fd, ok;
    FILE *f;

    if (!tmp)
        return -1;
    snprintf(tmp, n, "%s.tmpXXXXXX", path);
    if ((fd = mkstemp(tmp)) < 0 || !(f = fdopen(fd, "w"))) {
        ctl_err("import-triton: cannot write %s: %s", tmp, strerror(errno));
        if (fd >= 0)
            close(fd), unlink(tmp);
        free(tmp);
        return -1;
    }
    ok = json_dumpf(doc, f, JSON_INDENT(2)) == 0 && fputc('\n', f) != EOF;
    ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp, path) != 0) {
        ctl_err("import-triton: cannot write %s: %s", path, strerror(errno));
        unlink(tmp);
        free(tmp);
        return -1;
    }
    free(tmp);
    return 0;
}

static kc_store_t *open_store(const ctl_opts_t *o, int dry_run)
{
    const char *dir;
    kc_store_t *st = NULL;
    int rc;

    if (dry_run)
        return ctl_store_open(o, 0);
    if (!(dir = ctl_target_dir(o, 1, NULL)))
        return NULL;
    /* Like import, this seeds a store: a missing one is created. */
    if ((rc = kc_store_open(dir, NULL, &st)) != KC_OK) {
        const char *detail = kc_store_open_errmsg();
        ctl_err("cannot open store at %s: %s%s%s", dir, kc_strerror(rc),
                detail && *detail ? ": " : "", detail ? detail : "");
        return NULL;
    }
    if (kc_store_is_readonly(st)) {
        ctl_err("store at %s is read-only", dir);
        kc_store_close(st);
        return NULL;
    }
    return st;
}

static int run(kc_ctx_t *ctx, int argc, char **argv)
{
    ctl_opts_t *o = &ctx->opts;
    const kc_cmd_t *self = ctx->cmd;
    kc_triton_import_opts_t io = KC_TRITON_IMPORT_OPTS_INIT;
    kc_triton_report_t *r = NULL;
    grid_opt_t grids[MAX_GRIDS];
    size_t n_grids = 0;
    const char *spec_out = NULL, *dir;
    kc_store_t *st = NULL;
    char hex[KC_KEY_HEX_LEN + 1];
    int c, rc, status = CTL_EXIT_FAIL;

    while ((c = getopt_long(argc, argv, CTL_COMMON_SHORTOPTS, longopts, NULL)) != -1) {
        switch (c) {
        case 'o':
            spec_out = optarg;
            break;
        case 'g':
            if (n_grids == MAX_GRIDS || parse_grid(optarg, &grids[n_grids]) != 0) {
                if (n_grids < MAX_GRIDS) {
                    free(grids[n_grids].name);
                    json_decref(grids[n_grids].dims);
                }
                status = ctl_usage_err(
                    self->name, "--grid takes NAME=EXPR[;EXPR;EXPR], not '%s'", optarg);
                goto done;
            }
            n_grids++;
            break;
        case 'n':
            io.dry_run = 1;
            break;
        case 's':
            io.strip_debug = 1;
            break;
        default:
            if ((rc = ctl_common_opt(o, self, c, argv)) >= 0) {
                status = rc;
                goto done;
            }
        }
    }
    if (optind >= argc) {
        status = ctl_usage_err(self->name, "missing DIR (a Triton cache directory)");
        goto done;
    }
    if (optind + 1 < argc) {
        status = ctl_usage_err(self->name, "unexpected argument '%s'", argv[optind + 1]);
        goto done;
    }
    dir = argv[optind];
    if (!(st = open_store(o, io.dry_run)))
        goto done;
    if ((rc = kc_triton_import(st, dir, &io, &r)) != KC_OK) {
        ctl_err("import-triton: %s: %s (nothing was imported)", kc_strerror(rc),
                kc_store_errmsg(st));
        goto done;
    }
    if (spec_out) {
        json_t *doc = spec_json(r, grids, n_grids);
        if (!doc || write_spec(spec_out, doc) != 0) {
            json_decref(doc);
            ctl_err("import-triton: the store was updated, but the spec file %s was not "
                    "written",
                    spec_out);
            goto done;
        }
        json_decref(doc);
    }
    if (o->json) {
        json_t *doc = json_object(), *items = json_array();
        for (size_t i = 0; i < r->n_items; i++) {
            const kc_triton_item_t *it = &r->items[i];
            json_t *j = json_object();
            json_object_set_new(j, "dir", json_string(it->dir_name));
            json_object_set_new(j, "status",
                                json_string(kc_triton_status_name(it->status)));
            json_object_set_new(j, "kernel",
                                it->entry ? json_string(it->entry->name) : json_null());
            json_object_set_new(j, "arch",
                                it->entry ? json_string(it->entry->arch) : json_null());
            json_object_set_new(j, "build",
                                it->entry ? ctl_json_key(&it->entry->build_key)
                                          : json_null());
            json_object_set_new(j, "triton_version",
                                it->entry ? json_string(it->entry->version)
                                          : json_null());
            json_object_set_new(j, "cubin_bytes",
                                it->entry ? ctl_json_u64(it->entry->cubin.size)
                                          : json_null());
            json_object_set_new(j, "reason", json_string(it->reason));
            json_array_append_new(items, j);
        }
        json_object_set_new(doc, "dir", json_string(dir));
        json_object_set_new(doc, "dry_run", json_boolean(io.dry_run));
        json_object_set_new(doc, "strip_debug", json_boolean(io.strip_debug));
        json_object_set_new(doc, "imported", ctl_json_u64(r->imported));
        json_object_set_new(doc, "already_present", ctl_json_u64(r->present));
        json_object_set_new(doc, "skipped", ctl_json_u64(r->skipped));
        json_object_set_new(doc, "entries", items);
        json_object_set_new(doc, "spec_out",
                            spec_out ? json_string(spec_out) : json_null());
        status = ctl_json_print(doc);
        goto done;
    }
    for (size_t i = 0; i < r->n_items; i++) {
        const kc_triton_item_t *it = &r->items[i];
        if (it->entry)
            printf("%-8s  %-24s  %-7s  %s  %s\n", kc_triton_status_name(it->status),
                   it->entry->name, it->entry->arch, ctl_hex(&it->entry->build_key, hex),
                   it->dir_name);
        else
            printf("%-8s  %s: %s\n", "skipped", it->dir_name, it->reason);
    }
    printf("%s %zu, already present %zu, skipped %zu\n",
           io.dry_run ? "would import" : "imported", r->imported, r->present, r->skipped);
    if (spec_out)
        printf("spec file written to %s (kernels without --grid need a \"grid\")\n",
               spec_out);
    status = CTL_EXIT_OK;
done:
    for (size_t i = 0; i < n_grids; i++) {
        free(grids[i].name);
        json_decref(grids[i].dims);
    }
    kc_triton_report_free(r);
    kc_store_close(st);
    return status;
}

#endif

const kc_cmd_t kc_cmd_import_triton = {
    .name = "import-triton",
    .summary = "add the kernels of a Triton cache directory to the store",
    .usage = "import-triton DIR [--spec-out FILE] [--grid NAME=EXPR[;EXPR;EXPR]]... "
             "[--dry-run] [--strip-debug]",
    .help = help,
    .run = run,
};
