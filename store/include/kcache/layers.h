/* Layered stores: a search path of stores, as KCACHE_PATH=dir1:dir2:...
 *
 * Lookups try each layer in order and return the first hit. Publishes go to
 * the first writable layer. The typical stack is a writable store of the
 * user's on top of read-only stores baked into a container image: a store
 * in a directory without write permission, or on a read-only filesystem,
 * opens read-only and serves hits. Root may write where the permissions
 * say not to, so an entry can also be marked read-only explicitly:
 * KCACHE_PATH=$HOME/.cache/kcache:ro=/opt/kcache opens /opt/kcache
 * read-only whatever the uid (as does a sealed store, kc_store_set_sealed).
 *
 * Thread safety: as for kc_store_t; a kc_layers_t never changes after it is
 * opened.
 */
#ifndef KCACHE_LAYERS_H
#define KCACHE_LAYERS_H

#include <stddef.h>

#include "kcache/api.h"
#include "kcache/store.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kc_layers kc_layers_t;

/* An entry of a search path that starts with this is a read-only layer:
 * "ro=/opt/kcache" opens /opt/kcache with KC_STORE_RDONLY, for root too,
 * and publishes go to the next writable layer. (A directory whose name
 * starts with "ro=" is written "./ro=...".) */
#define KC_LAYERS_RO_PREFIX "ro="

/* The most layers a search path may list. */
#define KC_LAYERS_MAX 16

/* Open the stores of a colon-separated list, in order. Each store opens as
 * kc_store_open opens it (read-only where it cannot be written). A directory
 * that does not exist is created if no writable layer precedes it (it
 * becomes the one publishes go to), and skipped otherwise. A layer that
 * cannot be opened (damaged, newer format, permission denied, network
 * filesystem) is skipped and described by kc_layers_warnings: a cache must
 * not fail the work because one of its layers is bad. An entry
 * KC_LAYERS_RO_PREFIX "DIR" opens DIR read-only and never creates it. Empty
 * entries are ignored. With KC_STORE_SET_ASIDE_DAMAGED in opts->flags, a
 * layer whose file is damaged is set aside and replaced by a fresh store
 * (see that flag); the warnings say so. KC_EINVAL for an empty list or more
 * than KC_LAYERS_MAX entries; KC_ENOTFOUND when no layer could be opened
 * (the warnings say why). On failure *out is NULL and
 * kc_store_open_errmsg() holds the message. */
KC_API int kc_layers_open(const char *path_list, const kc_store_opts_t *opts,
                          kc_layers_t **out);

/* Open the layers the environment names: KCACHE_PATH if set and not empty,
 * else the single store KCACHE_DIR, else $XDG_CACHE_HOME/kcache, else
 * $HOME/.cache/kcache. */
KC_API int kc_layers_open_default(const kc_store_opts_t *opts, kc_layers_t **out);
/* The path list kc_layers_open_default would open, as the environment names
 * it now, in *out (free with kc_free): for a caller that opens the layers
 * later (a launcher opens its store at its first kernel) but must read the
 * environment now. KC_ENOTFOUND when none is named (kc_store_open_errmsg()
 * says so). */
KC_API int kc_layers_default_path(char **out);

/* One layer around a store the caller opened; the store is borrowed and
 * must outlive the layers. */
KC_API int kc_layers_wrap(kc_store_t *store, kc_layers_t **out);

/* Close every layer this object opened. Accepts NULL. */
KC_API void kc_layers_close(kc_layers_t *layers);

KC_API size_t kc_layers_count(const kc_layers_t *layers);
/* The i-th open layer (0 = searched first), or NULL past the end. */
KC_API kc_store_t *kc_layers_store(const kc_layers_t *layers, size_t i);
/* The first writable layer, where publishes go, or NULL if none is. */
KC_API kc_store_t *kc_layers_writable(const kc_layers_t *layers);
/* Why the i-th layer could take no publishes even if opened for writing:
 * "marked ro= in the store path", "sealed", "directory or filesystem not
 * writable", "opened read-only" (a network filesystem; for
 * kc_layers_wrap, a store its caller opened read-only); NULL when it could
 * (whether or not kc_layers_open was asked for read-only layers), and past
 * the end. A static string. */
KC_API const char *kc_layers_readonly_why(const kc_layers_t *layers, size_t i);
/* Lines describing skipped layers and damaged files set aside ("" when
 * none). Valid while open. */
KC_API const char *kc_layers_warnings(const kc_layers_t *layers);
/* How many layers' files were found damaged (KC_EDAMAGED): skipped, or set
 * aside with KC_STORE_SET_ASIDE_DAMAGED. */
KC_API size_t kc_layers_damaged(const kc_layers_t *layers);

/* Lookups through the layers, in order. *layer (may be NULL) receives the
 * index of the layer that answered. Same codes and ownership as the
 * kc_store_* call of the same name: KC_ENOTFOUND when no layer has it (a
 * corrupt record in a layer counts as a miss in that layer, and the search
 * goes on). */
KC_API int kc_layers_get(const kc_layers_t *layers, kc_rec_kind_t kind,
                         const kc_key_t *key, kc_record_t **out, size_t *layer);
KC_API int kc_layers_get_cubin(const kc_layers_t *layers, const kc_key_t *key,
                               void **cubin, size_t *len, size_t *layer);
KC_API int kc_layers_get_build_cubin(const kc_layers_t *layers, const kc_key_t *build_key,
                                     kc_record_t **build, void **cubin, size_t *len,
                                     size_t *layer);

#ifdef __cplusplus
}
#endif
#endif
