/* Option handling every command shares. */
#include "cachectl.h"

#include <ctype.h>
#include <stdio.h>

void ctl_cmd_help(const kc_cmd_t *self)
{
    printf("Usage: cachectl [-s DIR] [--json] %s\n\n%c%s.\n", self->usage,
           toupper((unsigned char)self->summary[0]), self->summary + 1);
    if (self->help)
        printf("\n%s", self->help);
}

int ctl_common_opt(ctl_opts_t *o, const kc_cmd_t *self, int c, char **argv)
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

int ctl_parse_plain(ctl_opts_t *o, const kc_cmd_t *self, int argc, char **argv)
{
    static const struct option longopts[] = {CTL_COMMON_LONGOPTS, {0}};
    int c, rc;

    while ((c = getopt_long(argc, argv, CTL_COMMON_SHORTOPTS, longopts, NULL)) != -1)
        if ((rc = ctl_common_opt(o, self, c, argv)) >= 0)
            return rc;
    return -1;
}
