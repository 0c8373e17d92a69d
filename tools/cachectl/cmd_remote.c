/* cachectl remote stats|ls|push|pull: the remote tier (KCACHE_REMOTE or
 * --url) seen from a store: what it holds, and moving records between it
 * and the local store. Pulls check every record as the launcher's do
 * (kc_remote_pull*: checksums, keys from preimages, blobs against their
 * hashes, groups against their names) before one transaction publishes
 * them; whatever fails a check is refused and counted. */
#include <fnmatch.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cachectl.h"
#include "kcache/remote.h"

static const char help[] =
    "  stats         the servers (version, memory) and the records per kind\n"
    "  ls            the records: kind, key, arch, name, bytes\n"
    "  push          copy the local store's tunings (with their builds), builds\n"
    "                and groups to the remote\n"
    "  pull          copy the remote's records into the local store (created if\n"
    "                missing), each checked first; a record that fails is refused\n"
    "  --url URLS    the remote (default: KCACHE_REMOTE); KCACHE_REMOTE_PREFIX\n"
    "                and KCACHE_REMOTE_TTL apply; with KCACHE_REMOTE_SIGN_KEY push\n"
    "                signs every value, with KCACHE_TRUST pull refuses what is not\n"
    "                signed by a trusted key, whatever the filters (what it holds\n"
    "                is not looked at; ls marks it UNTRUSTED)\n"
    "  --kind KIND   tuning, build, group or blob (ls only), or all (default:\n"
    "                tuning, build and group)\n"
    "  --arch ARCH   only tunings and builds for this target, e.g. sm_90\n"
    "  --name GLOB   only records whose kernel entry (a group: its name) matches\n";

static const struct option longopts[] = {
    CTL_COMMON_LONGOPTS,
    {"url", required_argument, NULL, 'u'},
    {"kind", required_argument, NULL, 'k'},
    {"arch", required_argument, NULL, 'a'},
    {"name", required_argument, NULL, 'n'},
    {0},
};

typedef struct rctx {
    kc_remote_t *r;
    kc_store_t *st;
    int kind; /* 0: tuning, build and group */
    const char *arch, *name;
    int json;
    json_t *list;
    uint64_t count[KC_REC_KIND_MAX + 1], bytes[KC_REC_KIND_MAX + 1];
    uint64_t done, refused, failed, missing;
} rctx_t;

static int wanted_kind(const rctx_t *c, int kind)
{
    if (c->kind)
        return c->kind == kind;
    return kind == KC_REC_TUNING || kind == KC_REC_BUILD || kind == KC_REC_GROUP;
}

/* A record's arch and name, decoded from its bytes (NULLs when it has
 * none); *rec keeps them alive (free with kc_free, with *bd and *td). */
static int describe(int kind, const void *data, size_t len, kc_record_t **rec,
                    kc_build_desc_t **bd, kc_tuning_desc_t **td, const char **arch,
                    const char **name)
{
    int rc = kc_record_decode(data, len, rec);

    *arch = *name = NULL;
    if (rc != KC_OK)
        return rc;
    if ((int)(*rec)->kind != kind)
        return KC_ECORRUPT;
    if (kind == KC_REC_TUNING) {
        const kc_tuning_rec_t *t = &(*rec)->u.tuning;
        *arch = t->arch;
        if (kc_tuning_preimage_decode(t->preimage.data, t->preimage.size, td) == KC_OK)
            *name = (*td)->entry;
    } else if (kind == KC_REC_BUILD) {
        const kc_build_rec_t *b = &(*rec)->u.build;
        if (kc_build_preimage_decode(b->preimage.data, b->preimage.size, bd) == KC_OK) {
            *arch = (*bd)->arch;
            *name = (*bd)->entry;
        }
    } else if (kind == KC_REC_GROUP) {
        *name = (*rec)->u.group.name;
    }
    return KC_OK;
}

static int match(const rctx_t *c, int kind, const char *arch, const char *name)
{
    if (c->arch && (kind == KC_REC_GROUP || !arch || strcmp(c->arch, arch) != 0))
        return 0;
    if (c->name && (!name || fnmatch(c->name, name, 0) != 0))
        return 0;
    return 1;
}

/* ---- stats ------------------------------------------------------------- */

static int count_one(void *user, kc_rec_kind_t kind, const kc_key_t *key)
{
    rctx_t *c = user;
    c->count[kind]++;
    c->bytes[kind] += kc_remote_value_len(c->r, kind, key);
    return 0;
}

static int do_stats(rctx_t *c)
{
    json_t *servers = c->json ? json_array() : NULL;
    int status = CTL_EXIT_OK;

    for (size_t i = 0; i < kc_remote_shards(c->r); i++) {
        kc_remote_server_t s;
        int rc = kc_remote_server_info(c->r, i, &s);
        if (rc != KC_OK)
            status = CTL_EXIT_FAIL;
        if (servers) {
            json_t *j = json_object();
            json_object_set_new(j, "server", json_string(s.name));
            json_object_set_new(j, "db", json_integer(s.db));
            json_object_set_new(j, "up", json_boolean(s.up));
            if (s.up) {
                json_object_set_new(j, "version", json_string(s.version));
                json_object_set_new(j, "used_memory", ctl_json_u64(s.used_memory));
            } else {
                json_object_set_new(j, "error", json_string(s.error));
            }
            json_array_append_new(servers, j);
        } else if (s.up) {
            char m[32];
            printf("server %s db %d: redis %s, %s used\n", s.name, s.db, s.version,
                   ctl_fmt_size(s.used_memory, m, sizeof m));
        } else {
            printf("server %s db %d: DOWN: %s\n", s.name, s.db, s.error);
        }
    }
    if (kc_remote_scan(c->r, 0, count_one, c) != KC_OK)
        status = CTL_EXIT_FAIL;
    if (servers) {
        json_t *doc = json_object(), *kinds = json_object();
        json_object_set_new(doc, "servers", servers);
        for (int k = 1; k <= KC_REC_KIND_MAX; k++) {
            if (!c->count[k])
                continue;
            json_t *j = json_object();
            json_object_set_new(j, "records", ctl_json_u64(c->count[k]));
            json_object_set_new(j, "bytes", ctl_json_u64(c->bytes[k]));
            json_object_set_new(kinds, kc_rec_kind_name(k), j);
        }
        json_object_set_new(doc, "kinds", kinds);
        if (ctl_json_print(doc) != CTL_EXIT_OK)
            return CTL_EXIT_FAIL;
        return status;
    }
    for (int k = 1; k <= KC_REC_KIND_MAX; k++) {
        char b[32];
        if (c->count[k])
            printf("%-8s %10" PRIu64 " records %12s\n", kc_rec_kind_name(k), c->count[k],
                   ctl_fmt_size(c->bytes[k], b, sizeof b));
    }
    return status;
}

/* ---- ls ---------------------------------------------------------------- */

static int ls_one(void *user, kc_rec_kind_t kind, const kc_key_t *key)
{
    rctx_t *c = user;
    void *data = NULL;
    size_t len = 0;
    kc_record_t *rec = NULL;
    kc_build_desc_t *bd = NULL;
    kc_tuning_desc_t *td = NULL;
    const char *arch = NULL, *name = NULL;
    char hex[KC_KEY_HEX_LEN + 1], b[32], signer[KC_BUNDLE_KEY_ID_LEN + 1] = "";
    int rc;

    if (!wanted_kind(c, (int)kind))
        return 0;
    rc = kc_remote_get_record(c->r, kind, key, &data, &len, signer);
    if (rc != KC_OK && rc != KC_ESIGNATURE)
        goto done; /* gone since the SCAN, or the server went away */
    if (rc == KC_OK && kind != KC_REC_BLOB)
        rc = describe((int)kind, data, len, &rec, &bd, &td, &arch, &name);
    if (rc != KC_OK && (c->arch || c->name))
        goto done;
    if (rc == KC_OK && !match(c, (int)kind, arch, name))
        goto done;
    c->done++;
    ctl_hex(key, hex);
    if (c->list) {
        json_t *j = json_object();
        json_object_set_new(j, "kind", json_string(kc_rec_kind_name(kind)));
        json_object_set_new(j, "key", json_string(hex));
        json_object_set_new(j, "arch", ctl_json_str(arch));
        json_object_set_new(j, "name", ctl_json_str(name));
        json_object_set_new(j, "bytes", ctl_json_u64(len));
        json_object_set_new(j, "signer", ctl_json_str(signer[0] ? signer : NULL));
        if (rc != KC_OK)
            json_object_set_new(j, "error", json_string(kc_strerror(rc)));
        json_array_append_new(c->list, j);
    } else {
        printf("%-7s %s  %-8s %-32s %10s  %s%s\n", kc_rec_kind_name(kind), hex,
               arch ? arch : "-", name ? name : "-", ctl_fmt_size(len, b, sizeof b),
               signer[0] ? signer : "unsigned",
               rc == KC_ESIGNATURE ? "  UNTRUSTED"
               : rc != KC_OK       ? "  DAMAGED"
                                   : "");
    }
done:
    kc_free(bd);
    kc_free(td);
    kc_free(rec);
    kc_free(data);
    return 0;
}

/* ---- pull -------------------------------------------------------------- */

static void report(rctx_t *c, const char *what, int kind, const kc_key_t *key, int rc,
                   const char *why)
{
    char hex[KC_KEY_HEX_LEN + 1];
    if (rc == KC_OK) {
        c->done++;
        return;
    }
    if (rc == KC_ENOTFOUND) {
        c->missing++;
        return;
    }
    if (rc == KC_ECORRUPT || rc == KC_ESIGNATURE)
        c->refused++;
    else
        c->failed++;
    ctl_err("remote %s: %s %s: %s (%s)", what, kc_rec_kind_name(kind), ctl_hex(key, hex),
            kc_strerror(rc),
            why ? why
            : rc == KC_EREMOTE || rc == KC_ECORRUPT || rc == KC_ESIGNATURE
                ? kc_remote_errmsg(c->r)
                : kc_store_errmsg(c->st));
}

static int pull_one(void *user, kc_rec_kind_t kind, const kc_key_t *key)
{
    rctx_t *c = user;
    void *data = NULL;
    size_t len = 0;
    kc_record_t *rec = NULL;
    kc_build_desc_t *bd = NULL;
    kc_tuning_desc_t *td = NULL;
    const char *arch = NULL, *name = NULL;
    const char *why = NULL;
    int rc;

    if (!wanted_kind(c, (int)kind) || kind == KC_REC_BLOB)
        return 0;
    /* Read once for the filters; the pull reads and checks it again. */
    rc = kc_remote_get_record(c->r, kind, key, &data, &len, NULL);
    if (rc == KC_OK)
        rc = describe((int)kind, data, len, &rec, &bd, &td, &arch, &name);
    if (rc == KC_OK && !match(c, (int)kind, arch, name))
        goto done;
    if (rc == KC_OK && kind == KC_REC_TUNING)
        rc = kc_remote_pull(c->r, c->st, key);
    else if (rc == KC_OK && kind == KC_REC_BUILD)
        rc = kc_remote_pull_build(c->r, c->st, key);
    else if (rc == KC_OK && kind == KC_REC_GROUP)
        rc = kc_remote_pull_group(c->r, c->st, name);
    else if (rc != KC_OK && rc != KC_ENOTFOUND && rc != KC_EREMOTE && rc != KC_ENOMEM &&
             rc != KC_ESIGNATURE) {
        rc = KC_ECORRUPT;
        why = "does not decode as a record of its kind";
    }
    report(c, "pull", (int)kind, key, rc, why);
done:
    kc_free(bd);
    kc_free(td);
    kc_free(rec);
    kc_free(data);
    return 0;
}

/* ---- push -------------------------------------------------------------- */

static int push_one(void *user, kc_rec_kind_t kind, const kc_key_t *key, const void *data,
                    size_t len)
{
    rctx_t *c = user;
    kc_record_t *rec = NULL;
    kc_build_desc_t *bd = NULL;
    kc_tuning_desc_t *td = NULL;
    const char *arch = NULL, *name = NULL;
    int rc = describe((int)kind, data, len, &rec, &bd, &td, &arch, &name);

    if (rc != KC_OK) {
        report(c, "push", (int)kind, key, KC_ECORRUPT,
               "the local record does not decode");
        goto done;
    }
    if (!match(c, (int)kind, arch, name))
        goto done;
    if (kind == KC_REC_TUNING)
        rc = kc_remote_push(c->r, c->st, key);
    else if (kind == KC_REC_BUILD)
        rc = kc_remote_push_build(c->r, c->st, key);
    else
        rc = kc_remote_push_group(c->r, c->st, name);
    report(c, "push", (int)kind, key, rc == KC_ENOTFOUND ? KC_ECORRUPT : rc,
           rc == KC_ENOTFOUND ? "part of its chain is missing locally" : NULL);
done:
    kc_free(bd);
    kc_free(td);
    kc_free(rec);
    return 0;
}

/* ---- the command ------------------------------------------------------- */

static int moved(rctx_t *c, const char *verb)
{
    int status = c->refused || c->failed ? CTL_EXIT_FAIL : CTL_EXIT_OK;
    if (c->json) {
        json_t *doc = json_object();
        json_object_set_new(doc, verb, ctl_json_u64(c->done));
        json_object_set_new(doc, "refused", ctl_json_u64(c->refused));
        json_object_set_new(doc, "failed", ctl_json_u64(c->failed));
        json_object_set_new(doc, "incomplete", ctl_json_u64(c->missing));
        if (ctl_json_print(doc) != CTL_EXIT_OK)
            return CTL_EXIT_FAIL;
        return status;
    }
    printf("%s %" PRIu64 " records; %" PRIu64 " refused, %" PRIu64 " failed, %" PRIu64
           " incomplete on the remote\n",
           verb, c->done, c->refused, c->failed, c->missing);
    return status;
}

static int run(kc_ctx_t *ctx, int argc, char **argv)
{
    ctl_opts_t *o = &ctx->opts;
    const kc_cmd_t *self = ctx->cmd;
    const char *url = getenv("KCACHE_REMOTE"), *sub;
    rctx_t c = {0};
    int opt, rc, status;

    opterr = 0;
    while ((opt = getopt_long(argc, argv, CTL_COMMON_SHORTOPTS "u:k:a:n:", longopts,
                              NULL)) != -1) {
        switch (opt) {
        case 'u':
            url = optarg;
            break;
        case 'k':
            if (strcmp(optarg, "all") == 0) {
                c.kind = 0;
                break;
            }
            c.kind = kc_rec_kind_from_name(optarg);
            if (c.kind != KC_REC_TUNING && c.kind != KC_REC_BUILD &&
                c.kind != KC_REC_GROUP && c.kind != KC_REC_BLOB)
                return ctl_usage_err(self->name,
                                     "--kind must be tuning, build, group, blob or all");
            break;
        case 'a':
            c.arch = optarg;
            break;
        case 'n':
            c.name = optarg;
            break;
        default:
            if ((rc = ctl_common_opt(o, self, opt, argv)) >= 0)
                return rc;
        }
    }
    if (optind >= argc)
        return ctl_usage_err(self->name, "stats, ls, push or pull expected");
    sub = argv[optind++];
    if (optind < argc)
        return ctl_usage_err(self->name, "unexpected argument '%s'", argv[optind]);
    if (!url || !*url)
        return ctl_usage_err(self->name, "no remote: pass --url or set KCACHE_REMOTE");
    if (strcmp(sub, "stats") && strcmp(sub, "ls") && strcmp(sub, "push") &&
        strcmp(sub, "pull"))
        return ctl_usage_err(self->name, "unknown subcommand '%s'", sub);
    if (c.kind == KC_REC_BLOB && strcmp(sub, "ls") != 0)
        return ctl_usage_err(self->name, "--kind blob: for ls only (blobs travel with "
                                         "their builds and groups)");
    c.json = o->json;
    rc = kc_remote_open(url, NULL, &c.r);
    if (rc != KC_OK) {
        ctl_err_code(rc, "remote: %s", kc_remote_errmsg(NULL));
        return CTL_EXIT_FAIL;
    }
    if (strcmp(sub, "stats") == 0) {
        status = do_stats(&c);
    } else if (strcmp(sub, "ls") == 0) {
        c.list = c.json ? json_array() : NULL;
        rc = kc_remote_scan(c.r, c.kind, ls_one, &c);
        if (rc != KC_OK)
            ctl_err_code(rc, "remote ls: %s", kc_remote_errmsg(c.r));
        status = rc == KC_OK ? CTL_EXIT_OK : CTL_EXIT_FAIL;
        if (c.list && ctl_json_print(c.list) != CTL_EXIT_OK)
            status = CTL_EXIT_FAIL;
    } else if (strcmp(sub, "push") == 0) {
        if (!(c.st = ctl_store_open(o, 0))) {
            kc_remote_close(c.r);
            return CTL_EXIT_FAIL;
        }
        for (int k = KC_REC_BUILD; k <= KC_REC_KIND_MAX; k++)
            if (wanted_kind(&c, k) && k != KC_REC_BLOB)
                kc_store_iterate(c.st, (kc_rec_kind_t)k, push_one, &c);
        status = moved(&c, "pushed");
    } else {
        const char *dir = ctl_store_dir(o);
        if (!dir || (rc = kc_store_open(dir, NULL, &c.st)) != KC_OK) {
            if (dir)
                ctl_err_code(rc, "cannot open store at %s: %s: %s", dir, kc_strerror(rc),
                             kc_store_open_errmsg());
            kc_remote_close(c.r);
            return CTL_EXIT_FAIL;
        }
        rc = kc_remote_scan(c.r, c.kind, pull_one, &c);
        if (rc != KC_OK) {
            ctl_err_code(rc, "remote pull: %s", kc_remote_errmsg(c.r));
            c.failed++;
        }
        status = moved(&c, "pulled");
    }
    kc_store_close(c.st);
    kc_remote_close(c.r);
    return status;
}

const kc_cmd_t kc_cmd_remote = {
    .name = "remote",
    .summary = "the remote tier (Redis): stats, ls, push, pull",
    .usage = "remote stats|ls|push|pull [--url URLS] [--kind KIND] [--arch ARCH] "
             "[--name GLOB]",
    .help = help,
    .run = run,
};
