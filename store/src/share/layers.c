/* Layered stores (kcache/layers.h): a fixed array of open stores searched
 * in order. */
#include "cold.h"
#include "kcache/layers.h"

#include "envvar.h"
#include "fsinfo.h"
#include "opts.h"
#include "store_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lmdb_check.h"

struct kc_layers {
    size_t n;
    kc_store_t *stores[KC_LAYERS_MAX];
    int owned; /* close the stores at kc_layers_close */
    kc_store_t *writable;
    /* Why layer i could take no publishes (NULL: it could). */
    const char *readonly_why[KC_LAYERS_MAX];
    size_t damaged; /* layers whose file was found damaged */
    char warnings[4096];
};

/* Why a layer opened from dir could take no publishes, were it opened for
 * writing: the marker, the seal, or the directory or filesystem. */
static const char *readonly_why(kc_store_t *st, const char *dir, int marked,
                                unsigned flags)
{
    if (marked)
        return "marked " KC_LAYERS_RO_PREFIX " in the store path";
    if (kc_store_is_sealed(st))
        return "sealed";
    /* Opened for writing: kc_store_open found the directory writable just
     * now; no need to ask the filesystem again (two syscalls per layer). */
    if (!kc_store_is_readonly(st))
        return NULL;
    if (!kc__fs_dir_writable(dir))
        return "directory or filesystem not writable";
    if (kc_store_is_readonly(st) && !(flags & KC_STORE_RDONLY))
        return "opened read-only"; /* e.g. a network filesystem */
    return NULL;
}

static void warn(kc_layers_t *l, const char *fmt, const char *dir, const char *why)
{
    size_t used = strlen(l->warnings);
    snprintf(l->warnings + used, sizeof(l->warnings) - used, fmt, dir, why);
}

static int dir_exists(const char *dir)
{
    struct stat st;
    return stat(dir, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Whether a layer opened for reading that has no store is worth a warning:
 * yes unless dir is an existing directory without a data.mdb. */
static KC__COLD int empty_layer_is_news(const char *dir)
{
    char data[PATH_MAX];
    struct stat st;
    if (!dir_exists(dir) ||
        snprintf(data, sizeof(data), "%s/data.mdb", dir) >= (int)sizeof(data))
        return 1;
    return lstat(data, &st) == 0 || errno != ENOENT;
}

/* Rename dir/data.mdb, found damaged, to dir/data.mdb.damaged-<UTC time>
 * (never deleting it, so that it can be inspected or recovered from). Under
 * an flock of dir/data.mdb.aside, the file is checked again first: of
 * processes that found it damaged at once, one renames it, and none renames
 * the fresh store another put in its place. 1: set aside (aside names it);
 * 0: already gone or no longer damaged; -1: cannot (why says it). */
static int set_aside(const char *dir, char *aside, size_t aside_len, char *why,
                     size_t why_len)
{
    char data[PATH_MAX], lock[PATH_MAX], stamp[32];
    kc__mdb_check_t res;
    struct tm tm;
    time_t now = time(NULL);
    int fd, rc, out = -1;

    if (snprintf(data, sizeof(data), "%s/data.mdb", dir) >= (int)sizeof(data) ||
        snprintf(lock, sizeof(lock), "%s/data.mdb.aside", dir) >= (int)sizeof(lock)) {
        snprintf(why, why_len, "path too long");
        return -1;
    }
    fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0664);
    if (fd < 0 || flock(fd, LOCK_EX) != 0) {
        snprintf(why, why_len, "cannot lock %s: %s", lock, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    rc = kc__mdb_check_file(data, &res);
    if (rc != KC_EDAMAGED) {
        out = 0;
        goto out;
    }
    gmtime_r(&now, &tm);
    strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%SZ", &tm);
    for (int i = 0; i < 100; i++) {
        struct stat sb;
        int n = i ? snprintf(aside, aside_len, "%s.damaged-%s.%d", data, stamp, i)
                  : snprintf(aside, aside_len, "%s.damaged-%s", data, stamp);
        if (n >= (int)aside_len)
            break;
        if (lstat(aside, &sb) == 0)
            continue;
        if (rename(data, aside) == 0) {
            char st_path[PATH_MAX + 16];
            snprintf(st_path, sizeof(st_path), "%s.checked", data);
            unlink(st_path);
            out = 1;
        } else {
            snprintf(why, why_len, "cannot rename %s: %s", data, strerror(errno));
        }
        goto out;
    }
    snprintf(why, why_len, "no free name to set %s aside", data);
out:
    close(fd);
    return out;
}

/* A layer whose file was found damaged: set it aside and open again. */
static KC__COLD int reopen_damaged(kc_layers_t *l, const char *dir,
                                   const kc_store_opts_t *so, kc_store_t **st, int rc)
{
    char aside[PATH_MAX + 64], why[PATH_MAX + 64], damage[KC__STORE_MSG_SIZE];
    int moved;

    snprintf(damage, sizeof(damage), "%s", kc_store_open_errmsg());
    moved = set_aside(dir, aside, sizeof(aside), why, sizeof(why));
    if (moved < 0) {
        kc__store_set_open_errmsg(damage);
        return rc;
    }
    rc = kc_store_open(dir, so, st);
    if (moved == 1) {
        char line[sizeof(damage) + sizeof(aside) + 64];
        snprintf(line, sizeof(line), "set aside as %s (%s); %s", aside, damage,
                 rc == KC_OK ? "going on with a fresh store" : "going on without it");
        warn(l, "%s: damaged store: %s\n", dir, line);
        if (rc == KC_OK && !kc_store_is_readonly(*st))
            kc_store_count(*st, KC_COUNTER_DAMAGED_SET_ASIDE, 1);
    }
    return rc;
}

/* Open one layer; a damaged file is set aside first when the flags ask. */
static int open_layer(kc_layers_t *l, const char *dir, const kc_store_opts_t *so,
                      kc_store_t **st)
{
    int rc = kc_store_open(dir, so, st);

    if (rc == KC_EDAMAGED)
        l->damaged++;
    if (rc != KC_EDAMAGED || !(so->flags & KC_STORE_SET_ASIDE_DAMAGED))
        return rc;
    return reopen_damaged(l, dir, so, st, rc);
}

int kc_layers_open(const char *path_list, const kc_store_opts_t *opts, kc_layers_t **out)
{
    kc_layers_t *l = NULL;
    char *list = NULL, *save = NULL;
    size_t entries = 0;
    char msg[1600] = "";
    int rc, last_rc = KC_OK;

    if (out)
        *out = NULL;
    if (!path_list || !out)
        return kc__store_open_fail(KC_EINVAL, "no store path given");
    kc_store_opts_t o;
    if (kc__opts_read(&o, sizeof(o), opts) != KC_OK)
        return kc__store_open_fail(KC_EINVAL,
                                   "kc_layers_open: opts->size is %zu, this library's is "
                                   "%zu (use KC_STORE_OPTS_INIT)",
                                   opts->size, sizeof(o));
    /* A bad setting fails the whole path, not each layer in turn. */
    if (!o.max_size &&
        kc__envvar_size("KCACHE_MAX_SIZE", &o.max_size, msg, sizeof(msg)) != KC_OK)
        return kc__store_open_fail(KC_EINVAL, "%s", msg);
    l = calloc(1, sizeof(*l));
    list = strdup(path_list);
    if (!l || !list) {
        rc = KC_ENOMEM;
        goto fail;
    }
    l->owned = 1;
    for (char *dir = strtok_r(list, ":", &save); dir; dir = strtok_r(NULL, ":", &save)) {
        kc_store_opts_t so = o;
        kc_store_t *st = NULL;
        /* "ro=DIR": a layer opened read-only whoever runs, root included. */
        int marked = strncmp(dir, KC_LAYERS_RO_PREFIX, strlen(KC_LAYERS_RO_PREFIX)) == 0;

        if (++entries > KC_LAYERS_MAX) {
            snprintf(msg, sizeof(msg), "the store path lists more than %d stores",
                     KC_LAYERS_MAX);
            rc = KC_EINVAL;
            goto fail;
        }
        if (marked) {
            dir += strlen(KC_LAYERS_RO_PREFIX);
            so.flags |= KC_STORE_RDONLY;
            if (!*dir) {
                warn(l, "%s: skipped: %s\n", KC_LAYERS_RO_PREFIX, "names no directory");
                continue;
            }
        }
        /* Only a layer that could become the publish target is created. */
        if (l->writable || (so.flags & KC_STORE_RDONLY))
            so.flags |= KC_STORE_NOCREATE;
        if ((so.flags & KC_STORE_NOCREATE) && !dir_exists(dir)) {
            warn(l, "%s: skipped: %s\n", dir, "no such directory");
            continue;
        }
        rc = open_layer(l, dir, &so, &st);
        last_rc = rc;
        /* The first layer, opened for reading, an existing directory
         * without a store: the publish target of writers before their first
         * publish (a container's cache directory). Nothing to read and
         * nothing wrong, so no warning. */
        if (rc == KC_ENOTFOUND && l->n == 0 && (o.flags & KC_STORE_RDONLY) && !marked &&
            !empty_layer_is_news(dir))
            continue;
        if (rc != KC_OK) {
            char why[400];
            snprintf(why, sizeof(why), "%s: %s", kc_strerror(rc), kc_store_open_errmsg());
            warn(l, "%s: skipped: %s\n", dir, why);
            continue;
        }
        l->readonly_why[l->n] = readonly_why(st, dir, marked, so.flags);
        l->stores[l->n++] = st;
        if (!l->writable && !kc_store_is_readonly(st))
            l->writable = st;
    }
    if (entries == 0) {
        snprintf(msg, sizeof(msg), "the store path '%s' names no store", path_list);
        rc = KC_EINVAL;
        goto fail;
    }
    if (l->n == 0) {
        snprintf(msg, sizeof(msg), "no store of '%.200s' could be opened: %.1300s",
                 path_list, l->warnings);
        /* One store, damaged: say so, not "not found". */
        rc = entries == 1 && last_rc == KC_EDAMAGED ? KC_EDAMAGED : KC_ENOTFOUND;
        goto fail;
    }
    free(list);
    *out = l;
    return KC_OK;
fail:
    if (rc == KC_ENOMEM)
        snprintf(msg, sizeof(msg), "out of memory");
    kc_layers_close(l);
    free(list);
    /* kc_store_open_errmsg() is where callers look after a failed open. */
    kc__store_set_open_errmsg(msg);
    return rc;
}

int kc_layers_default_path(char **out)
{
    const char *v = getenv("KCACHE_PATH");
    const char *suffix = "";
    char *p = NULL;

    if (!out)
        return KC_EINVAL;
    *out = NULL;
    if (!v || !*v)
        v = getenv("KCACHE_DIR");
    if (!v || !*v) {
        v = getenv("XDG_CACHE_HOME");
        suffix = "/kcache";
        if (!v || v[0] != '/') {
            v = getenv("HOME");
            suffix = "/.cache/kcache";
            if (!v || v[0] != '/') {
                kc__store_set_open_errmsg("no store: set KCACHE_PATH or KCACHE_DIR "
                                          "(neither XDG_CACHE_HOME nor HOME is set)");
                return KC_ENOTFOUND;
            }
        }
    }
    if (asprintf(&p, "%s%s", v, suffix) < 0) {
        kc__store_set_open_errmsg("out of memory");
        return KC_ENOMEM;
    }
    *out = p;
    return KC_OK;
}

int kc_layers_open_default(const kc_store_opts_t *opts, kc_layers_t **out)
{
    char *path = NULL;
    int rc;

    if (out)
        *out = NULL;
    rc = kc_layers_default_path(&path);
    if (rc != KC_OK)
        return rc;
    rc = kc_layers_open(path, opts, out);
    kc_free(path);
    return rc;
}

int kc_layers_wrap(kc_store_t *store, kc_layers_t **out)
{
    if (out)
        *out = NULL;
    if (!store || !out)
        return KC_EINVAL;
    kc_layers_t *l = calloc(1, sizeof(*l));
    if (!l)
        return KC_ENOMEM;
    l->n = 1;
    l->stores[0] = store;
    l->writable = kc_store_is_readonly(store) ? NULL : store;
    l->readonly_why[0] = readonly_why(store, kc_store_path(store), 0, 0);
    *out = l;
    return KC_OK;
}

void kc_layers_close(kc_layers_t *l)
{
    if (!l)
        return;
    if (l->owned)
        for (size_t i = 0; i < l->n; i++)
            kc_store_close(l->stores[i]);
    free(l);
}

size_t kc_layers_count(const kc_layers_t *l)
{
    return l ? l->n : 0;
}

kc_store_t *kc_layers_store(const kc_layers_t *l, size_t i)
{
    return l && i < l->n ? l->stores[i] : NULL;
}

kc_store_t *kc_layers_writable(const kc_layers_t *l)
{
    return l ? l->writable : NULL;
}

const char *kc_layers_readonly_why(const kc_layers_t *l, size_t i)
{
    return l && i < l->n ? l->readonly_why[i] : NULL;
}

size_t kc_layers_damaged(const kc_layers_t *l)
{
    return l ? l->damaged : 0;
}

const char *kc_layers_warnings(const kc_layers_t *l)
{
    return l ? l->warnings : "";
}

int kc_layers_get(const kc_layers_t *l, kc_rec_kind_t kind, const kc_key_t *key,
                  kc_record_t **out, size_t *layer)
{
    int rc = KC_ENOTFOUND;
    if (!l)
        return KC_EINVAL;
    for (size_t i = 0; i < l->n; i++) {
        rc = kc_store_get(l->stores[i], kind, key, out);
        if (rc != KC_ENOTFOUND) {
            if (layer)
                *layer = i;
            return rc;
        }
    }
    return rc;
}

int kc_layers_get_cubin(const kc_layers_t *l, const kc_key_t *key, void **cubin,
                        size_t *len, size_t *layer)
{
    int rc = KC_ENOTFOUND;
    if (!l)
        return KC_EINVAL;
    for (size_t i = 0; i < l->n; i++) {
        rc = kc_store_get_cubin(l->stores[i], key, cubin, len);
        if (rc != KC_ENOTFOUND) {
            if (layer)
                *layer = i;
            return rc;
        }
    }
    return rc;
}

int kc_layers_get_build_cubin(const kc_layers_t *l, const kc_key_t *build_key,
                              kc_record_t **build, void **cubin, size_t *len,
                              size_t *layer)
{
    int rc = KC_ENOTFOUND;
    if (!l)
        return KC_EINVAL;
    /* A build and its blob may sit in different layers (a build imported on
     * top of a blob baked into the image): look for the build, then for its
     * blob in any layer. */
    for (size_t i = 0; i < l->n; i++) {
        rc = kc_store_get_build_cubin(l->stores[i], build_key, build, cubin, len);
        if (rc == KC_OK) {
            if (layer)
                *layer = i;
            return rc;
        }
        if (rc != KC_ENOTFOUND)
            return rc;
        kc_record_t *b = NULL;
        if (kc_store_get(l->stores[i], KC_REC_BUILD, build_key, &b) == KC_OK) {
            rc = kc_layers_get_cubin(l, &b->u.build.blob, cubin, len, NULL);
            if (rc == KC_OK) {
                *build = b;
                if (layer)
                    *layer = i;
                return rc;
            }
            kc_free(b);
        }
    }
    return KC_ENOTFOUND;
}
