/* JSON spec files (docs/SPEC.md): each kernel object becomes a
 * kc_kernel_spec_t that borrows the parsed document, then kc__spec_create
 * validates and copies it. Every key is checked, so a typo is an error. */
#include "index.h"
#include "json_seed.h"
#include "spec.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kcache/errors.h"

/* Temporary allocations for one file, freed together once every spec is
 * created (kc__spec_create copies what it keeps). */
typedef struct scratch {
    struct scratch *next;
    max_align_t data[];
} scratch_t;

typedef struct loader {
    const char *file; /* for messages */
    const char *base_dir;
    char who[KC__SPEC_MAX_NAME + 4096];
    char *err;
    size_t errcap;
    scratch_t *scratch;
} loader_t;

static int failf(loader_t *l, int code, const char *fmt, ...)
{
    if (l->err && l->errcap) {
        int n = snprintf(l->err, l->errcap, "%s: ", l->who);
        if (n >= 0 && (size_t)n < l->errcap) {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(l->err + n, l->errcap - (size_t)n, fmt, ap);
            va_end(ap);
        }
    }
    return code;
}

static void *scratch_alloc(loader_t *l, size_t n)
{
    scratch_t *s = malloc(sizeof(*s) + (n ? n : 1));
    if (!s)
        return NULL;
    s->next = l->scratch;
    l->scratch = s;
    return s->data;
}

static void scratch_free(loader_t *l)
{
    for (scratch_t *s = l->scratch, *next; s; s = next) {
        next = s->next;
        free(s);
    }
    l->scratch = NULL;
}

/* Reads a regular file of at most KC__SPEC_FILE_MAX bytes into a
 * NUL-terminated buffer. Devices and FIFOs are refused: they may never end. */
static int read_file(const char *path, char **out, size_t *len, char *why, size_t whycap)
{
    struct stat st;
    char *buf = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    int rc = KC_EIO;

    if (fd < 0) {
        snprintf(why, whycap, "cannot open '%s': %s", path, strerror(errno));
        return KC_EIO;
    }
    if (fstat(fd, &st) != 0) {
        snprintf(why, whycap, "cannot stat '%s': %s", path, strerror(errno));
        goto fail;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(why, whycap, "'%s' is not a regular file", path);
        goto fail;
    }
    if ((uint64_t)st.st_size > KC__SPEC_FILE_MAX) {
        snprintf(why, whycap, "'%s' is larger than %u MiB", path,
                 KC__SPEC_FILE_MAX >> 20);
        rc = KC_ETOOBIG;
        goto fail;
    }
    size_t size = (size_t)st.st_size, got = 0;
    buf = malloc(size + 1);
    if (!buf) {
        snprintf(why, whycap, "out of memory");
        rc = KC_ENOMEM;
        goto fail;
    }
    while (got < size) {
        ssize_t r = read(fd, buf + got, size - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            snprintf(why, whycap, "cannot read '%s': %s", path,
                     r < 0 ? strerror(errno) : "file shrank");
            goto fail;
        }
        got += (size_t)r;
    }
    buf[size] = '\0';
    close(fd);
    *out = buf;
    *len = size;
    return KC_OK;

fail:
    free(buf);
    close(fd);
    return rc;
}

/* Reads a file named in the spec, relative to the spec file's directory.
 * The contents live in scratch memory. */
static int read_referenced(loader_t *l, const char *field, const char *rel,
                           const char **out, size_t *len)
{
    char why[512];
    char *path, *buf;

    if (!l->base_dir)
        return failf(l, KC_ESPEC, "%s: file references are not allowed here", field);
    if (!rel[0])
        return failf(l, KC_ESPEC, "%s: empty file name", field);
    size_t plen = strlen(l->base_dir) + strlen(rel) + 2;
    if (!(path = scratch_alloc(l, plen)))
        return failf(l, KC_ENOMEM, "out of memory");
    if (rel[0] == '/')
        snprintf(path, plen, "%s", rel);
    else
        snprintf(path, plen, "%s/%s", l->base_dir, rel);
    int rc = read_file(path, &buf, len, why, sizeof(why));
    if (rc != KC_OK)
        return failf(l, rc == KC_ENOMEM ? rc : KC_ESPEC, "%s: %s", field, why);
    if (memchr(buf, '\0', *len)) {
        free(buf);
        return failf(l, KC_ESPEC, "%s: '%s' contains a NUL byte", field, path);
    }
    char *copy = scratch_alloc(l, *len + 1);
    if (copy)
        memcpy(copy, buf, *len + 1);
    free(buf);
    if (!copy)
        return failf(l, KC_ENOMEM, "out of memory");
    *out = copy;
    return KC_OK;
}

static int check_keys(loader_t *l, const char *where, json_t *obj,
                      const char *const *known)
{
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v)
    {
        size_t i = 0;
        while (known[i] && strcmp(known[i], key) != 0)
            i++;
        if (!known[i])
            return failf(l, KC_ESPEC, "%sunknown key '%.64s'", where, key);
    }
    return KC_OK;
}

/* A string member, or NULL when absent. */
static int get_string(loader_t *l, json_t *obj, const char *key, const char **out)
{
    json_t *v = json_object_get(obj, key);
    *out = NULL;
    if (!v)
        return KC_OK;
    if (!json_is_string(v))
        return failf(l, KC_ESPEC, "%s: expected a string", key);
    if (strlen(json_string_value(v)) != json_string_length(v))
        return failf(l, KC_ESPEC, "%s: contains a NUL character", key);
    *out = json_string_value(v);
    return KC_OK;
}

/* An expression given as a string or an integer. */
static int get_expr(loader_t *l, json_t *v, const char *field, const char **out)
{
    if (json_is_string(v)) {
        if (strlen(json_string_value(v)) != json_string_length(v))
            return failf(l, KC_ESPEC, "%s: contains a NUL character", field);
        *out = json_string_value(v);
        return KC_OK;
    }
    if (json_is_integer(v)) {
        char *s = scratch_alloc(l, 24);
        if (!s)
            return failf(l, KC_ENOMEM, "out of memory");
        json_int_t i = json_integer_value(v);
        /* A negative literal is "-N": unary minus, which the parser takes. */
        snprintf(s, 24, "%" JSON_INTEGER_FORMAT, i);
        *out = s;
        return KC_OK;
    }
    return failf(l, KC_ESPEC, "%s: expected an expression string or an integer", field);
}

/* "candidates": [{"build": "<32 hex digits>", "config": {"XBLOCK": 1024}}].
 * Everything a prebuilt kernel must not have (source, entry, params...) is
 * left for kc__spec_create to refuse with its message. */
static int load_prebuilt(loader_t *l, json_t *k, kc_kernel_spec_t *spec)
{
    static const char *const keys[] = {"build", "config", NULL};
    static const char *const own[] = {"source", "source_file", "headers"};
    json_t *cs = json_object_get(k, "candidates");
    int rc;

    spec->source_kind = KC_SOURCE_PREBUILT;
    for (size_t i = 0; i < sizeof(own) / sizeof(own[0]); i++)
        if (json_object_get(k, own[i]))
            return failf(l, KC_ESPEC,
                         "%s: a prebuilt kernel has none (its candidates are binaries)",
                         own[i]);
    if (!cs)
        return failf(l, KC_ESPEC, "candidates: missing (a prebuilt kernel's binaries)");
    if (!json_is_array(cs) || json_array_size(cs) == 0)
        return failf(l, KC_ESPEC, "candidates: expected a non-empty array");
    size_t n = json_array_size(cs);
    kc_prebuilt_t *pb = scratch_alloc(l, n * sizeof(*pb));
    if (!pb)
        return failf(l, KC_ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_array_get(cs, i);
        char where[48];
        snprintf(where, sizeof(where), "candidates[%zu]: ", i);
        if (!json_is_object(e))
            return failf(l, KC_ESPEC, "candidates[%zu]: expected an object", i);
        if ((rc = check_keys(l, where, e, keys)))
            return rc;
        json_t *build = json_object_get(e, "build"),
               *config = json_object_get(e, "config");
        memset(&pb[i], 0, sizeof(pb[i]));
        if (!json_is_string(build) ||
            kc_key_from_hex(json_string_value(build), &pb[i].build) != KC_OK)
            return failf(l, KC_ESPEC,
                         "candidates[%zu]: build: expected a build key (32 hex digits)",
                         i);
        if (!config)
            continue;
        if (!json_is_object(config))
            return failf(l, KC_ESPEC,
                         "candidates[%zu]: config: expected an object of name: integer",
                         i);
        size_t nc = json_object_size(config), j = 0;
        kc_param_t *ps = scratch_alloc(l, (nc ? nc : 1) * sizeof(*ps));
        if (!ps)
            return failf(l, KC_ENOMEM, "out of memory");
        const char *name;
        json_t *v;
        json_object_foreach(config, name, v)
        {
            if (!json_is_integer(v))
                return failf(l, KC_ESPEC,
                             "candidates[%zu]: config '%.64s': expected an "
                             "integer",
                             i, name);
            ps[j++] = (kc_param_t){name, (int64_t)json_integer_value(v)};
        }
        pb[i].config = ps;
        pb[i].n_config = nc;
    }
    spec->prebuilt = pb;
    spec->n_prebuilt = n;
    return KC_OK;
}

static int load_source(loader_t *l, json_t *k, kc_kernel_spec_t *spec)
{
    const char *kind, *source, *file;
    int rc;

    if ((rc = get_string(l, k, "source_kind", &kind)))
        return rc;
    if (!kind || strcmp(kind, "cuda") == 0)
        spec->source_kind = KC_SOURCE_CUDA;
    else if (strcmp(kind, "ptx") == 0)
        spec->source_kind = KC_SOURCE_PTX;
    else if (strcmp(kind, "prebuilt") == 0)
        return load_prebuilt(l, k, spec);
    else
        return failf(l, KC_ESPEC,
                     "source_kind: '%.64s' is not \"cuda\", \"ptx\" or \"prebuilt\"",
                     kind);

    if ((rc = get_string(l, k, "source", &source)) ||
        (rc = get_string(l, k, "source_file", &file)))
        return rc;
    if (source && file)
        return failf(l, KC_ESPEC, "source: give either source or source_file, not both");
    if (!source && !file)
        return failf(l, KC_ESPEC, "source: missing (give source or source_file)");
    if (source) {
        spec->source = source;
        spec->source_len = strlen(source);
    } else if ((rc = read_referenced(l, "source_file", file, &spec->source,
                                     &spec->source_len))) {
        return rc;
    }
    if (spec->source_len == 0)
        return failf(l, KC_ESPEC, "%s: empty", source ? "source" : "source_file");

    json_t *h = json_object_get(k, "headers");
    if (!h)
        return KC_OK;
    if (!json_is_object(h))
        return failf(l, KC_ESPEC, "headers: expected an object of name: content");
    size_t n = json_object_size(h), i = 0;
    kc_header_t *hs = scratch_alloc(l, (n ? n : 1) * sizeof(*hs));
    if (!hs)
        return failf(l, KC_ENOMEM, "out of memory");
    const char *name;
    json_t *v;
    json_object_foreach(h, name, v)
    {
        char field[128];
        snprintf(field, sizeof(field), "headers '%.64s'", name);
        hs[i].name = name;
        if (json_is_string(v)) {
            if (strlen(json_string_value(v)) != json_string_length(v))
                return failf(l, KC_ESPEC, "%s: contains a NUL character", field);
            hs[i].content = json_string_value(v);
        } else if (json_is_object(v)) {
            static const char *const keys[] = {"file", NULL};
            char where[160];
            snprintf(where, sizeof(where), "%s: ", field);
            json_t *f = json_object_get(v, "file");
            size_t len;
            if ((rc = check_keys(l, where, v, keys)))
                return rc;
            if (!json_is_string(f))
                return failf(l, KC_ESPEC, "%s: expected {\"file\": \"path\"}", field);
            if ((rc = read_referenced(l, field, json_string_value(f), &hs[i].content,
                                      &len)))
                return rc;
        } else {
            return failf(l, KC_ESPEC, "%s: expected a string or {\"file\": \"path\"}",
                         field);
        }
        i++;
    }
    spec->headers = hs;
    spec->n_headers = n;
    return KC_OK;
}

static int load_options(loader_t *l, json_t *k, kc_kernel_spec_t *spec)
{
    json_t *o = json_object_get(k, "options");
    if (!o)
        return KC_OK;
    if (!json_is_array(o))
        return failf(l, KC_ESPEC, "options: expected an array of strings");
    size_t n = json_array_size(o);
    const char **opts = scratch_alloc(l, (n ? n : 1) * sizeof(*opts));
    if (!opts)
        return failf(l, KC_ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        json_t *v = json_array_get(o, i);
        if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v))
            return failf(l, KC_ESPEC, "options[%zu]: expected a string", i);
        opts[i] = json_string_value(v);
    }
    spec->options = opts;
    spec->n_options = n;
    return KC_OK;
}

static int load_values(loader_t *l, const char *field, json_t *vals, kc_param_spec_t *p)
{
    if (!json_is_array(vals))
        return failf(l, KC_ESPEC, "%s: expected an array of integers", field);
    size_t n = json_array_size(vals);
    int64_t *v = scratch_alloc(l, (n ? n : 1) * sizeof(*v));
    if (!v)
        return failf(l, KC_ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        json_t *x = json_array_get(vals, i);
        if (!json_is_integer(x))
            return failf(l, KC_ESPEC, "%s: values[%zu]: expected an integer", field, i);
        v[i] = (int64_t)json_integer_value(x);
    }
    p->values = v;
    p->n_values = n;
    return KC_OK;
}

/* params: {"BLOCK": [128, 256]} (jansson keeps the file's key order), or
 * [{"name": "BLOCK", "values": [128, 256]}]. */
static int load_params(loader_t *l, json_t *k, kc_kernel_spec_t *spec)
{
    json_t *ps = json_object_get(k, "params");
    int rc;
    if (!ps)
        return KC_OK;
    if (!json_is_object(ps) && !json_is_array(ps))
        return failf(l, KC_ESPEC, "params: expected an object or an array");
    size_t n = json_is_object(ps) ? json_object_size(ps) : json_array_size(ps), i = 0;
    kc_param_spec_t *p = scratch_alloc(l, (n ? n : 1) * sizeof(*p));
    if (!p)
        return failf(l, KC_ENOMEM, "out of memory");
    char field[128];
    if (json_is_object(ps)) {
        const char *name;
        json_t *v;
        json_object_foreach(ps, name, v)
        {
            snprintf(field, sizeof(field), "params '%.64s'", name);
            p[i].name = name;
            if ((rc = load_values(l, field, v, &p[i])))
                return rc;
            i++;
        }
    } else {
        static const char *const keys[] = {"name", "values", NULL};
        for (i = 0; i < n; i++) {
            json_t *e = json_array_get(ps, i);
            snprintf(field, sizeof(field), "params[%zu]", i);
            if (!json_is_object(e))
                return failf(l, KC_ESPEC,
                             "%s: expected {\"name\": ..., \"values\": [...]}", field);
            char where[140];
            snprintf(where, sizeof(where), "%s: ", field);
            if ((rc = check_keys(l, where, e, keys)))
                return rc;
            json_t *name = json_object_get(e, "name");
            if (!json_is_string(name))
                return failf(l, KC_ESPEC, "%s: name: expected a string", field);
            p[i].name = json_string_value(name);
            snprintf(field, sizeof(field), "params[%zu] '%.64s'", i, p[i].name);
            json_t *values = json_object_get(e, "values");
            if (!values)
                return failf(l, KC_ESPEC, "%s: values: missing", field);
            if ((rc = load_values(l, field, values, &p[i])))
                return rc;
        }
    }
    spec->params = p;
    spec->n_params = n;
    return KC_OK;
}

/* "f32*" is a pointer to f32, "i32" a scalar. */
static int parse_type(const char *t, kc_arg_spec_t *a)
{
    char name[32];
    size_t len = strlen(t);
    a->kind = KC_ARG_SCALAR;
    if (len && t[len - 1] == '*') {
        a->kind = KC_ARG_POINTER;
        len--;
    }
    if (len == 0 || len >= sizeof(name))
        return -1;
    memcpy(name, t, len);
    name[len] = '\0';
    a->dtype = kc_dtype_from_name(name);
    return a->dtype == KC_DTYPE_INVALID ? -1 : 0;
}

static int load_args(loader_t *l, json_t *k, kc_kernel_spec_t *spec)
{
    static const char *const keys[] = {"name", "type", "access", "key", NULL};
    json_t *as = json_object_get(k, "args");
    int rc;
    if (!as)
        return KC_OK;
    if (!json_is_array(as))
        return failf(l, KC_ESPEC, "args: expected an array");
    size_t n = json_array_size(as);
    kc_arg_spec_t *a = scratch_alloc(l, (n ? n : 1) * sizeof(*a));
    if (!a)
        return failf(l, KC_ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_array_get(as, i);
        char where[32];
        snprintf(where, sizeof(where), "args[%zu]: ", i);
        if (!json_is_object(e))
            return failf(l, KC_ESPEC, "args[%zu]: expected an object", i);
        if ((rc = check_keys(l, where, e, keys)))
            return rc;
        memset(&a[i], 0, sizeof(a[i]));
        json_t *name = json_object_get(e, "name"), *type = json_object_get(e, "type");
        json_t *access = json_object_get(e, "access"), *key = json_object_get(e, "key");
        if (!json_is_string(name))
            return failf(l, KC_ESPEC, "args[%zu]: name: expected a string", i);
        a[i].name = json_string_value(name);
        if (!type)
            return failf(l, KC_ESPEC, "args[%zu]: type: missing", i);
        if (!json_is_string(type))
            return failf(l, KC_ESPEC, "args[%zu]: type: expected a string", i);
        if (parse_type(json_string_value(type), &a[i]))
            return failf(l, KC_ESPEC, "args[%zu]: unknown type '%.64s'", i,
                         json_string_value(type));
        if (a[i].kind == KC_ARG_POINTER) {
            if (!access)
                return failf(l, KC_ESPEC, "args[%zu]: access: missing (in, out or inout)",
                             i);
            const char *s = json_is_string(access) ? json_string_value(access) : "";
            if (strcmp(s, "in") == 0)
                a[i].access = KC_ACCESS_IN;
            else if (strcmp(s, "out") == 0)
                a[i].access = KC_ACCESS_OUT;
            else if (strcmp(s, "inout") == 0)
                a[i].access = KC_ACCESS_INOUT;
            else
                return failf(l, KC_ESPEC, "args[%zu]: access: expected in, out or inout",
                             i);
            if (key)
                return failf(l, KC_ESPEC, "args[%zu]: key: only scalars can be keys", i);
        } else {
            if (access)
                return failf(l, KC_ESPEC, "args[%zu]: access: applies to pointers only",
                             i);
            if (key && !json_is_boolean(key))
                return failf(l, KC_ESPEC, "args[%zu]: key: expected true or false", i);
            a[i].is_key = key && json_is_true(key);
        }
    }
    spec->args = a;
    spec->n_args = n;
    return KC_OK;
}

static int load_geometry(loader_t *l, json_t *k, const char *key, const char **out)
{
    json_t *g = json_object_get(k, key);
    char field[32];
    int rc;
    if (!g)
        return KC_OK; /* kc__spec_create reports a missing grid or block */
    if (!json_is_array(g) || json_array_size(g) < 1 || json_array_size(g) > 3)
        return failf(l, KC_ESPEC, "%s: expected an array of 1 to 3 expressions", key);
    for (size_t i = 0; i < json_array_size(g); i++) {
        snprintf(field, sizeof(field), "%s[%zu]", key, i);
        if ((rc = get_expr(l, json_array_get(g, i), field, &out[i])))
            return rc;
    }
    return KC_OK;
}

static int load_kernel(loader_t *l, json_t *k, kc_kernel_spec_t *spec)
{
    static const char *const keys[] = {
        "name",    "source_kind", "source",     "source_file", "headers", "entry",
        "options", "params",      "constraint", "args",        "grid",    "block",
        "shared",  "dims",        "candidates", NULL};
    const char *dims;
    int rc;

    memset(spec, 0, sizeof(*spec));
    if ((rc = check_keys(l, "", k, keys)) || (rc = get_string(l, k, "name", &spec->name)))
        return rc;
    if (!spec->name || !spec->name[0])
        return failf(l, KC_ESPEC, "name: missing");
    if (!json_object_get(k, "source_kind") ||
        strcmp(json_string_value(json_object_get(k, "source_kind")) ?: "", "prebuilt") !=
            0)
        if (json_object_get(k, "candidates"))
            return failf(l, KC_ESPEC, "candidates: only a prebuilt kernel has them");
    if ((rc = load_source(l, k, spec)) ||
        (rc = get_string(l, k, "entry", &spec->entry)) ||
        (rc = load_options(l, k, spec)) || (rc = load_params(l, k, spec)) ||
        (rc = get_string(l, k, "constraint", &spec->constraint)) ||
        (rc = load_args(l, k, spec)) || (rc = load_geometry(l, k, "grid", spec->grid)) ||
        (rc = load_geometry(l, k, "block", spec->block)) ||
        (rc = get_string(l, k, "dims", &dims)))
        return rc;
    json_t *shared = json_object_get(k, "shared");
    if (shared && (rc = get_expr(l, shared, "shared", &spec->shared)))
        return rc;
    if (!dims || strcmp(dims, "exact") == 0)
        spec->dims_policy = KC_DIMS_EXACT;
    else if (strcmp(dims, "pow2") == 0)
        spec->dims_policy = KC_DIMS_POW2;
    else
        return failf(l, KC_ESPEC, "dims: '%.64s' is neither \"exact\" nor \"pow2\"",
                     dims);
    return KC_OK;
}

/* Whether spec (a kc__spec_t) is named key: the index of names seen. */
static int same_name(const void *spec, const void *key)
{
    return strcmp(((const kc__spec_t *)spec)->s.name, key) == 0;
}

static int load_document(loader_t *l, json_t *root, kc__spec_t ***specs, size_t *n_out)
{
    static const char *const keys[] = {"version", "kernels", NULL};
    kc__spec_t **out = NULL;
    kc__index_t names = KC__INDEX_INIT; /* out[0..n) by name */
    size_t n = 0;
    int rc;

    snprintf(l->who, sizeof(l->who), "%s", l->file);
    if (!json_is_object(root))
        return failf(l, KC_ESPEC, "expected an object with version and kernels");
    if ((rc = check_keys(l, "", root, keys)))
        return rc;
    json_t *version = json_object_get(root, "version");
    if (!version)
        return failf(l, KC_ESPEC, "version: missing");
    if (!json_is_integer(version) || json_integer_value(version) != 1)
        return failf(l, KC_ESPEC, "version: unsupported (this kcache reads version 1)");
    json_t *kernels = json_object_get(root, "kernels");
    if (!json_is_array(kernels) || json_array_size(kernels) == 0)
        return failf(l, KC_ESPEC, "kernels: expected a non-empty array");

    size_t count = json_array_size(kernels);
    out = calloc(count, sizeof(*out));
    if (!out || kc__index_reserve(&names, count) != KC_OK) {
        free(out);
        kc__index_free(&names);
        return failf(l, KC_ENOMEM, "out of memory");
    }
    for (; n < count; n++) {
        json_t *k = json_array_get(kernels, n);
        json_t *name = json_object_get(k, "name");
        if (json_is_string(name) && json_string_length(name) &&
            json_string_length(name) <= KC__SPEC_MAX_NAME)
            snprintf(l->who, sizeof(l->who), "%s: kernels[%zu] '%s'", l->file, n,
                     json_string_value(name));
        else
            snprintf(l->who, sizeof(l->who), "%s: kernels[%zu]", l->file, n);
        if (!json_is_object(k)) {
            rc = failf(l, KC_ESPEC, "expected an object");
            goto fail;
        }
        kc_kernel_spec_t spec;
        if ((rc = load_kernel(l, k, &spec)))
            goto fail;
        uint64_t h = kc__index_str_hash(spec.name);
        const kc__spec_t *same = kc__index_get(&names, h, same_name, spec.name);
        if (same) {
            size_t j = 0;
            while (out[j] != same)
                j++;
            rc = failf(l, KC_ESPEC, "name: also used by kernels[%zu]", j);
            goto fail;
        }
        rc = kc__spec_create_as(&spec, l->who, &out[n], l->err, l->errcap);
        scratch_free(l);
        if (rc)
            goto fail;
        /* Reserved for count names: cannot fail. */
        kc__index_put(&names, h, out[n], same_name, out[n]->s.name, NULL);
    }
    kc__index_free(&names);
    *specs = out;
    *n_out = n;
    return KC_OK;

fail:
    scratch_free(l);
    kc__index_free(&names);
    kc__spec_free_array(out, n);
    return rc;
}

int kc__spec_load_json_mem(const char *data, size_t len, const char *name,
                           const char *base_dir, kc__spec_t ***specs, size_t *n,
                           char *err, size_t errcap)
{
    loader_t l = {.file = name ? name : "<memory>",
                  .base_dir = base_dir,
                  .err = err,
                  .errcap = errcap};
    json_error_t jerr;

    if (err && errcap)
        err[0] = '\0';
    if (!specs || !n)
        return KC_EINVAL;
    *specs = NULL;
    *n = 0;
    if (!data)
        return KC_EINVAL;
    snprintf(l.who, sizeof(l.who), "%s", l.file);
    if (len > KC__SPEC_FILE_MAX)
        return failf(&l, KC_ETOOBIG, "larger than %u MiB", KC__SPEC_FILE_MAX >> 20);
    /* Duplicate keys would let one silently override the other. */
    kc__json_seed();
    json_t *root = json_loadb(data, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return failf(&l, KC_ESPEC, "line %d, column %d: %s", jerr.line, jerr.column,
                     jerr.text);
    int rc = load_document(&l, root, specs, n);
    json_decref(root);
    return rc;
}

int kc__spec_load_json(const char *path, kc__spec_t ***specs, size_t *n, char *err,
                       size_t errcap)
{
    char why[512], *data = NULL, *dir = NULL;
    size_t len;
    int rc;

    if (err && errcap)
        err[0] = '\0';
    if (!specs || !n)
        return KC_EINVAL;
    *specs = NULL;
    *n = 0;
    if (!path)
        return KC_EINVAL;
    rc = read_file(path, &data, &len, why, sizeof(why));
    if (rc != KC_OK) {
        if (err && errcap)
            snprintf(err, errcap, "%s", why);
        return rc;
    }
    const char *slash = strrchr(path, '/');
    dir = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : strdup(".");
    if (!dir) {
        free(data);
        if (err && errcap)
            snprintf(err, errcap, "out of memory");
        return KC_ENOMEM;
    }
    rc = kc__spec_load_json_mem(data, len, path, dir, specs, n, err, errcap);
    free(dir);
    free(data);
    return rc;
}

void kc__spec_free_array(kc__spec_t **specs, size_t n)
{
    if (!specs)
        return;
    for (size_t i = 0; i < n; i++)
        kc__spec_free(specs[i]);
    free(specs);
}
