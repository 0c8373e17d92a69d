#include "util.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* The first error message of this run and its code, for the JSON error
 * document (ctl_json_error_pending), and whether a JSON document has been
 * printed already. */
static char first_msg[1024];
static int first_code;
static int have_msg;
static int json_printed;

static void record_err(int code, const char *cmd, const char *fmt, va_list ap)
{
    size_t n = 0;

    if (have_msg)
        return;
    if (cmd)
        n = (size_t)snprintf(first_msg, sizeof first_msg, "%s: ", cmd);
    if (n < sizeof first_msg)
        vsnprintf(first_msg + n, sizeof first_msg - n, fmt, ap);
    first_code = code;
    have_msg = 1;
}

static void verr(int code, const char *fmt, va_list ap)
{
    va_list ap2;

    va_copy(ap2, ap);
    record_err(code, NULL, fmt, ap2);
    va_end(ap2);
    fflush(stdout);
    fputs("cachectl: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

void ctl_err(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    verr(0, fmt, ap);
    va_end(ap);
}

int ctl_first_code(void)
{
    return have_msg ? first_code : KC_OK;
}

void ctl_err_code(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    verr(code, fmt, ap);
    va_end(ap);
}

int ctl_usage_err(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    record_err(KC_EINVAL, cmd, fmt, ap);
    va_end(ap);
    fputs("cachectl: ", stderr);
    if (cmd)
        fprintf(stderr, "%s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry 'cachectl %s%s--help'.\n", cmd ? cmd : "", cmd ? " " : "");
    return CTL_EXIT_USAGE;
}

int ctl_json_error(int code, const char *message, json_t *detail)
{
    json_t *doc = json_object(), *e = json_object();

    json_object_set_new(e, "code", code ? json_string(kc_err_name(code)) : json_null());
    json_object_set_new(e, "message", json_string(message));
    if (detail)
        json_object_update_new(e, detail);
    json_object_set_new(doc, "error", e);
    return ctl_json_print(doc);
}

void ctl_json_error_pending(int status)
{
    if (status == CTL_EXIT_OK || json_printed)
        return;
    ctl_json_error(first_code                 ? first_code
                   : status == CTL_EXIT_USAGE ? KC_EINVAL
                                              : 0,
                   have_msg ? first_msg : "failed", NULL);
}

const char *ctl_store_dir(const ctl_opts_t *o)
{
    static char buf[4096];
    const char *v;

    if (o->store_dir)
        return o->store_dir;
    /* With layers, single-store commands work on the top one. */
    v = getenv("KCACHE_PATH");
    if (v && *v) {
        size_t n = strcspn(v, ":"), pre = strlen(KC_LAYERS_RO_PREFIX);
        /* Without its read-only marker: reading commands read it alike. */
        if (n > pre && strncmp(v, KC_LAYERS_RO_PREFIX, pre) == 0) {
            v += pre;
            n -= pre;
        }
        if (n > 0 && n < sizeof buf) {
            memcpy(buf, v, n);
            buf[n] = '\0';
            return buf;
        }
    }
    v = getenv("KCACHE_DIR");
    if (v && *v)
        return v;
    /* The XDG spec says a relative XDG_CACHE_HOME is invalid and is ignored. */
    v = getenv("XDG_CACHE_HOME");
    if (v && v[0] == '/') {
        if ((size_t)snprintf(buf, sizeof buf, "%s/kcache", v) >= sizeof buf)
            goto too_long;
        return buf;
    }
    v = getenv("HOME");
    if (v && v[0] == '/') {
        if ((size_t)snprintf(buf, sizeof buf, "%s/.cache/kcache", v) >= sizeof buf)
            goto too_long;
        return buf;
    }
    ctl_err("no store directory: pass -s DIR or set KCACHE_DIR "
            "(neither XDG_CACHE_HOME nor HOME is set)");
    return NULL;
too_long:
    ctl_err("store path is too long");
    return NULL;
}

static void print_layer_warnings(const kc_layers_t *l)
{
    const char *w = kc_layers_warnings(l);

    while (w && *w) {
        size_t n = strcspn(w, "\n");
        fprintf(stderr, "cachectl: warning: KCACHE_PATH: %.*s\n", (int)n, w);
        w += n + (w[n] == '\n');
    }
}

const char *ctl_target_dir(const ctl_opts_t *o, int create, size_t *layer)
{
    static char buf[4096];
    kc_store_opts_t so = {.size = sizeof(kc_store_opts_t),
                          .flags = create ? 0 : KC_STORE_NOCREATE};
    const char *kpath = getenv("KCACHE_PATH");
    kc_layers_t *l = NULL;
    kc_store_t *w;
    int rc;

    if (layer)
        *layer = (size_t)-1;
    if (o->store_dir || !kpath || !*kpath)
        return ctl_store_dir(o);
    rc = kc_layers_open(kpath, &so, &l);
    if (rc != KC_OK) {
        ctl_err_code(rc, "cannot open the stores of KCACHE_PATH: %s: %s", kc_strerror(rc),
                     kc_store_open_errmsg());
        return NULL;
    }
    print_layer_warnings(l);
    if (!(w = kc_layers_writable(l))) {
        char why[1024] = "";
        for (size_t i = 0; i < kc_layers_count(l); i++) {
            size_t used = strlen(why);
            const char *r = kc_layers_readonly_why(l, i);
            snprintf(why + used, sizeof why - used, "%s%s: %s", i ? "; " : "",
                     kc_store_path(kc_layers_store(l, i)), r ? r : "read-only");
        }
        ctl_err_code(KC_EREADONLY, "no layer of KCACHE_PATH is writable (%s)", why);
        kc_layers_close(l);
        return NULL;
    }
    for (size_t i = 0; layer && i < kc_layers_count(l); i++)
        if (kc_layers_store(l, i) == w)
            *layer = i;
    snprintf(buf, sizeof buf, "%s", kc_store_path(w));
    kc_layers_close(l);
    return buf;
}

kc_store_t *ctl_store_open(const ctl_opts_t *o, int writable)
{
    return writable ? ctl_store_open_target(o, 1, NULL) : ctl_store_open_dir(o, 0, NULL);
}

kc_store_t *ctl_store_open_target(const ctl_opts_t *o, int writable, size_t *layer)
{
    const char *dir = ctl_target_dir(o, 0, layer);
    if (!dir)
        return NULL;
    return ctl_store_open_dir(o, writable, dir);
}

kc_store_t *ctl_store_open_dir(const ctl_opts_t *o, int writable, const char *dir)
{
    kc_store_opts_t so = KC_STORE_OPTS_INIT;
    kc_store_t *st = NULL;
    int rc;

    if (!dir)
        dir = ctl_store_dir(o);

    if (!dir)
        return NULL;
    so.flags = KC_STORE_NOCREATE | (writable ? 0 : KC_STORE_RDONLY);
    rc = kc_store_open(dir, &so, &st);
    if (rc == KC_ENOTFOUND) {
        ctl_err_code(KC_ENOTFOUND, "no store at %s (pass -s DIR or set KCACHE_DIR)", dir);
        return NULL;
    }
    if (rc != KC_OK) {
        const char *detail = kc_store_open_errmsg();
        ctl_err_code(rc, "cannot open store at %s: %s%s%s", dir, kc_strerror(rc),
                     detail && *detail ? ": " : "", detail ? detail : "");
        return NULL;
    }
    if (writable && kc_store_is_readonly(st)) {
        ctl_err_code(KC_EREADONLY, "store at %s is %s", dir,
                     kc_store_is_sealed(st) ? "sealed (cachectl unseal lifts it)"
                                            : "read-only");
        kc_store_close(st);
        return NULL;
    }
    return st;
}

kc_layers_t *ctl_layers_open(const ctl_opts_t *o)
{
    kc_store_opts_t so = {.size = sizeof(kc_store_opts_t),
                          .flags = KC_STORE_NOCREATE | KC_STORE_RDONLY};
    const char *kpath = getenv("KCACHE_PATH");
    const char *path = NULL;
    kc_layers_t *l = NULL;
    int rc;

    if (o->store_dir || !kpath || !*kpath) {
        if (!(path = ctl_store_dir(o)))
            return NULL;
        rc = kc_layers_open(path, &so, &l);
    } else {
        rc = kc_layers_open(kpath, &so, &l);
    }
    /* A damaged layer is not skipped quietly: the command fails with the
     * message and exit status 3, as with one store. */
    if (rc == KC_OK && kc_layers_damaged(l) > 0) {
        ctl_err_code(KC_EDAMAGED, "a store file is damaged; the layers say:\n%s",
                     kc_layers_warnings(l));
        kc_layers_close(l);
        return NULL;
    }
    if (rc == KC_OK) {
        if (!path)
            print_layer_warnings(l);
        return l;
    }
    if (path && rc == KC_ENOTFOUND)
        ctl_err_code(KC_ENOTFOUND, "no store at %s (pass -s DIR or set KCACHE_DIR)",
                     path);
    else
        ctl_err_code(rc, "cannot open %s: %s: %s",
                     path ? path : "the stores of KCACHE_PATH", kc_strerror(rc),
                     kc_store_open_errmsg());
    return NULL;
}

json_t *ctl_json_layers(const kc_layers_t *layers)
{
    json_t *a = json_array();
    for (size_t i = 0; i < kc_layers_count(layers); i++) {
        kc_store_t *st = kc_layers_store(layers, i);
        json_t *e = json_object();
        json_object_set_new(e, "index", ctl_json_u64(i));
        json_object_set_new(e, "path", json_string(kc_store_path(st)));
        const char *why = kc_layers_readonly_why(layers, i);
        json_object_set_new(e, "writable", json_boolean(why == NULL));
        json_object_set_new(e, "readonly_why", ctl_json_str(why));
        json_array_append_new(a, e);
    }
    return a;
}

void ctl_print_layers(const kc_layers_t *layers)
{
    printf("layers:\n");
    for (size_t i = 0; i < kc_layers_count(layers); i++) {
        kc_store_t *st = kc_layers_store(layers, i);
        const char *why = kc_layers_readonly_why(layers, i);
        printf("  %zu  %s", i, kc_store_path(st));
        if (why)
            printf(" (read-only: %s)", why);
        printf("\n");
    }
}

int ctl_arch_parse(const char *arg, char *out, size_t cap)
{
    const char *a = arg;
    size_t digits = 0;

    if (strncmp(a, "sm_", 3) == 0)
        a += 3;
    while (a[digits] >= '0' && a[digits] <= '9')
        digits++;
    if (digits < 2 || digits > 3 || a[0] == '0')
        return 0;
    if (a[digits] && !((a[digits] == 'a' || a[digits] == 'f') && !a[digits + 1]))
        return 0;
    return (size_t)snprintf(out, cap, "sm_%s", a) < cap;
}

const char *ctl_arch_arg(const char *cmd, const char *arg, int *status)
{
    static char buf[16];

    if (ctl_arch_parse(arg, buf, sizeof buf))
        return buf;
    *status = ctl_usage_err(cmd, "bad arch '%s' (expected " CTL_ARCH_FORMS ")", arg);
    return NULL;
}

int ctl_build_attrs_known(const kc_build_rec_t *b)
{
    return b->max_threads != 0;
}

json_t *ctl_json_attr(const kc_build_rec_t *b, uint32_t v)
{
    return ctl_build_attrs_known(b) ? json_integer(v) : json_null();
}

int ctl_key_syntax_ok(const char *arg)
{
    kc_key_prefix_t p;
    return kc_key_prefix_parse(arg, &p) == KC_OK;
}

/* Usage stamps share the key of the record they describe, so a prefix is
 * first looked up among the records people name, and among usage stamps only
 * when nothing else matches. */
static int find_any(kc_store_t *st, const kc_key_prefix_t *p, kc_rec_kind_t *kind_out,
                    kc_key_t *key_out)
{
    static const int kinds[] = {KC_REC_BLOB, KC_REC_BUILD, KC_REC_TUNING, KC_REC_LEASE,
                                KC_REC_GROUP};
    int found = 0;

    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        kc_rec_kind_t k;
        kc_key_t key;
        int rc = kc_store_find(st, kinds[i], p, &k, &key);
        if (rc == KC_ENOTFOUND)
            continue;
        if (rc != KC_OK)
            return rc;
        if (found++)
            return KC_EAMBIGUOUS;
        *kind_out = k;
        *key_out = key;
    }
    if (found)
        return KC_OK;
    return kc_store_find(st, KC_REC_USAGE, p, kind_out, key_out);
}

int ctl_key_resolve(kc_store_t *st, const char *cmd, const char *arg, int kind,
                    kc_rec_kind_t *kind_out, kc_key_t *key_out)
{
    kc_layers_t *one = NULL;
    if (kc_layers_wrap(st, &one) != KC_OK) {
        ctl_err("%s: out of memory", cmd);
        return CTL_EXIT_FAIL;
    }
    int rc = ctl_key_resolve_layers(one, cmd, arg, kind, kind_out, key_out, NULL);
    kc_layers_close(one);
    return rc;
}

int ctl_key_resolve_layers(const kc_layers_t *layers, const char *cmd, const char *arg,
                           int kind, kc_rec_kind_t *kind_out, kc_key_t *key_out,
                           kc_store_t **store_out)
{
    kc_store_t *st = NULL;
    kc_key_prefix_t p;
    int rc = KC_ENOTFOUND;

    if (kc_key_prefix_parse(arg, &p) != KC_OK)
        return ctl_usage_err(cmd, "'%s' is not a key: give %d to %d hex digits", arg,
                             KC_KEY_PREFIX_MIN, KC_KEY_HEX_LEN);
    /* The first layer that knows the key answers, as for a lookup. */
    for (size_t i = 0; rc == KC_ENOTFOUND && i < kc_layers_count(layers); i++) {
        st = kc_layers_store(layers, i);
        if (kind)
            rc = kc_store_find(st, kind, &p, kind_out, key_out);
        else
            rc = find_any(st, &p, kind_out, key_out);
    }
    if (store_out)
        *store_out = st;
    if (rc == KC_OK)
        return CTL_EXIT_OK;
    if (rc == KC_ENOTFOUND)
        ctl_err_code(rc, "%s: no %s%srecord matches key %s", cmd,
                     kind ? kc_rec_kind_name(kind) : "", kind ? " " : "", arg);
    else if (rc == KC_EAMBIGUOUS)
        ctl_err_code(rc, "%s: key %s matches more than one record; give more digits", cmd,
                     arg);
    else
        ctl_err_code(rc, "%s: cannot look up %s: %s: %s", cmd, arg, kc_strerror(rc),
                     kc_store_errmsg(st));
    return CTL_EXIT_FAIL;
}

int ctl_record_load(kc_store_t *st, kc_rec_kind_t kind, const kc_key_t *key,
                    kc_record_t **rec, size_t *stored)
{
    void *data = NULL;
    size_t len = 0;
    int rc;

    *rec = NULL;
    rc = kc_store_get_raw(st, kind, key, &data, &len);
    if (rc != KC_OK)
        return rc;
    rc = kc_record_decode(data, len, rec);
    kc_free(data);
    if (rc == KC_OK && (int)(*rec)->kind != (int)kind) {
        kc_free(*rec);
        *rec = NULL;
        rc = KC_ECORRUPT;
    }
    if (stored)
        *stored = len;
    return rc;
}

/* ---- formatting -------------------------------------------------------- */

const char *ctl_hex(const kc_key_t *key, char out[KC_KEY_HEX_LEN + 1])
{
    kc_key_to_hex(key, out);
    return out;
}

const char *ctl_fmt_size(uint64_t b, char *out, size_t cap)
{
    if (b < 1024)
        snprintf(out, cap, "%" PRIu64 " B", b);
    else if (b < 1024 * 1024)
        snprintf(out, cap, "%.1f KiB", b / 1024.0);
    else if (b < (uint64_t)1024 * 1024 * 1024)
        snprintf(out, cap, "%.2f MiB", b / (1024.0 * 1024.0));
    else
        snprintf(out, cap, "%.2f GiB", b / (1024.0 * 1024.0 * 1024.0));
    return out;
}

const char *ctl_fmt_time(uint64_t t, char *out, size_t cap)
{
    struct tm tm;
    time_t tt = (time_t)t;

    if (t == 0 || !gmtime_r(&tt, &tm)) {
        snprintf(out, cap, "-");
        return out;
    }
    strftime(out, cap, "%Y-%m-%d %H:%M:%S UTC", &tm);
    return out;
}

const char *ctl_fmt_iso(uint64_t t, char *out, size_t cap)
{
    struct tm tm;
    time_t tt = (time_t)t;

    if (t == 0 || !gmtime_r(&tt, &tm))
        return NULL;
    strftime(out, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return out;
}

const char *ctl_fmt_us(uint64_t us, char *out, size_t cap)
{
    if (us < 1000)
        snprintf(out, cap, "%" PRIu64 " us", us);
    else if (us < 1000000)
        snprintf(out, cap, "%.1f ms", us / 1e3);
    else
        snprintf(out, cap, "%.2f s", us / 1e6);
    return out;
}

const char *ctl_fmt_ratio(uint64_t raw, uint64_t stored, char *out, size_t cap)
{
    if (stored == 0)
        snprintf(out, cap, "-");
    else
        snprintf(out, cap, "%.2fx", (double)raw / (double)stored);
    return out;
}

const char *ctl_fmt_params(const kc_param_t *p, size_t n, char *out, size_t cap)
{
    size_t len = 0;

    if (cap == 0)
        return out;
    out[0] = '\0';
    if (n == 0) {
        snprintf(out, cap, "-");
        return out;
    }
    for (size_t i = 0; i < n && len < cap; i++) {
        int w = snprintf(out + len, cap - len, "%s%s=%" PRId64, i ? "," : "",
                         p[i].name ? p[i].name : "?", p[i].value);
        if (w < 0)
            break;
        len += (size_t)w;
    }
    return out;
}

/* ---- tables ------------------------------------------------------------ */

struct ctl_table {
    size_t ncols, nrows, cap;
    char **cells; /* row-major, header row first */
};

static char *xstrdup(const char *s)
{
    char *d = strdup(s ? s : "-");
    if (!d) {
        ctl_err("out of memory");
        exit(CTL_EXIT_FAIL);
    }
    return d;
}

ctl_table_t *ctl_table_new(size_t ncols, const char *const *headers)
{
    ctl_table_t *t = calloc(1, sizeof *t);
    if (!t) {
        ctl_err("out of memory");
        exit(CTL_EXIT_FAIL);
    }
    t->ncols = ncols;
    ctl_table_row(t, headers);
    return t;
}

void ctl_table_row(ctl_table_t *t, const char *const *cells)
{
    if (t->nrows == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 16;
        char **c = realloc(t->cells, cap * t->ncols * sizeof *c);
        if (!c) {
            ctl_err("out of memory");
            exit(CTL_EXIT_FAIL);
        }
        t->cells = c;
        t->cap = cap;
    }
    for (size_t i = 0; i < t->ncols; i++)
        t->cells[t->nrows * t->ncols + i] = xstrdup(cells[i]);
    t->nrows++;
}

size_t ctl_table_rows(const ctl_table_t *t)
{
    return t->nrows - 1;
}

void ctl_table_print(const ctl_table_t *t)
{
    size_t *w = calloc(t->ncols, sizeof *w);
    int *right = calloc(t->ncols, sizeof *right);

    if (!w || !right) {
        ctl_err("out of memory");
        exit(CTL_EXIT_FAIL);
    }
    for (size_t c = 0; c < t->ncols; c++) {
        if (t->cells[c][0] == '>') {
            right[c] = 1;
            memmove(t->cells[c], t->cells[c] + 1, strlen(t->cells[c]));
        }
    }
    for (size_t r = 0; r < t->nrows; r++)
        for (size_t c = 0; c < t->ncols; c++) {
            size_t l = strlen(t->cells[r * t->ncols + c]);
            if (l > w[c])
                w[c] = l;
        }
    for (size_t r = 0; r < t->nrows; r++) {
        for (size_t c = 0; c < t->ncols; c++) {
            const char *s = t->cells[r * t->ncols + c];
            int last = c + 1 == t->ncols;
            if (right[c])
                printf("%*s", (int)w[c], s);
            else if (last)
                fputs(s, stdout);
            else
                printf("%-*s", (int)w[c], s);
            fputs(last ? "\n" : "  ", stdout);
        }
    }
    free(w);
    free(right);
}

void ctl_table_free(ctl_table_t *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->nrows * t->ncols; i++)
        free(t->cells[i]);
    free(t->cells);
    free(t);
}

void ctl_field(const char *name, const char *fmt, ...)
{
    va_list ap;
    printf("%-15s ", name);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
}

/* ---- JSON -------------------------------------------------------------- */

int ctl_json_print(json_t *doc)
{
    char *s;

    if (!doc) {
        ctl_err("out of memory building JSON output");
        return CTL_EXIT_FAIL;
    }
    s = json_dumps(doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(doc);
    if (!s) {
        ctl_err("cannot serialize JSON output");
        return CTL_EXIT_FAIL;
    }
    puts(s);
    free(s);
    json_printed = 1;
    return CTL_EXIT_OK;
}

json_t *ctl_json_key(const kc_key_t *key)
{
    char hex[KC_KEY_HEX_LEN + 1];
    kc_key_to_hex(key, hex);
    return json_string(hex);
}

json_t *ctl_json_u64(uint64_t v)
{
    /* json_int_t is signed 64-bit; every count and size here fits. */
    return json_integer((json_int_t)(v > INT64_MAX ? INT64_MAX : v));
}

json_t *ctl_json_params(const kc_param_t *p, size_t n)
{
    json_t *o = json_object();
    for (size_t i = 0; o && i < n; i++)
        json_object_set_new(o, p[i].name ? p[i].name : "?", json_integer(p[i].value));
    return o;
}

json_t *ctl_json_str(const char *s)
{
    return s ? json_string(s) : json_null();
}

/* Delete a record and the usage stamp kept under its key. A record that is
 * already gone counts as deleted: the store drops corrupt records it reads. */
int ctl_delete_record(kc_store_t *st, kc_rec_kind_t kind, const kc_key_t *key)
{
    int rc = kc_store_del(st, kind, key);

    if (rc != KC_OK && rc != KC_ENOTFOUND)
        return rc;
    if (kind != KC_REC_USAGE) {
        int urc = kc_store_del(st, KC_REC_USAGE, key);
        if (urc != KC_OK && urc != KC_ENOTFOUND)
            return urc;
    }
    return KC_OK;
}
