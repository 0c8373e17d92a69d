/* cachectl why: not implemented yet (issue: sharing and operations). */
#include <stdio.h>

#include "cachectl.h"

const char ctl_help_why[] = "";

int ctl_cmd_why(ctl_opts_t *o, const ctl_cmd_t *self, int argc, char **argv)
{
    int rc = ctl_parse_plain(o, self, argc, argv);
    if (rc >= 0)
        return rc;
    fprintf(stderr, "cachectl: why: not implemented yet\n");
    return 1;
}
