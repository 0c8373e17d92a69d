/* cachectl's commands and the option handling they share. */
#ifndef CACHECTL_H
#define CACHECTL_H

#include <getopt.h>

#include "util.h"

typedef struct ctl_cmd ctl_cmd_t;

/* A command runs with argv[0] = its name and returns an exit status. */
typedef int (*ctl_cmd_fn)(ctl_opts_t *o, const ctl_cmd_t *self, int argc, char **argv);

struct ctl_cmd {
    const char *name;
    const char *synopsis; /* after "cachectl [-s DIR] [--json] " */
    const char *summary;  /* one line for the command list */
    const char *help;     /* the command's options, or NULL */
    ctl_cmd_fn run;
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
int ctl_common_opt(ctl_opts_t *o, const ctl_cmd_t *self, int c, char **argv);

/* Parse the options of a command that has none of its own. Returns -1 to
 * go on (optind is then the first operand), else the exit status. */
int ctl_parse_plain(ctl_opts_t *o, const ctl_cmd_t *self, int argc, char **argv);

/* Print the command's help on stdout. */
void ctl_cmd_help(const ctl_cmd_t *self);

int ctl_cmd_stats(ctl_opts_t *o, const ctl_cmd_t *self, int argc, char **argv);
int ctl_cmd_ls(ctl_opts_t *o, const ctl_cmd_t *self, int argc, char **argv);
int ctl_cmd_show(ctl_opts_t *o, const ctl_cmd_t *self, int argc, char **argv);
int ctl_cmd_get(ctl_opts_t *o, const ctl_cmd_t *self, int argc, char **argv);
int ctl_cmd_rm(ctl_opts_t *o, const ctl_cmd_t *self, int argc, char **argv);
int ctl_cmd_verify(ctl_opts_t *o, const ctl_cmd_t *self, int argc, char **argv);
int ctl_cmd_version(ctl_opts_t *o, const ctl_cmd_t *self, int argc, char **argv);

/* Each command file defines its command's help text (its options). */
int ctl_cmd_export(ctl_opts_t *o, const ctl_cmd_t *self, int argc, char **argv);
int ctl_cmd_import(ctl_opts_t *o, const ctl_cmd_t *self, int argc, char **argv);
extern const char ctl_help_export[], ctl_help_import[];
int ctl_cmd_gc(ctl_opts_t *o, const ctl_cmd_t *self, int argc, char **argv);
int ctl_cmd_compact(ctl_opts_t *o, const ctl_cmd_t *self, int argc, char **argv);
extern const char ctl_help_gc[], ctl_help_compact[];
int ctl_cmd_why(ctl_opts_t *o, const ctl_cmd_t *self, int argc, char **argv);
extern const char ctl_help_why[];
int ctl_cmd_train_dict(ctl_opts_t *o, const ctl_cmd_t *self, int argc, char **argv);
extern const char ctl_help_train_dict[];
int ctl_cmd_populate(ctl_opts_t *o, const ctl_cmd_t *self, int argc, char **argv);
extern const char ctl_help_populate[];
int ctl_cmd_keygen(ctl_opts_t *o, const ctl_cmd_t *self, int argc, char **argv);
extern const char ctl_help_keygen[];

#endif
