/* cachectl rm: delete records, never leaving one that names a deleted one.
 *
 * A blob is used by the builds that name it and the groups that list it, a
 * build by the tunings that name it as winner or candidate (and its binmeta
 * goes with it, in the store). rm refuses a record that is still used,
 * unless --cascade, which removes the users too, transitively. Everything
 * goes in one write transaction (kc_store_del_many). With KCACHE_PATH, a
 * record that is only in another layer than the writable one is refused. */
#include "cachectl.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const struct option longopts[] = {
    {"cascade", no_argument, NULL, 'c'}, CTL_COMMON_LONGOPTS, {0}};

#define NO_PARENT SIZE_MAX

/* The records to remove: the operands first (parent NO_PARENT), then the
 * records that use them, each with the index of the record it uses. Every
 * record of the store is looked up in the set once (find_users), so the set
 * is found by hash: slots holds index + 1 of each member, 0 when empty,
 * with at least twice as many slots as members. */
typedef struct rm_set {
    target_t *t;
    size_t *parent;
    size_t n, cap, n_operands;
    size_t *slots, n_slots; /* n_slots: a power of two */
    int oom;
} rm_set_t;

static size_t slot_of(const rm_set_t *s, kc_rec_kind_t kind, const kc_key_t *key)
{
    uint64_t h;
    memcpy(&h, key->b, sizeof(h)); /* a key is a hash already */
    return (size_t)(h ^ ((uint64_t)kind * 0x9e3779b97f4a7c15ull)) & (s->n_slots - 1);
}

static size_t set_find(const rm_set_t *s, kc_rec_kind_t kind, const kc_key_t *key)
{
    if (!s->n_slots)
        return NO_PARENT;
    for (size_t i = slot_of(s, kind, key);; i = (i + 1) & (s->n_slots - 1)) {
        size_t m = s->slots[i];
        if (m == 0)
            return NO_PARENT;
        if (s->t[m - 1].kind == kind && kc_key_cmp(&s->t[m - 1].key, key) == 0)
            return m - 1;
    }
}

/* Index member m (already in t[]) by its kind and key. */
static void slot_put(rm_set_t *s, size_t m)
{
    size_t i = slot_of(s, s->t[m].kind, &s->t[m].key);
    while (s->slots[i])
        i = (i + 1) & (s->n_slots - 1);
    s->slots[i] = m + 1;
}

/* Room in the index for one more member: at most half the slots used. */
static int slots_reserve(rm_set_t *s)
{
    if (2 * (s->n + 1) <= s->n_slots)
        return 1;
    size_t n_slots = s->n_slots ? 2 * s->n_slots : 64;
    size_t *slots = calloc(n_slots, sizeof(*slots));
    if (!slots)
        return 0;
    free(s->slots);
    s->slots = slots;
    s->n_slots = n_slots;
    for (size_t m = 0; m < s->n; m++)
        slot_put(s, m);
    return 1;
}

static void set_add(rm_set_t *s, kc_rec_kind_t kind, const kc_key_t *key, size_t parent)
{
    if (set_find(s, kind, key) != NO_PARENT)
        return;
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 16;
        target_t *t = realloc(s->t, cap * sizeof *t);
        if (t)
            s->t = t;
        size_t *p = realloc(s->parent, cap * sizeof *p);
        if (p)
            s->parent = p;
        if (!t || !p) {
            s->oom = 1;
            return;
        }
        s->cap = cap;
    }
    if (!slots_reserve(s)) {
        s->oom = 1;
        return;
    }
    s->t[s->n] = (target_t){kind, *key};
    s->parent[s->n] = parent;
    slot_put(s, s->n++);
}

/* Add the record (kind, key) if the record (used_kind, used) is in the set. */
static void add_if_uses(rm_set_t *s, kc_rec_kind_t kind, const kc_key_t *key,
                        kc_rec_kind_t used_kind, const kc_key_t *used)
{
    size_t i = set_find(s, used_kind, used);
    if (i != NO_PARENT)
        set_add(s, kind, key, i);
}

static int find_users(void *user, kc_rec_kind_t kind, const kc_key_t *key,
                      const void *data, size_t len)
{
    rm_set_t *s = user;
    kc_record_t *rec = NULL;

    /* A record that does not decode names nothing we can see; verify
     * reports it. */
    if (kc_record_decode(data, len, &rec) != KC_OK)
        return 0;
    if (kind == KC_REC_BUILD) {
        add_if_uses(s, kind, key, KC_REC_BLOB, &rec->u.build.blob);
    } else if (kind == KC_REC_TUNING) {
        const kc_tuning_rec_t *t = &rec->u.tuning;
        add_if_uses(s, kind, key, KC_REC_BUILD, &t->winner_build);
        for (size_t i = 0; i < t->n_candidates; i++)
            add_if_uses(s, kind, key, KC_REC_BUILD, &t->candidates[i].build);
    } else if (kind == KC_REC_GROUP) {
        const kc_group_rec_t *g = &rec->u.group;
        for (size_t i = 0; i < g->n_files; i++)
            add_if_uses(s, kind, key, KC_REC_BLOB, &g->files[i].blob);
    }
    kc_free(rec);
    return s->oom;
}

/* Add every record that uses one in the set. Builds use only blobs and
 * tunings only builds, so builds, then tunings, then groups is the whole
 * closure in one pass. A removed build's binmeta is listed after it. */
static int add_users(kc_store_t *st, rm_set_t *s)
{
    static const kc_rec_kind_t order[] = {KC_REC_BUILD, KC_REC_TUNING, KC_REC_GROUP};
    int rc;

    for (size_t k = 0; k < sizeof order / sizeof order[0]; k++) {
        rc = kc_store_iterate(st, order[k], find_users, s);
        if (s->oom)
            return KC_ENOMEM;
        if (rc != KC_OK && rc != KC_ENOTFOUND)
            return rc;
    }
    for (size_t i = 0, n = s->n; i < n; i++) {
        void *data = NULL;
        size_t len;
        if (s->t[i].kind == KC_REC_BUILD &&
            kc_store_get_raw(st, KC_REC_BINMETA, &s->t[i].key, &data, &len) == KC_OK)
            set_add(s, KC_REC_BINMETA, &s->t[i].key, i);
        kc_free(data);
    }
    return s->oom ? KC_ENOMEM : KC_OK;
}

/* A binmeta is part of its build, not a user that makes rm refuse. */
static int is_user(const rm_set_t *s, size_t i)
{
    return i >= s->n_operands && s->t[i].kind != KC_REC_BINMETA;
}

static json_t *entry_json(const target_t *t)
{
    json_t *e = json_object();
    json_object_set_new(e, "kind", json_string(kc_rec_kind_name(t->kind)));
    json_object_set_new(e, "key", ctl_json_key(&t->key));
    return e;
}

/* Refuse: name, for each operand in use, its first user and how many more. */
static int refuse(const rm_set_t *s, int json)
{
    char h[KC_KEY_HEX_LEN + 1], u[KC_KEY_HEX_LEN + 1], first[512] = "";
    json_t *users = json ? json_array() : NULL;
    size_t total = 0;
    /* Each operand's direct users, counted in one pass (thousands of
     * operands, each with users, would otherwise be a scan each). */
    size_t *count = calloc(s->n_operands + 1, sizeof(*count));
    size_t *first_user = calloc(s->n_operands + 1, sizeof(*first_user));

    if (!count || !first_user) {
        free(count);
        free(first_user);
        json_decref(users);
        ctl_err_code(KC_ENOMEM, "rm: out of memory");
        return CTL_EXIT_FAIL;
    }
    for (size_t j = s->n_operands; j < s->n; j++)
        if (is_user(s, j) && s->parent[j] < s->n_operands && count[s->parent[j]]++ == 0)
            first_user[s->parent[j]] = j;
    for (size_t i = 0; i < s->n_operands; i++) {
        size_t n = count[i], f = first_user[i];
        if (n == 0)
            continue;
        char line[512];
        if (n > 1)
            snprintf(line, sizeof line, "%s %s is used by %s %s (and %zu more)",
                     kc_rec_kind_name(s->t[i].kind), ctl_hex(&s->t[i].key, h),
                     kc_rec_kind_name(s->t[f].kind), ctl_hex(&s->t[f].key, u), n - 1);
        else
            snprintf(line, sizeof line, "%s %s is used by %s %s",
                     kc_rec_kind_name(s->t[i].kind), ctl_hex(&s->t[i].key, h),
                     kc_rec_kind_name(s->t[f].kind), ctl_hex(&s->t[f].key, u));
        if (!first[0])
            snprintf(first, sizeof first, "%s", line);
        ctl_err_code(KC_EBUSY, "rm: %s", line);
    }
    free(count);
    free(first_user);
    for (size_t j = s->n_operands; j < s->n; j++) {
        if (!is_user(s, j))
            continue;
        total++;
        if (users) {
            json_t *e = entry_json(&s->t[j]);
            json_object_set_new(e, "uses", entry_json(&s->t[s->parent[j]]));
            json_array_append_new(users, e);
        }
    }
    ctl_err("rm: nothing removed; %zu record%s would be left naming what rm removes; use "
            "--cascade to remove them too",
            total, total == 1 ? "" : "s");
    if (users) {
        char msg[700];
        json_t *detail = json_object();
        snprintf(msg, sizeof msg,
                 "rm: %s; nothing removed; use --cascade to remove them too", first);
        json_object_set_new(detail, "dependants", users);
        ctl_json_error(KC_EBUSY, msg, detail);
    }
    return CTL_EXIT_FAIL;
}

/* With KCACHE_PATH (and no -s): every operand must be in the first writable
 * layer, which is then the store to delete from (*dir, a copy to free). */
static int check_layers(ctl_opts_t *o, const char *cmd, char **argv, int argc, char **dir)
{
    kc_layers_t *l = ctl_layers_open(o);
    kc_store_t *w = NULL;
    int rc = CTL_EXIT_OK;

    *dir = NULL;
    if (!l)
        return CTL_EXIT_FAIL;
    for (size_t i = 0; !w && i < kc_layers_count(l); i++)
        if (!kc_layers_readonly_why(l, i))
            w = kc_layers_store(l, i);
    if (!w) {
        ctl_err_code(KC_EREADONLY,
                     "%s: no layer of KCACHE_PATH is writable; nothing removed", cmd);
        kc_layers_close(l);
        return CTL_EXIT_FAIL;
    }
    for (int i = 0; i < argc; i++) {
        kc_store_t *in = NULL;
        kc_rec_kind_t kind;
        kc_key_t key;
        char h[KC_KEY_HEX_LEN + 1];
        int r = ctl_key_resolve_layers(l, cmd, argv[i], 0, &kind, &key, &in);
        if (r != CTL_EXIT_OK) {
            rc = r;
            continue;
        }
        if (in == w)
            continue;
        size_t li = 0;
        while (li < kc_layers_count(l) && kc_layers_store(l, li) != in)
            li++;
        ctl_err_code(KC_EREADONLY,
                     "%s: %s %s is in layer %zu (%s), not in the writable layer (%s)",
                     cmd, kc_rec_kind_name(kind), ctl_hex(&key, h), li, kc_store_path(in),
                     kc_store_path(w));
        rc = CTL_EXIT_FAIL;
    }
    if (rc == CTL_EXIT_OK && !(*dir = strdup(kc_store_path(w)))) {
        ctl_err("out of memory");
        rc = CTL_EXIT_FAIL;
    }
    kc_layers_close(l);
    return rc;
}

static int run(kc_ctx_t *ctx, int argc, char **argv)
{
    ctl_opts_t *o = &ctx->opts, one;
    const kc_cmd_t *self = ctx->cmd;
    kc_store_t *st = NULL;
    rm_set_t s = {0};
    kc_rec_kind_t *kinds = NULL;
    kc_key_t *keys = NULL;
    char *dir = NULL;
    const char *kpath = getenv("KCACHE_PATH");
    char h[KC_KEY_HEX_LEN + 1];
    int c, rc, cascade = 0;

    while ((c = getopt_long(argc, argv, CTL_COMMON_SHORTOPTS "c", longopts, NULL)) !=
           -1) {
        if (c == 'c') {
            cascade = 1;
            continue;
        }
        if ((rc = ctl_common_opt(o, self, c, argv)) >= 0)
            return rc;
    }
    if (optind >= argc)
        return ctl_usage_err(self->name, "missing KEY");
    for (int i = optind; i < argc; i++)
        if (!ctl_key_syntax_ok(argv[i]))
            return ctl_usage_err(self->name,
                                 "'%s' is not a key: give %d to %d hex digits", argv[i],
                                 KC_KEY_PREFIX_MIN, KC_KEY_HEX_LEN);
    one = *o;
    if (!o->store_dir && kpath && *kpath) {
        rc = check_layers(o, self->name, argv + optind, argc - optind, &dir);
        if (rc != CTL_EXIT_OK) {
            ctl_err("rm: nothing removed");
            return rc;
        }
        one.store_dir = dir;
    }
    if (!(st = ctl_store_open(&one, 1))) {
        rc = CTL_EXIT_FAIL;
        goto out;
    }
    /* Resolve every key before deleting anything, so that a typo in the
     * third key does not leave the first two deleted. */
    rc = CTL_EXIT_OK;
    for (int i = optind; i < argc; i++) {
        kc_rec_kind_t kind;
        kc_key_t key;
        int r = ctl_key_resolve(st, self->name, argv[i], 0, &kind, &key);
        if (r != CTL_EXIT_OK)
            rc = r;
        else
            set_add(&s, kind, &key, NO_PARENT);
    }
    s.n_operands = s.n;
    if (rc == CTL_EXIT_OK && (s.oom || (rc = add_users(st, &s)) != KC_OK)) {
        ctl_err_code(s.oom ? KC_ENOMEM : rc, "rm: cannot find what uses the records: %s",
                     kc_strerror(s.oom ? KC_ENOMEM : rc));
        rc = CTL_EXIT_FAIL;
    }
    if (rc != CTL_EXIT_OK) {
        ctl_err("rm: nothing removed");
        goto out;
    }
    for (size_t i = s.n_operands; i < s.n && !cascade; i++)
        if (is_user(&s, i)) {
            rc = refuse(&s, o->json);
            goto out;
        }
    kinds = malloc(s.n * sizeof *kinds);
    keys = malloc(s.n * sizeof *keys);
    if (!kinds || !keys) {
        ctl_err_code(KC_ENOMEM, "rm: out of memory; nothing removed");
        rc = CTL_EXIT_FAIL;
        goto out;
    }
    for (size_t i = 0; i < s.n; i++) {
        kinds[i] = s.t[i].kind;
        keys[i] = s.t[i].key;
    }
    int r = kc_store_del_many(st, kinds, keys, s.n, NULL);
    if (r != KC_OK) {
        ctl_err_code(r, "rm: cannot remove the records: %s: %s; nothing removed",
                     kc_strerror(r), kc_store_errmsg(st));
        rc = CTL_EXIT_FAIL;
        goto out;
    }
    if (o->json) {
        json_t *list = json_array(), *doc = json_object();
        for (size_t i = 0; i < s.n; i++)
            json_array_append_new(list, entry_json(&s.t[i]));
        json_object_set_new(doc, "removed", list);
        rc = ctl_json_print(doc);
    } else {
        for (size_t i = 0; i < s.n; i++)
            printf("removed %s %s\n", kc_rec_kind_name(s.t[i].kind),
                   ctl_hex(&s.t[i].key, h));
    }
out:
    free(kinds);
    free(keys);
    free(s.t);
    free(s.parent);
    free(s.slots);
    free(dir);
    kc_store_close(st);
    return rc;
}

const kc_cmd_t kc_cmd_rm = {
    .name = "rm",
    .summary = "delete records (refuses records still in use)",
    .usage = "rm [--cascade] KEY...",
    .help = "  -c, --cascade  also remove the records that use KEY, transitively: a\n"
            "                 blob's builds and groups, a build's tunings and binmeta\n"
            "Without --cascade, a KEY that another record still uses is refused and\n"
            "nothing is removed. Everything goes in one transaction. With KCACHE_PATH,\n"
            "KEY must be in the first writable layer.\n",
    .run = run,
};
