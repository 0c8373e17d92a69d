/* cachectl why NAME|KEY: explain a miss.
 *
 * A KEY names a stored build or tuning: it is shown with the stored records
 * of its kind nearest to it and the key fields that set each apart. A key
 * from a log that is not in the store cannot be decoded back into fields,
 * so for it (and for a NAME, a kernel entry or a glob) every stored tuning
 * and build of that entry is listed with the fields in which it differs from
 * its nearest neighbour: two tunings of softmax that differ only in device
 * class show exactly that. */
#include <fnmatch.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cachectl.h"
#include "kcache/shape.h"
#include "kcache/why.h"

static const char help[] =
    "NAME is a kernel entry name or a glob ('soft*'); KEY is a hex prefix of a\n"
    "build or tuning key (at least 8 digits).\n"
    "\n"
    "Options:\n"
    "  --arch ARCH   only records for this architecture (sm_90, ...)\n"
    "  --limit N     nearest records shown for a KEY (default 5)\n"
    "\n"
    "Compared fields: source kind, source digest, entry, options, params and\n"
    "toolchain (builds), space digest, shape signature and device class\n"
    "(tunings), arch.\n";

static const struct option longopts[] = {
    CTL_COMMON_LONGOPTS,
    {"arch", required_argument, NULL, 'a'},
    {"limit", required_argument, NULL, 'l'},
    {0},
};

/* One stored build or tuning, decoded. */
typedef struct item {
    kc_rec_kind_t kind;
    kc_key_t key;
    kc_record_t *rec;
    kc_build_desc_t *b;  /* kind build */
    kc_tuning_desc_t *t; /* kind tuning */
    size_t nearest;      /* index of its nearest neighbour, or SIZE_MAX */
    unsigned fields;     /* differing from it */
} item_t;

typedef struct items {
    item_t *v;
    size_t n, cap;
    const char *glob; /* entry filter, or NULL */
    const char *arch; /* arch filter, or NULL */
} items_t;

static void items_free(items_t *l)
{
    for (size_t i = 0; i < l->n; i++) {
        kc_free(l->v[i].rec);
        kc_free(l->v[i].b);
        kc_free(l->v[i].t);
    }
    free(l->v);
    l->v = NULL;
    l->n = l->cap = 0;
}

static const char *item_entry(const item_t *it)
{
    return it->b ? it->b->entry : it->t->entry;
}

static const char *item_arch(const item_t *it)
{
    return it->b ? it->b->arch : it->t->arch;
}

/* Decode (kind, data) into it; KC_OK, or the code of the part that failed. */
static int item_decode(item_t *it, kc_rec_kind_t kind, const void *data, size_t len)
{
    int rc = kc_record_decode(data, len, &it->rec);

    it->kind = kind;
    if (rc != KC_OK)
        return rc;
    if (it->rec->kind != kind)
        return KC_ECORRUPT;
    if (kind == KC_REC_BUILD)
        return kc_build_preimage_decode(it->rec->u.build.preimage.data,
                                        it->rec->u.build.preimage.size, &it->b);
    return kc_tuning_preimage_decode(it->rec->u.tuning.preimage.data,
                                     it->rec->u.tuning.preimage.size, &it->t);
}

static int collect_fn(void *user, kc_rec_kind_t kind, const kc_key_t *key,
                      const void *data, size_t len)
{
    items_t *l = user;
    item_t it = {.key = *key, .nearest = SIZE_MAX};

    if (kind != KC_REC_BUILD && kind != KC_REC_TUNING)
        return 0;
    if (item_decode(&it, kind, data, len) != KC_OK ||
        (l->glob && fnmatch(l->glob, item_entry(&it), 0) != 0) ||
        (l->arch && strcmp(l->arch, item_arch(&it)) != 0)) {
        kc_free(it.rec);
        kc_free(it.b);
        kc_free(it.t);
        return 0;
    }
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        item_t *v = realloc(l->v, cap * sizeof(*v));
        if (!v) {
            kc_free(it.rec);
            kc_free(it.b);
            kc_free(it.t);
            return KC_ENOMEM;
        }
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = it;
    return 0;
}

static unsigned item_compare(const item_t *a, const item_t *b)
{
    return a->b ? kc_why_compare_build(a->b, b->b) : kc_why_compare_tuning(a->t, b->t);
}

static const char *item_describe(const item_t *it, unsigned field, char *out, size_t cap)
{
    return it->b ? kc_why_describe_build(it->b, field, out, cap)
                 : kc_why_describe_tuning(it->t, field, out, cap);
}

static int same_group(const item_t *a, const item_t *b)
{
    return a->kind == b->kind && strcmp(item_entry(a), item_entry(b)) == 0;
}

/* For every item, its nearest item of the same kind and entry. The items
 * are sorted by entry, then kind (cmp_items), so each group is a run: a
 * glob that matches thousands of entries compares within runs only. */
static void find_neighbours(items_t *l)
{
    for (size_t lo = 0, hi; lo < l->n; lo = hi) {
        for (hi = lo + 1; hi < l->n && same_group(&l->v[lo], &l->v[hi]); hi++)
            ;
        for (size_t i = lo; i < hi; i++) {
            unsigned best = UINT32_MAX;
            for (size_t j = lo; j < hi; j++) {
                if (i == j)
                    continue;
                unsigned f = item_compare(&l->v[i], &l->v[j]);
                unsigned d = kc_why_distance(f);
                if (d < best) {
                    best = d;
                    l->v[i].nearest = j;
                    l->v[i].fields = f;
                }
            }
        }
    }
}

/* "shape signature, device class", or "-" for none. */
static const char *fields_text(unsigned fields, char *out, size_t cap)
{
    size_t len = 0;

    snprintf(out, cap, "-");
    for (int i = 0; i < KC_WHY_FIELD_COUNT && len < cap; i++)
        if (fields & (1u << i))
            len += (size_t)snprintf(out + len, cap - len, "%s%s", len ? ", " : "",
                                    kc_why_field_name(1u << i));
    return out;
}

static json_t *fields_json(unsigned fields)
{
    json_t *a = json_array();
    for (int i = 0; i < KC_WHY_FIELD_COUNT; i++)
        if (fields & (1u << i))
            json_array_append_new(a, json_string(kc_why_field_name(1u << i)));
    return a;
}

/* The differing fields with both values: {"arch": ["sm_90", "sm_80"], ...}. */
static json_t *values_json(const item_t *a, const item_t *b, unsigned fields)
{
    json_t *o = json_object();
    char x[512], y[512];

    for (int i = 0; i < KC_WHY_FIELD_COUNT; i++) {
        unsigned f = 1u << i;
        if (!(fields & f))
            continue;
        json_t *pair = json_array();
        json_array_append_new(pair, json_string(item_describe(a, f, x, sizeof x)));
        json_array_append_new(pair, json_string(item_describe(b, f, y, sizeof y)));
        json_object_set_new(o, kc_why_field_name(f), pair);
    }
    return o;
}

static json_t *item_json(const item_t *it)
{
    json_t *o = json_object();
    char x[512];

    json_object_set_new(o, "kind", json_string(kc_rec_kind_name(it->kind)));
    json_object_set_new(o, "key", ctl_json_key(&it->key));
    json_object_set_new(o, "entry", json_string(item_entry(it)));
    json_object_set_new(o, "arch", json_string(item_arch(it)));
    json_object_set_new(
        o, "source_digest",
        json_string(item_describe(it, KC_WHY_SOURCE_DIGEST, x, sizeof x)));
    json_object_set_new(o, "options",
                        json_string(item_describe(it, KC_WHY_OPTIONS, x, sizeof x)));
    if (it->b) {
        json_object_set_new(o, "params",
                            json_string(item_describe(it, KC_WHY_PARAMS, x, sizeof x)));
        json_object_set_new(o, "toolchain", json_string(it->b->toolchain));
    } else {
        json_object_set_new(
            o, "shape", json_string(item_describe(it, KC_WHY_SHAPE_SIG, x, sizeof x)));
        json_object_set_new(o, "device_name", json_string(it->t->device_name));
        json_object_set_new(o, "sm_count", json_integer(it->t->sm_count));
        json_object_set_new(
            o, "space_digest",
            json_string(item_describe(it, KC_WHY_SPACE_DIGEST, x, sizeof x)));
    }
    return o;
}

/* ---- NAME: every build and tuning of the matching entries ------------------- */

static void print_table(const items_t *l, kc_rec_kind_t kind)
{
    static const char *const thdr[] = {"TUNING", "ARCH",   "DEVICE",  ">SMS",
                                       "SHAPE",  "SOURCE", "NEAREST", "DIFFERS IN"};
    static const char *const bhdr[] = {"BUILD",   "ARCH",   "TOOLCHAIN", "PARAMS",
                                       "OPTIONS", "SOURCE", "NEAREST",   "DIFFERS IN"};
    ctl_table_t *t = ctl_table_new(8, kind == KC_REC_TUNING ? thdr : bhdr);
    char h[KC_KEY_HEX_LEN + 1], nh[KC_KEY_HEX_LEN + 1];

    for (size_t i = 0; i < l->n; i++) {
        const item_t *it = &l->v[i];
        char c2[256], c3[64], c4[512], c5[32], c7[256];
        if (it->kind != kind)
            continue;
        ctl_hex(&it->key, h);
        h[8] = '\0';
        if (it->nearest != SIZE_MAX) {
            ctl_hex(&l->v[it->nearest].key, nh);
            nh[8] = '\0';
        }
        if (kind == KC_REC_TUNING) {
            snprintf(c2, sizeof c2, "%s", it->t->device_name);
            snprintf(c3, sizeof c3, "%" PRIu32, it->t->sm_count);
            item_describe(it, KC_WHY_SHAPE_SIG, c4, sizeof c4);
        } else {
            snprintf(c2, sizeof c2, "%s", it->b->toolchain);
            item_describe(it, KC_WHY_PARAMS, c3, sizeof c3);
            item_describe(it, KC_WHY_OPTIONS, c4, sizeof c4);
        }
        item_describe(it, KC_WHY_SOURCE_DIGEST, c5, sizeof c5);
        const char *row[] = {h,
                             item_arch(it),
                             c2,
                             c3,
                             c4,
                             c5,
                             it->nearest != SIZE_MAX ? nh : "-",
                             it->nearest != SIZE_MAX
                                 ? (it->fields ? fields_text(it->fields, c7, sizeof c7)
                                               : "nothing (same key)")
                                 : "-"};
        ctl_table_row(t, row);
    }
    ctl_table_print(t);
    ctl_table_free(t);
}

static int cmp_items(const void *pa, const void *pb)
{
    const item_t *a = pa, *b = pb;
    int c = strcmp(item_entry(a), item_entry(b));
    if (c)
        return c;
    if (a->kind != b->kind)
        return a->kind == KC_REC_TUNING ? -1 : 1;
    c = strcmp(item_arch(a), item_arch(b));
    return c ? c : kc_key_cmp(&a->key, &b->key);
}

static int why_name(const ctl_opts_t *o, kc_store_t *st, const char *name,
                    const char *arch, const char *missing_key)
{
    items_t l = {.glob = name, .arch = arch};
    size_t tunings = 0;
    int rc = kc_store_iterate(st, 0, collect_fn, &l);

    if (rc != KC_OK) {
        ctl_err("why: reading the store: %s: %s", kc_strerror(rc), kc_store_errmsg(st));
        items_free(&l);
        return CTL_EXIT_FAIL;
    }
    if (l.n == 0) {
        if (missing_key)
            ctl_err("why: no stored record has a key starting with %s (nor an entry "
                    "named so). A key from a log cannot be decoded into its fields: run "
                    "'cachectl why ENTRY' with the kernel's entry name to list what is "
                    "stored for it",
                    missing_key);
        else
            ctl_err(
                "why: no stored build or tuning of entry '%s'%s%s: every launch of it "
                "misses (try a glob, e.g. '%s*')",
                name, arch ? " for " : "", arch ? arch : "", name);
        items_free(&l);
        return CTL_EXIT_FAIL;
    }
    qsort(l.v, l.n, sizeof(*l.v), cmp_items);
    find_neighbours(&l);
    for (size_t i = 0; i < l.n; i++)
        tunings += l.v[i].kind == KC_REC_TUNING;
    if (o->json) {
        json_t *doc = json_object(), *ts = json_array(), *bs = json_array();
        json_object_set_new(doc, "query", json_string(name));
        json_object_set_new(doc, "arch", ctl_json_str(arch));
        for (size_t i = 0; i < l.n; i++) {
            json_t *j = item_json(&l.v[i]);
            if (l.v[i].nearest != SIZE_MAX) {
                json_object_set_new(j, "nearest", ctl_json_key(&l.v[l.v[i].nearest].key));
                json_object_set_new(j, "differs_in", fields_json(l.v[i].fields));
                json_object_set_new(
                    j, "values",
                    values_json(&l.v[i], &l.v[l.v[i].nearest], l.v[i].fields));
            }
            json_array_append_new(l.v[i].kind == KC_REC_TUNING ? ts : bs, j);
        }
        json_object_set_new(doc, "tunings", ts);
        json_object_set_new(doc, "builds", bs);
        items_free(&l);
        return ctl_json_print(doc);
    }
    if (missing_key)
        printf("No stored record has a key starting with %s; stored records of "
               "'%s':\n\n",
               missing_key, name);
    printf("%zu tunings and %zu builds of '%s'%s%s. NEAREST is the closest record of the "
           "same kind and entry.\n\n",
           tunings, l.n - tunings, name, arch ? " for " : "", arch ? arch : "");
    if (tunings) {
        print_table(&l, KC_REC_TUNING);
        printf("\n");
    }
    if (l.n > tunings)
        print_table(&l, KC_REC_BUILD);
    items_free(&l);
    return CTL_EXIT_OK;
}

/* ---- KEY: one stored record and its nearest neighbours ---------------------- */

/* Find a build or tuning (or blob) by prefix: KC_OK, KC_ENOTFOUND or
 * KC_EAMBIGUOUS. Usage records share their record's key, so kind 0 would
 * find two; the kinds are searched one by one. */
static int find_key(kc_store_t *st, const kc_key_prefix_t *p, kc_rec_kind_t *kind,
                    kc_key_t *key)
{
    static const kc_rec_kind_t kinds[] = {KC_REC_TUNING, KC_REC_BUILD, KC_REC_BLOB};
    int found = 0;

    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        kc_rec_kind_t k;
        kc_key_t key_i;
        int rc = kc_store_find(st, kinds[i], p, &k, &key_i);
        if (rc == KC_EAMBIGUOUS || (rc == KC_OK && found))
            return KC_EAMBIGUOUS;
        if (rc == KC_OK) {
            found = 1;
            *kind = k;
            *key = key_i;
        } else if (rc != KC_ENOTFOUND) {
            return rc;
        }
    }
    return found ? KC_OK : KC_ENOTFOUND;
}

typedef struct blob_users {
    kc_key_t blob;
    json_t *json;
    size_t n;
} blob_users_t;

static int blob_users_fn(void *user, kc_rec_kind_t kind, const kc_key_t *key,
                         const void *data, size_t len)
{
    blob_users_t *u = user;
    kc_record_t *rec = NULL;
    char h[KC_KEY_HEX_LEN + 1];

    (void)kind;
    if (kc_record_decode(data, len, &rec) == KC_OK && rec->kind == KC_REC_BUILD &&
        kc_key_cmp(&rec->u.build.blob, &u->blob) == 0) {
        u->n++;
        if (u->json)
            json_array_append_new(u->json, ctl_json_key(key));
        else
            printf("  build %s (%s)\n", ctl_hex(key, h), rec->u.build.entry);
    }
    kc_free(rec);
    return 0;
}

static int why_blob(const ctl_opts_t *o, kc_store_t *st, const kc_key_t *key)
{
    blob_users_t u = {.blob = *key};
    char h[KC_KEY_HEX_LEN + 1];
    json_t *doc = NULL;

    if (o->json) {
        doc = json_object();
        u.json = json_array();
    } else {
        printf("blob %s is content, not a key made of fields; the builds that produced "
               "it:\n",
               ctl_hex(key, h));
    }
    int rc = kc_store_iterate(st, KC_REC_BUILD, blob_users_fn, &u);
    if (rc != KC_OK) {
        json_decref(doc);
        json_decref(u.json);
        ctl_err("why: reading the store: %s: %s", kc_strerror(rc), kc_store_errmsg(st));
        return CTL_EXIT_FAIL;
    }
    if (doc) {
        json_object_set_new(doc, "kind", json_string("blob"));
        json_object_set_new(doc, "key", ctl_json_key(key));
        json_object_set_new(doc, "builds", u.json);
        return ctl_json_print(doc);
    }
    if (u.n == 0)
        printf("  none: no build references it (gc sweeps it)\n");
    return CTL_EXIT_OK;
}

static int why_key(const ctl_opts_t *o, kc_store_t *st, kc_rec_kind_t kind,
                   const kc_key_t *key, const char *arch, size_t limit)
{
    item_t target = {.key = *key, .nearest = SIZE_MAX};
    kc_why_match_t *m = NULL;
    size_t n = 0;
    void *data = NULL;
    size_t len = 0;
    char h[KC_KEY_HEX_LEN + 1], x[512], y[512];
    int rc, status = CTL_EXIT_FAIL;

    if (kind == KC_REC_BLOB)
        return why_blob(o, st, key);
    rc = kc_store_get_raw(st, kind, key, &data, &len);
    if (rc == KC_OK)
        rc = item_decode(&target, kind, data, len);
    kc_free(data);
    if (rc != KC_OK) {
        ctl_err("why: %s %s cannot be read: %s", kc_rec_kind_name(kind), ctl_hex(key, h),
                kc_strerror(rc));
        goto out;
    }
    m = calloc(limit, sizeof(*m));
    if (!m) {
        ctl_err("why: out of memory");
        goto out;
    }
    rc = kind == KC_REC_BUILD ? kc_why_nearest_builds(st, target.b, key, m, limit, &n)
                              : kc_why_nearest_tunings(st, target.t, key, m, limit, &n);
    if (rc != KC_OK) {
        ctl_err("why: reading the store: %s: %s", kc_strerror(rc), kc_store_errmsg(st));
        goto out;
    }
    json_t *doc = o->json ? item_json(&target) : NULL,
           *near = o->json ? json_array() : NULL;
    if (!doc)
        printf("%s %s: %s, %s, %s\n", kc_rec_kind_name(kind), ctl_hex(key, h),
               item_entry(&target), item_arch(&target),
               target.t ? item_describe(&target, KC_WHY_SHAPE_SIG, x, sizeof x)
                        : item_describe(&target, KC_WHY_PARAMS, x, sizeof x));
    size_t shown = 0;
    for (size_t i = 0; i < n; i++) {
        item_t other = {.key = m[i].key};
        if (kc_store_get_raw(st, kind, &m[i].key, &data, &len) != KC_OK)
            continue;
        rc = item_decode(&other, kind, data, len);
        kc_free(data);
        if (rc == KC_OK && (!arch || strcmp(arch, item_arch(&other)) == 0)) {
            shown++;
            if (near) {
                json_t *j = json_object();
                json_object_set_new(j, "key", ctl_json_key(&m[i].key));
                json_object_set_new(j, "differs_in", fields_json(m[i].fields));
                json_object_set_new(j, "values",
                                    values_json(&target, &other, m[i].fields));
                json_array_append_new(near, j);
            } else {
                ctl_hex(&m[i].key, h);
                printf("  nearest %s %.8s differs in: ", kc_rec_kind_name(kind), h);
                for (int f = 0, first = 1; f < KC_WHY_FIELD_COUNT; f++) {
                    unsigned bit = 1u << f;
                    if (!(m[i].fields & bit))
                        continue;
                    printf("%s%s (%s vs %s)", first ? "" : ", ", kc_why_field_name(bit),
                           item_describe(&target, bit, x, sizeof x),
                           item_describe(&other, bit, y, sizeof y));
                    first = 0;
                }
                printf("\n");
            }
        }
        kc_free(other.rec);
        kc_free(other.b);
        kc_free(other.t);
    }
    if (doc) {
        json_object_set_new(doc, "nearest", near);
        status = ctl_json_print(doc);
        goto out;
    }
    if (shown == 0)
        printf("  no other stored %s to compare with\n", kc_rec_kind_name(kind));
    status = CTL_EXIT_OK;
out:
    free(m);
    kc_free(target.rec);
    kc_free(target.b);
    kc_free(target.t);
    return status;
}

static int run(kc_ctx_t *ctx, int argc, char **argv)
{
    ctl_opts_t *o = &ctx->opts;
    const kc_cmd_t *self = ctx->cmd;
    const char *arch = NULL, *arg;
    long limit = 5;
    kc_store_t *st;
    kc_key_prefix_t p;
    kc_rec_kind_t kind;
    kc_key_t key;
    int ch, rc;

    while ((ch = getopt_long(argc, argv, CTL_COMMON_SHORTOPTS, longopts, NULL)) != -1) {
        if (ch == 'a') {
            if (!(arch = ctl_arch_arg(self->name, optarg, &rc)))
                return rc;
        } else if (ch == 'l') {
            char *end;
            limit = strtol(optarg, &end, 10);
            if (*end || limit < 1 || limit > 1000)
                return ctl_usage_err(self->name, "--limit wants 1 to 1000, not '%s'",
                                     optarg);
        } else if ((rc = ctl_common_opt(o, self, ch, argv)) >= 0) {
            return rc;
        }
    }
    if (optind >= argc)
        return ctl_usage_err(self->name, "missing NAME or KEY");
    if (argc - optind > 1)
        return ctl_usage_err(self->name, "unexpected argument '%s'", argv[optind + 1]);
    arg = argv[optind];
    if (!(st = ctl_store_open(o, 0)))
        return CTL_EXIT_FAIL;
    /* Text that reads as a key is tried as one first; entry names made only
     * of 8 or more hex digits are then still found by name. */
    if (kc_key_prefix_parse(arg, &p) == KC_OK) {
        rc = find_key(st, &p, &kind, &key);
        if (rc == KC_OK) {
            rc = why_key(o, st, kind, &key, arch, (size_t)limit);
        } else if (rc == KC_ENOTFOUND) {
            rc = why_name(o, st, arg, arch, arg);
        } else if (rc == KC_EAMBIGUOUS) {
            ctl_err("why: key %s matches more than one record; give more digits", arg);
            rc = CTL_EXIT_FAIL;
        } else {
            ctl_err("why: cannot look up %s: %s: %s", arg, kc_strerror(rc),
                    kc_store_errmsg(st));
            rc = CTL_EXIT_FAIL;
        }
    } else {
        rc = why_name(o, st, arg, arch, NULL);
    }
    kc_store_close(st);
    return rc;
}

const kc_cmd_t kc_cmd_why = {
    .name = "why",
    .summary = "explain a miss: the nearest stored records and what differs",
    .usage = "why NAME|KEY [--arch A] [--limit N]",
    .help = help,
    .run = run,
};
