/* kc_store_compact: rewrite data.mdb without its free pages.
 *
 * LMDB never returns freed pages to the filesystem: after gc the file keeps
 * its size and reuses the pages for later writes. Compaction copies the live
 * pages into a new file and renames it over data.mdb. That is only safe
 * while no other process maps the old file, which kc__env_exclusive makes
 * sure of for the whole copy and rename.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fsinfo.h"
#include "store_internal.h"

typedef struct compact_ctx {
    uint64_t before, after;
} compact_ctx_t;

/* Runs with the store locked against every other process and this
 * process's environment closed. */
static int compact_fn(const char *dir, void *arg, char *msg, size_t msg_len)
{
    compact_ctx_t *c = arg;
    char data_path[PATH_MAX], tmp_dir[PATH_MAX], tmp_data[PATH_MAX];
    MDB_env *src = NULL;
    struct stat sb;
    int rc, made_dir = 0;

    snprintf(data_path, sizeof(data_path), "%s/data.mdb", dir);
    if (snprintf(tmp_dir, sizeof(tmp_dir), "%s/compact.XXXXXX", dir) >=
            (int)sizeof(tmp_dir) ||
        snprintf(tmp_data, sizeof(tmp_data), "%s/compact.XXXXXX/data.mdb", dir) >=
            (int)sizeof(tmp_data)) {
        snprintf(msg, msg_len, "path too long: %s", dir);
        return KC_EINVAL;
    }
    if (stat(data_path, &sb) != 0) {
        snprintf(msg, msg_len, "%s: %s", data_path, strerror(errno));
        return kc__mdb_code(errno);
    }
    c->before = (uint64_t)sb.st_size;

    /* A temporary directory inside the store is on the same filesystem, so
     * the rename below is atomic. */
    if (!mkdtemp(tmp_dir)) {
        snprintf(msg, msg_len, "cannot create a temporary directory in %s: %s", dir,
                 strerror(errno));
        return kc__mdb_code(errno);
    }
    made_dir = 1;
    memcpy(tmp_data, tmp_dir, strlen(tmp_dir));

    /* The lock file is held exclusively by the caller, so this copy opens
     * without LMDB's locks; nobody else can write meanwhile. */
    if ((rc = mdb_env_create(&src)) != 0 ||
        (rc = mdb_env_set_maxdbs(src, KC__ENV_MAX_DBS)) != 0 ||
        (rc = mdb_env_open(src, dir, MDB_RDONLY | MDB_NOLOCK | MDB_NOTLS, 0664)) != 0) {
        snprintf(msg, msg_len, "%s: cannot open for copying: %s", dir, mdb_strerror(rc));
        rc = kc__mdb_code(rc);
        goto fail;
    }
    rc = mdb_env_copy2(src, tmp_dir, MDB_CP_COMPACT);
    mdb_env_close(src);
    src = NULL;
    if (rc != 0) {
        snprintf(msg, msg_len, "%s: compacting copy failed: %s", dir, mdb_strerror(rc));
        rc = kc__mdb_code(rc);
        goto fail;
    }
    if ((rc = kc__fs_sync_path(tmp_data, O_RDONLY)) != 0) {
        snprintf(msg, msg_len, "%s: fsync: %s", tmp_data, strerror(rc));
        rc = kc__mdb_code(rc);
        goto fail;
    }
    if (stat(tmp_data, &sb) != 0) {
        snprintf(msg, msg_len, "%s: %s", tmp_data, strerror(errno));
        rc = kc__mdb_code(errno);
        goto fail;
    }
    c->after = (uint64_t)sb.st_size;
    if (rename(tmp_data, data_path) != 0) {
        snprintf(msg, msg_len, "cannot rename %s to %s: %s", tmp_data, data_path,
                 strerror(errno));
        rc = kc__mdb_code(errno);
        goto fail;
    }
    /* Make the rename durable; the old file is only gone once it is. */
    kc__fs_sync_path(dir, O_RDONLY | O_DIRECTORY);
    rmdir(tmp_dir);
    return KC_OK;

fail:
    if (made_dir) {
        unlink(tmp_data);
        rmdir(tmp_dir);
    }
    return rc;
}

int kc_store_compact(kc_store_t *store, uint64_t *before, uint64_t *after)
{
    compact_ctx_t c = {0, 0};
    char msg[1024];
    int rc;

    if (!store)
        return KC_EINVAL;
    kc__store_begin_call(store);
    if ((rc = kc__store_check_writable(store, "compact")) != KC_OK)
        return rc;
    /* Written now, buffered stamps and counters are in the size reported. */
    if ((rc = kc_store_flush(store)) != KC_OK)
        return rc;
    rc = kc__env_exclusive(store->env, store->path, compact_fn, &c, msg, sizeof(msg));
    if (rc != KC_OK)
        return kc__store_fail(store, rc, "compact: %s", msg[0] ? msg : kc_strerror(rc));
    if (before)
        *before = c.before;
    if (after)
        *after = c.after;
    return KC_OK;
}
