/* cachectl rm: delete records and their usage stamps. */
#include "cachectl.h"

#include <stdio.h>
#include <stdlib.h>

static const struct option longopts[] = {CTL_COMMON_LONGOPTS, {0}};

static int run(kc_ctx_t *ctx, int argc, char **argv)
{
    ctl_opts_t *o = &ctx->opts;
    const kc_cmd_t *self = ctx->cmd;
    kc_store_t *st = NULL;
    target_t *t = NULL;
    size_t n = 0;
    json_t *list = NULL;
    char h[KC_KEY_HEX_LEN + 1];
    int c, rc;

    while ((c = getopt_long(argc, argv, CTL_COMMON_SHORTOPTS, longopts, NULL)) != -1)
        if ((rc = ctl_common_opt(o, self, c, argv)) >= 0)
            return rc;
    if (optind >= argc)
        return ctl_usage_err(self->name, "missing KEY");
    for (int i = optind; i < argc; i++)
        if (!ctl_key_syntax_ok(argv[i]))
            return ctl_usage_err(self->name,
                                 "'%s' is not a key: give %d to %d hex digits", argv[i],
                                 KC_KEY_PREFIX_MIN, KC_KEY_HEX_LEN);
    if (!(st = ctl_store_open(o, 1)))
        return CTL_EXIT_FAIL;
    t = calloc((size_t)(argc - optind), sizeof *t);
    if (!t) {
        ctl_err("out of memory");
        rc = CTL_EXIT_FAIL;
        goto out;
    }
    /* Resolve every key before deleting anything, so that a typo in the
     * third key does not leave the first two deleted. */
    rc = CTL_EXIT_OK;
    for (int i = optind; i < argc; i++) {
        target_t cur;
        int r = ctl_key_resolve(st, self->name, argv[i], 0, &cur.kind, &cur.key);
        if (r != CTL_EXIT_OK) {
            rc = r;
            continue;
        }
        size_t j;
        for (j = 0; j < n; j++)
            if (t[j].kind == cur.kind && kc_key_cmp(&t[j].key, &cur.key) == 0)
                break;
        if (j == n)
            t[n++] = cur;
    }
    if (rc != CTL_EXIT_OK) {
        ctl_err("rm: nothing removed");
        goto out;
    }
    if (o->json)
        list = json_array();
    for (size_t i = 0; i < n; i++) {
        int r = ctl_delete_record(st, t[i].kind, &t[i].key);
        if (r != KC_OK) {
            ctl_err("rm: cannot remove %s %s: %s: %s", kc_rec_kind_name(t[i].kind),
                    ctl_hex(&t[i].key, h), kc_strerror(r), kc_store_errmsg(st));
            rc = CTL_EXIT_FAIL;
            continue;
        }
        if (list) {
            json_t *e = json_object();
            json_object_set_new(e, "kind", json_string(kc_rec_kind_name(t[i].kind)));
            json_object_set_new(e, "key", ctl_json_key(&t[i].key));
            json_array_append_new(list, e);
        } else {
            printf("removed %s %s\n", kc_rec_kind_name(t[i].kind), ctl_hex(&t[i].key, h));
        }
    }
    if (list) {
        json_t *doc = json_object();
        json_object_set_new(doc, "removed", list);
        list = NULL;
        int jrc = ctl_json_print(doc);
        if (rc == CTL_EXIT_OK)
            rc = jrc;
    }
out:
    json_decref(list);
    free(t);
    kc_store_close(st);
    return rc;
}

const kc_cmd_t kc_cmd_rm = {
    .name = "rm",
    .summary = "delete records",
    .usage = "rm KEY...",
    .help = NULL,
    .run = run,
};
