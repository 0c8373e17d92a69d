/* cachectl: inspect and manage a kcache store through the public store API.
 *
 * Global options come before the command; --json, -s and --help are also
 * accepted after it. Help goes to stdout, usage errors to stderr with exit
 * status 2, failures to stderr with exit status 1.
 */
#include "cachectl.h"

#include <stdio.h>
#include <string.h>

static const kc_cmd_t *const commands[] = {
    &kc_cmd_stats,      &kc_cmd_ls,       &kc_cmd_show,
    &kc_cmd_get,        &kc_cmd_rm,       &kc_cmd_verify,
    &kc_cmd_export,     &kc_cmd_import,   &kc_cmd_import_triton,
    &kc_cmd_keygen,     &kc_cmd_gc,       &kc_cmd_compact,
    &kc_cmd_snapshot,   &kc_cmd_recover,  &kc_cmd_seal,
    &kc_cmd_unseal,     &kc_cmd_populate, &kc_cmd_why,
    &kc_cmd_train_dict, &kc_cmd_version,  &kc_cmd_remote,
};
#define N_COMMANDS (sizeof commands / sizeof commands[0])

static void usage(FILE *f)
{
    fprintf(f, "Usage: cachectl [-s DIR] [--json] COMMAND [ARGS...]\n\n"
               "Inspect and manage a kcache store of compiled GPU kernels.\n\n"
               "Commands:\n");
    for (size_t i = 0; i < N_COMMANDS; i++) {
        if (strlen(commands[i]->usage) > 20)
            fprintf(f, "  %s\n  %-20s  %s\n", commands[i]->usage, "",
                    commands[i]->summary);
        else
            fprintf(f, "  %-20s  %s\n", commands[i]->usage, commands[i]->summary);
    }
    fprintf(f,
            "\nOptions:\n"
            "  -s, --store DIR  the store (default: $KCACHE_DIR, else\n"
            "                   $XDG_CACHE_HOME/kcache, else $HOME/.cache/kcache).\n"
            "                   Without -s, ls, show, stats and get read every layer\n"
            "                   of $KCACHE_PATH; commands that write (gc, import,\n"
            "                   populate, rm, ...) its first writable layer, and\n"
            "                   the others its first one\n"
            "      --json       print one JSON document instead of tables\n"
            "  -h, --help       show this help; 'cachectl COMMAND --help' for a command\n"
            "\nKEY is a hex prefix of at least %d digits of a record's key.\n"
            "Exit status: 0 success, 1 failure, 2 usage error, 3 the store file is\n"
            "damaged (cachectl recover DIR NEWDIR salvages its records).\n",
            KC_KEY_PREFIX_MIN);
}

static const kc_cmd_t *find_command(const char *name)
{
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (strcmp(commands[i]->name, name) == 0)
            return commands[i];
    return NULL;
}

static int run_command(ctl_opts_t *o, const kc_cmd_t *cmd, int argc, char **argv)
{
    int rc;

    /* optind 0 makes glibc's getopt start afresh at argv[1], after the name. */
    optind = 0;
    kc_ctx_t ctx = {*o, cmd};
    rc = cmd->run(&ctx, argc, argv);
    if (ctx.opts.json)
        ctl_json_error_pending(rc);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        ctl_err("error writing output");
        return CTL_EXIT_FAIL;
    }
    if (rc == CTL_EXIT_FAIL && ctl_first_code() == KC_EDAMAGED)
        return CTL_EXIT_DAMAGED;
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
    const kc_cmd_t *cmd;
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
        if (optind + 1 >= argc) {
            usage(stdout);
            return CTL_EXIT_OK;
        }
        if (optind + 2 < argc)
            return ctl_usage_err(NULL, "help takes one command, not '%s'",
                                 argv[optind + 2]);
        if (!(cmd = find_command(argv[optind + 1])))
            return ctl_usage_err(NULL, "unknown command '%s'", argv[optind + 1]);
        ctl_cmd_help(cmd);
        return CTL_EXIT_OK;
    }
    cmd = find_command(argv[optind]);
    if (!cmd)
        return ctl_usage_err(NULL, "unknown command '%s'", argv[optind]);
    return run_command(&o, cmd, argc - optind, argv + optind);
}
