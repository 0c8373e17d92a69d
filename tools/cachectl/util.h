/* cachectl helpers shared by every command: exit codes, store opening,
 * key resolution, size and time formatting, aligned tables and JSON output.
 * Names here are cachectl's own (ctl_), not part of the kcache API.
 */
#ifndef CACHECTL_UTIL_H
#define CACHECTL_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "kcache/key.h"
#include "kcache/record.h"
#include "kcache/layers.h"
#include "kcache/store.h"

/* Exit statuses, as documented in the usage text. */
/* 3: the store file is damaged (KC_EDAMAGED): `cachectl recover` salvages it. */
enum { CTL_EXIT_OK = 0, CTL_EXIT_FAIL = 1, CTL_EXIT_USAGE = 2, CTL_EXIT_DAMAGED = 3 };

/* The code of the first error reported in this run (KC_OK if none). */
int ctl_first_code(void);

/* Global options, parsed by main.c and read by every command. */
typedef struct ctl_opts {
    const char *store_dir; /* -s DIR, or NULL for KCACHE_DIR / the default */
    int json;              /* --json */
} ctl_opts_t;

/* Print "cachectl: <message>" on stderr. The first message of a run is
 * also kept for the JSON error document (ctl_json_error_pending). */
void ctl_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The same, with the kcache code (KC_E...) that caused it, named in the
 * JSON error document. */
void ctl_err_code(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Progress of a long walk on stderr, only when stderr is a terminal: at
 * most every 0.5 s, "\r<what>: <done>/<total> records" (total 0: unknown),
 * and a newline from ctl_progress_end if anything was printed. */
typedef struct ctl_progress {
    const char *what;
    int on;      /* stderr is a terminal */
    int printed; /* a line is open */
    uint64_t last_ms;
} ctl_progress_t;
void ctl_progress_begin(ctl_progress_t *p, const char *what);
void ctl_progress_tick(ctl_progress_t *p, uint64_t done, uint64_t total);
void ctl_progress_end(ctl_progress_t *p);

/* Report a usage error on stderr (with a hint to run --help) and return
 * CTL_EXIT_USAGE, so that a command can `return ctl_usage_err(...)`. */
int ctl_usage_err(const char *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The store directory: -s, else $KCACHE_DIR, else $XDG_CACHE_HOME/kcache,
 * else $HOME/.cache/kcache. Never a temporary directory. NULL (after
 * printing why) if none can be determined. */
const char *ctl_store_dir(const ctl_opts_t *o);

/* Open the store for a command. Read-only commands pass writable = 0 and
 * never create a store; writable commands never create one either, since a
 * store that does not exist has nothing to remove or repair. Prints a
 * message and returns NULL on failure. */
kc_store_t *ctl_store_open(const ctl_opts_t *o, int writable);

/* The store a writing command works on: -s, else the first writable layer
 * of KCACHE_PATH (a layer marked ro=, sealed or not writable is passed
 * over; create: a missing first layer is created, as a publish would), else
 * KCACHE_DIR or the default. *layer (may be NULL) receives its index in
 * KCACHE_PATH, or (size_t)-1 when KCACHE_PATH did not choose it. Skipped
 * layers are warned about on stderr. NULL (after printing why) if none. */
const char *ctl_target_dir(const ctl_opts_t *o, int create, size_t *layer);
/* ctl_store_open on ctl_target_dir(o, 0, layer), opened for writing or
 * not: gc's dry run reads the store a real run would change. */
kc_store_t *ctl_store_open_target(const ctl_opts_t *o, int writable, size_t *layer);
/* ctl_store_open on dir (NULL: ctl_store_dir). */
kc_store_t *ctl_store_open_dir(const ctl_opts_t *o, int writable, const char *dir);

/* The stores that ls, show, stats and get read, read-only: the store of -s
 * if given, else the layers of KCACHE_PATH, else the single default store.
 * Other commands work on one store: -s, else a layer of KCACHE_PATH (the
 * first writable one for commands that write, ctl_target_dir; the first
 * entry, without its ro= marker, for the others, ctl_store_dir), else
 * KCACHE_DIR or the default. Prints
 * the reason and returns NULL on failure. Layers of KCACHE_PATH that were
 * skipped are warned about on stderr. */
kc_layers_t *ctl_layers_open(const ctl_opts_t *o);
/* The layers as a JSON array of {index, path, writable}. */
json_t *ctl_json_layers(const kc_layers_t *layers);
/* A "layers:" legend after a table, with why a layer is read-only.
 * (ctl_layers_open warns of skipped layers on stderr.) */
void ctl_print_layers(const kc_layers_t *layers);

/* Resolve a KEY argument. Returns CTL_EXIT_USAGE for text that is not a hex
 * prefix of KC_KEY_PREFIX_MIN..32 digits, CTL_EXIT_FAIL when no record or
 * several match (message printed), CTL_EXIT_OK otherwise. kind 0 searches
 * every kind. */
int ctl_key_resolve(kc_store_t *st, const char *cmd, const char *arg, int kind,
                    kc_rec_kind_t *kind_out, kc_key_t *key_out);
/* The same through layers: the first layer that holds a match answers, and
 * *store_out (may be NULL) receives that layer's store. */
int ctl_key_resolve_layers(const kc_layers_t *layers, const char *cmd, const char *arg,
                           int kind, kc_rec_kind_t *kind_out, kc_key_t *key_out,
                           kc_store_t **store_out);

/* An --arch argument as stored: "sm_90", "sm_90a", "sm_100f", or the same
 * without "sm_" ("90" is sm_90), into out[cap]. 0 if it is neither (the
 * caller reports it with CTL_ARCH_FORMS), 1 otherwise. Every --arch option
 * (ls, export, why, populate) reads its argument so: a filter never
 * silently matches nothing because of the arch's spelling. */
int ctl_arch_parse(const char *arg, char *out, size_t cap);
#define CTL_ARCH_FORMS "sm_NN, sm_NNa, sm_NNf or NN, e.g. sm_90 or 90"
/* ctl_arch_parse for a command's --arch, into a static buffer: NULL after
 * a usage error (*status set to CTL_EXIT_USAGE). */
const char *ctl_arch_arg(const char *cmd, const char *arg, int *status);

/* Whether a build's resource fields (registers, static_smem, max_threads,
 * local_bytes) were measured: they come from the driver, so a build
 * compiled without a GPU (populate) or imported from another compiler
 * stores 0 in all of them, and max_threads 0 says so (a loaded function
 * always allows at least 1 thread). Unknown fields print as "?" and are
 * null in JSON, never 0. */
int ctl_build_attrs_known(const kc_build_rec_t *b);
/* A build resource field as JSON: the number, or null when unknown. */
json_t *ctl_json_attr(const kc_build_rec_t *b, uint32_t v);

/* Check the syntax of a KEY argument without a store. */
int ctl_key_syntax_ok(const char *arg);

/* Fetch the stored bytes of a record and decode them (*rec: free with
 * kc_free). *stored (may be NULL) receives the encoded size. Read-only: a
 * damaged record gives KC_ECORRUPT and stays where it is. */
int ctl_record_load(kc_store_t *st, kc_rec_kind_t kind, const kc_key_t *key,
                    kc_record_t **rec, size_t *stored);

/* key as 32 hex digits in out. Returns out. */
const char *ctl_hex(const kc_key_t *key, char out[KC_KEY_HEX_LEN + 1]);

/* "812 B", "12.3 KiB", "4.50 MiB", "1.20 GiB" into out[cap]. */
const char *ctl_fmt_size(uint64_t bytes, char *out, size_t cap);
/* "2025-01-31 12:00:00 UTC", or "-" for 0. */
const char *ctl_fmt_time(uint64_t unix_s, char *out, size_t cap);
/* Microseconds as "850 us", "12.3 ms", "4.20 s". */
const char *ctl_fmt_us(uint64_t us, char *out, size_t cap);
/* raw / stored as "3.21x", or "-" when stored is 0. */
const char *ctl_fmt_ratio(uint64_t raw, uint64_t stored, char *out, size_t cap);
/* "BLOCK=128,WARPS=4", or "-" for none. */
const char *ctl_fmt_params(const kc_param_t *p, size_t n, char *out, size_t cap);
/* ISO-8601 "2025-01-31T12:00:00Z", or NULL for 0. */
const char *ctl_fmt_iso(uint64_t unix_s, char *out, size_t cap);

/* ---- tables ----------------------------------------------------------- */

/* An aligned text table. Cells are copied; columns whose header starts with
 * '>' are right-aligned (the '>' is not printed). */
typedef struct ctl_table ctl_table_t;

ctl_table_t *ctl_table_new(size_t ncols, const char *const *headers);
/* Append a row of ncols cells (NULL prints "-"). */
void ctl_table_row(ctl_table_t *t, const char *const *cells);
size_t ctl_table_rows(const ctl_table_t *t);
void ctl_table_print(const ctl_table_t *t);
void ctl_table_free(ctl_table_t *t);

/* Two-column "field  value" listing used by `show` and `stats`. */
void ctl_field(const char *name, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* ---- JSON ------------------------------------------------------------- */

/* Print doc as one JSON document followed by a newline, and release it.
 * Returns CTL_EXIT_FAIL if it could not be serialized. */
int ctl_json_print(json_t *doc);

/* Print {"error": {"code": "KC_E...", "message": ..., <detail's members>}}
 * on stdout (code 0 gives "code": null) and release detail (may be NULL).
 * Returns what ctl_json_print does. */
int ctl_json_error(int code, const char *message, json_t *detail);
/* With --json, after a command: if it failed (status not CTL_EXIT_OK) and
 * printed no JSON document, print the error document for the first message
 * it reported, so that a script always gets one document on stdout. */
void ctl_json_error_pending(int status);

json_t *ctl_json_key(const kc_key_t *key);
json_t *ctl_json_u64(uint64_t v);
json_t *ctl_json_params(const kc_param_t *p, size_t n);
/* A string, or JSON null for NULL. */
json_t *ctl_json_str(const char *s);

/* A record: its kind and key (rm's operands, verify's records). */
typedef struct target {
    kc_rec_kind_t kind;
    kc_key_t key;
} target_t;

/* Delete a record and the usage stamp kept under its key (rm, verify
 * --repair). A record already gone counts as deleted. */
int ctl_delete_record(kc_store_t *st, kc_rec_kind_t kind, const kc_key_t *key);

#endif
