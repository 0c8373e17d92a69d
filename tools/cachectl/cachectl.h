/* cachectl's commands and the option handling they share. */
#ifndef CACHECTL_H
#define CACHECTL_H

#include <getopt.h>

#include "util.h"

typedef struct kc_cmd kc_cmd_t;

/* What a command runs with: the global options, and its own descriptor. */
typedef struct kc_ctx {
    ctl_opts_t opts;
    const kc_cmd_t *cmd;
} kc_ctx_t;

/* A command: one file cmd_NAME.c defines its descriptor kc_cmd_NAME, with
 * its help text beside its option parsing. run gets argv[0] = the name and
 * returns an exit status. */
struct kc_cmd {
    const char *name;
    const char *summary; /* one line for the command list */
    const char *usage;   /* after "cachectl [-s DIR] [--json] " */
    const char *help;    /* the command's options, or NULL */
    int (*run)(kc_ctx_t *ctx, int argc, char **argv);
};

/* Long options every command accepts after its name, so that
 * `cachectl ls --json` works as well as `cachectl --json ls`. */
#define CTL_COMMON_LONGOPTS                                                              \
    {"json", no_argument, NULL, 'J'}, {"store", required_argument, NULL, 's'},           \
    {                                                                                    \
        "help", no_argument, NULL, 'h'                                                   \
    }
/* Short options every command accepts; getopt_long strings start with it.
 * The leading ':' makes getopt report a missing argument as ':'. */
#define CTL_COMMON_SHORTOPTS ":hs:"

/* Handle an option common to every command, or a getopt error. Returns -1
 * when c was handled and parsing goes on; otherwise the exit status the
 * command must return (0 after printing its help, 2 for a usage error). */
int ctl_common_opt(ctl_opts_t *o, const kc_cmd_t *self, int c, char **argv);

/* Parse the options of a command that has none of its own. Returns -1 to
 * go on (optind is then the first operand), else the exit status. */
int ctl_parse_plain(ctl_opts_t *o, const kc_cmd_t *self, int argc, char **argv);

/* Print the command's help on stdout. */
void ctl_cmd_help(const kc_cmd_t *self);

/* The commands, one per file cmd_NAME.c. */
extern const kc_cmd_t kc_cmd_stats;
extern const kc_cmd_t kc_cmd_ls;
extern const kc_cmd_t kc_cmd_show;
extern const kc_cmd_t kc_cmd_get;
extern const kc_cmd_t kc_cmd_rm;
extern const kc_cmd_t kc_cmd_verify;
extern const kc_cmd_t kc_cmd_export;
extern const kc_cmd_t kc_cmd_import;
extern const kc_cmd_t kc_cmd_import_triton;
extern const kc_cmd_t kc_cmd_keygen;
extern const kc_cmd_t kc_cmd_gc;
extern const kc_cmd_t kc_cmd_compact;
extern const kc_cmd_t kc_cmd_snapshot;
extern const kc_cmd_t kc_cmd_recover;
extern const kc_cmd_t kc_cmd_seal;
extern const kc_cmd_t kc_cmd_unseal;
extern const kc_cmd_t kc_cmd_populate;
extern const kc_cmd_t kc_cmd_why;
extern const kc_cmd_t kc_cmd_train_dict;
extern const kc_cmd_t kc_cmd_version;
extern const kc_cmd_t kc_cmd_remote;

#endif
