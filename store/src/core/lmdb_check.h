/* A defensive reader of LMDB 0.9's on-disk format. Internal.
 *
 * LMDB keeps no page checksums and trusts every page number and offset it
 * finds through its map: a damaged data.mdb makes it fault (SIGBUS past the
 * end of the file, SIGSEGV on a wild offset), loop or abort. This checker
 * reads data.mdb with pread() only, never through a map, bounds-checks every
 * offset, and walks everything LMDB could reach from the meta page it would
 * pick: the free-page tree (and every free list in it), the main tree and
 * every named database. The claim (tested by fuzz/fuzz_store_file.c): a file
 * it accepts can be opened by LMDB and read in full without a fault, a loop
 * or an assertion. docs/RELIABILITY.md ("Damaged store files") says what it
 * checks and why.
 *
 * The check also runs the layout scanner that `cachectl recover` uses:
 * kc__mdb_scan visits every leaf page of a file, reachable or not, and hands
 * out each key and value whose bytes lie within the file.
 */
#ifndef KCACHE_CORE_LMDB_CHECK_H
#define KCACHE_CORE_LMDB_CHECK_H

#include <stddef.h>
#include <stdint.h>

/* The identity of a file state for the check stamp: device, inode, size,
 * modification time and both meta pages' txnids. 0 on success. */
typedef struct kc__mdb_state {
    uint64_t dev, ino, size, mtime_sec, mtime_nsec, txnid0, txnid1;
} kc__mdb_state_t;
typedef struct kc__mdb_check {
    uint64_t file_size;
    uint64_t psize;
    uint64_t txnid;        /* of the meta page LMDB would use */
    uint64_t pages;        /* pages reached: tree pages, overflow pages, free pages */
    uint64_t entries;      /* leaf entries of every tree */
    int unstable;          /* the file changed under every attempt: not judged */
    kc__mdb_state_t state; /* kc__mdb_check_file: the file state judged */
    char why[512];         /* on damage: what is wrong, and where */
} kc__mdb_check_t;

/* Check the file at data_path. KC_OK: sound, or a file of 0 bytes (LMDB
 * makes it a new store). KC_EDAMAGED: damaged, res->why says how. Another
 * KC_E* code: the file could not be read (res->why says why). A file that
 * changes while it is checked (another process commits) is checked again,
 * up to a few times; one that never holds still is reported KC_OK with
 * res->unstable set: a file that kcache writers keep committing to is not
 * judged from a torn read. */
int kc__mdb_check_file(const char *data_path, kc__mdb_check_t *res);

/* The same over bytes in memory (for the fuzz target): no retries. */
int kc__mdb_check_mem(const uint8_t *data, size_t size, kc__mdb_check_t *res);

int kc__mdb_state_read(const char *data_path, kc__mdb_state_t *st);
/* The same of an open file descriptor of data.mdb. */
int kc__mdb_state_fd(int fd, kc__mdb_state_t *st);

/* The stamp beside data_path (data_path".checked"): whether it records st
 * (1) or not (0); write st into it (best effort: a read-only directory keeps
 * no stamp). */
int kc__mdb_stamp_matches(const char *data_path, const kc__mdb_state_t *st);
void kc__mdb_stamp_write(const char *data_path, const kc__mdb_state_t *st);

/* Visit every leaf page of the file at fd (size bytes; the page size from
 * a meta page, else 4096), reachable or not. For each leaf node whose key
 * and value lie within the file (an overflow value is followed with bounds
 * checks), fn(key, klen, val, vlen, db, ctx) is called: db is 1 for a named
 * database's record in the main tree (key: its name; val: LMDB's 48-byte
 * database record, entries at offset 32), else 0. A nonzero return stops
 * the scan and is returned. *pages (may be NULL) is set to the pages of
 * the file. */
typedef int (*kc__mdb_scan_fn)(const uint8_t *key, size_t klen, const uint8_t *val,
                               size_t vlen, int db, void *ctx);
int kc__mdb_scan(int fd, uint64_t size, kc__mdb_scan_fn fn, void *ctx, uint64_t *pages);

#endif
