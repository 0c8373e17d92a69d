/* cachectl get: write the raw cubin of a blob, build or tuning, or a file of
 * a group, to a file. */
#include "cachectl.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static const char help[] =
    "  -o, --output FILE   where to write the cubin ('-' for standard output)\n"
    "      --file NAME     of a group: its file NAME\n\n"
    "A build gives its blob's cubin; a tuning gives its winning build's; a group\n"
    "gives the bytes of its file NAME.\n";

static const struct option longopts[] = {
    CTL_COMMON_LONGOPTS,
    {"output", required_argument, NULL, 'o'},
    {"file", required_argument, NULL, 'f'},
    {0},
};

static int write_all(FILE *f, const void *p, size_t n)
{
    return fwrite(p, 1, n, f) == n ? 0 : -1;
}

static int run(kc_ctx_t *ctx, int argc, char **argv)
{
    ctl_opts_t *o = &ctx->opts;
    const kc_cmd_t *self = ctx->cmd;
    const char *out = NULL, *fname = NULL;
    kc_store_t *st = NULL;
    kc_rec_kind_t kind;
    kc_key_t key, blob;
    kc_record_t *rec = NULL;
    void *cubin = NULL;
    size_t len = 0;
    FILE *f = NULL;
    char h[KC_KEY_HEX_LEN + 1], x[32];
    int ch, rc;

    while ((ch = getopt_long(argc, argv, CTL_COMMON_SHORTOPTS "o:", longopts, NULL)) !=
           -1) {
        if (ch == 'o')
            out = optarg;
        else if (ch == 'f')
            fname = optarg;
        else if ((rc = ctl_common_opt(o, self, ch, argv)) >= 0)
            return rc;
    }
    if (optind >= argc)
        return ctl_usage_err(self->name, "missing KEY");
    if (argc - optind > 1)
        return ctl_usage_err(self->name, "unexpected argument '%s'", argv[optind + 1]);
    if (!out)
        return ctl_usage_err(self->name, "missing -o FILE");
    if (!ctl_key_syntax_ok(argv[optind]))
        return ctl_usage_err(self->name, "'%s' is not a key: give %d to %d hex digits",
                             argv[optind], KC_KEY_PREFIX_MIN, KC_KEY_HEX_LEN);
    if (strcmp(out, "-") == 0 && o->json)
        return ctl_usage_err(self->name, "--json and -o - both want standard output");
    kc_layers_t *layers = ctl_layers_open(o);
    if (!layers)
        return CTL_EXIT_FAIL;
    if ((rc = ctl_key_resolve_layers(layers, self->name, argv[optind], 0, &kind, &key,
                                     &st)) != CTL_EXIT_OK)
        goto out;
    rc = CTL_EXIT_FAIL;
    blob = key;
    /* A tuning leads to its winning build, and a build to its blob. */
    if (kind == KC_REC_TUNING) {
        int lrc = ctl_record_load(st, KC_REC_TUNING, &key, &rec, NULL);
        if (lrc != KC_OK) {
            ctl_err("get: tuning %s: %s", ctl_hex(&key, h), kc_strerror(lrc));
            goto out;
        }
        blob = rec->u.tuning.winner_build;
        kind = KC_REC_BUILD;
        kc_free(rec);
        rec = NULL;
    }
    if (kind == KC_REC_BUILD) {
        int lrc = ctl_record_load(st, KC_REC_BUILD, &blob, &rec, NULL);
        if (lrc != KC_OK) {
            ctl_err("get: build %s: %s", ctl_hex(&blob, h), kc_strerror(lrc));
            goto out;
        }
        blob = rec->u.build.blob;
        kind = KC_REC_BLOB;
    }
    /* A group leads to the blob of its file fname. */
    if (kind == KC_REC_GROUP && fname) {
        int lrc = ctl_record_load(st, KC_REC_GROUP, &key, &rec, NULL);
        if (lrc != KC_OK) {
            ctl_err("get: group %s: %s", ctl_hex(&key, h), kc_strerror(lrc));
            goto out;
        }
        size_t i;
        for (i = 0; i < rec->u.group.n_files; i++)
            if (strcmp(rec->u.group.files[i].name, fname) == 0)
                break;
        if (i == rec->u.group.n_files) {
            ctl_err("get: group %s (%s) has no file %s", ctl_hex(&key, h),
                    rec->u.group.name, fname);
            goto out;
        }
        blob = rec->u.group.files[i].blob;
        kind = KC_REC_BLOB;
    } else if (fname) {
        ctl_err("get: --file is for groups, and %s is a %s record", ctl_hex(&key, h),
                kc_rec_kind_name(kind));
        goto out;
    }
    if (kind != KC_REC_BLOB) {
        ctl_err("get: %s is a %s record, which holds no cubin", ctl_hex(&key, h),
                kc_rec_kind_name(kind));
        goto out;
    }
    int grc = kc_store_get_cubin(st, &blob, &cubin, &len);
    if (grc != KC_OK) {
        ctl_err("get: blob %s: %s", ctl_hex(&blob, h),
                grc == KC_ENOTFOUND ? "missing or damaged (run 'cachectl verify')"
                                    : kc_strerror(grc));
        goto out;
    }
    if (strcmp(out, "-") == 0) {
        if (write_all(stdout, cubin, len) != 0 || fflush(stdout) != 0) {
            ctl_err("get: cannot write to standard output: %s", strerror(errno));
            goto out;
        }
        rc = CTL_EXIT_OK;
        goto out;
    }
    f = fopen(out, "wb");
    if (!f) {
        ctl_err("get: cannot create %s: %s", out, strerror(errno));
        goto out;
    }
    if (write_all(f, cubin, len) != 0 || fclose(f) != 0) {
        f = NULL;
        ctl_err("get: cannot write %s: %s", out, strerror(errno));
        unlink(out);
        goto out;
    }
    f = NULL;
    if (o->json) {
        json_t *doc = json_object();
        json_object_set_new(doc, "key", ctl_json_key(&key));
        json_object_set_new(doc, "blob", ctl_json_key(&blob));
        json_object_set_new(doc, "file", json_string(out));
        json_object_set_new(doc, "bytes", ctl_json_u64(len));
        rc = ctl_json_print(doc);
    } else {
        printf("wrote %s (%zu bytes) of blob %s to %s\n", ctl_fmt_size(len, x, sizeof x),
               len, ctl_hex(&blob, h), out);
        rc = CTL_EXIT_OK;
    }
out:
    if (f)
        fclose(f);
    kc_free(cubin);
    kc_free(rec);
    kc_layers_close(layers);
    return rc;
}

const kc_cmd_t kc_cmd_get = {
    .name = "get",
    .summary =
        "write the raw cubin of a blob, build or tuning (or a group's file) to FILE",
    .usage = "get KEY [--file NAME] -o FILE",
    .help = help,
    .run = run,
};
