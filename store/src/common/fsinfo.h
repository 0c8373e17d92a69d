/* What the store needs to know about the filesystem a directory lives on.
 * Internal.
 *
 * LMDB relies on POSIX byte-range locks and a coherent shared mmap, which
 * network filesystems do not give, so a writable store there is refused.
 * Setting KCACHE_ALLOW_NETWORK_FS=1 in the environment lifts the refusal for
 * users who know that only one machine ever opens the store. FUSE mounts
 * are not classed as network filesystems: too many of them are local. */
#ifndef KCACHE_FSINFO_H
#define KCACHE_FSINFO_H

/* What kc_store_open asks of a directory's filesystem. */
typedef struct kc__fs_probe {
    int writable;        /* the process may create files in dir (access W_OK)
                            and its filesystem is not mounted read-only */
    const char *network; /* the network filesystem type's name ("nfs",
                            "cifs", ...) when dir is on one and
                            KCACHE_ALLOW_NETWORK_FS is not 1; else NULL (NULL
                            too when statfs fails: the open that follows
                            reports the real error) */
} kc__fs_probe_t;

/* Both with one access and one statfs (statvfs and statfs are each one
 * statfs: a first open asked twice). */
void kc__fs_probe(const char *dir, kc__fs_probe_t *out);

/* kc__fs_probe's writable alone. */
int kc__fs_dir_writable(const char *dir);

/* The name of the network filesystem type f_type (a statfs magic number),
 * or NULL for a local one. */
const char *kc__fs_network_type_name(unsigned long f_type);

/* fsync the file or directory at path (opened with flags: O_RDONLY, or
 * O_RDONLY | O_DIRECTORY for a directory). 0, or the errno. */
int kc__fs_sync_path(const char *path, int flags);

#endif
