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

/* 1 if the process may create files in dir (access W_OK) and its
 * filesystem is not mounted read-only; else 0. */
int kc__fs_dir_writable(const char *dir);

/* The name of the network filesystem type f_type (a statfs magic number),
 * or NULL for a local one. */
const char *kc__fs_network_type_name(unsigned long f_type);

/* If dir is on a network filesystem and KCACHE_ALLOW_NETWORK_FS is not 1,
 * return its type's name ("nfs", "cifs", ...); else NULL. NULL too when
 * statfs fails: the open that follows reports the real error. */
const char *kc__fs_network_refusal(const char *dir);

/* fsync the file or directory at path (opened with flags: O_RDONLY, or
 * O_RDONLY | O_DIRECTORY for a directory). 0, or the errno. */
int kc__fs_sync_path(const char *path, int flags);

#endif
