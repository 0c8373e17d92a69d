/* kcache_damage_blobs: damage a copy of a store the way a bad disk or a
 * stray write would, for timing what cachectl does with many bad records
 * (`cachectl verify` reports each, and each build and tuning that needs
 * one). Flips one byte near the end of every EVERY-th value of the "blob"
 * database, through LMDB directly, in one transaction. Never run it on a
 * store you keep. Not installed.
 *
 *   kcache_damage_blobs DIR EVERY
 * Prints how many blobs it damaged. */
#include <errno.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int fail(const char *what, int rc)
{
    fprintf(stderr, "kcache_damage_blobs: %s: %s\n", what, mdb_strerror(rc));
    return 1;
}

int main(int argc, char **argv)
{
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    MDB_cursor *cur;
    MDB_val k, v;
    unsigned long every, i = 0, damaged = 0;
    int rc;

    if (argc != 3 || (every = strtoul(argv[2], NULL, 10)) == 0) {
        fprintf(stderr, "usage: %s DIR EVERY\n", argv[0]);
        return 2;
    }
    /* Room for the copies of the pages it rewrites: twice the file. */
    char path[4096];
    struct stat sb;
    snprintf(path, sizeof(path), "%s/data.mdb", argv[1]);
    if (stat(path, &sb) != 0) {
        fprintf(stderr, "kcache_damage_blobs: %s: %s\n", path, strerror(errno));
        return 1;
    }
    size_t map = (size_t)sb.st_size * 2 + ((size_t)1 << 30);
    if ((rc = mdb_env_create(&env)) || (rc = mdb_env_set_maxdbs(env, 32)) ||
        (rc = mdb_env_set_mapsize(env, map)) ||
        (rc = mdb_env_open(env, argv[1], 0, 0664)))
        return fail(argv[1], rc);
    if ((rc = mdb_txn_begin(env, NULL, 0, &txn)) ||
        (rc = mdb_dbi_open(txn, "blob", 0, &dbi)) ||
        (rc = mdb_cursor_open(txn, dbi, &cur)))
        return fail("blob database", rc);
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT), i++) {
        if (i % every || v.mv_size < 4)
            continue;
        unsigned char *copy = malloc(v.mv_size);
        if (!copy)
            return fail("out of memory", ENOMEM);
        memcpy(copy, v.mv_data, v.mv_size);
        copy[v.mv_size - 3] ^= 0x55;
        MDB_val nv = {v.mv_size, copy};
        rc = mdb_cursor_put(cur, &k, &nv, MDB_CURRENT);
        free(copy);
        if (rc)
            return fail("put", rc);
        damaged++;
    }
    if (rc != MDB_NOTFOUND)
        return fail("walk", rc);
    mdb_cursor_close(cur);
    if ((rc = mdb_txn_commit(txn)))
        return fail("commit", rc);
    mdb_env_close(env);
    printf("damaged %lu of %lu blobs\n", damaged, i);
    return 0;
}
