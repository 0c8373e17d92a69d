/* cachectl import: validate a bundle, then add its records in one
 * transaction. */
#include "cachectl.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kcache/bundle.h"
#include "bundle_util.h"

static const char help[] =
    "      --prefer WHICH   when the store already holds a different tuning under\n"
    "                       the same key: 'existing' keeps it (default), 'incoming'\n"
    "                       replaces it, 'faster' keeps the one whose winner has\n"
    "                       the lower median time\n"
    "      --max-size SIZE  refuse bundles larger than SIZE (default 4Gi; 0: no\n"
    "                       limit; e.g. 500M, 1.5Gi, a bare number is GiB)\n"
    "      --trust PUBFILE  accept only a bundle signed by the key in PUBFILE\n"
    "                       (NAME.pub, from cachectl keygen); default: the file\n"
    "                       named by KCACHE_TRUST, if set\n\n"
    "FILE '-' reads standard input. A missing store is created. The whole\n"
    "bundle is read and validated (checksums, keys, every cubin against its\n"
    "key) before anything is written; then every record is added in one\n"
    "transaction. Records already present are skipped, so importing twice\n"
    "changes nothing. A signed bundle's signature is always verified; with a\n"
    "trusted key, an unsigned bundle or one signed by another key is refused.\n";

static const struct option longopts[] = {
    CTL_COMMON_LONGOPTS,
    {"prefer", required_argument, NULL, 'p'},
    {"max-size", required_argument, NULL, 'M'},
    {"trust", required_argument, NULL, 't'},
    {0},
};

/* Import is how a store is seeded (an image build step), so unlike the
 * other writing commands it creates a missing store. */
static kc_store_t *open_or_create(const ctl_opts_t *o)
{
    const char *dir = ctl_target_dir(o, 1, NULL);
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

static int run(kc_ctx_t *ctx, int argc, char **argv)
{
    ctl_opts_t *o = &ctx->opts;
    const kc_cmd_t *self = ctx->cmd;
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
            if (kc_size_parse(optarg, &io.max_bytes) != KC_OK)
                return ctl_usage_err(self->name, "--max-size '%s' is not a size", optarg);
            if (io.max_bytes == 0) /* 0: no limit */
                io.max_bytes = UINT64_MAX;
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
        if (ctl_load_key("import", trust_from, trust_path, CTL_KEY_PUBLIC, &trust) != 0)
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
        json_t *doc = ctl_bundle_stats_json(&s);
        json_object_set_new(doc, "added", ctl_json_u64(s.added));
        json_object_set_new(doc, "already_present", ctl_json_u64(s.present));
        json_object_set_new(doc, "tunings_replaced", ctl_json_u64(s.replaced));
        json_object_set_new(doc, "tunings_kept", ctl_json_u64(s.kept));
        json_object_set_new(doc, "prefer", json_string(prefer_names[io.prefer]));
        json_object_set_new(doc, "signed_by", ctl_signer_json(&s));
        json_object_set_new(doc, "trusted", json_boolean(io.trust != NULL));
        status = ctl_json_print(doc);
        goto done;
    }
    char size[32];
    printf("imported %s: %" PRIu64 " %s (%" PRIu64 " tunings, %" PRIu64
           " builds, %" PRIu64 " blobs, %" PRIu64 " dictionaries), %s\n",
           io.name, s.records, ctl_plural(s.records, "record", "records"), s.tunings,
           s.builds, s.blobs, s.dicts, ctl_fmt_size(s.bytes, size, sizeof size));
    if (s.groups)
        printf("  with %" PRIu64 " %s of named files\n", s.groups,
               ctl_plural(s.groups, "group", "groups"));
    printf("  %" PRIu64 " added, %" PRIu64 " skipped (already present)", s.added,
           s.present);
    if (s.replaced || s.kept)
        printf(", %" PRIu64 " stored %s replaced, %" PRIu64 " kept (--prefer %s)",
               s.replaced,
               s.groups ? ctl_plural(s.replaced, "record", "records")
                        : ctl_plural(s.replaced, "tuning", "tunings"),
               s.kept, prefer_names[io.prefer]);
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

const kc_cmd_t kc_cmd_import = {
    .name = "import",
    .summary = "validate a bundle, then add its records in one transaction",
    .usage = "import FILE|- [--prefer existing|incoming|faster] [--trust PUBFILE]",
    .help = help,
    .run = run,
};
