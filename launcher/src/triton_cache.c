/* Importing Triton's on-disk cache (kcache/triton.h): the metadata json and
 * the signature line are parsed here, each hash directory becomes a blob, a
 * prebuilt build and a binmeta, and a whole cache is published at once. */
#include "cubin_strip.h"
#include "index.h"
#include "json_seed.h"
#include "triton_cache.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "diag.h"
#include "kcache/triton.h"

/* Cubins, IR and json past this size are not Triton's. */
#define MAX_FILE (512u << 20)
#define MAX_DEPTH 64
#define EM_CUDA 190

__attribute__((format(printf, 4, 5))) static int fail(int rc, char *err, size_t cap,
                                                      const char *fmt, ...)
{
    va_list ap;

    if (err && cap) {
        va_start(ap, fmt);
        vsnprintf(err, cap, fmt, ap);
        va_end(ap);
    }
    return rc;
}

void kc__triton_meta_free(kc__triton_meta_t *m)
{
    if (!m)
        return;
    free(m->name);
    free(m->hash);
    free(m->version);
    for (size_t i = 0; i < m->n_args; i++) {
        free((char *)m->args[i].name);
        free((char *)m->args[i].type);
    }
    free(m->args);
    free(m->spec);
    memset(m, 0, sizeof(*m));
}

/* ---- the metadata json ---------------------------------------------------- */

static int get_u32(json_t *obj, const char *key, uint32_t min, const char *file,
                   uint32_t *out, char *err, size_t cap)
{
    json_t *v = json_object_get(obj, key);

    if (!v)
        return fail(KC_ECORRUPT, err, cap, "%s: required key '%s' missing", file, key);
    if (!json_is_integer(v))
        return fail(KC_ECORRUPT, err, cap, "%s: key '%s' is not an integer", file, key);
    json_int_t n = json_integer_value(v);
    if (n < (json_int_t)min || n > (json_int_t)UINT32_MAX)
        return fail(KC_ECORRUPT, err, cap, "%s: key '%s' is %lld, out of range", file,
                    key, (long long)n);
    *out = (uint32_t)n;
    return KC_OK;
}

static int get_bool(json_t *obj, const char *key, const char *file, int *out, char *err,
                    size_t cap)
{
    json_t *v = json_object_get(obj, key);

    if (!v)
        return fail(KC_ECORRUPT, err, cap, "%s: required key '%s' missing", file, key);
    if (!json_is_boolean(v))
        return fail(KC_ECORRUPT, err, cap, "%s: key '%s' is not a boolean", file, key);
    *out = json_is_true(v);
    return KC_OK;
}

static int get_str(json_t *obj, const char *key, const char *file, char **out, char *err,
                   size_t cap)
{
    json_t *v = json_object_get(obj, key);

    if (!v)
        return fail(KC_ECORRUPT, err, cap, "%s: required key '%s' missing", file, key);
    if (!json_is_string(v) || json_string_length(v) == 0 ||
        strlen(json_string_value(v)) != json_string_length(v))
        return fail(KC_ECORRUPT, err, cap, "%s: key '%s' is not a non-empty string", file,
                    key);
    if (!(*out = strdup(json_string_value(v))))
        return KC_ENOMEM;
    return KC_OK;
}

/* "3.9.0", "3.6.0+git1234": major and minor. */
static int parse_version(const char *s, unsigned *major, unsigned *minor)
{
    char *end;
    unsigned long a, b;

    if (*s < '0' || *s > '9')
        return -1;
    a = strtoul(s, &end, 10);
    if (*end != '.' || end[1] < '0' || end[1] > '9')
        return -1;
    b = strtoul(end + 1, &end, 10);
    if (a > 1000 || b > 1000)
        return -1;
    *major = (unsigned)a;
    *minor = (unsigned)b;
    return 0;
}

static int is_pow2(uint32_t v)
{
    return v && !(v & (v - 1));
}

static int parse_json(json_t *root, const char *file, kc__triton_meta_t *m, char *err,
                      size_t cap)
{
    json_t *v, *target;
    unsigned major, minor;
    int coop, pdl, rc;

    if (!json_is_object(root))
        return fail(KC_ECORRUPT, err, cap, "%s: not a JSON object", file);
    /* The gates first: an older Triton or another backend may lack keys. */
    v = json_object_get(root, "triton_version");
    if (!v)
        return fail(KC_EUNSUPPORTED, err, cap,
                    "no triton_version in %s: written by a Triton older than 3.6", file);
    if (!json_is_string(v))
        return fail(KC_ECORRUPT, err, cap, "%s: key 'triton_version' is not a string",
                    file);
    if (parse_version(json_string_value(v), &major, &minor) != 0)
        return fail(KC_ECORRUPT, err, cap, "%s: triton_version '%s' is not a version",
                    file, json_string_value(v));
    if (major < 3 || (major == 3 && minor < 6))
        return fail(KC_EUNSUPPORTED, err, cap,
                    "Triton %s is older than 3.6, the oldest supported",
                    json_string_value(v));
    if ((rc = get_str(root, "triton_version", file, &m->version, err, cap)) != KC_OK)
        return rc;
    target = json_object_get(root, "target");
    if (!target)
        return fail(KC_ECORRUPT, err, cap, "%s: required key 'target' missing", file);
    if (!json_is_object(target))
        return fail(KC_ECORRUPT, err, cap, "%s: key 'target' is not an object", file);
    v = json_object_get(target, "backend");
    if (!v)
        return fail(KC_ECORRUPT, err, cap, "%s: required key 'target.backend' missing",
                    file);
    if (!json_is_string(v))
        return fail(KC_ECORRUPT, err, cap, "%s: key 'target.backend' is not a string",
                    file);
    if (strcmp(json_string_value(v), "cuda") != 0)
        return fail(KC_EUNSUPPORTED, err, cap, "backend '%s' is not cuda",
                    json_string_value(v));
    if ((rc = get_u32(target, "arch", 1, file, &m->arch, err, cap)) != KC_OK)
        return rc;
    if (m->arch > 9999)
        return fail(KC_ECORRUPT, err, cap, "%s: target.arch %u is not an sm number", file,
                    m->arch);
    if ((rc = get_u32(root, "warp_size", 1, file, &m->warp_size, err, cap)) != KC_OK)
        return rc;
    if (m->warp_size != 32)
        return fail(KC_EUNSUPPORTED, err, cap, "warp size %u is not 32", m->warp_size);

    if ((rc = get_str(root, "name", file, &m->name, err, cap)) != KC_OK ||
        (rc = get_str(root, "hash", file, &m->hash, err, cap)) != KC_OK ||
        (rc = get_u32(root, "num_warps", 1, file, &m->num_warps, err, cap)) != KC_OK ||
        (rc = get_u32(root, "num_ctas", 1, file, &m->num_ctas, err, cap)) != KC_OK ||
        (rc = get_u32(root, "num_stages", 0, file, &m->num_stages, err, cap)) != KC_OK ||
        (rc = get_u32(root, "shared", 0, file, &m->shared, err, cap)) != KC_OK ||
        (rc = get_u32(root, "global_scratch_size", 0, file, &m->gscratch_size, err,
                      cap)) != KC_OK ||
        (rc = get_u32(root, "global_scratch_align", 1, file, &m->gscratch_align, err,
                      cap)) != KC_OK ||
        (rc = get_u32(root, "profile_scratch_size", 0, file, &m->pscratch_size, err,
                      cap)) != KC_OK ||
        (rc = get_u32(root, "profile_scratch_align", 1, file, &m->pscratch_align, err,
                      cap)) != KC_OK ||
        (rc = get_bool(root, "launch_cooperative_grid", file, &coop, err, cap)) !=
            KC_OK ||
        (rc = get_bool(root, "launch_pdl", file, &pdl, err, cap)) != KC_OK)
        return rc;
    if (m->num_warps > 1024 / 32)
        return fail(KC_ECORRUPT, err, cap, "%s: num_warps %u is more than 32", file,
                    m->num_warps);
    if (!is_pow2(m->gscratch_align) || !is_pow2(m->pscratch_align))
        return fail(KC_ECORRUPT, err, cap,
                    "%s: a scratch alignment is not a power of two", file);
    v = json_object_get(root, "tensordesc_meta");
    if (!v)
        return fail(KC_ECORRUPT, err, cap, "%s: required key 'tensordesc_meta' missing",
                    file);
    if (!json_is_array(v))
        return fail(KC_ECORRUPT, err, cap, "%s: key 'tensordesc_meta' is not an array",
                    file);
    m->flags = (coop ? KC_BINMETA_COOPERATIVE : 0) | (pdl ? KC_BINMETA_PDL : 0) |
               (json_array_size(v) ? KC_BINMETA_TMA : 0);
    return KC_OK;
}

/* ---- the signature -------------------------------------------------------- */

static const char *skip_ws(const char *p)
{
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
        p++;
    return p;
}

/* p at an opening bracket or quote: the first character after its match,
 * or NULL if the text ends first or nests deeper than MAX_DEPTH. '>' after
 * '-' (an arrow) closes nothing. */
static const char *skip_balanced(const char *p)
{
    char want[MAX_DEPTH];
    int depth = 0;

    do {
        char c = *p;
        if (!c)
            return NULL;
        if (c == '"') {
            for (p++; *p && *p != '"'; p++)
                if (*p == '\\' && p[1])
                    p++;
            if (!*p)
                return NULL;
        } else if (c == '(' || c == '[' || c == '{' || c == '<') {
            if (depth == MAX_DEPTH)
                return NULL;
            want[depth++] = c == '(' ? ')' : c == '[' ? ']' : c == '{' ? '}' : '>';
        } else if (c == ')' || c == ']' || c == '}' || (c == '>' && p[-1] != '-')) {
            if (depth == 0 || want[depth - 1] != c)
                return NULL;
            depth--;
        }
        p++;
    } while (depth > 0);
    return p;
}

/* An MLIR scalar type as Triton writes it; NULL if not one we know. */
static const char *map_scalar(const char *t, size_t n)
{
    static const char *const map[][2] = {
        {"i1", "i1"},     {"i8", "i8"},    {"i16", "i16"},
        {"i32", "i32"},   {"i64", "i64"},  {"f16", "fp16"},
        {"bf16", "bf16"}, {"f32", "fp32"}, {"f64", "fp64"},
    };
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
        if (strlen(map[i][0]) == n && memcmp(map[i][0], t, n) == 0)
            return map[i][1];
    return NULL;
}

static int is_ident(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '_' || c == '$' || c == '.' || c == '-';
}

/* The divisibility in an attribute dictionary ("{tt.divisibility = 16 :
 * i32}" from its '{' to after its '}'), or 0. */
static unsigned long divisibility(const char *from, const char *to)
{
    static const char key[] = "tt.divisibility";
    size_t n = (size_t)(to - from);
    char *d = strndup(from, n), *k, *end;
    unsigned long v = 0;

    if (!d)
        return 0;
    if ((k = strstr(d, key)) != NULL) {
        const char *p = skip_ws(k + sizeof(key) - 1);
        if (*p == '=') {
            p = skip_ws(p + 1);
            v = strtoul(p, &end, 10);
            if (end == p)
                v = 0;
        }
    }
    free(d);
    return v;
}

static int push_arg(kc__triton_meta_t *m, const char *name, size_t name_len,
                    const char *type, unsigned long div)
{
    kc_binmeta_arg_t *a = realloc(m->args, (m->n_args + 1) * sizeof(*a));
    if (!a)
        return KC_ENOMEM;
    m->args = a;
    a[m->n_args].name = strndup(name, name_len);
    a[m->n_args].type = strdup(type);
    m->n_args++;
    if (!a[m->n_args - 1].name || !a[m->n_args - 1].type)
        return KC_ENOMEM;
    if (div && div % 16 == 0 && (type[0] == '*' || type[0] == 'i')) {
        kc_binmeta_spec_t *s = realloc(m->spec, (m->n_spec + 1) * sizeof(*s));
        if (!s)
            return KC_ENOMEM;
        m->spec = s;
        s[m->n_spec].arg = (uint32_t)(m->n_args - 1);
        s[m->n_spec].prop = type[0] == '*' ? KC_SPEC_ALIGN16 : KC_SPEC_DIV16;
        m->n_spec++;
    }
    return KC_OK;
}

int kc__triton_parse_signature(const char *ir, const char *name, const char *ir_name,
                               kc__triton_meta_t *m, char *err, size_t cap)
{
    static const char head[] = "tt.func public @";
    size_t name_len = strlen(name);
    const char *p = ir, *q;
    int rc;

    for (;;) {
        if (!(p = strstr(p, head)))
            return fail(KC_ECORRUPT, err, cap, "%s: no 'tt.func public @%s(' line",
                        ir_name, name);
        p += sizeof(head) - 1;
        if (strncmp(p, name, name_len) == 0 && p[name_len] == '(')
            break;
    }
    p = skip_ws(p + name_len + 1);
    if (*p == ')')
        return KC_OK;
    for (;;) {
        const char *arg_name, *type;
        size_t arg_len;
        char ptr_type[32];
        unsigned long div = 0;
        size_t i = m->n_args;

        if (m->n_args >= KC__TRITON_MAX_ARGS)
            return fail(KC_ECORRUPT, err, cap, "%s: more than %d arguments", ir_name,
                        KC__TRITON_MAX_ARGS);
        if (*p != '%')
            return fail(KC_ECORRUPT, err, cap,
                        "%s: signature of %s: argument %zu does not start with '%%'",
                        ir_name, name, i);
        arg_name = ++p;
        while (is_ident(*p))
            p++;
        arg_len = (size_t)(p - arg_name);
        p = skip_ws(p);
        if (arg_len == 0 || *p != ':')
            return fail(KC_ECORRUPT, err, cap,
                        "%s: signature of %s: argument %zu has no name and type", ir_name,
                        name, i);
        p = skip_ws(p + 1);
        if (strncmp(p, "!tt.ptr<", 8) == 0) {
            const char *elem = p + 8, *e = elem;
            if (!(q = skip_balanced(p + 7)))
                return fail(KC_ECORRUPT, err, cap,
                            "%s: signature of %s: argument %zu: unbalanced type", ir_name,
                            name, i);
            while (is_ident(*e) && *e != '.' && *e != '-')
                e++;
            const char *sc = map_scalar(elem, (size_t)(e - elem));
            e = skip_ws(e);
            if (!sc || (*e != '>' && *e != ','))
                return fail(KC_EUNSUPPORTED, err, cap,
                            "argument %.*s: pointer type %.*s not supported",
                            (int)arg_len, arg_name, (int)(q - p), p);
            snprintf(ptr_type, sizeof(ptr_type), "*%s", sc);
            type = ptr_type;
            p = q;
        } else if (strncmp(p, "!tt.tensordesc", 14) == 0) {
            m->flags |= KC_BINMETA_TMA;
            q = p + 14;
            if (*q == '<' && !(q = skip_balanced(q)))
                return fail(KC_ECORRUPT, err, cap,
                            "%s: signature of %s: argument %zu: unbalanced type", ir_name,
                            name, i);
            type = "tensordesc";
            p = q;
        } else {
            q = p;
            while (is_ident(*q) && *q != '.' && *q != '-')
                q++;
            if (q == p)
                return fail(KC_ECORRUPT, err, cap,
                            "%s: signature of %s: argument %zu has no type", ir_name,
                            name, i);
            if (!(type = map_scalar(p, (size_t)(q - p))) || *q == '<' || *q == '.')
                return fail(KC_EUNSUPPORTED, err, cap,
                            "argument %.*s: type %.*s not supported", (int)arg_len,
                            arg_name, (int)(q - p), p);
            p = q;
        }
        p = skip_ws(p);
        if (*p == '{') {
            if (!(q = skip_balanced(p)))
                return fail(KC_ECORRUPT, err, cap,
                            "%s: signature of %s: argument %zu: unbalanced attributes",
                            ir_name, name, i);
            div = divisibility(p, q);
            p = skip_ws(q);
        }
        if (strncmp(p, "loc(", 4) == 0) {
            if (!(q = skip_balanced(p + 3)))
                return fail(KC_ECORRUPT, err, cap,
                            "%s: signature of %s: argument %zu: unbalanced loc()",
                            ir_name, name, i);
            p = skip_ws(q);
        }
        if ((rc = push_arg(m, arg_name, arg_len, type, div)) != KC_OK)
            return rc;
        if (*p == ')')
            return KC_OK;
        if (*p != ',')
            return fail(KC_ECORRUPT, err, cap,
                        "%s: signature of %s: unexpected '%.10s' after argument %zu",
                        ir_name, name, p, i);
        p = skip_ws(p + 1);
    }
}

int kc__triton_parse_mem(const char *json, size_t json_len, const char *ir, size_t ir_len,
                         const char *json_name, const char *ir_name,
                         kc__triton_meta_t *out, char *err, size_t cap)
{
    json_error_t jerr;
    json_t *root;
    char *text = NULL;
    int rc;

    memset(out, 0, sizeof(*out));
    if (err && cap)
        err[0] = '\0';
    kc__json_seed();
    if (!(root = json_loadb(json, json_len, JSON_REJECT_DUPLICATES, &jerr)))
        return fail(KC_ECORRUPT, err, cap, "%s: not valid JSON: line %d: %s", json_name,
                    jerr.line, jerr.text);
    rc = parse_json(root, json_name, out, err, cap);
    json_decref(root);
    if (rc != KC_OK)
        goto fail;
    if (!(text = malloc(ir_len + 1))) {
        rc = KC_ENOMEM;
        goto fail;
    }
    memcpy(text, ir, ir_len);
    text[ir_len] = '\0';
    rc = kc__triton_parse_signature(text, out->name, ir_name, out, err, cap);
    free(text);
    if (rc != KC_OK)
        goto fail;
    if (out->flags & KC_BINMETA_TMA) {
        rc = fail(KC_EUNSUPPORTED, err, cap,
                  "uses tensor descriptors (TMA): not supported yet");
        goto fail;
    }
    return KC_OK;
fail:
    if (rc == KC_ENOMEM)
        fail(rc, err, cap, "out of memory");
    kc__triton_meta_free(out);
    return rc;
}

/* ---- one hash directory --------------------------------------------------- */

typedef struct entry_impl {
    kc_triton_entry_t pub; /* first: the entry is this struct */
    kc__triton_meta_t meta;
    char *dir_name;
    char *arch;
    void *cubin;
    void *preimage;
    char *option;
    char *toolchain;
    int stripped; /* the cubin lost its debug sections (kc__elf_strip_debug) */
} entry_impl_t;

void kc_triton_entry_free(kc_triton_entry_t *entry)
{
    entry_impl_t *e = (entry_impl_t *)entry;

    if (!e)
        return;
    kc__triton_meta_free(&e->meta);
    free(e->dir_name);
    free(e->arch);
    free(e->cubin);
    kc_free(e->preimage);
    free(e->option);
    free(e->toolchain);
    free(e);
}

/* Read a whole file: KC_ENOTFOUND if it does not exist. */
static int read_file(const char *path, void **out, size_t *len, char *err, size_t cap)
{
    FILE *f = fopen(path, "rb");
    struct stat st;
    void *buf = NULL;

    *out = NULL;
    *len = 0;
    if (!f)
        return errno == ENOENT || errno == ENOTDIR
                   ? fail(KC_ENOTFOUND, err, cap, "missing %s", path)
                   : fail(KC_EIO, err, cap, "cannot open %s: %s", path, strerror(errno));
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > MAX_FILE) {
        fclose(f);
        return fail(KC_ECORRUPT, err, cap, "%s: not a regular file of at most 512 MiB",
                    path);
    }
    if (!(buf = malloc((size_t)st.st_size + 1))) {
        fclose(f);
        return fail(KC_ENOMEM, err, cap, "out of memory");
    }
    if (fread(buf, 1, (size_t)st.st_size, f) != (size_t)st.st_size) {
        free(buf);
        fclose(f);
        return fail(KC_EIO, err, cap, "cannot read %s", path);
    }
    fclose(f);
    ((char *)buf)[st.st_size] = '\0';
    *out = buf;
    *len = (size_t)st.st_size;
    return KC_OK;
}

static uint64_t le(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

/* A 64-bit little-endian ELF for EM_CUDA whose header tables and sections
 * lie inside the file (a truncated cubin fails here), naming the kernel. */
static int check_cubin(const uint8_t *b, size_t n, const char *name, const char *path,
                       char *err, size_t cap)
{
    if (n < 64 || memcmp(b,
                         "\x7f"
                         "ELF",
                         4) != 0)
        return fail(KC_ECORRUPT, err, cap, "%s: not an ELF file", path);
    if (b[4] != 2 || b[5] != 1 || le(b + 18, 2) != EM_CUDA)
        return fail(KC_ECORRUPT, err, cap,
                    "%s: not a CUDA cubin (64-bit little-endian ELF, e_machine 190)",
                    path);
    uint64_t phoff = le(b + 0x20, 8), shoff = le(b + 0x28, 8);
    uint64_t phentsize = le(b + 0x36, 2), phnum = le(b + 0x38, 2);
    uint64_t shentsize = le(b + 0x3a, 2), shnum = le(b + 0x3c, 2);
    if ((phnum && (phoff > n || phentsize < 56 || phnum * phentsize > n - phoff)) ||
        (shnum && (shoff > n || shentsize < 64 || shnum * shentsize > n - shoff)))
        return fail(KC_ECORRUPT, err, cap, "%s: truncated cubin (%zu bytes)", path, n);
    for (uint64_t i = 0; i < shnum; i++) {
        const uint8_t *sh = b + shoff + i * shentsize;
        uint64_t type = le(sh + 4, 4), off = le(sh + 0x18, 8), size = le(sh + 0x20, 8);
        if (type != 8 /* SHT_NOBITS */ && type != 0 && (off > n || size > n - off))
            return fail(KC_ECORRUPT, err, cap,
                        "%s: truncated cubin (%zu bytes, section %llu past the end)",
                        path, n, (unsigned long long)i);
    }
    if (!memmem(b, n, name, strlen(name)))
        return fail(KC_ECORRUPT, err, cap, "%s: the kernel name %s is not in the cubin",
                    path, name);
    return KC_OK;
}

/* The base name of a child of the group file: its recorded path's base name
 * (the directory may have moved), else the default. */
static const char *child_base(json_t *children, const char *key)
{
    json_t *v = json_object_get(children, key);
    const char *s, *slash;

    if (!json_is_string(v) || !*(s = json_string_value(v)))
        return key;
    slash = strrchr(s, '/');
    return slash && slash[1] ? slash + 1 : s;
}

static int load_child(const char *dir, json_t *children, const char *name,
                      const char *ext, char *path, size_t path_cap, void **out,
                      size_t *len, char *err, size_t cap)
{
    char key[512];

    snprintf(key, sizeof key, "%s.%s", name, ext);
    snprintf(path, path_cap, "%s/%s", dir, child_base(children, key));
    return read_file(path, out, len, err, cap);
}

/* The group file's name part: __grp__<name>.json. is_entry: whether the
 * directory has one. */
static int find_group(const char *dir, char **name, char *err, size_t cap)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    int rc = KC_ENOTFOUND;

    *name = NULL;
    if (!d)
        return fail(KC_ENOTFOUND, err, cap, "not a Triton kernel entry");
    while ((de = readdir(d)) != NULL) {
        size_t n = strlen(de->d_name);
        if (n <= 12 || strncmp(de->d_name, "__grp__", 7) != 0 ||
            strcmp(de->d_name + n - 5, ".json") != 0)
            continue;
        if (*name) {
            rc = fail(KC_ECORRUPT, err, cap, "%s: more than one __grp__*.json", dir);
            break;
        }
        if (!(*name = strndup(de->d_name + 7, n - 12))) {
            rc = KC_ENOMEM;
            break;
        }
        rc = KC_OK;
    }
    closedir(d);
    if (rc == KC_ENOTFOUND)
        fail(rc, err, cap, "not a Triton kernel entry");
    if (rc != KC_OK) {
        free(*name);
        *name = NULL;
    }
    return rc;
}

/* The arch: sm_<target.arch>, plus the PTX's suffix ('a' or 'f'). */
static int arch_from_ptx(const char *ptx, uint32_t arch, const char *path, char **out,
                         char *err, size_t cap)
{
    const char *t = ptx;
    char buf[32];

    while ((t = strstr(t, ".target")) && t != ptx && t[-1] != '\n')
        t += 7;
    if (!t)
        return fail(KC_ECORRUPT, err, cap, "%s: no .target line", path);
    t = skip_ws(t + 7);
    if (strncmp(t, "sm_", 3) != 0)
        return fail(KC_ECORRUPT, err, cap, "%s: .target is not sm_<N>", path);
    char *end;
    unsigned long n = strtoul(t + 3, &end, 10);
    if (end == t + 3 || n != arch)
        return fail(KC_ECORRUPT, err, cap, "%s: .target %.12s is not sm_%u of the json",
                    path, t, arch);
    snprintf(buf, sizeof buf, "sm_%u%s", arch,
             *end == 'a'   ? "a"
             : *end == 'f' ? "f"
                           : "");
    if (!(*out = strdup(buf)))
        return KC_ENOMEM;
    return KC_OK;
}

static int entry_build(entry_impl_t *e, char *err, size_t cap)
{
    kc_triton_entry_t *p = &e->pub;
    const char *options[2];
    size_t n;
    int rc;

    n = strlen(e->meta.hash) + 13;
    e->option = malloc(n);
    e->toolchain = malloc(strlen(e->meta.version) + 8);
    if (!e->option || !e->toolchain)
        return fail(KC_ENOMEM, err, cap, "out of memory");
    snprintf(e->option, n, "triton-hash=%s", e->meta.hash);
    sprintf(e->toolchain, "triton-%s", e->meta.version);
    options[0] = e->option;
    options[1] = "strip=debug";
    p->blob = kc_key_hash(p->cubin.data, p->cubin.size);
    kc_build_desc_t d = {.source_kind = KC_SOURCE_PREBUILT,
                         .source_digest = p->blob,
                         .entry = e->meta.name,
                         .options = options,
                         .n_options = e->stripped ? 2 : 1,
                         .arch = e->arch,
                         .toolchain = e->toolchain};
    size_t pre_len;
    if ((rc = kc_build_preimage_encode(&d, &e->preimage, &pre_len)) != KC_OK)
        return fail(rc, err, cap, "cannot encode the build preimage: %s",
                    kc_strerror(rc));
    p->build_key = kc_key_hash(e->preimage, pre_len);
    p->build = (kc_build_rec_t){.preimage = {e->preimage, pre_len},
                                .blob = p->blob,
                                .entry = e->meta.name,
                                .created = (uint64_t)time(NULL)};
    p->binmeta =
        (kc_binmeta_rec_t){.build = p->build_key,
                           .entry = e->meta.name,
                           .arch = e->arch,
                           .threads_per_block = e->meta.num_warps * e->meta.warp_size,
                           .num_warps = e->meta.num_warps,
                           .warp_size = e->meta.warp_size,
                           .num_ctas = e->meta.num_ctas,
                           .dyn_smem = e->meta.shared,
                           .global_scratch_size = e->meta.gscratch_size,
                           .global_scratch_align = e->meta.gscratch_align,
                           .profile_scratch_size = e->meta.pscratch_size,
                           .profile_scratch_align = e->meta.pscratch_align,
                           .flags = e->meta.flags,
                           .compiler = "triton",
                           .compiler_version = e->meta.version,
                           .args = e->meta.args,
                           .n_args = e->meta.n_args,
                           .spec = e->meta.spec,
                           .n_spec = e->meta.n_spec};
    return KC_OK;
}

/* The cubin without its debug sections, when the strip can rewrite it with
 * every other section and segment intact (it checks that itself); else it
 * stays whole. */
static int entry_strip(entry_impl_t *e, size_t *cubin_len)
{
    void *copy = NULL;
    size_t copy_len = 0;
    char why[256];
    int rc = kc__elf_strip_debug(e->cubin, *cubin_len, &copy, &copy_len, why, sizeof why);

    if (rc == KC_ENOMEM)
        return rc;
    if (!copy)
        return KC_OK;
    free(e->cubin);
    e->cubin = copy;
    *cubin_len = copy_len;
    e->stripped = 1;
    return KC_OK;
}

/* kc_triton_entry_load, also telling whether dir is a kernel entry at all
 * (has a group file); with strip, the cubin loses its debug sections. */
static int entry_load(const char *hash_dir, int strip, kc_triton_entry_t **out,
                      int *is_entry, char *err, size_t cap)
{
    entry_impl_t *e = NULL;
    char *name = NULL, path[4096], ir_path[4096];
    void *grp = NULL, *json = NULL, *ir = NULL, *ptx = NULL;
    size_t grp_len, json_len, ir_len, ptx_len;
    json_t *groot = NULL, *children;
    json_error_t jerr;
    int rc;

    *out = NULL;
    *is_entry = 0;
    if ((rc = find_group(hash_dir, &name, err, cap)) != KC_OK)
        return rc;
    *is_entry = 1;
    if (!(e = calloc(1, sizeof(*e)))) {
        rc = fail(KC_ENOMEM, err, cap, "out of memory");
        goto fail;
    }
    snprintf(path, sizeof path, "%s/__grp__%s.json", hash_dir, name);
    if ((rc = read_file(path, &grp, &grp_len, err, cap)) != KC_OK)
        goto fail;
    if (!(groot = json_loadb(grp, grp_len, 0, &jerr))) {
        rc = fail(KC_ECORRUPT, err, cap, "%s: not valid JSON: line %d: %s", path,
                  jerr.line, jerr.text);
        goto fail;
    }
    children = json_object_get(groot, "child_paths");
    if (!json_is_object(children)) {
        rc = fail(KC_ECORRUPT, err, cap, "%s: no 'child_paths' object", path);
        goto fail;
    }
    char json_path[4096];
    if ((rc = load_child(hash_dir, children, name, "json", json_path, sizeof json_path,
                         &json, &json_len, err, cap)) != KC_OK)
        goto fail;
    rc = load_child(hash_dir, children, name, "source", ir_path, sizeof ir_path, &ir,
                    &ir_len, err, cap);
    if (rc == KC_ENOTFOUND)
        rc = load_child(hash_dir, children, name, "ttir", ir_path, sizeof ir_path, &ir,
                        &ir_len, err, cap);
    if (rc != KC_OK)
        goto fail;
    if ((rc = kc__triton_parse_mem(json, json_len, ir, ir_len, json_path, ir_path,
                                   &e->meta, err, cap)) != KC_OK)
        goto fail;
    if (strcmp(e->meta.name, name) != 0) {
        rc = fail(KC_ECORRUPT, err, cap, "%s: name '%s' is not the group's '%s'",
                  json_path, e->meta.name, name);
        goto fail;
    }
    if ((rc = load_child(hash_dir, children, name, "ptx", path, sizeof path, &ptx,
                         &ptx_len, err, cap)) != KC_OK ||
        (rc = arch_from_ptx(ptx, e->meta.arch, path, &e->arch, err, cap)) != KC_OK)
        goto fail;
    size_t cubin_len;
    if ((rc = load_child(hash_dir, children, name, "cubin", path, sizeof path, &e->cubin,
                         &cubin_len, err, cap)) != KC_OK ||
        (rc = check_cubin(e->cubin, cubin_len, name, path, err, cap)) != KC_OK)
        goto fail;
    if (strip && (rc = entry_strip(e, &cubin_len)) != KC_OK) {
        rc = fail(rc, err, cap, "out of memory");
        goto fail;
    }
    e->pub.cubin = (kc_buf_t){e->cubin, cubin_len};

    const char *base = strrchr(hash_dir, '/');
    base = base && base[1] ? base + 1 : hash_dir;
    if (!(e->dir_name = strdup(base))) {
        rc = fail(KC_ENOMEM, err, cap, "out of memory");
        goto fail;
    }
    if ((rc = entry_build(e, err, cap)) != KC_OK)
        goto fail;
    e->pub.dir_name = e->dir_name;
    e->pub.name = e->meta.name;
    e->pub.triton_hash = e->meta.hash;
    e->pub.version = e->meta.version;
    e->pub.arch = e->arch;
    e->pub.num_stages = e->meta.num_stages;
    *out = &e->pub;
    e = NULL;
    rc = KC_OK;
fail:
    kc_triton_entry_free(e ? &e->pub : NULL);
    json_decref(groot);
    free(name);
    free(grp);
    free(json);
    free(ir);
    free(ptx);
    return rc;
}

int kc_triton_entry_load(const char *hash_dir, kc_triton_entry_t **out, char *err,
                         size_t errcap)
{
    int is_entry;

    if (err && errcap)
        err[0] = '\0';
    if (!out)
        return KC_EINVAL;
    *out = NULL;
    if (!hash_dir)
        return fail(KC_EINVAL, err, errcap, "no directory");
    return entry_load(hash_dir, 0, out, &is_entry, err, errcap);
}

/* ---- a whole cache -------------------------------------------------------- */

const char *kc_triton_status_name(int status)
{
    switch (status) {
    case KC_TRITON_IMPORTED:
        return "imported";
    case KC_TRITON_PRESENT:
        return "present";
    case KC_TRITON_SKIPPED:
        return "skipped";
    default:
        return NULL;
    }
}

void kc_triton_report_free(kc_triton_report_t *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n_items; i++) {
        free((char *)r->items[i].dir_name);
        free((char *)r->items[i].reason);
        kc_triton_entry_free((kc_triton_entry_t *)r->items[i].entry);
    }
    free(r->items);
    free(r);
}

static int add_item(kc_triton_report_t *r, const char *dir_name, kc_triton_entry_t *e,
                    const char *reason)
{
    kc_triton_item_t *it = realloc(r->items, (r->n_items + 1) * sizeof(*it));

    if (!it) {
        kc_triton_entry_free(e);
        return KC_ENOMEM;
    }
    r->items = it;
    it += r->n_items++;
    it->dir_name = strdup(dir_name);
    it->reason = strdup(reason ? reason : "");
    it->entry = e;
    it->status = e ? KC_TRITON_IMPORTED : KC_TRITON_SKIPPED;
    if (!it->dir_name || !it->reason)
        return KC_ENOMEM;
    return KC_OK;
}

/* Whether item (a kc_triton_item_t with an entry) holds the build key. */
static int same_build(const void *item, const void *key)
{
    return kc_key_cmp(&((const kc_triton_item_t *)item)->entry->build_key, key) == 0;
}

static int is_hash_dir(const char *dir)
{
    char *name = NULL;
    int rc = find_group(dir, &name, NULL, 0);

    free(name);
    return rc != KC_ENOTFOUND;
}

/* Whether the store holds the entry's build and binmeta. */
static int stored(kc_store_t *st, const kc_key_t *build)
{
    kc_record_t *rec = NULL;
    int rc = kc_store_get(st, KC_REC_BUILD, build, &rec);

    kc_free(rec);
    if (rc != KC_OK)
        return 0;
    rec = NULL;
    rc = kc_store_get(st, KC_REC_BINMETA, build, &rec);
    kc_free(rec);
    return rc == KC_OK;
}

static int publish(kc_store_t *st, kc_triton_report_t *r, size_t n_new)
{
    kc_buf_t *cubins = calloc(n_new, sizeof(*cubins));
    kc_build_rec_t *builds = calloc(n_new, sizeof(*builds));
    kc_binmeta_rec_t *metas = calloc(n_new, sizeof(*metas));
    size_t n = 0;
    int rc;

    if (!cubins || !builds || !metas) {
        rc = kc__diag_fail(st, KC_ENOMEM, "import-triton: out of memory");
        goto done;
    }
    for (size_t i = 0; i < r->n_items; i++) {
        const kc_triton_entry_t *e = r->items[i].entry;
        if (r->items[i].status != KC_TRITON_IMPORTED)
            continue;
        cubins[n] = e->cubin;
        builds[n] = e->build;
        metas[n] = e->binmeta;
        n++;
    }
    kc_publish_t pub = {.cubins = cubins,
                        .n_cubins = n,
                        .builds = builds,
                        .n_builds = n,
                        .binmetas = metas,
                        .n_binmetas = n};
    rc = kc_store_publish(st, &pub);
done:
    free(cubins);
    free(builds);
    free(metas);
    return rc;
}

static int cmp_names(const struct dirent **a, const struct dirent **b)
{
    return strcmp((*a)->d_name, (*b)->d_name);
}

int kc_triton_import(kc_store_t *store, const char *dir,
                     const kc_triton_import_opts_t *opts, kc_triton_report_t **report)
{
    kc_triton_import_opts_t o = KC_TRITON_IMPORT_OPTS_INIT;
    kc_triton_report_t *r = NULL;
    struct dirent **names = NULL;
    kc__index_t seen = KC__INDEX_INIT;
    int n_names = 0, n_entries = 0, rc;
    size_t n_new = 0;
    char err[1024], path[4096];
    struct stat sb;

    if (report)
        *report = NULL;
    if (!store || !dir)
        return KC_EINVAL;
    if (opts) {
        if (opts->size == 0 || opts->size > sizeof(o))
            return kc__diag_fail(
                store, KC_EINVAL,
                "import-triton: opts->size is %zu, this library's is %zu", opts->size,
                sizeof(o));
        memcpy(&o, opts, opts->size);
    }
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return kc__diag_fail(store, KC_ENOTFOUND, "%s is not a directory", dir);
    if (!o.dry_run && kc_store_is_readonly(store))
        return kc__diag_fail(store, KC_EREADONLY, "the store is read-only");
    if (!(r = calloc(1, sizeof(*r))))
        return kc__diag_fail(store, KC_ENOMEM, "import-triton: out of memory");

    if (is_hash_dir(dir)) {
        kc_triton_entry_t *e = NULL;
        int is_entry;
        rc = entry_load(dir, o.strip_debug, &e, &is_entry, err, sizeof err);
        if (rc != KC_OK && rc != KC_ENOTFOUND && rc != KC_EUNSUPPORTED)
            goto fail_msg;
        n_entries = 1;
        const char *base = strrchr(dir, '/');
        if ((rc = add_item(r, base && base[1] ? base + 1 : dir, e, e ? NULL : err)) !=
            KC_OK)
            goto fail_msg;
    } else {
        if ((n_names = scandir(dir, &names, NULL, cmp_names)) < 0) {
            rc = kc__diag_fail(store, KC_EIO, "cannot read %s: %s", dir, strerror(errno));
            goto fail;
        }
        for (int i = 0; i < n_names; i++) {
            const char *nm = names[i]->d_name;
            kc_triton_entry_t *e = NULL;
            int is_entry = 0;

            if (nm[0] == '.')
                continue;
            snprintf(path, sizeof path, "%s/%s", dir, nm);
            rc = entry_load(path, o.strip_debug, &e, &is_entry, err, sizeof err);
            if (rc != KC_OK && rc != KC_ENOTFOUND && rc != KC_EUNSUPPORTED)
                goto fail_msg;
            n_entries += is_entry;
            if ((rc = add_item(r, nm, e, e ? NULL : err)) != KC_OK)
                goto fail_msg;
        }
    }
    if (n_entries == 0) {
        rc = kc__diag_fail(
            store, KC_ENOTFOUND,
            "%s holds no Triton kernel entry (no <hash>/__grp__<name>.json)", dir);
        goto fail;
    }

    /* An entry whose binary an earlier entry has is present: the build keys
     * seen, by hash (a cache of thousands of entries). */
    if (kc__index_reserve(&seen, r->n_items) != KC_OK) {
        rc = kc__diag_fail(store, KC_ENOMEM, "import-triton: out of memory");
        goto fail;
    }
    for (size_t i = 0; i < r->n_items; i++) {
        kc_triton_item_t *it = &r->items[i];
        if (!it->entry) {
            r->skipped++;
            continue;
        }
        const kc_key_t *build = &it->entry->build_key;
        uint64_t h = kc__index_key_hash(build);
        int dup = kc__index_get(&seen, h, same_build, build) != NULL;
        if (!dup) /* reserved: cannot fail */
            kc__index_put(&seen, h, it, same_build, build, NULL);
        if (dup || stored(store, build)) {
            it->status = KC_TRITON_PRESENT;
            r->present++;
        } else {
            r->imported++;
            n_new++;
        }
    }
    if (!o.dry_run && n_new && (rc = publish(store, r, n_new)) != KC_OK)
        goto fail;
    if (report)
        *report = r;
    else
        kc_triton_report_free(r);
    rc = KC_OK;
    goto done;

fail_msg:
    rc = kc__diag_fail(store, rc, "%s", rc == KC_ENOMEM ? "out of memory" : err);
fail:
    kc_triton_report_free(r);
done:
    kc__index_free(&seen);
    for (int i = 0; i < n_names; i++)
        free(names[i]);
    free(names);
    return rc;
}
