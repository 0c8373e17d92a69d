/* cachectl export, import: not implemented yet (issue: sharing and operations). */
#include <stdio.h>

#include "cachectl.h"

const char ctl_help_export[] = "";

int ctl_cmd_export(ctl_opts_t *o, const ctl_cmd_t *self, int argc, char **argv)
{
    int rc = ctl_parse_plain(o, self, argc, argv);
    if (rc >= 0)
        return rc;
    fprintf(stderr, "cachectl: export: not implemented yet\n");
    return 1;
}

const char ctl_help_import[] = "";

int ctl_cmd_import(ctl_opts_t *o, const ctl_cmd_t *self, int argc, char **argv)
{
    int rc = ctl_parse_plain(o, self, argc, argv);
    if (rc >= 0)
        return rc;
    fprintf(stderr, "cachectl: import: not implemented yet\n");
    return 1;
}
