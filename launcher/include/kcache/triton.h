/* Importing Triton's on-disk cache into a kcache store.
 *
 * Triton (3.6 and later) writes one directory per compiled kernel under
 * $TRITON_CACHE_DIR: <HASH>/<name>.json (the metadata), <name>.cubin,
 * <name>.ptx, <name>.source (the Triton IR, whose `tt.func public @<name>`
 * line is the signature), and the group file __grp__<name>.json. An import
 * turns each such entry into a blob (the cubin), a build record of source
 * kind KC_SOURCE_PREBUILT and a binmeta record (the launch metadata), all
 * published together (docs/FORMAT.md, "Imported binaries"). Nothing is
 * compiled: the cubin is stored byte for byte (or, with the import's
 * strip_debug, without its debug sections).
 *
 * Entries are read with no GPU and no Python. The functions here are
 * thread-safe on distinct arguments.
 */
#ifndef KCACHE_TRITON_H
#define KCACHE_TRITON_H

#include <stddef.h>
#include <stdint.h>

#include "kcache/api.h"
#include "kcache/errors.h"
#include "kcache/key.h"
#include "kcache/record.h"
#include "kcache/store.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One Triton cache entry, parsed. Every pointer points into memory the
 * entry owns, valid until kc_triton_entry_free. */
typedef struct kc_triton_entry {
    const char *dir_name;     /* the hash directory's base name */
    const char *name;         /* the kernel's name, its symbol in the cubin */
    const char *triton_hash;  /* Triton's own key ("hash" in the json) */
    const char *version;      /* triton_version, e.g. "3.9.0" */
    const char *arch;         /* sm_<target.arch>, with 'a' if the PTX targets it */
    uint32_t num_stages;      /* a tuning knob, for a spec's candidate config */
    kc_buf_t cubin;           /* the cubin's bytes, as Triton wrote them */
    kc_key_t blob;            /* the cubin's blob key: kc_key_hash of its bytes */
    kc_key_t build_key;       /* kc_build_key of the prebuilt build preimage */
    kc_build_rec_t build;     /* the build record; created is the load time */
    kc_binmeta_rec_t binmeta; /* its launch metadata; binmeta.build == build_key */
} kc_triton_entry_t;

/* Parse one hash directory.
 *
 * hash_dir: the path of a <HASH> directory. Children are found by base name
 * inside it (the absolute paths of the group file may name a directory the
 * cache has since been moved from).
 *
 * Returns KC_OK with *out set (free it with kc_triton_entry_free), or, with
 * *out NULL and the reason in err[errcap] (may be NULL / 0):
 *   KC_ENOTFOUND     not a kernel entry (no group file), or a file it needs
 *                    (json, cubin, ptx, source or ttir) is missing: skip it;
 *   KC_EUNSUPPORTED  a kernel this kcache cannot launch: tensor descriptors
 *                    (TMA), a backend other than cuda, a warp size other than
 *                    32, a triton_version missing or older than 3.6, an
 *                    argument type it does not know;
 *   KC_ECORRUPT      malformed: bad JSON, a required key missing or of the
 *                    wrong type, a cubin that is not a CUDA ELF or does not
 *                    contain the kernel's name, an unparseable signature;
 *   KC_EIO, KC_ENOMEM, KC_EINVAL (NULL arguments).
 * A missing required field is an error, never a default. */
KC_API int kc_triton_entry_load(const char *hash_dir, kc_triton_entry_t **out, char *err,
                                size_t errcap);

/* Release an entry. Accepts NULL. */
KC_API void kc_triton_entry_free(kc_triton_entry_t *entry);

typedef struct kc_triton_import_opts {
    /* sizeof(kc_triton_import_opts_t), as KC_TRITON_IMPORT_OPTS_INIT sets it
     * (kcache/api.h, "Options structs"). */
    size_t size;
    int dry_run; /* validate and report, write nothing */
    /* Store each cubin without its debug sections (the PTX text, line
     * tables and frame info ptxas adds with -lineinfo, Triton's default):
     * about half of a Triton binary's bytes, which a launch never reads.
     * The stripped cubin is a new blob (its own hash) and its build a new
     * build: the preimage's options carry "strip=debug", so a store may
     * hold a kernel both ways. Every segment the driver loads is kept byte
     * for byte; a cubin the strip cannot rewrite so is stored whole. Tools
     * that map SASS to source lines (Nsight Compute's source view,
     * nvdisasm -g) find no line information in a stripped cubin. */
    int strip_debug;
} kc_triton_import_opts_t;

#define KC_TRITON_IMPORT_OPTS_INIT                                                       \
    {                                                                                    \
        .size = sizeof(kc_triton_import_opts_t)                                          \
    }

typedef enum kc_triton_status {
    KC_TRITON_IMPORTED = 0, /* published by this import (or would be: dry run) */
    KC_TRITON_PRESENT = 1,  /* its build and binmeta were already stored */
    KC_TRITON_SKIPPED = 2,  /* not imported; reason says why */
} kc_triton_status_t;

/* "imported", "present", "skipped"; NULL for an unknown value. */
KC_API const char *kc_triton_status_name(int status);

typedef struct kc_triton_item {
    const char *dir_name; /* the hash directory's (or stray file's) base name */
    int status;           /* kc_triton_status_t */
    const char *reason;   /* why it was skipped; "" otherwise */
    /* The parsed entry; NULL when skipped. Its name, arch, build_key,
     * binmeta (signature, num_warps...) and num_stages describe it. */
    const kc_triton_entry_t *entry;
} kc_triton_item_t;

typedef struct kc_triton_report {
    kc_triton_item_t *items; /* in directory-name order */
    size_t n_items;
    size_t imported, present, skipped;
} kc_triton_report_t;

/* Import a Triton cache into store.
 *
 * dir: a Triton cache directory (every subdirectory a hash directory) or a
 * single hash directory. Every entry is validated first. Entries that are
 * not kernels, miss files or are unsupported are skipped and listed with
 * the reason. If any entry is malformed nothing is written and the call
 * returns KC_ECORRUPT, with a message naming the file and what is wrong in
 * kc_store_errmsg(store). Otherwise every good entry not already stored
 * (build and binmeta) is published in one kc_store_publish: its cubin,
 * build and binmeta. Importing the same cache again publishes nothing.
 *
 * opts may be NULL (defaults); KC_EINVAL for an opts->size of 0 or larger
 * than this library's. report may be NULL; on KC_OK *report is the
 * caller's, freed with kc_triton_report_free, and on failure it is NULL.
 *
 * Returns KC_OK (also when entries were skipped), KC_ENOTFOUND when dir
 * holds no kernel entry at all (or does not exist), KC_ECORRUPT,
 * KC_EREADONLY, KC_EIO, KC_ENOMEM or a store error from the publish. The
 * message is in kc_store_errmsg(store) for every code but KC_OK. */
KC_API int kc_triton_import(kc_store_t *store, const char *dir,
                            const kc_triton_import_opts_t *opts,
                            kc_triton_report_t **report);

/* Release a report. Accepts NULL. */
KC_API void kc_triton_report_free(kc_triton_report_t *report);

#ifdef __cplusplus
}
#endif
#endif
