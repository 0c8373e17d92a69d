#include "fsinfo.h"

#include <errno.h>
#include <fcntl.h>

#include <stdlib.h>
#include <string.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <unistd.h>

/* statfs f_type magic numbers, from linux/magic.h and the filesystems'
 * sources; spelled out so that the build needs no kernel headers. */
static const struct {
    unsigned long magic;
    const char *name;
} network_fs[] = {
    {0x6969UL, "nfs"},      {0x517BUL, "smb"},     {0xFF534D42UL, "cifs"},
    {0xFE534D42UL, "smb2"}, {0x5346414FUL, "afs"}, {0x6B414653UL, "afs"},
    {0x00C36400UL, "ceph"}, {0x01021997UL, "9p"},
};

/* Mount flags in statfs' f_flags (Linux 2.6.36 on), as statvfs names them;
 * ST_VALID says the kernel filled them in. */
#define FS_ST_RDONLY 0x0001UL
#define FS_ST_VALID 0x0020UL

void kc__fs_probe(const char *dir, kc__fs_probe_t *out)
{
    struct statfs fs;
    const char *allow = getenv("KCACHE_ALLOW_NETWORK_FS");
    int have = statfs(dir, &fs) == 0;

    out->writable = access(dir, W_OK | X_OK) == 0;
    if (out->writable && have) {
        unsigned long f = (unsigned long)fs.f_flags;
        if (f & FS_ST_VALID) {
            out->writable = !(f & FS_ST_RDONLY);
        } else {
            /* A kernel that does not fill f_flags: statvfs finds them. */
            struct statvfs vfs;
            out->writable = !(statvfs(dir, &vfs) == 0 && (vfs.f_flag & ST_RDONLY));
        }
    }
    out->network = have && !(allow && strcmp(allow, "1") == 0)
                       ? kc__fs_network_type_name((unsigned long)fs.f_type)
                       : NULL;
}

int kc__fs_dir_writable(const char *dir)
{
    kc__fs_probe_t p;

    kc__fs_probe(dir, &p);
    return p.writable;
}

const char *kc__fs_network_type_name(unsigned long f_type)
{
    /* f_type is a signed word on some ABIs: compare the low 32 bits. */
    f_type &= 0xFFFFFFFFUL;
    for (size_t i = 0; i < sizeof(network_fs) / sizeof(network_fs[0]); i++)
        if (network_fs[i].magic == f_type)
            return network_fs[i].name;
    return NULL;
}

int kc__fs_sync_path(const char *path, int flags)
{
    int fd = open(path, flags | O_CLOEXEC);
    int rc;

    if (fd < 0)
        return errno;
    rc = fsync(fd) == 0 ? 0 : errno;
    close(fd);
    return rc;
}
