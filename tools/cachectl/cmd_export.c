/* cachectl export: write records to a portable bundle (.kcb).
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
#include "bundle_util.h"

static const char help[] =
    "  -o, --output FILE   write the bundle to FILE ('-': standard output, the\n"
    "                      default when it is not a terminal); FILE appears only\n"
    "                      once the bundle is complete\n"
    "      --arch A        only builds and tunings for target A, e.g. sm_90\n"
    "                      (or 90)\n"
    "      --name GLOB     only builds and tunings whose kernel entry matches GLOB\n"
    "      --since T       only builds and tunings created after T: unix seconds,\n"
    "                      a date YYYY-MM-DD (UTC), or an age such as 2h, 3d, 1w\n"
    "      --tuned-only    only tunings, with the builds and blobs their winners need\n"
    "      --sign KEYFILE  sign the bundle with the secret key KEYFILE (NAME.key,\n"
    "                      from cachectl keygen)\n\n"
    "A tuning brings its winning build, a build its blob and the blob's zstd\n"
    "dictionary. Usage stamps and leases are never exported. The summary goes\n"
    "to standard error when the bundle goes to standard output.\n";

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

/* Unix seconds (digits only), YYYY-MM-DD (UTC midnight), or an age before
 * now as kc_duration_parse reads it ("2h", "3d", "1.5w"). */
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
    if (*s && s[strspn(s, "0123456789")] == '\0') {
        errno = 0;
        v = strtoull(s, &end, 10);
        if (errno)
            return -1;
        *out = v;
        return 0;
    }
    uint64_t age, now = (uint64_t)time(NULL);
    if (kc_duration_parse(s, &age) != KC_OK || age > now)
        return -1;
    *out = now - age;
    return 0;
}

static void print_json(json_t *doc, FILE *f)
{
    json_dumpf(doc, f, JSON_COMPACT);
    fputc('\n', f);
    json_decref(doc);
}

static int run(kc_ctx_t *ctx, int argc, char **argv)
{
    ctl_opts_t *o = &ctx->opts;
    const kc_cmd_t *self = ctx->cmd;
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
            if (!(filter.arch = ctl_arch_arg(self->name, optarg, &status)))
                return status;
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

    if (sign && ctl_load_key("export", "--sign", sign, CTL_KEY_SECRET, &key) != 0)
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
        json_t *doc = ctl_bundle_stats_json(&s);
        json_object_set_new(doc, "left_out_damaged", ctl_json_u64(s.damaged));
        json_object_set_new(doc, "output", json_string(to_stdout ? "-" : output));
        json_object_set_new(doc, "signed_by", ctl_signer_json(&s));
        print_json(doc, summary);
    } else {
        char size[32];
        fprintf(summary,
                "exported %" PRIu64 " %s (%" PRIu64 " %s, %" PRIu64 " %s, %" PRIu64
                " %s, %" PRIu64 " %s), %s\n",
                s.records, ctl_plural(s.records, "record", "records"), s.tunings,
                ctl_plural(s.tunings, "tuning", "tunings"), s.builds,
                ctl_plural(s.builds, "build", "builds"), s.blobs,
                ctl_plural(s.blobs, "blob", "blobs"), s.dicts,
                ctl_plural(s.dicts, "dictionary", "dictionaries"),
                ctl_fmt_size(s.bytes, size, sizeof size));
        if (s.groups)
            fprintf(summary, "  with %" PRIu64 " %s of named files\n", s.groups,
                    ctl_plural(s.groups, "group", "groups"));
        if (s.damaged)
            fprintf(summary, "left out %" PRIu64 " damaged or incomplete %s\n", s.damaged,
                    ctl_plural(s.damaged, "record", "records"));
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

const kc_cmd_t kc_cmd_export = {
    .name = "export",
    .summary = "write records to a portable bundle (.kcb)",
    .usage = "export [-o FILE|-] [--arch A] [--name GLOB] [--since T] [--tuned-only] "
             "[--sign KEYFILE]",
    .help = help,
    .run = run,
};
