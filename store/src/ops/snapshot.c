/* kc_store_snapshot: a consistent, compacted copy of a live store.
 *
 * LMDB's own copy (mdb_env_copy2 with MDB_CP_COMPACT) runs under one read
 * transaction of the store's environment: writers go on meanwhile, and the
 * copy holds exactly the state of one commit, with no free pages. The copy
 * is written into a temporary directory beside the destination, synced,
 * and renamed to it, so the destination either does not exist or holds a
 * whole store. This is how a store goes into a container image while a
 * process may be writing to it: a plain `cp` of data.mdb can copy pages of
 * different commits and make a store that LMDB cannot read.
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

/* The directory holding path (for the temporary copy and the final sync). */
static void parent_of(const char *path, char *out, size_t cap)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        snprintf(out, cap, ".");
    else if (slash == path)
        snprintf(out, cap, "/");
    else
        snprintf(out, cap, "%.*s", (int)(slash - path), path);
}

int kc_store_snapshot(kc_store_t *store, const char *dst, uint64_t *bytes)
{
    char tmp[PATH_MAX], tmp_data[PATH_MAX], parent[PATH_MAX];
    struct stat sb;
    int rc;

    if (!store || !dst || !dst[0])
        return KC_EINVAL;
    kc__store_begin_call(store);
    if (lstat(dst, &sb) == 0)
        return kc__store_fail(store, KC_EEXIST,
                              "snapshot: %s exists; a snapshot goes to a new directory",
                              dst);
    if (errno != ENOENT)
        return kc__store_fail(store, kc__mdb_code(errno), "snapshot: %s: %s", dst,
                              strerror(errno));
    /* Stamps and counters buffered in this handle go into the copy too. */
    if (!store->readonly && (rc = kc_store_flush(store)) != KC_OK)
        return rc;
    parent_of(dst, parent, sizeof(parent));
    if (snprintf(tmp, sizeof(tmp), "%s.snapshot.XXXXXX", dst) >= (int)sizeof(tmp))
        return kc__store_fail(store, KC_EINVAL, "snapshot: path too long: %s", dst);
    if (!mkdtemp(tmp))
        return kc__store_fail(store, kc__mdb_code(errno),
                              "snapshot: cannot create a directory beside %s: %s", dst,
                              strerror(errno));
    if (snprintf(tmp_data, sizeof(tmp_data), "%s/data.mdb", tmp) >=
        (int)sizeof(tmp_data)) {
        rmdir(tmp);
        return kc__store_fail(store, KC_EINVAL, "snapshot: path too long: %s", dst);
    }
    kc__env_use(store->env);
    rc = store->env->mdb ? mdb_env_copy2(store->env->mdb, tmp, MDB_CP_COMPACT) : EINVAL;
    if (rc != 0) {
        rc = kc__store_fail(store, kc__mdb_code(rc), "snapshot: copying %s: %s",
                            store->path, mdb_strerror(rc));
        goto fail;
    }
    if ((rc = kc__fs_sync_path(tmp_data, O_RDONLY)) != 0 ||
        (rc = kc__fs_sync_path(tmp, O_RDONLY | O_DIRECTORY)) != 0) {
        rc = kc__store_fail(store, kc__mdb_code(rc), "snapshot: fsync: %s", strerror(rc));
        goto fail;
    }
    if (stat(tmp_data, &sb) != 0) {
        rc = kc__store_fail(store, kc__mdb_code(errno), "snapshot: %s: %s", tmp_data,
                            strerror(errno));
        goto fail;
    }
    if (rename(tmp, dst) != 0) {
        rc = kc__store_fail(store, kc__mdb_code(errno),
                            "snapshot: cannot rename %s to %s: %s", tmp, dst,
                            strerror(errno));
        goto fail;
    }
    kc__fs_sync_path(parent, O_RDONLY | O_DIRECTORY);
    if (bytes)
        *bytes = (uint64_t)sb.st_size;
    return KC_OK;

fail:
    unlink(tmp_data);
    rmdir(tmp);
    return rc;
}
