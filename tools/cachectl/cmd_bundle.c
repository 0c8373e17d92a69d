/* cachectl export, import: move records between stores as a .kcb bundle;
 * keygen: a key pair to sign bundles with.
 *
 * Where the summary goes: when the bundle is written to standard output
 * (export with no -o on a pipe, or -o -), the summary, human or --json,
 * goes to standard error so that standard output stays a clean bundle.
 * Otherwise it goes to standard output like every other command's.
 */
#include "cachectl.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kcache/bundle.h"

const char ctl_help_export[] =
    "  -o, --output FILE   write the bundle to FILE ('-': standard output, the\n"
    "                      default when it is not a terminal); FILE appears only\n"
    "                      once the bundle is complete\n"
    "      --arch A        only builds and tunings for target A, e.g. sm_90\n"
    "      --name GLOB     only builds and tunings whose kernel entry matches GLOB\n"
    "      --since T       only builds and tunings created after T: unix seconds,\n"
    "                      a date YYYY-MM-DD (UTC), or an age such as 2h, 3d, 1w\n"
    "      --tuned-only    only tunings, with the builds and blobs their winners need\n"
    "      --sign KEYFILE  sign the bundle with the secret key KEYFILE (NAME.key,\n"
    "                      from cachectl keygen)\n\n"
    "A tuning brings its winning build, a build its blob and the blob's zstd\n"
    "dictionary. Usage stamps and leases are never exported. The summary goes\n"
    "to standard error when the bundle goes to standard output.\n";

const char ctl_help_import[] =
    "      --prefer WHICH   when the store already holds a different tuning under\n"
    "                       the same key: 'existing' keeps it (default), 'incoming'\n"
    "                       replaces it, 'faster' keeps the one whose winner has\n"
    "                       the lower median time\n"
    "      --max-size SIZE  refuse bundles larger than SIZE (default 4G; suffixes\n"
    "                       K, M, G, T)\n"
    "      --trust PUBFILE  accept only a bundle signed by the key in PUBFILE\n"
    "                       (NAME.pub, from cachectl keygen); default: the file\n"
    "                       named by KCACHE_TRUST, if set\n\n"
    "FILE '-' reads standard input. A missing store is created. The whole\n"
    "bundle is read and validated (checksums, keys, every cubin against its\n"
    "key) before anything is written; then every record is added in one\n"
    "transaction. Records already present are skipped, so importing twice\n"
    "changes nothing. A signed bundle's signature is always verified; with a\n"
    "trusted key, an unsigned bundle or one signed by another key is refused.\n";

const char ctl_help_keygen[] =
    "  -o, --output NAME   write the secret key to NAME.key (mode 0600) and the\n"
    "                      public key to NAME.pub (mode 0644)\n\n"
    "An Ed25519 key pair for signing bundles: export --sign NAME.key, and\n"
    "import --trust NAME.pub (or KCACHE_TRUST=NAME.pub) where bundles are\n"
    "accepted. Existing files are never overwritten. Keep NAME.key secret:\n"
    "whoever holds it can sign bundles that every trusting store accepts.\n";

/* ---- argument parsing ---------------------------------------------------- */

/* Unix seconds, YYYY-MM-DD (UTC midnight), or an age N{s,m,h,d,w} before now. */
static int parse_since(const char *s, uint64_t *out)
{
    char *end;
    unsigned long long v;
    int y, mo, d, n = 0;

    if (sscanf(s, "%4d-%2d-%2d%n", &y, &mo, &d, &n) == 3 && s[n] == '\0' && n == 10) {
        struct tm tm = {0};
        time_t t;
        if (mo < 1 || mo > 12 || d < 1 || d > 31 || y < 1970)
            return -1;
        tm.tm_year = y - 1900;
        tm.tm_mon = mo - 1;
        tm.tm_mday = d;
        t = timegm(&tm);
        if (t < 0 || tm.tm_mday != d)
            return -1;
        *out = (uint64_t)t;
        return 0;
    }
    if (!isdigit((unsigned char)s[0]))
        return -1;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno)
        return -1;
    if (*end == '\0') {
        *out = v;
        return 0;
    }
    if (end[1] != '\0')
        return -1;
    uint64_t unit;
    switch (*end) {
    case 's':
        unit = 1;
        break;
    case 'm':
        unit = 60;
        break;
    case 'h':
        unit = 3600;
        break;
    case 'd':
        unit = 86400;
        break;
    case 'w':
        unit = 7 * 86400;
        break;
    default:
        return -1;
    }
    uint64_t now = (uint64_t)time(NULL);
    if (v > now / unit)
        return -1;
    *out = now - v * unit;
    return 0;
}

/* A byte count with an optional K/M/G/T suffix (powers of 1024, optional
 * trailing 'B' or 'iB'). */
static int parse_size(const char *s, uint64_t *out)
{
    char *end;
    unsigned long long v;
    unsigned shift = 0;

    if (!isdigit((unsigned char)s[0]))
        return -1;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno)
        return -1;
    switch (toupper((unsigned char)*end)) {
    case 'K':
        shift = 10;
        break;
    case 'M':
        shift = 20;
        break;
    case 'G':
        shift = 30;
        break;
    case 'T':
        shift = 40;
        break;
    }
    if (shift)
        end++;
    if (strcmp(end, "") != 0 && strcmp(end, "B") != 0 &&
        !(shift && (strcmp(end, "iB") == 0)))
        return -1;
    if (v == 0 || v > (UINT64_MAX >> shift))
        return -1;
    *out = (uint64_t)v << shift;
    return 0;
}

/* ---- summaries -------------------------------------------------------------- */

static void print_json(json_t *doc, FILE *f)
{
    json_dumpf(doc, f, JSON_COMPACT);
    fputc('\n', f);
    json_decref(doc);
}

static json_t *stats_json(const kc_bundle_stats_t *s)
{
    json_t *doc = json_object();
    json_object_set_new(doc, "records", ctl_json_u64(s->records));
    json_object_set_new(doc, "blobs", ctl_json_u64(s->blobs));
    json_object_set_new(doc, "builds", ctl_json_u64(s->builds));
    json_object_set_new(doc, "tunings", ctl_json_u64(s->tunings));
    json_object_set_new(doc, "dictionaries", ctl_json_u64(s->dicts));
    json_object_set_new(doc, "bytes", ctl_json_u64(s->bytes));
    return doc;
}

static const char *plural(uint64_t n, const char *one, const char *many)
{
    return n == 1 ? one : many;
}

/* ---- keys ---------------------------------------------------------------------- */

/* Load a key file for option opt, saying clearly why it cannot be used. */
static int load_key(const char *cmd, const char *opt, const char *path, int need_secret,
                    kc_bundle_key_t *key)
{
    int rc = kc_bundle_key_load(path, key);

    switch (rc) {
    case KC_OK:
        if (need_secret && !key->has_secret) {
            ctl_err("%s: %s %s holds a public key; signing needs the secret key "
                    "(NAME.key)",
                    cmd, opt, path);
            return -1;
        }
        return 0;
    case KC_EIO:
        ctl_err("%s: cannot read key file %s: %s", cmd, path, strerror(errno));
        break;
    case KC_EPERM:
        ctl_err("%s: secret key file %s is open to group or others; chmod 600 it", cmd,
                path);
        break;
    case KC_ECORRUPT:
        ctl_err("%s: %s is not a kcache key file (one line, 'kcache-ed25519-secret-v1 "
                "...' or 'kcache-ed25519-public-v1 ...')",
                cmd, path);
        break;
    default:
        ctl_err("%s: cannot load key file %s: %s", cmd, path, kc_strerror(rc));
    }
    return -1;
}

static json_t *signer_json(const kc_bundle_stats_t *s)
{
    char id[KC_BUNDLE_KEY_ID_LEN + 1];
    if (!s->is_signed)
        return json_null();
    kc_bundle_key_id(s->signer, id);
    return json_string(id);
}

int ctl_cmd_keygen(ctl_opts_t *o, const ctl_cmd_t *self, int argc, char **argv)
{
    static const struct option longopts[] = {
        CTL_COMMON_LONGOPTS,
        {"output", required_argument, NULL, 'o'},
        {0},
    };
    kc_bundle_key_t key;
    const char *base = NULL;
    char id[KC_BUNDLE_KEY_ID_LEN + 1];
    int c, rc;

    while ((c = getopt_long(argc, argv, CTL_COMMON_SHORTOPTS "o:", longopts, NULL)) !=
           -1) {
        if (c == 'o')
            base = optarg;
        else if ((rc = ctl_common_opt(o, self, c, argv)) >= 0)
            return rc;
    }
    if (optind < argc)
        return ctl_usage_err(self->name, "unexpected argument '%s'", argv[optind]);
    if (!base || !*base)
        return ctl_usage_err(self->name, "missing -o NAME");
    rc = kc_bundle_keygen(base, &key);
    if (rc == KC_EEXIST) {
        ctl_err("keygen: %s.key or %s.pub already exists; not overwriting it", base,
                base);
        return CTL_EXIT_FAIL;
    }
    if (rc != KC_OK) {
        ctl_err("keygen: cannot write %s.key and %s.pub: %s", base, base,
                rc == KC_EIO ? strerror(errno) : kc_strerror(rc));
        return CTL_EXIT_FAIL;
    }
    kc_bundle_key_id(key.pk, id);
    kc_bundle_key_wipe(&key);
    if (o->json) {
        json_t *doc = json_object();
        json_object_set_new(doc, "key_id", json_string(id));
        json_object_set_new(doc, "secret_key", json_sprintf("%s.key", base));
        json_object_set_new(doc, "public_key", json_sprintf("%s.pub", base));
        return ctl_json_print(doc);
    }
    printf("key %s: secret key %s.key (keep it private), public key %s.pub\n", id, base,
           base);
    return CTL_EXIT_OK;
}

/* ---- export -------------------------------------------------------------------- */

int ctl_cmd_export(ctl_opts_t *o, const ctl_cmd_t *self, int argc, char **argv)
{
    static const struct option longopts[] = {
        CTL_COMMON_LONGOPTS,
        {"output", required_argument, NULL, 'o'},
        {"arch", required_argument, NULL, 'a'},
        {"name", required_argument, NULL, 'n'},
        {"since", required_argument, NULL, 'S'},
        {"tuned-only", no_argument, NULL, 'T'},
        {"sign", required_argument, NULL, 'K'},
        {0},
    };
    kc_bundle_filter_t filter = {0};
    kc_bundle_key_t key = {0};
    const char *sign = NULL;
    kc_bundle_stats_t s;
    const char *output = NULL;
    char *tmp = NULL;
    FILE *out = NULL;
    kc_store_t *st = NULL;
    FILE *summary;
    int c, rc, status = CTL_EXIT_FAIL, to_stdout;

    while ((c = getopt_long(argc, argv, CTL_COMMON_SHORTOPTS "o:", longopts, NULL)) !=
           -1) {
        switch (c) {
        case 'o':
            output = optarg;
            break;
        case 'a':
            filter.arch = optarg;
            break;
        case 'n':
            filter.name = optarg;
            break;
        case 'S':
            if (parse_since(optarg, &filter.since) != 0)
                return ctl_usage_err(self->name,
                                     "--since '%s' is not unix seconds, YYYY-MM-DD or an "
                                     "age like 3d",
                                     optarg);
            break;
        case 'T':
            filter.tuned_only = 1;
            break;
        case 'K':
            sign = optarg;
            break;
        default:
            if ((rc = ctl_common_opt(o, self, c, argv)) >= 0)
                return rc;
        }
    }
    if (optind < argc)
        return ctl_usage_err(self->name, "unexpected argument '%s'", argv[optind]);
    to_stdout = !output || strcmp(output, "-") == 0;
    if (to_stdout && isatty(STDOUT_FILENO))
        return ctl_usage_err(self->name, "refusing to write a bundle to a terminal; "
                                         "pass -o FILE or redirect the output");
    summary = to_stdout ? stderr : stdout;

    if (sign && load_key("export", "--sign", sign, 1, &key) != 0)
        return CTL_EXIT_FAIL;
    if (!(st = ctl_store_open(o, 0)))
        goto done;
    if (to_stdout) {
        out = stdout;
    } else {
        /* Written beside FILE and renamed into place once complete, so that
         * a failed export never leaves a partial bundle under FILE. */
        size_t n = strlen(output) + 32;
        tmp = malloc(n);
        if (!tmp) {
            ctl_err("export: out of memory");
            goto done;
        }
        snprintf(tmp, n, "%s.tmp.%ld", output, (long)getpid());
        if (!(out = fopen(tmp, "wb"))) {
            ctl_err("export: cannot create %s: %s", tmp, strerror(errno));
            goto done;
        }
    }
    rc = kc_bundle_export_signed(st, &filter, sign ? &key : NULL, out, &s);
    if (rc != KC_OK) {
        ctl_err("export: %s", kc_store_errmsg(st));
        goto done;
    }
    if (!to_stdout) {
        int bad = fflush(out) != 0 || fsync(fileno(out)) != 0;
        bad |= fclose(out) != 0;
        out = NULL;
        if (bad || rename(tmp, output) != 0) {
            ctl_err("export: cannot write %s: %s", output, strerror(errno));
            goto done;
        }
        free(tmp);
        tmp = NULL;
    } else if (fflush(stdout) != 0) {
        ctl_err("export: cannot write the bundle: %s", strerror(errno));
        goto done;
    }
    if (o->json) {
        json_t *doc = stats_json(&s);
        json_object_set_new(doc, "left_out_damaged", ctl_json_u64(s.damaged));
        json_object_set_new(doc, "output", json_string(to_stdout ? "-" : output));
        json_object_set_new(doc, "signed_by", signer_json(&s));
        print_json(doc, summary);
    } else {
        char size[32];
        fprintf(summary,
                "exported %" PRIu64 " %s (%" PRIu64 " %s, %" PRIu64 " %s, %" PRIu64
                " %s, %" PRIu64 " %s), %s\n",
                s.records, plural(s.records, "record", "records"), s.tunings,
                plural(s.tunings, "tuning", "tunings"), s.builds,
                plural(s.builds, "build", "builds"), s.blobs,
                plural(s.blobs, "blob", "blobs"), s.dicts,
                plural(s.dicts, "dictionary", "dictionaries"),
                ctl_fmt_size(s.bytes, size, sizeof size));
        if (s.damaged)
            fprintf(summary, "left out %" PRIu64 " damaged or incomplete %s\n", s.damaged,
                    plural(s.damaged, "record", "records"));
        if (s.is_signed) {
            char id[KC_BUNDLE_KEY_ID_LEN + 1];
            kc_bundle_key_id(s.signer, id);
            fprintf(summary, "signed with key %s\n", id);
        }
    }
    status = CTL_EXIT_OK;
done:
    kc_bundle_key_wipe(&key);
    if (out && out != stdout)
        fclose(out);
    if (tmp) {
        unlink(tmp);
        free(tmp);
    }
    kc_store_close(st);
    return status;
}

/* ---- import -------------------------------------------------------------------- */

/* Import is how a store is seeded (an image build step), so unlike the
 * other writing commands it creates a missing store. */
static kc_store_t *open_or_create(const ctl_opts_t *o)
{
    const char *dir = ctl_store_dir(o);
    kc_store_t *st = NULL;
    int rc;

    if (!dir)
        return NULL;
    rc = kc_store_open(dir, NULL, &st);
    if (rc != KC_OK) {
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

static const char *const prefer_names[] = {"existing", "incoming", "faster"};

int ctl_cmd_import(ctl_opts_t *o, const ctl_cmd_t *self, int argc, char **argv)
{
    static const struct option longopts[] = {
        CTL_COMMON_LONGOPTS,
        {"prefer", required_argument, NULL, 'p'},
        {"max-size", required_argument, NULL, 'M'},
        {"trust", required_argument, NULL, 't'},
        {0},
    };
    kc_bundle_import_opts_t io = KC_BUNDLE_IMPORT_OPTS_INIT;
    kc_bundle_key_t trust = {0};
    const char *trust_path = NULL, *trust_from = "--trust";
    kc_bundle_stats_t s;
    const char *path;
    FILE *in = NULL;
    kc_store_t *st = NULL;
    int c, rc, status = CTL_EXIT_FAIL;

    while ((c = getopt_long(argc, argv, CTL_COMMON_SHORTOPTS, longopts, NULL)) != -1) {
        switch (c) {
        case 'p': {
            size_t i;
            for (i = 0; i < 3 && strcmp(optarg, prefer_names[i]) != 0; i++)
                ;
            if (i == 3)
                return ctl_usage_err(
                    self->name, "--prefer takes existing, incoming or faster, not '%s'",
                    optarg);
            io.prefer = (kc_bundle_prefer_t)i;
            break;
        }
        case 'M':
            if (parse_size(optarg, &io.max_bytes) != 0)
                return ctl_usage_err(self->name, "--max-size '%s' is not a size", optarg);
            break;
        case 't':
            trust_path = optarg;
            break;
        default:
            if ((rc = ctl_common_opt(o, self, c, argv)) >= 0)
                return rc;
        }
    }
    if (optind >= argc)
        return ctl_usage_err(self->name, "missing FILE (or '-' for standard input)");
    if (optind + 1 < argc)
        return ctl_usage_err(self->name, "unexpected argument '%s'", argv[optind + 1]);
    path = argv[optind];
    io.name = path;
    if (!trust_path && getenv("KCACHE_TRUST") && *getenv("KCACHE_TRUST")) {
        trust_path = getenv("KCACHE_TRUST");
        trust_from = "KCACHE_TRUST";
    }
    /* A trust setting that cannot be read refuses everything rather than
     * falling back to accepting unsigned bundles. */
    if (trust_path) {
        if (load_key("import", trust_from, trust_path, 0, &trust) != 0)
            return CTL_EXIT_FAIL;
        io.trust = &trust;
    }

    if (strcmp(path, "-") == 0) {
        in = stdin;
        io.name = "<stdin>";
    } else if (!(in = fopen(path, "rb"))) {
        ctl_err("import: cannot open %s: %s", path, strerror(errno));
        return CTL_EXIT_FAIL;
    }
    if (!(st = open_or_create(o)))
        goto done;
    rc = kc_bundle_import(st, in, &io, &s);
    if (rc != KC_OK) {
        if (rc == KC_ESIGNATURE && io.trust)
            ctl_err("import: %s (trusted key from %s %s; nothing was imported)",
                    kc_store_errmsg(st), trust_from, trust_path);
        else
            ctl_err("import: %s (nothing was imported)", kc_store_errmsg(st));
        goto done;
    }
    if (o->json) {
        json_t *doc = stats_json(&s);
        json_object_set_new(doc, "added", ctl_json_u64(s.added));
        json_object_set_new(doc, "already_present", ctl_json_u64(s.present));
        json_object_set_new(doc, "tunings_replaced", ctl_json_u64(s.replaced));
        json_object_set_new(doc, "tunings_kept", ctl_json_u64(s.kept));
        json_object_set_new(doc, "prefer", json_string(prefer_names[io.prefer]));
        json_object_set_new(doc, "signed_by", signer_json(&s));
        json_object_set_new(doc, "trusted", json_boolean(io.trust != NULL));
        status = ctl_json_print(doc);
        goto done;
    }
    char size[32];
    printf("imported %s: %" PRIu64 " %s (%" PRIu64 " tunings, %" PRIu64
           " builds, %" PRIu64 " blobs, %" PRIu64 " dictionaries), %s\n",
           io.name, s.records, plural(s.records, "record", "records"), s.tunings,
           s.builds, s.blobs, s.dicts, ctl_fmt_size(s.bytes, size, sizeof size));
    printf("  %" PRIu64 " added, %" PRIu64 " skipped (already present)", s.added,
           s.present);
    if (s.replaced || s.kept)
        printf(", %" PRIu64 " stored %s replaced, %" PRIu64 " kept (--prefer %s)",
               s.replaced, plural(s.replaced, "tuning", "tunings"), s.kept,
               prefer_names[io.prefer]);
    printf("\n");
    if (s.is_signed) {
        char id[KC_BUNDLE_KEY_ID_LEN + 1];
        kc_bundle_key_id(s.signer, id);
        printf("  signed by key %s%s\n", id,
               io.trust ? ", the trusted key" : " (verified; no trusted key configured)");
    }
    status = CTL_EXIT_OK;
done:
    if (in && in != stdin)
        fclose(in);
    kc_store_close(st);
    return status;
}
