/* cachectl verify: check every record; --repair deletes the bad ones. */
#include "cachectl.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "kcache/blob.h"

static const char help[] =
    "  --repair   delete every record that fails a check (exit 0 once all are gone)\n\n"
    "Checks: header and checksum, the key derived from a build's or tuning's\n"
    "preimage, a blob's decompressed bytes against its key, and that every\n"
    "build's blob is present and sound; and that the record totals the store\n"
    "keeps for 'cachectl stats' equal a scan (--repair rewrites them). On a\n"
    "terminal, progress goes to stderr.\n";

static const struct option longopts[] = {
    CTL_COMMON_LONGOPTS,
    {"repair", no_argument, NULL, 'r'},
    {0},
};

typedef struct problem {
    kc_rec_kind_t kind;
    kc_key_t key;
    char reason[160];
    int removed;
} problem_t;

/* The keys of one kind's problems, sorted, for is_bad: rebuilt when that
 * kind has had problems added since (n is then short of n_bad_of).
 * Records are checked a kind at a time and look up another kind's (a build
 * its blob, a tuning its build), so each is sorted about once, however
 * many problems a damaged store has. */
typedef struct bad_index {
    kc_key_t *keys;
    size_t n, cap;
} bad_index_t;

typedef struct verify_ctx {
    target_t *recs;
    size_t n, cap;
    problem_t *bad;
    size_t n_bad, cap_bad;
    size_t n_bad_of[KC_REC_KIND_MAX + 1];
    bad_index_t index[KC_REC_KIND_MAX + 1];
    int oom;
} verify_ctx_t;

static int collect(void *user, kc_rec_kind_t kind, const kc_key_t *key, const void *data,
                   size_t len)
{
    verify_ctx_t *v = user;

    (void)data;
    (void)len;
    if (v->n == v->cap) {
        size_t cap = v->cap ? 2 * v->cap : 256;
        target_t *r = realloc(v->recs, cap * sizeof *r);
        if (!r) {
            v->oom = 1;
            return 1;
        }
        v->recs = r;
        v->cap = cap;
    }
    v->recs[v->n].kind = kind;
    v->recs[v->n].key = *key;
    v->n++;
    return 0;
}

static void add_problem(verify_ctx_t *v, kc_rec_kind_t kind, const kc_key_t *key,
                        const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void add_problem(verify_ctx_t *v, kc_rec_kind_t kind, const kc_key_t *key,
                        const char *fmt, ...)
{
    va_list ap;

    if (v->n_bad == v->cap_bad) {
        size_t cap = v->cap_bad ? 2 * v->cap_bad : 16;
        problem_t *p = realloc(v->bad, cap * sizeof *p);
        if (!p) {
            v->oom = 1;
            return;
        }
        v->bad = p;
        v->cap_bad = cap;
    }
    problem_t *p = &v->bad[v->n_bad++];
    if ((unsigned)kind <= KC_REC_KIND_MAX)
        v->n_bad_of[kind]++;
    p->kind = kind;
    p->key = *key;
    p->removed = 0;
    va_start(ap, fmt);
    vsnprintf(p->reason, sizeof p->reason, fmt, ap);
    va_end(ap);
}

static int key_order(const void *a, const void *b)
{
    return kc_key_cmp(a, b);
}

/* Whether a record of this kind and key was already found bad (records are
 * checked blobs first, then builds, then tunings). */
static int is_bad(verify_ctx_t *v, kc_rec_kind_t kind, const kc_key_t *key)
{
    if ((unsigned)kind > KC_REC_KIND_MAX || v->n_bad_of[kind] == 0)
        return 0;
    bad_index_t *ix = &v->index[kind];
    if (ix->n != v->n_bad_of[kind]) {
        if (ix->cap < v->n_bad_of[kind]) {
            kc_key_t *k = realloc(ix->keys, v->n_bad_of[kind] * sizeof(*k));
            if (!k) {
                v->oom = 1; /* verify reports it and fails */
                return 0;
            }
            ix->keys = k;
            ix->cap = v->n_bad_of[kind];
        }
        ix->n = 0;
        for (size_t i = 0; i < v->n_bad; i++)
            if (v->bad[i].kind == kind)
                ix->keys[ix->n++] = v->bad[i].key;
        qsort(ix->keys, ix->n, sizeof(*ix->keys), key_order);
    }
    return bsearch(key, ix->keys, ix->n, sizeof(*ix->keys), key_order) != NULL;
}

/* A record a build or tuning depends on must be there and sound. */
static void check_reference(kc_store_t *st, verify_ctx_t *v, kc_rec_kind_t kind,
                            const kc_key_t *key, kc_rec_kind_t ref_kind,
                            const kc_key_t *ref, const char *what)
{
    char h[KC_KEY_HEX_LEN + 1];
    void *d = NULL;
    size_t l = 0;
    int rc;

    if (is_bad(v, ref_kind, ref))
        add_problem(v, kind, key, "%s %s is damaged", what, ctl_hex(ref, h));
    else if ((rc = kc_store_get_raw(st, ref_kind, ref, &d, &l)) != KC_OK)
        add_problem(v, kind, key, "%s %s is %s", what, ctl_hex(ref, h),
                    rc == KC_ENOTFOUND ? "missing" : kc_strerror(rc));
    kc_free(d);
}

/* The checks a blob's bytes must pass: they decompress, within the size
 * bound, to bytes that hash to the key. */
static int check_blob(kc_store_t *st, const kc_key_t *key, const void *data, size_t len)
{
    void *raw = NULL;
    size_t raw_len = 0;
    int rc = kc_blob_decode(data, len, key, 0, NULL, 0, &raw, &raw_len);

    /* A blob compressed with a dictionary needs the store's dictionary,
     * which only the store's own read path has. */
    if (rc == KC_EUNSUPPORTED)
        rc = kc_store_get_cubin(st, key, &raw, &raw_len);
    kc_free(raw);
    return rc;
}

static void check_one(kc_store_t *st, verify_ctx_t *v, kc_rec_kind_t kind,
                      const kc_key_t *key)
{
    void *data = NULL;
    size_t len = 0;
    kc_record_t *rec = NULL;
    kc_key_t derived;
    int rc = kc_store_get_raw(st, kind, key, &data, &len);

    if (rc == KC_ENOTFOUND)
        return; /* deleted since it was listed */
    if (rc != KC_OK) {
        add_problem(v, kind, key, "cannot read: %s", kc_strerror(rc));
        return;
    }
    rc = kc_record_decode(data, len, &rec);
    if (rc != KC_OK) {
        add_problem(v, kind, key, "damaged record: %s", kc_strerror(rc));
        goto out;
    }
    if ((int)rec->kind != (int)kind) {
        add_problem(v, kind, key, "holds a %s record", kc_rec_kind_name(rec->kind));
        goto out;
    }
    switch (kind) {
    case KC_REC_BLOB:
        rc = check_blob(st, key, data, len);
        if (rc != KC_OK)
            add_problem(v, kind, key, "cubin does not decode to its key: %s",
                        rc == KC_ENOTFOUND ? "corrupt data" : kc_strerror(rc));
        break;
    case KC_REC_BUILD:
    case KC_REC_TUNING:
        rc = kc_record_derived_key(rec, &derived);
        if (rc != KC_OK || kc_key_cmp(&derived, key) != 0) {
            add_problem(v, kind, key, "key does not match the record's preimage");
            break;
        }
        if (kind == KC_REC_BUILD)
            check_reference(st, v, kind, key, KC_REC_BLOB, &rec->u.build.blob,
                            "its blob");
        else
            check_reference(st, v, kind, key, KC_REC_BUILD, &rec->u.tuning.winner_build,
                            "its winning build");
        break;
    case KC_REC_GROUP:
        /* Blobs come first in the walk, so a damaged one is known here. */
        rc = kc_record_derived_key(rec, &derived);
        if (rc != KC_OK || kc_key_cmp(&derived, key) != 0) {
            add_problem(v, kind, key, "key does not match the group's name");
            break;
        }
        for (size_t i = 0; i < rec->u.group.n_files; i++) {
            char what[300];
            snprintf(what, sizeof what, "the blob of file %s",
                     rec->u.group.files[i].name);
            check_reference(st, v, kind, key, KC_REC_BLOB, &rec->u.group.files[i].blob,
                            what);
        }
        break;
    default:
        break;
    }
out:
    kc_free(rec);
    kc_free(data);
}

/* Whether the totals kc_store_stats reads equal a scan; *why says how they
 * differ. Compared twice, so that a writer between the two reads is not
 * taken for a mismatch. With repair (a writable handle), the scan rewrites
 * them. -1 on a store error. */
static int totals_differ(kc_store_t *st, int repair, char *why, size_t cap)
{
    kc_store_stats_t kept, scan;
    int differ = 0;

    for (int attempt = 0; attempt < 2; attempt++) {
        if (kc_store_stats(st, &kept) != KC_OK)
            return -1;
        if (kept.totals_scanned)
            return 0; /* none kept: stats scans anyway */
        if (kc_store_stats_scan(st, &scan) != KC_OK)
            return -1;
        differ = kept.blob_raw_bytes != scan.blob_raw_bytes ||
                 kept.blob_stored_bytes != scan.blob_stored_bytes ||
                 kept.record_bytes != scan.record_bytes;
        if (!differ)
            return 0;
        snprintf(why, cap,
                 "kept record totals differ from a scan: blobs %llu/%llu raw bytes, "
                 "%llu/%llu stored, records %llu/%llu bytes (kept/scanned)%s",
                 (unsigned long long)kept.blob_raw_bytes,
                 (unsigned long long)scan.blob_raw_bytes,
                 (unsigned long long)kept.blob_stored_bytes,
                 (unsigned long long)scan.blob_stored_bytes,
                 (unsigned long long)kept.record_bytes,
                 (unsigned long long)scan.record_bytes, repair ? "; rewritten" : "");
        if (repair)
            return 1; /* the scan rewrote them */
    }
    return differ;
}

static int run(kc_ctx_t *ctx, int argc, char **argv)
{
    ctl_progress_t prog;
    char totals_why[400];
    int totals_bad = 0;
    ctl_opts_t *o = &ctx->opts;
    const kc_cmd_t *self = ctx->cmd;
    verify_ctx_t v = {0};
    kc_store_t *st;
    size_t n_removed = 0;
    int repair = 0, c, rc;

    while ((c = getopt_long(argc, argv, CTL_COMMON_SHORTOPTS, longopts, NULL)) != -1) {
        if (c == 'r')
            repair = 1;
        else if ((rc = ctl_common_opt(o, self, c, argv)) >= 0)
            return rc;
    }
    if (optind < argc)
        return ctl_usage_err(self->name, "unexpected argument '%s'", argv[optind]);
    /* Without --repair the store is opened read-only, so that reading a bad
     * record does not delete it before it is reported. */
    if (!(st = ctl_store_open(o, repair)))
        return CTL_EXIT_FAIL;
    /* List first, check after: the checks read other records, and each read
     * is its own transaction. */
    rc = kc_store_iterate(st, 0, collect, &v);
    if (v.oom) {
        ctl_err("verify: out of memory");
        rc = CTL_EXIT_FAIL;
        goto out;
    }
    if (rc != KC_OK && rc != KC_ENOTFOUND) {
        ctl_err(
            "verify: cannot walk the store (its LMDB structure may be damaged): %s: %s",
            kc_strerror(rc), kc_store_errmsg(st));
        rc = CTL_EXIT_FAIL;
        goto out;
    }
    ctl_progress_begin(&prog, "verify");
    for (size_t i = 0; i < v.n; i++) {
        check_one(st, &v, v.recs[i].kind, &v.recs[i].key);
        ctl_progress_tick(&prog, i + 1, v.n);
    }
    ctl_progress_end(&prog);
    totals_bad = totals_differ(st, repair, totals_why, sizeof totals_why);
    if (totals_bad < 0) {
        ctl_err("verify: cannot read the store's totals: %s", kc_store_errmsg(st));
        rc = CTL_EXIT_FAIL;
        goto out;
    }
    if (v.oom) {
        ctl_err("verify: out of memory");
        rc = CTL_EXIT_FAIL;
        goto out;
    }
    for (size_t i = 0; repair && i < v.n_bad; i++) {
        problem_t *p = &v.bad[i];
        char h[KC_KEY_HEX_LEN + 1];
        int d = ctl_delete_record(st, p->kind, &p->key);
        if (d == KC_OK) {
            p->removed = 1;
            n_removed++;
        } else {
            ctl_err("verify: cannot remove %s %s: %s: %s", kc_rec_kind_name(p->kind),
                    ctl_hex(&p->key, h), kc_strerror(d), kc_store_errmsg(st));
        }
    }
    rc = n_removed == v.n_bad && (!totals_bad || repair) ? CTL_EXIT_OK : CTL_EXIT_FAIL;
    if (o->json) {
        json_t *doc = json_object(), *list = json_array();
        json_object_set_new(doc, "store", json_string(kc_store_path(st)));
        json_object_set_new(doc, "checked", ctl_json_u64(v.n));
        for (size_t i = 0; i < v.n_bad; i++) {
            json_t *e = json_object();
            json_object_set_new(e, "kind", json_string(kc_rec_kind_name(v.bad[i].kind)));
            json_object_set_new(e, "key", ctl_json_key(&v.bad[i].key));
            json_object_set_new(e, "reason", json_string(v.bad[i].reason));
            json_object_set_new(e, "removed", json_boolean(v.bad[i].removed));
            json_array_append_new(list, e);
        }
        json_object_set_new(doc, "problems", list);
        json_object_set_new(doc, "totals_ok", json_boolean(!totals_bad));
        if (totals_bad)
            json_object_set_new(doc, "totals_problem", json_string(totals_why));
        json_object_set_new(doc, "removed", ctl_json_u64(n_removed));
        json_object_set_new(doc, "ok", json_boolean(rc == CTL_EXIT_OK));
        if (ctl_json_print(doc) != CTL_EXIT_OK)
            rc = CTL_EXIT_FAIL;
    } else {
        if (v.n_bad) {
            static const char *const hdr[] = {"KIND", "KEY", "PROBLEM", "ACTION"};
            ctl_table_t *t = ctl_table_new(4, hdr);
            for (size_t i = 0; i < v.n_bad; i++) {
                char h[KC_KEY_HEX_LEN + 1];
                const char *row[] = {kc_rec_kind_name(v.bad[i].kind),
                                     ctl_hex(&v.bad[i].key, h), v.bad[i].reason,
                                     v.bad[i].removed ? "removed"
                                     : repair         ? "FAILED"
                                                      : "-"};
                ctl_table_row(t, row);
            }
            ctl_table_print(t);
            ctl_table_free(t);
        }
        printf("checked %zu record%s: %zu problem%s", v.n, v.n == 1 ? "" : "s", v.n_bad,
               v.n_bad == 1 ? "" : "s");
        if (repair)
            printf(", %zu removed", n_removed);
        printf("\n");
    }
    if (totals_bad)
        ctl_err("verify: %s", totals_why);
    if (totals_bad && !repair)
        ctl_err("verify: 'cachectl verify --repair' rewrites the totals");
    if (v.n_bad && !repair)
        ctl_err("verify: %zu bad record%s; 'cachectl verify --repair' deletes %s",
                v.n_bad, v.n_bad == 1 ? "" : "s", v.n_bad == 1 ? "it" : "them");
out:
    free(v.recs);
    for (size_t k = 0; k <= KC_REC_KIND_MAX; k++)
        free(v.index[k].keys);
    free(v.bad);
    kc_store_close(st);
    return rc;
}

const kc_cmd_t kc_cmd_verify = {
    .name = "verify",
    .summary = "check every record; --repair deletes the bad ones",
    .usage = "verify [--repair]",
    .help = help,
    .run = run,
};
