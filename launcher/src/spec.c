/* Kernel specs: validation, the owned deep copy, the candidate list, the
 * digests, and geometry evaluation on the launch path. */
#include "spec.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kcache/errors.h"
#include "wire.h"

/* Every allocation a spec owns is one block on this list, freed together. */
struct kc__spec_mem {
    kc__spec_mem_t *next;
    max_align_t data[];
};

typedef struct ctx {
    kc__spec_t *sp;
    const char *who;
    char *err;
    size_t errcap;
} ctx_t;

static const char *const geometry_fields[7] = {
    "grid[0]", "grid[1]", "grid[2]", "block[0]", "block[1]", "block[2]", "shared"};

static int failf(const ctx_t *c, int code, const char *fmt, ...)
{
    if (c->err && c->errcap) {
        int n = snprintf(c->err, c->errcap, "%s: ", c->who);
        if (n >= 0 && (size_t)n < c->errcap) {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(c->err + n, c->errcap - (size_t)n, fmt, ap);
            va_end(ap);
        }
    }
    return code;
}

static void *own(kc__spec_t *sp, size_t n)
{
    kc__spec_mem_t *m = malloc(sizeof(*m) + (n ? n : 1));
    if (!m)
        return NULL;
    m->next = sp->mem;
    sp->mem = m;
    return m->data;
}

static const char *own_str(kc__spec_t *sp, const char *s, size_t len)
{
    char *d = own(sp, len + 1);
    if (d) {
        memcpy(d, s, len);
        d[len] = '\0';
    }
    return d;
}

static int is_identifier(const char *s)
{
    if (!s || !((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || *s == '_'))
        return 0;
    size_t n = 0;
    for (; s[n]; n++)
        if (!((s[n] >= 'a' && s[n] <= 'z') || (s[n] >= 'A' && s[n] <= 'Z') ||
              (s[n] >= '0' && s[n] <= '9') || s[n] == '_'))
            return 0;
    return n <= KC__SPEC_MAX_NAME;
}

static int has_space_or_control(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s <= ' ' || *s == 0x7f)
            return 1;
    return 0;
}

static int is_integer_dtype(kc_dtype_t dt)
{
    return dt >= KC_DTYPE_BOOL && dt <= KC_DTYPE_U64;
}

static int is_scalar_dtype(kc_dtype_t dt)
{
    return is_integer_dtype(dt) || dt == KC_DTYPE_F32 || dt == KC_DTYPE_F64;
}

#define OWN_OR_FAIL(ptr)                                                                 \
    do {                                                                                 \
        if (!(ptr))                                                                      \
            return failf(c, KC_ENOMEM, "out of memory");                                 \
    } while (0)

static int copy_source(const ctx_t *c, const kc_kernel_spec_t *in)
{
    kc__spec_t *sp = c->sp;

    if (in->source_kind != KC_SOURCE_CUDA && in->source_kind != KC_SOURCE_PTX)
        return failf(c, KC_ESPEC, "source_kind: %d is neither CUDA nor PTX",
                     (int)in->source_kind);
    if (!in->source)
        return failf(c, KC_ESPEC, "source: missing");
    size_t len = in->source_len ? in->source_len : strlen(in->source);
    if (len == 0)
        return failf(c, KC_ESPEC, "source: empty");
    const char *nul = memchr(in->source, '\0', len);
    if (nul)
        return failf(c, KC_ESPEC, "source: NUL byte at offset %zu",
                     (size_t)(nul - in->source));
    OWN_OR_FAIL(sp->s.source = own_str(sp, in->source, len));
    sp->s.source_len = len;

    if (in->n_headers && !in->headers)
        return failf(c, KC_ESPEC, "headers: NULL with n_headers %zu", in->n_headers);
    if (in->n_headers && in->source_kind == KC_SOURCE_PTX)
        return failf(c, KC_ESPEC, "headers: PTX source takes no headers");
    if (in->n_headers) {
        kc_header_t *h = own(sp, in->n_headers * sizeof(*h));
        OWN_OR_FAIL(h);
        for (size_t i = 0; i < in->n_headers; i++) {
            const kc_header_t *src = &in->headers[i];
            if (!src->name || !src->name[0])
                return failf(c, KC_ESPEC, "headers[%zu]: name missing", i);
            if (!src->content)
                return failf(c, KC_ESPEC, "headers[%zu] '%s': content missing", i,
                             src->name);
            for (size_t j = 0; j < i; j++)
                if (strcmp(in->headers[j].name, src->name) == 0)
                    return failf(c, KC_ESPEC,
                                 "headers[%zu] '%s': duplicate of headers[%zu]", i,
                                 src->name, j);
            OWN_OR_FAIL(h[i].name = own_str(sp, src->name, strlen(src->name)));
            OWN_OR_FAIL(h[i].content = own_str(sp, src->content, strlen(src->content)));
        }
        sp->s.headers = h;
        sp->s.n_headers = in->n_headers;
    }

    if (!in->entry || !in->entry[0])
        return failf(c, KC_ESPEC, "entry: missing");
    /* A mangled C++ name may hold any punctuation; whitespace would mean a
     * name expression, which the compiler layer does not take. */
    if (has_space_or_control(in->entry))
        return failf(c, KC_ESPEC, "entry: '%s' contains whitespace", in->entry);
    OWN_OR_FAIL(sp->s.entry = own_str(sp, in->entry, strlen(in->entry)));

    if (in->n_options && !in->options)
        return failf(c, KC_ESPEC, "options: NULL with n_options %zu", in->n_options);
    if (in->n_options) {
        const char **o = own(sp, in->n_options * sizeof(*o));
        OWN_OR_FAIL(o);
        for (size_t i = 0; i < in->n_options; i++) {
            if (!in->options[i] || !in->options[i][0])
                return failf(c, KC_ESPEC, "options[%zu]: empty", i);
            OWN_OR_FAIL(o[i] = own_str(sp, in->options[i], strlen(in->options[i])));
        }
        sp->s.options = o;
        sp->s.n_options = in->n_options;
    }
    return KC_OK;
}

/* ---- prebuilt candidates ------------------------------------------------ */

/* A prebuilt kernel has no source to compile: its candidates are binaries
 * named by build key, each with its config values. The config names become
 * the spec's parameters (so geometry expressions read them) and the
 * candidates are exactly the rows given, in order. */
static int copy_prebuilt(const ctx_t *c, const kc_kernel_spec_t *in)
{
    kc__spec_t *sp = c->sp;
    static const char *const own_fields[] = {"source",  "headers", "entry",
                                             "options", "params",  "constraint"};
    const int given[] = {in->source != NULL, in->n_headers != 0, in->entry != NULL,
                         in->n_options != 0, in->n_params != 0,  in->constraint != NULL};

    for (size_t i = 0; i < sizeof(given) / sizeof(given[0]); i++)
        if (given[i])
            return failf(c, KC_ESPEC,
                         "%s: a prebuilt kernel has none (its candidates are binaries)",
                         own_fields[i]);
    if (in->block[0] || in->block[1] || in->block[2] || in->shared)
        return failf(c, KC_ESPEC,
                     "%s: a prebuilt kernel's comes from its binaries' "
                     "metadata",
                     in->shared && !in->block[0] ? "shared" : "block");
    if (in->n_prebuilt == 0 || !in->prebuilt)
        return failf(c, KC_ESPEC, "candidates: a prebuilt kernel needs at least one");
    if (in->n_prebuilt > KC__SPEC_MAX_CANDIDATES)
        return failf(c, KC_ESPEC, "candidates: %zu, more than %d", in->n_prebuilt,
                     KC__SPEC_MAX_CANDIDATES);

    const kc_prebuilt_t *first = &in->prebuilt[0];
    size_t np = first->n_config, nc = in->n_prebuilt;
    if (np > KC__SPEC_MAX_PARAMS)
        return failf(c, KC_ESPEC, "candidates[0]: config: %zu values, more than %d", np,
                     KC__SPEC_MAX_PARAMS);
    kc_param_spec_t *params = own(sp, (np ? np : 1) * sizeof(*params));
    int64_t *rows = own(sp, (np ? nc * np : 1) * sizeof(*rows));
    kc_key_t *builds = own(sp, nc * sizeof(*builds));
    OWN_OR_FAIL(params && rows && builds);
    for (size_t i = 0; i < nc; i++) {
        const kc_prebuilt_t *pb = &in->prebuilt[i];
        if (kc_key_is_zero(&pb->build))
            return failf(c, KC_ESPEC, "candidates[%zu]: build: missing", i);
        for (size_t j = 0; j < i; j++)
            if (kc_key_cmp(&builds[j], &pb->build) == 0)
                return failf(c, KC_ESPEC, "candidates[%zu]: the build of candidates[%zu]",
                             i, j);
        builds[i] = pb->build;
        if (pb->n_config && !pb->config)
            return failf(c, KC_ESPEC, "candidates[%zu]: config NULL with n_config %zu", i,
                         pb->n_config);
        if (pb->n_config != np)
            return failf(
                c, KC_ESPEC,
                "candidates[%zu]: config: %zu values, candidates[0] has %zu (every "
                "candidate names the same parameters)",
                i, pb->n_config, np);
        for (size_t p = 0; p < np; p++) {
            const char *name = pb->config[p].name;
            if (!name || !is_identifier(name))
                return failf(c, KC_ESPEC,
                             "candidates[%zu]: config[%zu]: name missing or not a C "
                             "identifier",
                             i, p);
            if (i == 0) {
                for (size_t q = 0; q < p; q++)
                    if (strcmp(params[q].name, name) == 0)
                        return failf(c, KC_ESPEC,
                                     "candidates[0]: config: '%s' given twice", name);
                OWN_OR_FAIL(params[p].name = own_str(sp, name, strlen(name)));
            } else if (strcmp(params[p].name, name) != 0) {
                return failf(c, KC_ESPEC,
                             "candidates[%zu]: config[%zu] is '%s' where candidates[0] "
                             "has '%s' (same parameters, same order)",
                             i, p, name, params[p].name);
            }
            rows[i * np + p] = pb->config[p].value;
        }
    }
    /* Each parameter's values, for the tuning-space digest: its column. */
    for (size_t p = 0; p < np; p++) {
        int64_t *col = own(sp, nc * sizeof(*col));
        OWN_OR_FAIL(col);
        for (size_t i = 0; i < nc; i++)
            col[i] = rows[i * np + p];
        params[p].values = col;
        params[p].n_values = nc;
    }
    sp->s.params = params;
    sp->s.n_params = np;
    sp->candidates = rows;
    sp->n_candidates = nc;
    sp->prebuilt = builds;
    OWN_OR_FAIL(sp->s.entry = own_str(sp, "", 0));
    OWN_OR_FAIL(sp->s.source = own_str(sp, "", 0));
    return KC_OK;
}

static int copy_params(const ctx_t *c, const kc_kernel_spec_t *in)
{
    kc__spec_t *sp = c->sp;

    if (in->n_params > KC__SPEC_MAX_PARAMS)
        return failf(c, KC_ESPEC, "params: %zu parameters, more than %d", in->n_params,
                     KC__SPEC_MAX_PARAMS);
    if (in->n_params && !in->params)
        return failf(c, KC_ESPEC, "params: NULL with n_params %zu", in->n_params);
    if (!in->n_params)
        return KC_OK;

    kc_param_spec_t *p = own(sp, in->n_params * sizeof(*p));
    OWN_OR_FAIL(p);
    for (size_t i = 0; i < in->n_params; i++) {
        const kc_param_spec_t *src = &in->params[i];
        if (!src->name || !src->name[0])
            return failf(c, KC_ESPEC, "params[%zu]: name missing", i);
        if (!is_identifier(src->name))
            return failf(c, KC_ESPEC, "params[%zu] '%.*s': name is not a C identifier", i,
                         KC__SPEC_MAX_NAME, src->name);
        for (size_t j = 0; j < i; j++)
            if (strcmp(in->params[j].name, src->name) == 0)
                return failf(c, KC_ESPEC, "params[%zu] '%s': duplicate of params[%zu]", i,
                             src->name, j);
        if (src->n_values == 0)
            return failf(c, KC_ESPEC, "params[%zu] '%s': no values", i, src->name);
        if (!src->values)
            return failf(c, KC_ESPEC, "params[%zu] '%s': values NULL with n_values %zu",
                         i, src->name, src->n_values);
        if (src->n_values > KC__SPEC_MAX_VALUES)
            return failf(c, KC_ESPEC, "params[%zu] '%s': %zu values, more than %d", i,
                         src->name, src->n_values, KC__SPEC_MAX_VALUES);
        for (size_t v = 1; v < src->n_values; v++)
            for (size_t w = 0; w < v; w++)
                if (src->values[v] == src->values[w])
                    return failf(c, KC_ESPEC,
                                 "params[%zu] '%s': duplicate value %" PRId64, i,
                                 src->name, src->values[v]);
        int64_t *vals = own(sp, src->n_values * sizeof(*vals));
        OWN_OR_FAIL(vals);
        memcpy(vals, src->values, src->n_values * sizeof(*vals));
        OWN_OR_FAIL(p[i].name = own_str(sp, src->name, strlen(src->name)));
        p[i].values = vals;
        p[i].n_values = src->n_values;
    }
    sp->s.params = p;
    sp->s.n_params = in->n_params;
    return KC_OK;
}

static int copy_args(const ctx_t *c, const kc_kernel_spec_t *in)
{
    kc__spec_t *sp = c->sp;

    if (in->n_args > KC__SPEC_MAX_ARGS)
        return failf(c, KC_ESPEC, "args: %zu arguments, more than %d", in->n_args,
                     KC__SPEC_MAX_ARGS);
    if (in->n_args && !in->args)
        return failf(c, KC_ESPEC, "args: NULL with n_args %zu", in->n_args);

    kc_arg_spec_t *a = own(sp, (in->n_args ? in->n_args : 1) * sizeof(*a));
    uint32_t *slots = own(sp, (in->n_args ? in->n_args : 1) * sizeof(*slots));
    OWN_OR_FAIL(a && slots);
    size_t next_slot = sp->s.n_params;
    for (size_t i = 0; i < in->n_args; i++) {
        const kc_arg_spec_t *src = &in->args[i];
        if (!src->name || !src->name[0])
            return failf(c, KC_ESPEC, "args[%zu]: name missing", i);
        if (!is_identifier(src->name))
            return failf(c, KC_ESPEC, "args[%zu] '%.*s': name is not a C identifier", i,
                         KC__SPEC_MAX_NAME, src->name);
        for (size_t j = 0; j < i; j++)
            if (strcmp(in->args[j].name, src->name) == 0)
                return failf(c, KC_ESPEC, "args[%zu] '%s': duplicate of args[%zu]", i,
                             src->name, j);
        for (size_t j = 0; j < sp->s.n_params; j++)
            if (strcmp(sp->s.params[j].name, src->name) == 0)
                return failf(c, KC_ESPEC, "args[%zu] '%s': name also used by params[%zu]",
                             i, src->name, j);

        slots[i] = KC__SPEC_NO_SLOT;
        if (src->kind == KC_ARG_POINTER) {
            if (!kc_dtype_name(src->dtype))
                return failf(c, KC_ESPEC, "args[%zu] '%s': invalid dtype %d", i,
                             src->name, (int)src->dtype);
            if (src->access != KC_ACCESS_IN && src->access != KC_ACCESS_OUT &&
                src->access != KC_ACCESS_INOUT)
                return failf(c, KC_ESPEC,
                             "args[%zu] '%s': access must be in, out or inout", i,
                             src->name);
            if (src->is_key)
                return failf(c, KC_ESPEC, "args[%zu] '%s': only scalars can be keys", i,
                             src->name);
        } else if (src->kind == KC_ARG_SCALAR) {
            if (!is_scalar_dtype(src->dtype))
                return failf(
                    c, KC_ESPEC,
                    "args[%zu] '%s': a scalar must be bool, an integer, f32 or f64", i,
                    src->name);
            if (src->access)
                return failf(c, KC_ESPEC,
                             "args[%zu] '%s': access applies to pointers only", i,
                             src->name);
            if (is_integer_dtype(src->dtype))
                slots[i] = (uint32_t)next_slot++;
        } else {
            return failf(c, KC_ESPEC, "args[%zu] '%s': kind must be pointer or scalar", i,
                         src->name);
        }
        a[i] = *src;
        a[i].is_key = src->is_key != 0;
        OWN_OR_FAIL(a[i].name = own_str(sp, src->name, strlen(src->name)));
    }
    sp->s.args = in->n_args ? a : NULL;
    sp->s.n_args = in->n_args;
    sp->arg_slot = slots;
    sp->n_vars = next_slot;
    return KC_OK;
}

static int build_symtab(const ctx_t *c)
{
    kc__spec_t *sp = c->sp;
    size_t n = sp->s.n_params + sp->s.n_args;
    kc__sym_t *syms = own(sp, (n ? n : 1) * sizeof(*syms));
    OWN_OR_FAIL(syms);
    for (size_t i = 0; i < sp->s.n_params; i++)
        syms[i] = (kc__sym_t){sp->s.params[i].name, KC__SYM_VAR, (unsigned)i};
    for (size_t i = 0; i < sp->s.n_args; i++) {
        kc__sym_t *s = &syms[sp->s.n_params + i];
        s->name = sp->s.args[i].name;
        if (sp->s.args[i].kind == KC_ARG_POINTER)
            *s = (kc__sym_t){s->name, KC__SYM_POINTER, (unsigned)i};
        else if (sp->arg_slot[i] != KC__SPEC_NO_SLOT)
            *s = (kc__sym_t){s->name, KC__SYM_VAR, sp->arg_slot[i]};
        else
            *s = (kc__sym_t){s->name, KC__SYM_FLOAT, (unsigned)i};
    }
    sp->symtab.syms = syms;
    sp->symtab.n = n;
    return KC_OK;
}

static int parse_field(const ctx_t *c, const char *field, const char *text,
                       const char **copy, kc__expr_t **out)
{
    char msg[256];
    int rc = kc__expr_parse(text, &c->sp->symtab, out, msg, sizeof(msg));
    if (rc == KC_ENOMEM)
        return failf(c, rc, "out of memory");
    if (rc != KC_OK)
        return failf(c, rc, "%s: %s", field, msg);
    OWN_OR_FAIL(*copy = own_str(c->sp, text, strlen(text)));
    return KC_OK;
}

static int parse_expressions(const ctx_t *c, const kc_kernel_spec_t *in)
{
    kc__spec_t *sp = c->sp;
    const char *texts[7] = {in->grid[0],  in->grid[1],  in->grid[2], in->block[0],
                            in->block[1], in->block[2], in->shared};
    const char **copies[7] = {&sp->s.grid[0],  &sp->s.grid[1],  &sp->s.grid[2],
                              &sp->s.block[0], &sp->s.block[1], &sp->s.block[2],
                              &sp->s.shared};
    kc__expr_t **exprs[7] = {&sp->grid[0],  &sp->grid[1],  &sp->grid[2], &sp->block[0],
                             &sp->block[1], &sp->block[2], &sp->shared};
    int rc;

    for (int i = 0; i < 7; i++) {
        const char *text = texts[i];
        if (!text && (i == 0 || (i == 3 && in->source_kind != KC_SOURCE_PREBUILT)))
            return failf(c, KC_ESPEC, "%s: missing", geometry_fields[i]);
        if (!text)
            text = i == 6 ? "0" : "1";
        if ((rc = parse_field(c, geometry_fields[i], text, copies[i], exprs[i])))
            return rc;
        if (kc__expr_uses_beyond(*exprs[i], (unsigned)sp->s.n_params))
            sp->geo_dynamic |= (uint8_t)(1u << i);
    }
    if (in->constraint) {
        rc = parse_field(c, "constraint", in->constraint, &sp->s.constraint,
                         &sp->constraint);
        if (rc)
            return rc;
        if (kc__expr_uses_beyond(sp->constraint, (unsigned)sp->s.n_params))
            return failf(c, KC_ESPEC,
                         "constraint: may name only tuning parameters, not "
                         "arguments");
    }
    return KC_OK;
}

static int constraint_failed(const ctx_t *c, const kc__expr_fault_t *f,
                             const int64_t *row)
{
    char config[256] = "";
    size_t off = 0;
    for (size_t i = 0; i < c->sp->s.n_params && off < sizeof(config); i++) {
        int n = snprintf(config + off, sizeof(config) - off, "%s%s=%" PRId64,
                         i ? ", " : "", c->sp->s.params[i].name, row[i]);
        if (n < 0)
            break;
        off += (size_t)n;
    }
    return failf(c, KC_ESPEC, "constraint: at column %u: %s for %s", f->column,
                 f->what ? f->what : "evaluation failed", config);
}

/* The cartesian product of the parameter values, params[0] varying slowest,
 * filtered by the constraint. */
static int enumerate_candidates(const ctx_t *c)
{
    kc__spec_t *sp = c->sp;
    size_t np = sp->s.n_params, total = 1, kept = 0;
    int64_t *rows = NULL;
    int rc = KC_OK;

    for (size_t i = 0; i < np; i++) {
        if (__builtin_mul_overflow(total, sp->s.params[i].n_values, &total) ||
            total > KC__SPEC_MAX_SPACE)
            return failf(c, KC_ESPEC, "params: the tuning space has more than %d configs",
                         KC__SPEC_MAX_SPACE);
    }
    size_t cap = total < KC__SPEC_MAX_CANDIDATES ? total : KC__SPEC_MAX_CANDIDATES;
    rows = malloc((cap * np + 1) * sizeof(*rows));
    if (!rows)
        return failf(c, KC_ENOMEM, "out of memory");

    size_t idx[KC__SPEC_MAX_PARAMS] = {0};
    int64_t vars[KC__SPEC_MAX_VARS] = {0};
    for (size_t n = 0; n < total; n++) {
        for (size_t i = 0; i < np; i++)
            vars[i] = sp->s.params[i].values[idx[i]];
        int64_t keep = 1;
        if (sp->constraint) {
            kc__expr_fault_t f;
            if (kc__expr_eval_fault(sp->constraint, vars, NULL, 0, &keep, &f) != KC_OK) {
                rc = constraint_failed(c, &f, vars);
                goto fail;
            }
        }
        if (keep) {
            if (kept == KC__SPEC_MAX_CANDIDATES) {
                rc =
                    failf(c, KC_ESPEC, "params: more than %d configs pass the constraint",
                          KC__SPEC_MAX_CANDIDATES);
                goto fail;
            }
            memcpy(rows + kept * np, vars, np * sizeof(*rows));
            kept++;
        }
        for (size_t i = np; i-- > 0;) {
            if (++idx[i] < sp->s.params[i].n_values)
                break;
            idx[i] = 0;
        }
    }
    if (kept == 0) {
        rc = failf(c, KC_ESPEC, "constraint: excludes every config");
        goto fail;
    }
    int64_t *owned = own(sp, kept * np * sizeof(*owned));
    if (!owned) {
        rc = failf(c, KC_ENOMEM, "out of memory");
        goto fail;
    }
    if (np)
        memcpy(owned, rows, kept * np * sizeof(*owned));
    sp->candidates = owned;
    sp->n_candidates = kept;
fail:
    free(rows);
    return rc;
}

static int hash_buffer(kc__wbuf_t *w, kc_key_t *out)
{
    if (w->failed) {
        kc__wbuf_free(w);
        return KC_ENOMEM;
    }
    *out = kc_key_hash(w->data, w->len);
    kc__wbuf_free(w);
    return KC_OK;
}

/* Versioned, length-prefixed encodings: see the field list in spec.h. The
 * expressions enter as compiled programs, so spacing does not matter. */
static int compute_digests(const ctx_t *c)
{
    kc__spec_t *sp = c->sp;
    const kc_kernel_spec_t *s = &sp->s;
    kc__wbuf_t w;

    if (sp->prebuilt) {
        /* The binaries are the source: their build keys, in order. */
        kc__wbuf_init(&w);
        kc__w_str(&w, "kcache-prebuilt");
        kc__w_u32(&w, 1);
        kc__w_u32(&w, (uint32_t)sp->n_candidates);
        for (size_t i = 0; i < sp->n_candidates; i++)
            kc__w_bytes(&w, sp->prebuilt[i].b, sizeof(sp->prebuilt[i].b));
        if (hash_buffer(&w, &sp->source_digest))
            return failf(c, KC_ENOMEM, "out of memory");
    } else {
        sp->source_digest =
            kc_source_digest(s->source, s->source_len, s->headers, s->n_headers);
    }

    kc__wbuf_init(&w);
    kc__w_str(&w, "kcache-space");
    kc__w_u32(&w, 1);
    kc__w_u32(&w, (uint32_t)s->n_params);
    for (size_t i = 0; i < s->n_params; i++) {
        kc__w_str(&w, s->params[i].name);
        kc__w_u32(&w, (uint32_t)s->params[i].n_values);
        for (size_t v = 0; v < s->params[i].n_values; v++)
            kc__w_u64(&w, (uint64_t)s->params[i].values[v]);
    }
    kc__w_u8(&w, sp->constraint != NULL);
    if (sp->constraint)
        kc__expr_encode(sp->constraint, &w);
    kc__w_u32(&w, (uint32_t)s->n_args);
    for (size_t i = 0; i < s->n_args; i++) {
        kc__w_str(&w, s->args[i].name);
        kc__w_u8(&w, (uint8_t)s->args[i].kind);
        kc__w_u8(&w, (uint8_t)s->args[i].dtype);
        kc__w_u8(&w, (uint8_t)s->args[i].access);
        kc__w_u8(&w, (uint8_t)s->args[i].is_key);
    }
    for (int i = 0; i < 3; i++)
        kc__expr_encode(sp->grid[i], &w);
    for (int i = 0; i < 3; i++)
        kc__expr_encode(sp->block[i], &w);
    kc__expr_encode(sp->shared, &w);
    kc__w_u8(&w, (uint8_t)s->dims_policy);
    if (hash_buffer(&w, &sp->space_digest))
        return failf(c, KC_ENOMEM, "out of memory");

    kc__wbuf_init(&w);
    kc__w_str(&w, "kcache-spec");
    kc__w_u32(&w, 1);
    kc__w_str(&w, s->name);
    kc__w_u8(&w, (uint8_t)s->source_kind);
    kc__w_bytes(&w, sp->source_digest.b, sizeof(sp->source_digest.b));
    kc__w_str(&w, s->entry);
    kc__w_u32(&w, (uint32_t)s->n_options);
    for (size_t i = 0; i < s->n_options; i++)
        kc__w_str(&w, s->options[i]);
    kc__w_bytes(&w, sp->space_digest.b, sizeof(sp->space_digest.b));
    if (hash_buffer(&w, &sp->identity))
        return failf(c, KC_ENOMEM, "out of memory");
    return KC_OK;
}

int kc__spec_create_as(const kc_kernel_spec_t *in, const char *who, kc__spec_t **out,
                       char *err, size_t errcap)
{
    char whobuf[KC__SPEC_MAX_NAME + 16];
    ctx_t c = {.err = err, .errcap = errcap};
    kc__spec_t *sp = NULL;
    int rc;

    if (err && errcap)
        err[0] = '\0';
    if (!out)
        return KC_EINVAL;
    *out = NULL;
    if (!in)
        return KC_EINVAL;

    int name_ok = in->name && in->name[0] && strlen(in->name) <= KC__SPEC_MAX_NAME;
    for (const char *p = in->name; name_ok && *p; p++)
        if ((unsigned char)*p < ' ' || *p == 0x7f)
            name_ok = 0;
    if (!who) {
        if (name_ok)
            snprintf(whobuf, sizeof(whobuf), "spec '%s'", in->name);
        else
            snprintf(whobuf, sizeof(whobuf), "spec");
        who = whobuf;
    }
    c.who = who;
    if (!in->name || !in->name[0])
        return failf(&c, KC_ESPEC, "name: missing");
    if (!name_ok)
        return failf(&c, KC_ESPEC, "name: longer than %d bytes or has control characters",
                     KC__SPEC_MAX_NAME);
    if (in->dims_policy != KC_DIMS_EXACT && in->dims_policy != KC_DIMS_POW2)
        return failf(&c, KC_ESPEC, "dims_policy: %d is neither exact nor pow2",
                     (int)in->dims_policy);

    sp = calloc(1, sizeof(*sp));
    if (!sp)
        return failf(&c, KC_ENOMEM, "out of memory");
    c.sp = sp;
    sp->s.source_kind = in->source_kind;
    sp->s.dims_policy = in->dims_policy;
    if (!(sp->s.name = own_str(sp, in->name, strlen(in->name)))) {
        rc = failf(&c, KC_ENOMEM, "out of memory");
        goto fail;
    }
    if (in->source_kind == KC_SOURCE_PREBUILT) {
        if ((rc = copy_prebuilt(&c, in)) || (rc = copy_args(&c, in)) ||
            (rc = build_symtab(&c)) || (rc = parse_expressions(&c, in)) ||
            (rc = compute_digests(&c)))
            goto fail;
    } else if ((rc = copy_source(&c, in)) || (rc = copy_params(&c, in)) ||
               (rc = copy_args(&c, in)) || (rc = build_symtab(&c)) ||
               (rc = parse_expressions(&c, in)) || (rc = enumerate_candidates(&c)) ||
               (rc = compute_digests(&c))) {
        goto fail;
    }
    *out = sp;
    return KC_OK;

fail:
    kc__spec_free(sp);
    return rc;
}

int kc__spec_create(const kc_kernel_spec_t *in, kc__spec_t **out, char *err,
                    size_t errcap)
{
    return kc__spec_create_as(in, NULL, out, err, errcap);
}

void kc__spec_free(kc__spec_t *sp)
{
    if (!sp)
        return;
    for (int i = 0; i < 3; i++) {
        kc__expr_free(sp->grid[i]);
        kc__expr_free(sp->block[i]);
    }
    kc__expr_free(sp->shared);
    kc__expr_free(sp->constraint);
    for (kc__spec_mem_t *m = sp->mem, *next; m; m = next) {
        next = m->next;
        free(m);
    }
    free(sp);
}

static int fits(kc_dtype_t dt, int64_t v)
{
    switch (dt) {
    case KC_DTYPE_BOOL:
        return v == 0 || v == 1;
    case KC_DTYPE_I8:
        return v >= INT8_MIN && v <= INT8_MAX;
    case KC_DTYPE_I16:
        return v >= INT16_MIN && v <= INT16_MAX;
    case KC_DTYPE_I32:
        return v >= INT32_MIN && v <= INT32_MAX;
    case KC_DTYPE_U8:
        return v >= 0 && v <= UINT8_MAX;
    case KC_DTYPE_U16:
        return v >= 0 && v <= UINT16_MAX;
    case KC_DTYPE_U32:
        return v >= 0 && v <= UINT32_MAX;
    case KC_DTYPE_U64:
        return v >= 0;
    default:
        return 1;
    }
}

int kc__spec_bind(const kc__spec_t *sp, const int64_t *config, const kc_arg_t *args,
                  size_t n_args, int64_t *vars, kc__argshape_t *shapes, char *err,
                  size_t errcap)
{
    if (!sp || n_args != sp->s.n_args || (n_args && !args) || !vars || !shapes ||
        (sp->s.n_params && !config))
        return KC_EINVAL;
    if (sp->s.n_params)
        memcpy(vars, config, sp->s.n_params * sizeof(*vars));
    for (size_t i = 0; i < n_args; i++) {
        const kc_arg_spec_t *a = &sp->s.args[i];
        shapes[i] = (kc__argshape_t){0, NULL};
        if (a->kind == KC_ARG_POINTER) {
            if (args[i].rank > KC_MAX_RANK || (args[i].rank && !args[i].dims)) {
                if (err && errcap)
                    snprintf(err, errcap,
                             "spec '%s': args[%zu] '%s': rank %" PRIu32
                             " without dims or over %d",
                             sp->s.name, i, a->name, args[i].rank, KC_MAX_RANK);
                return KC_EEXPR;
            }
            shapes[i] = (kc__argshape_t){args[i].rank, args[i].dims};
            continue;
        }
        if (sp->arg_slot[i] == KC__SPEC_NO_SLOT)
            continue;
        int is_unsigned = a->dtype >= KC_DTYPE_U8 && a->dtype <= KC_DTYPE_U64;
        int64_t v = is_unsigned ? (int64_t)args[i].value.u : args[i].value.i;
        if ((is_unsigned && args[i].value.u > INT64_MAX) || !fits(a->dtype, v)) {
            if (err && errcap) {
                if (is_unsigned)
                    snprintf(err, errcap,
                             "spec '%s': args[%zu] '%s': %" PRIu64
                             " does not fit %s for expressions",
                             sp->s.name, i, a->name, args[i].value.u,
                             kc_dtype_name(a->dtype));
                else
                    snprintf(err, errcap,
                             "spec '%s': args[%zu] '%s': %" PRId64 " does not fit %s",
                             sp->s.name, i, a->name, args[i].value.i,
                             kc_dtype_name(a->dtype));
            }
            return KC_EEXPR;
        }
        vars[sp->arg_slot[i]] = v;
    }
    return KC_OK;
}

static const kc__expr_t *geometry_expr(const kc__spec_t *sp, int i)
{
    return i < 3 ? sp->grid[i] : i < 6 ? sp->block[i - 3] : sp->shared;
}

static int eval_one(const kc__spec_t *sp, int i, const int64_t *vars,
                    const kc__argshape_t *shapes, size_t n, int64_t *v, char *err,
                    size_t errcap)
{
    static const int64_t max[7] = {KC__GRID_X_MAX,   KC__GRID_YZ_MAX,  KC__GRID_YZ_MAX,
                                   KC__BLOCK_XY_MAX, KC__BLOCK_XY_MAX, KC__BLOCK_Z_MAX,
                                   UINT32_MAX};
    kc__expr_fault_t f;
    int rc = kc__expr_eval_fault(geometry_expr(sp, i), vars, shapes, n, v, &f);
    if (rc != KC_OK) {
        if (err && errcap)
            snprintf(err, errcap, "spec '%s': %s: at column %u: %s", sp->s.name,
                     geometry_fields[i], f.column, f.what ? f.what : kc_strerror(rc));
        return KC_EEXPR;
    }
    int64_t lo = i < 6 ? 1 : 0;
    if (*v < lo || *v > max[i]) {
        if (err && errcap)
            snprintf(err, errcap,
                     "spec '%s': %s: %" PRId64 " is out of range %" PRId64 "..%" PRId64,
                     sp->s.name, geometry_fields[i], *v, lo, max[i]);
        return KC_EEXPR;
    }
    return KC_OK;
}

int kc__spec_eval_geometry_fixed(const kc__spec_t *sp, const int64_t *config,
                                 int64_t fixed[7], char *err, size_t errcap)
{
    for (int i = 0; i < 7; i++) {
        fixed[i] = 0;
        if (sp->geo_dynamic & (1u << i))
            continue;
        int rc = eval_one(sp, i, config, NULL, 0, &fixed[i], err, errcap);
        if (rc != KC_OK)
            return rc;
    }
    return KC_OK;
}

int kc__spec_eval_geometry_with(const kc__spec_t *sp, const int64_t *fixed,
                                const int64_t *vars, const kc__argshape_t *shapes,
                                size_t n, unsigned grid[3], unsigned block[3],
                                unsigned *shared, char *err, size_t errcap)
{
    int64_t v[7];

    if (!sp || !grid || !block || !shared)
        return KC_EINVAL;
    for (int i = 0; i < 7; i++) {
        if (fixed && !(sp->geo_dynamic & (1u << i))) {
            v[i] = fixed[i];
            continue;
        }
        int rc = eval_one(sp, i, vars, shapes, n, &v[i], err, errcap);
        if (rc != KC_OK)
            return rc;
    }
    if (v[3] * v[4] * v[5] > KC__BLOCK_THREADS_MAX) {
        if (err && errcap)
            snprintf(err, errcap,
                     "spec '%s': block: %" PRId64 " x %" PRId64 " x %" PRId64
                     " threads, more than %u",
                     sp->s.name, v[3], v[4], v[5], KC__BLOCK_THREADS_MAX);
        return KC_EEXPR;
    }
    for (int i = 0; i < 3; i++) {
        grid[i] = (unsigned)v[i];
        block[i] = (unsigned)v[3 + i];
    }
    *shared = (unsigned)v[6];
    return KC_OK;
}

int kc__spec_eval_geometry(const kc__spec_t *sp, const int64_t *vars,
                           const kc__argshape_t *shapes, size_t n, unsigned grid[3],
                           unsigned block[3], unsigned *shared, char *err, size_t errcap)
{
    return kc__spec_eval_geometry_with(sp, NULL, vars, shapes, n, grid, block, shared,
                                       err, errcap);
}
