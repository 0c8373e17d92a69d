/* cachectl gc, compact: not implemented yet (issue: sharing and operations). */
#include <stdio.h>

#include "cachectl.h"

const char ctl_help_gc[] = "";

int ctl_cmd_gc(ctl_opts_t *o, const ctl_cmd_t *self, int argc, char **argv)
{
    int rc = ctl_parse_plain(o, self, argc, argv);
    if (rc >= 0)
        return rc;
    fprintf(stderr, "cachectl: gc: not implemented yet\n");
    return 1;
}

const char ctl_help_compact[] = "";

int ctl_cmd_compact(ctl_opts_t *o, const ctl_cmd_t *self, int argc, char **argv)
{
    int rc = ctl_parse_plain(o, self, argc, argv);
    if (rc >= 0)
        return rc;
    fprintf(stderr, "cachectl: compact: not implemented yet\n");
    return 1;
}
