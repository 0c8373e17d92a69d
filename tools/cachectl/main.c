/* cachectl: inspect and manage a kcache store through the public store API.
 *
 * Global options come before the command; --json, -s and --help are also
 * accepted after it. Help goes to stdout, usage errors to stderr with exit
 * status 2, failures to stderr with exit status 1.
 */
#include "cachectl.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "kcache/version.h"

static const ctl_cmd_t commands[] = {
    {"stats", "stats [--zero]", "record counts, sizes, compression ratio and counters",
     "  --zero   reset the persistent counters to 0 (opens the store writable)\n\n"
     "Counters: hits; misses, and misses by reason (no tuning for the signature, or\n"
     "a tuning whose build was unusable); corrupt records found; bytes stored;\n"
     "publishes, compiles, tunes, evictions; and the compile and tuning time that\n"
     "store hits saved (in seconds; microseconds in --json).\n",
     ctl_cmd_stats},
    {"ls", "ls [--kind KIND] [--arch ARCH] [--name GLOB]", "list records",
     "  --kind KIND   blob, build, tuning, usage, lease or all\n"
     "                (default: blob, build and tuning)\n"
     "  --arch ARCH   only records for this target, e.g. sm_90 (a blob matches\n"
     "                through the builds that use it)\n"
     "  --name GLOB   only records whose kernel entry matches GLOB, e.g. 'gemm_*'\n",
     ctl_cmd_ls},
    {"show", "show KEY", "every field of one record, decoded", NULL, ctl_cmd_show},
    {"get", "get KEY -o FILE", "write the raw cubin of a blob, build or tuning to FILE",
     "  -o, --output FILE   where to write the cubin ('-' for standard output)\n\n"
     "A build gives its blob's cubin; a tuning gives its winning build's.\n",
     ctl_cmd_get},
    {"rm", "rm KEY...", "delete records", NULL, ctl_cmd_rm},
    {"verify", "verify [--repair]", "check every record; --repair deletes the bad ones",
     "  --repair   delete every record that fails a check (exit 0 once all are gone)\n\n"
     "Checks: header and checksum, the key derived from a build's or tuning's\n"
     "preimage, a blob's decompressed bytes against its key, and that every\n"
     "build's blob is present and sound.\n",
     ctl_cmd_verify},
    {"export",
     "export [-o FILE|-] [--arch A] [--name GLOB] [--since T] [--tuned-only] "
     "[--sign KEYFILE]",
     "write records to a portable bundle (.kcb)", ctl_help_export, ctl_cmd_export},
    {"import", "import FILE|- [--prefer existing|incoming|faster] [--trust PUBFILE]",
     "validate a bundle, then add its records in one transaction", ctl_help_import,
     ctl_cmd_import},
    {"keygen", "keygen -o NAME",
     "make a key pair for signing bundles: NAME.key, NAME.pub", ctl_help_keygen,
     ctl_cmd_keygen},
    {"gc", "gc [--max-size SIZE] [--older-than DURATION] [--dry-run]",
     "evict least recently used records and sweep unreferenced blobs", ctl_help_gc,
     ctl_cmd_gc},
    {"compact", "compact", "rewrite the store file without its free pages",
     ctl_help_compact, ctl_cmd_compact},
    {"populate", "populate --manifest FILE --arch A[,A...] [-j N]",
     "compile every config of a manifest's kernels for each arch, without a GPU",
     ctl_help_populate, ctl_cmd_populate},
    {"why", "why NAME|KEY [--arch A] [--limit N]",
     "explain a miss: the nearest stored records and what differs", ctl_help_why,
     ctl_cmd_why},
    {"train-dict", "train-dict [--size BYTES] [--dry-run]",
     "train a zstd dictionary on the blobs and recompress them", ctl_help_train_dict,
     ctl_cmd_train_dict},
    {"version", "version", "print the cachectl and format versions", NULL,
     ctl_cmd_version},
};
#define N_COMMANDS (sizeof commands / sizeof commands[0])

static void usage(FILE *f)
{
    fprintf(f, "Usage: cachectl [-s DIR] [--json] COMMAND [ARGS...]\n\n"
               "Inspect and manage a kcache store of compiled GPU kernels.\n\n"
               "Commands:\n");
    for (size_t i = 0; i < N_COMMANDS; i++) {
        if (strlen(commands[i].synopsis) > 20)
            fprintf(f, "  %s\n  %-20s  %s\n", commands[i].synopsis, "",
                    commands[i].summary);
        else
            fprintf(f, "  %-20s  %s\n", commands[i].synopsis, commands[i].summary);
    }
    fprintf(f,
            "\nOptions:\n"
            "  -s, --store DIR  the store (default: $KCACHE_DIR, else\n"
            "                   $XDG_CACHE_HOME/kcache, else $HOME/.cache/kcache).\n"
            "                   Without -s, ls, show, stats and get read every layer\n"
            "                   of $KCACHE_PATH, and other commands its first one\n"
            "      --json       print one JSON document instead of tables\n"
            "  -h, --help       show this help; 'cachectl COMMAND --help' for a command\n"
            "\nKEY is a hex prefix of at least %d digits of a record's key.\n"
            "Exit status: 0 success, 1 failure, 2 usage error.\n",
            KC_KEY_PREFIX_MIN);
}

void ctl_cmd_help(const ctl_cmd_t *self)
{
    printf("Usage: cachectl [-s DIR] [--json] %s\n\n%c%s.\n", self->synopsis,
           toupper((unsigned char)self->summary[0]), self->summary + 1);
    if (self->help)
        printf("\n%s", self->help);
}

int ctl_common_opt(ctl_opts_t *o, const ctl_cmd_t *self, int c, char **argv)
{
    switch (c) {
    case 'J':
        o->json = 1;
        return -1;
    case 's':
        o->store_dir = optarg;
        return -1;
    case 'h':
        ctl_cmd_help(self);
        return CTL_EXIT_OK;
    case ':':
        return ctl_usage_err(self->name, "option '%s' needs an argument",
                             argv[optind - 1]);
    case '?':
        if (optopt)
            return ctl_usage_err(self->name, "unknown option '-%c'", optopt);
        return ctl_usage_err(self->name, "unknown option '%s'", argv[optind - 1]);
    default:
        return ctl_usage_err(self->name, "unhandled option");
    }
}

int ctl_parse_plain(ctl_opts_t *o, const ctl_cmd_t *self, int argc, char **argv)
{
    static const struct option longopts[] = {CTL_COMMON_LONGOPTS, {0}};
    int c, rc;

    while ((c = getopt_long(argc, argv, CTL_COMMON_SHORTOPTS, longopts, NULL)) != -1)
        if ((rc = ctl_common_opt(o, self, c, argv)) >= 0)
            return rc;
    return -1;
}

int ctl_cmd_version(ctl_opts_t *o, const ctl_cmd_t *self, int argc, char **argv)
{
    int rc = ctl_parse_plain(o, self, argc, argv);

    if (rc >= 0)
        return rc;
    if (optind < argc)
        return ctl_usage_err(self->name, "unexpected argument '%s'", argv[optind]);
    if (o->json) {
        json_t *doc = json_object();
        json_object_set_new(doc, "cachectl", json_string(kc_version()));
        json_object_set_new(doc, "store_format", json_integer(KC_STORE_FORMAT_VERSION));
        json_object_set_new(doc, "record_version", json_integer(KC_RECORD_VERSION));
        json_object_set_new(doc, "key_schema", json_integer(KC_KEY_SCHEMA_VERSION));
        return ctl_json_print(doc);
    }
    printf("cachectl %s (store format %d, record version %d, key schema %d)\n",
           kc_version(), KC_STORE_FORMAT_VERSION, KC_RECORD_VERSION,
           KC_KEY_SCHEMA_VERSION);
    return CTL_EXIT_OK;
}

static const ctl_cmd_t *find_command(const char *name)
{
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (strcmp(commands[i].name, name) == 0)
            return &commands[i];
    return NULL;
}

static int run_command(ctl_opts_t *o, const ctl_cmd_t *cmd, int argc, char **argv)
{
    int rc;

    /* optind 0 makes glibc's getopt start afresh at argv[1], after the name. */
    optind = 0;
    rc = cmd->run(o, cmd, argc, argv);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        ctl_err("error writing output");
        return CTL_EXIT_FAIL;
    }
    return rc;
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"json", no_argument, NULL, 'J'},
        {"store", required_argument, NULL, 's'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {0},
    };
    static char *version_argv[] = {"version", NULL};
    ctl_opts_t o = {0};
    const ctl_cmd_t *cmd;
    int c;

    /* getopt reports errors through us, not on its own. */
    opterr = 0;
    /* '+' stops at the command name: the command parses its own options. */
    while ((c = getopt_long(argc, argv, "+:hs:", longopts, NULL)) != -1) {
        switch (c) {
        case 'J':
            o.json = 1;
            break;
        case 's':
            o.store_dir = optarg;
            break;
        case 'h':
            usage(stdout);
            return CTL_EXIT_OK;
        case 'V':
            return run_command(&o, find_command("version"), 1, version_argv);
        case ':':
            return ctl_usage_err(NULL, "option '%s' needs an argument", argv[optind - 1]);
        default:
            if (optopt)
                return ctl_usage_err(NULL, "unknown option '-%c'", optopt);
            return ctl_usage_err(NULL, "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind >= argc)
        return ctl_usage_err(NULL, "no command given");
    if (strcmp(argv[optind], "help") == 0) {
        usage(stdout);
        return CTL_EXIT_OK;
    }
    cmd = find_command(argv[optind]);
    if (!cmd)
        return ctl_usage_err(NULL, "unknown command '%s'", argv[optind]);
    return run_command(&o, cmd, argc - optind, argv + optind);
}
