/* A defensive reader of LMDB 0.9's on-disk format: see lmdb_check.h.
 *
 * The layout (mdb.c of LMDB 0.9, 64-bit builds): a page starts with a 16-byte
 * header { pgno u64, pad u16, flags u16, lower u16, upper u16 } (an overflow
 * page's lower and upper are one u32, its page count); a branch or leaf
 * page's node offsets (u16) follow the header up to lower, its nodes lie
 * from upper to the page's end. A node is { lo u16, hi u16, flags u16,
 * ksize u16, key, data }: in a leaf lo|hi<<16 is the data size, in a branch
 * lo|hi<<16|flags<<32 is the child's page number. Pages 0 and 1 hold the
 * meta { magic, version, address, mapsize, dbs[2] (free, main), last_pg,
 * txnid } after the header; a database record is { pad u32, flags u16,
 * depth u16, branch, leaf, overflow, entries, root } (u64 each).
 *
 * Everything is read with pread() into buffers this file owns, every offset
 * is checked against the page and the file, each page may be reached once
 * (a bitmap), and depth is bounded, so no input makes this code fault or
 * loop. Written from the format, not from LMDB's code. */
#include "cold.h"
#include "grow.h"
#include "lmdb_check.h"
#include "wire.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "kcache/errors.h"

#define HDR 16
#define NODE_HDR 8
#define P_BRANCH 0x01
#define P_LEAF 0x02
#define P_OVERFLOW 0x04
#define P_META 0x08
#define F_BIGDATA 0x01
#define F_SUBDATA 0x02
#define F_DUPDATA 0x04
#define MAGIC 0xBEEFC0DEu
#define DATA_VERSION 1u
#define INVALID_PGNO UINT64_MAX
#define DB_SIZE 48
#define META_SIZE (HDR + 136)
#define MAX_DEPTH 32 /* LMDB's cursor stack */
#define MIN_PSIZE 256
#define MAX_PSIZE 32768
/* The persistent database flags LMDB knows; kcache's databases use none,
 * and the free database is integer-keyed. */
#define MDB_INTEGERKEY 0x08

typedef struct src {
    int fd;
    const uint8_t *mem;
    uint64_t size;
} src_t;

typedef struct db {
    uint32_t pad;
    uint16_t flags, depth;
    uint64_t branch, leaf, overflow, entries, root;
} db_t;

typedef struct meta {
    uint32_t magic, version;
    uint32_t psize;
    db_t dbs[2];
    uint64_t last_pg, txnid;
    uint16_t page_flags;
} meta_t;

typedef struct counts {
    uint64_t branch, leaf, overflow, entries;
} counts_t;

typedef struct walk {
    src_t src;
    uint64_t psize, npages, last_pg;
    uint64_t txnid;                   /* the snapshot's (the meta page's) */
    uint8_t *seen;                    /* a bit per page */
    uint8_t *bufs[2 * MAX_DEPTH + 2]; /* by nesting level, allocated on use */
    uint8_t *ovf;                     /* a value read from overflow pages */
    size_t ovf_cap;
    uint64_t pages, entries;
    char *why;
    size_t why_len;
} walk_t;

/* Read len bytes at off; 0 when all of them are within the file and read. */
static int src_read(const src_t *s, uint64_t off, void *buf, size_t len)
{
    if (off > s->size || len > s->size - off)
        return -1;
    if (s->mem) {
        memcpy(buf, s->mem + off, len);
        return 0;
    }
    size_t done = 0;
    while (done < len) {
        ssize_t n = pread(s->fd, (uint8_t *)buf + done, len - done, (off_t)(off + done));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        done += (size_t)n;
    }
    return 0;
}

__attribute__((format(printf, 2, 3))) static int damage(walk_t *w, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(w->why, w->why_len, fmt, ap);
    va_end(ap);
    return KC_EDAMAGED;
}

static void db_load(db_t *d, const uint8_t *p)
{
    d->pad = kc__load_u32le(p);
    d->flags = kc__load_u16le(p + 4);
    d->depth = kc__load_u16le(p + 6);
    d->branch = kc__load_u64le(p + 8);
    d->leaf = kc__load_u64le(p + 16);
    d->overflow = kc__load_u64le(p + 24);
    d->entries = kc__load_u64le(p + 32);
    d->root = kc__load_u64le(p + 40);
}

static void meta_load(meta_t *m, const uint8_t *p)
{
    m->page_flags = kc__load_u16le(p + 10);
    m->magic = kc__load_u32le(p + HDR);
    m->version = kc__load_u32le(p + HDR + 4);
    db_load(&m->dbs[0], p + HDR + 24);
    db_load(&m->dbs[1], p + HDR + 24 + DB_SIZE);
    m->psize = m->dbs[0].pad;
    m->last_pg = kc__load_u64le(p + HDR + 120);
    m->txnid = kc__load_u64le(p + HDR + 128);
}

/* One node of a page as LMDB lays it out, at offset off: a 32-bit data
 * size in two 16-bit halves, a 16-bit flags word, a 16-bit key size, then
 * the key, then the value inline or an overflow page number. A branch
 * node's first 48 bits are its child page number instead. */
typedef struct node {
    uint64_t dsize, child;
    unsigned flags, ksize;
    const uint8_t *key;
    uint64_t end; /* the offset just past the key */
} node_t;

/* Decode the node at off (the caller has checked off + NODE_HDR <= psize).
 * 0, or -1 when its key runs past the page. */
static int node_read(const uint8_t *pg, unsigned off, uint64_t psize, node_t *n)
{
    n->dsize = (uint64_t)kc__load_u16le(pg + off) |
               ((uint64_t)kc__load_u16le(pg + off + 2) << 16);
    n->flags = kc__load_u16le(pg + off + 4);
    n->child = n->dsize | ((uint64_t)n->flags << 32);
    n->ksize = kc__load_u16le(pg + off + 6);
    n->key = pg + off + NODE_HDR;
    n->end = (uint64_t)off + NODE_HDR + n->ksize;
    return n->end > psize ? -1 : 0;
}

/* Mark page pgno reached; damage if it was reached before or lies outside
 * what the meta page and the file allow. */
static int reach(walk_t *w, uint64_t pgno, const char *what)
{
    if (pgno < 2 || pgno > w->last_pg)
        return damage(w, "%s: page %llu is outside the store's pages (2 to %llu)", what,
                      (unsigned long long)pgno, (unsigned long long)w->last_pg);
    if (pgno >= w->npages)
        return damage(w,
                      "%s: page %llu is past the end of the file (%llu pages): the "
                      "file is truncated",
                      what, (unsigned long long)pgno, (unsigned long long)w->npages);
    if (w->seen[pgno >> 3] & (1u << (pgno & 7)))
        return damage(w, "%s: page %llu is reached twice (a cycle or shared page)", what,
                      (unsigned long long)pgno);
    w->seen[pgno >> 3] |= (uint8_t)(1u << (pgno & 7));
    w->pages++;
    return KC_OK;
}

/* An overflow run holding a value of dsize bytes, starting at pgno; when
 * out is set, the value is read into w->ovf. */
static int check_overflow(walk_t *w, uint64_t pgno, uint64_t dsize, const char *what,
                          counts_t *c, int read_value)
{
    uint8_t hdr[HDR];
    uint64_t n;
    int rc;

    if ((rc = reach(w, pgno, what)) != KC_OK)
        return rc;
    if (src_read(&w->src, pgno * w->psize, hdr, HDR) != 0)
        return damage(w, "%s: overflow page %llu cannot be read", what,
                      (unsigned long long)pgno);
    if (kc__load_u64le(hdr) != pgno || kc__load_u16le(hdr + 10) != P_OVERFLOW)
        return damage(w, "%s: page %llu is not the overflow page its node names", what,
                      (unsigned long long)pgno);
    n = kc__load_u32le(hdr + 12);
    if (n == 0 || dsize > n * w->psize - HDR || (n - 1) * w->psize >= dsize + w->psize)
        return damage(
            w, "%s: overflow page %llu: %llu pages do not fit a %llu-byte value", what,
            (unsigned long long)pgno, (unsigned long long)n, (unsigned long long)dsize);
    for (uint64_t i = 1; i < n; i++)
        if ((rc = reach(w, pgno + i, what)) != KC_OK)
            return rc;
    c->overflow += n;
    if (read_value) {
        if (dsize > w->ovf_cap) {
            uint8_t *b = realloc(w->ovf, dsize);
            if (!b)
                return KC_ENOMEM;
            w->ovf = b;
            w->ovf_cap = dsize;
        }
        if (src_read(&w->src, pgno * w->psize + HDR, w->ovf, dsize) != 0)
            return damage(w, "%s: overflow page %llu cannot be read", what,
                          (unsigned long long)pgno);
    }
    return KC_OK;
}

enum tree_kind { TREE_FREE, TREE_MAIN, TREE_NAMED };

typedef struct tree {
    enum tree_kind kind;
    const char *name;
    uint16_t depth;
    unsigned
        base; /* the page buffer of its root: a named tree's lie past the main one's */
    counts_t c;
    /* Free lists found in the free tree, checked once every tree is walked. */
    uint64_t *free_pg;
    size_t free_n, free_cap;
} tree_t;

static int check_db(walk_t *w, const db_t *d, tree_t *t);

static int add_free(tree_t *t, uint64_t pg)
{
    if (kc__grow((void **)&t->free_pg, t->free_n, &t->free_cap, sizeof(*t->free_pg),
                 256) != 0)
        return KC_ENOMEM;
    t->free_pg[t->free_n++] = pg;
    return KC_OK;
}

/* A free-list value: a count n, then n page numbers in descending order. */
static int check_free_list(walk_t *w, tree_t *t, const uint8_t *v, uint64_t vlen)
{
    uint64_t n, prev = UINT64_MAX;

    if (vlen < 8 || vlen % 8)
        return damage(w, "free list of %llu bytes", (unsigned long long)vlen);
    n = kc__load_u64le(v);
    if (n != vlen / 8 - 1)
        return damage(w, "free list says %llu pages in %llu bytes", (unsigned long long)n,
                      (unsigned long long)vlen);
    for (uint64_t i = 0; i < n; i++) {
        uint64_t pg = kc__load_u64le(v + 8 * (i + 1));
        if (pg >= prev || pg < 2 || pg > w->last_pg)
            return damage(w, "free list: page %llu out of order or out of range",
                          (unsigned long long)pg);
        prev = pg;
        int rc = add_free(t, pg);
        if (rc != KC_OK)
            return rc;
    }
    return KC_OK;
}

static int check_node(walk_t *w, tree_t *t, const uint8_t *pg, uint64_t pgno,
                      unsigned off, unsigned level)
{
    node_t nd;
    const uint8_t *val;
    int rc;

    if (node_read(pg, off, w->psize, &nd) != 0)
        return damage(w, "%s: page %llu: a key runs past the page", t->name,
                      (unsigned long long)pgno);
    if (nd.flags & ~(unsigned)(F_BIGDATA | F_SUBDATA))
        return damage(w, "%s: page %llu: node flags 0x%x", t->name,
                      (unsigned long long)pgno, nd.flags);
    if (t->kind == TREE_FREE && (nd.ksize != 8 || (nd.flags & F_SUBDATA)))
        return damage(w, "free pages: page %llu: a malformed entry",
                      (unsigned long long)pgno);
    if (t->kind == TREE_FREE) {
        /* A free list is keyed by the transaction that freed its pages: 1
         * up to the snapshot's own. 0 is LMDB's "none yet": a writer takes
         * a list keyed 0 again and again, dirties its pages twice and
         * aborts the process (found by fuzz_store_file). */
        uint64_t id = kc__load_u64le(nd.key);
        if (id == 0 || id > w->txnid)
            return damage(w,
                          "free pages: page %llu: a list of transaction %llu, the store "
                          "being at transaction %llu",
                          (unsigned long long)pgno, (unsigned long long)id,
                          (unsigned long long)w->txnid);
    }
    if ((nd.flags & F_SUBDATA) && (t->kind != TREE_MAIN || (nd.flags & F_BIGDATA)))
        return damage(w, "%s: page %llu: a misplaced database record", t->name,
                      (unsigned long long)pgno);
    t->c.entries++;
    if (nd.flags & F_BIGDATA) {
        if (nd.end + 8 > w->psize)
            return damage(w, "%s: page %llu: an overflow node runs past the page",
                          t->name, (unsigned long long)pgno);
        rc = check_overflow(w, kc__load_u64le(pg + nd.end), nd.dsize, t->name, &t->c,
                            t->kind == TREE_FREE);
        if (rc != KC_OK)
            return rc;
        val = w->ovf;
    } else {
        if (nd.end + nd.dsize > w->psize)
            return damage(w, "%s: page %llu: a value runs past the page", t->name,
                          (unsigned long long)pgno);
        val = pg + nd.end;
    }
    if (t->kind == TREE_FREE)
        return check_free_list(w, t, val, nd.dsize);
    if (nd.flags & F_SUBDATA) {
        db_t d;
        char name[64];
        tree_t sub;
        if (nd.dsize != DB_SIZE)
            return damage(w, "main tree: page %llu: a database record of %llu bytes",
                          (unsigned long long)pgno, (unsigned long long)nd.dsize);
        db_load(&d, val);
        snprintf(name, sizeof(name), "database \"%.*s\"",
                 nd.ksize > 32 ? 32 : (int)nd.ksize, (const char *)nd.key);
        for (char *p = name; *p; p++)
            if (*p < 0x20 || *p > 0x7e)
                *p = '?';
        memset(&sub, 0, sizeof(sub));
        sub.kind = TREE_NAMED;
        sub.name = name;
        sub.base = t->base + level + 1;
        return check_db(w, &d, &sub);
    }
    return KC_OK;
}

static int check_page(walk_t *w, tree_t *t, uint64_t pgno, unsigned level)
{
    unsigned flags, lower, upper, n, buf = t->base + level;
    uint8_t *pg;
    int rc;

    if (!w->bufs[buf] && !(w->bufs[buf] = malloc(w->psize)))
        return KC_ENOMEM;
    pg = w->bufs[buf];

    if ((rc = reach(w, pgno, t->name)) != KC_OK)
        return rc;
    if (src_read(&w->src, pgno * w->psize, pg, w->psize) != 0)
        return damage(w, "%s: page %llu cannot be read", t->name,
                      (unsigned long long)pgno);
    flags = kc__load_u16le(pg + 10);
    lower = kc__load_u16le(pg + 12);
    upper = kc__load_u16le(pg + 14);
    if (kc__load_u64le(pg) != pgno)
        return damage(w,
                      "%s: page %llu holds page number %llu (a moved or overwritten "
                      "page)",
                      t->name, (unsigned long long)pgno,
                      (unsigned long long)kc__load_u64le(pg));
    if (flags != (level + 1u < t->depth ? P_BRANCH : P_LEAF))
        return damage(w, "%s: page %llu: flags 0x%x where a %s page belongs", t->name,
                      (unsigned long long)pgno, flags,
                      level + 1u < t->depth ? "branch" : "leaf");
    if (lower < HDR || lower > upper || upper > w->psize || (lower - HDR) % 2)
        return damage(w, "%s: page %llu: bounds %u..%u", t->name,
                      (unsigned long long)pgno, lower, upper);
    n = (lower - HDR) / 2;
    if (n == 0)
        return damage(w, "%s: page %llu is empty", t->name, (unsigned long long)pgno);
    if (flags == P_BRANCH)
        t->c.branch++;
    else
        t->c.leaf++;
    for (unsigned i = 0; i < n; i++) {
        unsigned off = kc__load_u16le(pg + HDR + 2 * i);
        if (off < upper || off % 2 || off + NODE_HDR > w->psize)
            return damage(w, "%s: page %llu: node %u at offset %u", t->name,
                          (unsigned long long)pgno, i, off);
        if (flags == P_BRANCH) {
            node_t nd;
            if (node_read(pg, off, w->psize, &nd) != 0)
                return damage(w, "%s: page %llu: a key runs past the page", t->name,
                              (unsigned long long)pgno);
            /* The free tree's keys are compared as 8-byte integers; a
             * branch's first key is never compared. */
            if (t->kind == TREE_FREE && i > 0 && nd.ksize != 8)
                return damage(w, "free pages: page %llu: a malformed key",
                              (unsigned long long)pgno);
            rc = check_page(w, t, nd.child, level + 1);
        } else {
            rc = check_node(w, t, pg, pgno, off, level);
        }
        if (rc != KC_OK)
            return rc;
        /* A recursive call reused deeper buffers only: pg is intact. */
    }
    return KC_OK;
}

static int check_db(walk_t *w, const db_t *d, tree_t *t)
{
    int rc;

    if (t->kind == TREE_FREE ? (d->flags & ~MDB_INTEGERKEY) != 0 : d->flags != 0)
        return damage(w, "%s: flags 0x%x", t->name, d->flags);
    if (d->root == INVALID_PGNO) {
        if (d->depth || d->entries || d->branch || d->leaf || d->overflow)
            return damage(w, "%s: empty, but says it has pages or entries", t->name);
        return KC_OK;
    }
    if (d->depth == 0 || d->depth > MAX_DEPTH)
        return damage(w, "%s: depth %u", t->name, d->depth);
    t->depth = d->depth;
    rc = check_page(w, t, d->root, 0);
    if (rc != KC_OK)
        return rc;
    if (t->c.entries != d->entries || t->c.branch != d->branch || t->c.leaf != d->leaf ||
        t->c.overflow != d->overflow)
        return damage(w,
                      "%s: says %llu entries in %llu+%llu+%llu pages, has %llu in "
                      "%llu+%llu+%llu",
                      t->name, (unsigned long long)d->entries,
                      (unsigned long long)d->branch, (unsigned long long)d->leaf,
                      (unsigned long long)d->overflow, (unsigned long long)t->c.entries,
                      (unsigned long long)t->c.branch, (unsigned long long)t->c.leaf,
                      (unsigned long long)t->c.overflow);
    w->entries += t->c.entries;
    return KC_OK;
}

/* Read both meta pages; pick the one LMDB would (the higher txnid, the
 * first on a tie). */
static int read_metas(const src_t *s, meta_t m[2], char *why, size_t why_len)
{
    uint8_t buf[META_SIZE];

    if (src_read(s, 0, buf, sizeof(buf)) != 0) {
        snprintf(why, why_len, "the file (%llu bytes) is too short for a meta page",
                 (unsigned long long)s->size);
        return KC_EDAMAGED;
    }
    meta_load(&m[0], buf);
    if (m[0].psize < MIN_PSIZE || m[0].psize > MAX_PSIZE ||
        (m[0].psize & (m[0].psize - 1))) {
        snprintf(why, why_len, "meta page 0: page size %u", m[0].psize);
        return KC_EDAMAGED;
    }
    if (src_read(s, m[0].psize, buf, sizeof(buf)) != 0) {
        snprintf(why, why_len,
                 "the file (%llu bytes) is too short for the second meta page: it is "
                 "truncated",
                 (unsigned long long)s->size);
        return KC_EDAMAGED;
    }
    meta_load(&m[1], buf);
    for (int i = 0; i < 2; i++) {
        if (m[i].page_flags != P_META || m[i].magic != MAGIC ||
            m[i].version != DATA_VERSION || m[i].psize != m[0].psize) {
            snprintf(why, why_len, "meta page %d is damaged (not an LMDB 0.9 meta page)",
                     i);
            return KC_EDAMAGED;
        }
    }
    return KC_OK;
}

static int check_src(const src_t *s, kc__mdb_check_t *res)
{
    meta_t m[2];
    const meta_t *cur;
    walk_t w;
    tree_t free_t, main_t;
    int rc;

    memset(&w, 0, sizeof(w));
    memset(&free_t, 0, sizeof(free_t));
    memset(&main_t, 0, sizeof(main_t));
    res->why[0] = '\0';
    res->file_size = s->size;
    if (s->size == 0)
        return KC_OK; /* LMDB makes an empty file a new store */
    rc = read_metas(s, m, res->why, sizeof(res->why));
    if (rc != KC_OK)
        return rc;
    cur = &m[m[0].txnid < m[1].txnid];
    /* LMDB's readers take meta page txnid & 1 for the newest txnid: a commit
     * writes meta page (its txnid & 1). A newest meta page on the other
     * side would send readers to the older one. */
    if ((uint64_t)(cur - m) != (cur->txnid & 1)) {
        snprintf(res->why, sizeof(res->why),
                 "meta page %d has transaction %llu, which belongs on meta page %d",
                 (int)(cur - m), (unsigned long long)cur->txnid, (int)(cur->txnid & 1));
        return KC_EDAMAGED;
    }
    res->psize = cur->psize;
    res->txnid = cur->txnid;
    w.src = *s;
    w.psize = cur->psize;
    w.npages = s->size / cur->psize;
    w.last_pg = cur->last_pg;
    w.txnid = cur->txnid;
    w.why = res->why;
    w.why_len = sizeof(res->why);
    if (w.last_pg < 1 || w.last_pg >= w.npages) {
        snprintf(res->why, sizeof(res->why),
                 "the meta page says %llu pages, the file holds %llu: it is truncated",
                 (unsigned long long)w.last_pg + 1, (unsigned long long)w.npages);
        return KC_EDAMAGED;
    }
    w.seen = calloc(w.npages / 8 + 1, 1);
    if (!w.seen) {
        rc = KC_ENOMEM;
        goto out;
    }
    free_t.kind = TREE_FREE;
    free_t.name = "free pages";
    main_t.kind = TREE_MAIN;
    main_t.name = "main tree";
    if ((rc = check_db(&w, &cur->dbs[0], &free_t)) != KC_OK)
        goto out;
    if ((rc = check_db(&w, &cur->dbs[1], &main_t)) != KC_OK)
        goto out;
    /* A free page must be reachable from no tree: a writer would reuse it. */
    for (size_t i = 0; i < free_t.free_n; i++)
        if ((rc = reach(&w, free_t.free_pg[i], "free pages")) != KC_OK)
            goto out;
    res->pages = w.pages;
    res->entries = w.entries;
out:
    if (rc == KC_ENOMEM)
        snprintf(res->why, sizeof(res->why), "out of memory");
    free(w.seen);
    for (size_t i = 0; i < sizeof(w.bufs) / sizeof(w.bufs[0]); i++)
        free(w.bufs[i]);
    free(w.ovf);
    free(free_t.free_pg);
    return rc;
}

int kc__mdb_check_mem(const uint8_t *data, size_t size, kc__mdb_check_t *res)
{
    src_t s = {-1, data, size};
    memset(res, 0, sizeof(*res));
    return check_src(&s, res);
}

int kc__mdb_state_fd(int fd, kc__mdb_state_t *st)
{
    struct stat sb;
    uint8_t buf[META_SIZE];
    src_t s;
    meta_t m;

    if (fstat(fd, &sb) != 0)
        return -1;
    memset(st, 0, sizeof(*st));
    st->dev = (uint64_t)sb.st_dev;
    st->ino = (uint64_t)sb.st_ino;
    st->size = (uint64_t)sb.st_size;
    st->mtime_sec = (uint64_t)sb.st_mtim.tv_sec;
    st->mtime_nsec = (uint64_t)sb.st_mtim.tv_nsec;
    s.fd = fd;
    s.mem = NULL;
    s.size = st->size;
    if (src_read(&s, 0, buf, sizeof(buf)) == 0) {
        meta_load(&m, buf);
        st->txnid0 = m.txnid;
        if (m.psize >= MIN_PSIZE && m.psize <= MAX_PSIZE &&
            src_read(&s, m.psize, buf, sizeof(buf)) == 0) {
            meta_load(&m, buf);
            st->txnid1 = m.txnid;
        }
    }
    return 0;
}

int kc__mdb_state_read(const char *data_path, kc__mdb_state_t *st)
{
    int fd = open(data_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = kc__mdb_state_fd(fd, st);
    close(fd);
    return rc;
}

static int same_state(const kc__mdb_state_t *a, const kc__mdb_state_t *b)
{
    return a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
           a->mtime_sec == b->mtime_sec && a->mtime_nsec == b->mtime_nsec &&
           a->txnid0 == b->txnid0 && a->txnid1 == b->txnid1;
}

/* Attempts at a file that changes while it is read, and the pause before
 * each retry: a creator writing its meta pages, or a writer committing. */
#define ATTEMPTS 5

int kc__mdb_check_file(const char *data_path, kc__mdb_check_t *res)
{
    int fd, rc = KC_OK;

    memset(res, 0, sizeof(*res));
    fd = open(data_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        snprintf(res->why, sizeof(res->why), "%s: %s", data_path, strerror(e));
        return e == ENOENT                   ? KC_ENOTFOUND
               : (e == EACCES || e == EPERM) ? KC_EPERM
                                             : KC_EIO;
    }
    for (int attempt = 0; attempt < ATTEMPTS; attempt++) {
        kc__mdb_state_t before, after;
        if (kc__mdb_state_fd(fd, &before) != 0) {
            snprintf(res->why, sizeof(res->why), "%s: %s", data_path, strerror(errno));
            rc = KC_EIO;
            break;
        }
        src_t s = {fd, NULL, before.size};
        memset(res, 0, sizeof(*res));
        rc = check_src(&s, res);
        res->state = before;
        if (rc != KC_EDAMAGED) {
            /* A pass is only stamped for a file that held still. */
            if (kc__mdb_state_fd(fd, &after) != 0 || !same_state(&before, &after))
                res->unstable = 1;
            break;
        }
        if (kc__mdb_state_fd(fd, &after) == 0 && same_state(&before, &after))
            break; /* judged on a file that held still */
        /* A commit landed meanwhile: what was read may be torn. */
        struct timespec ts = {0, 1000000L << attempt};
        nanosleep(&ts, NULL);
        if (attempt == ATTEMPTS - 1) {
            rc = KC_OK;
            res->unstable = 1;
        }
    }
    close(fd);
    return rc;
}

/* ---- the stamp ------------------------------------------------------------------ */

#define STAMP_MAGIC "kcache-check 1"

#define STAMP_SUFFIX ".checked"

static int stamp_path(const char *data_path, char *out, size_t n)
{
    return snprintf(out, n, "%s" STAMP_SUFFIX, data_path) < (int)n ? 0 : -1;
}

/* Where the stamp of a store in a directory this process cannot write (a
 * container image's layer) is kept instead: under the user's cache
 * directory, named after the file's device and inode, so that only the
 * first process to open that file pays the check, not every one.
 * $XDG_CACHE_HOME/kcache-checked/ or $HOME/.cache/kcache-checked/. */
static int stamp_dir_fallback(char *out, size_t n)
{
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    int len;

    if (xdg && *xdg == '/')
        len = snprintf(out, n, "%s/kcache-checked", xdg);
    else if (home && *home == '/')
        len = snprintf(out, n, "%s/.cache/kcache-checked", home);
    else
        return -1;
    return len > 0 && (size_t)len < n ? 0 : -1;
}

static KC__COLD int stamp_path_fallback(const kc__mdb_state_t *st, char *out, size_t n)
{
    char dir[PATH_MAX];

    if (stamp_dir_fallback(dir, sizeof(dir)) != 0)
        return -1;
    return snprintf(out, n, "%s/%llx-%llx", dir, (unsigned long long)st->dev,
                    (unsigned long long)st->ino) < (int)n
               ? 0
               : -1;
}

static void stamp_format(const kc__mdb_state_t *st, char *buf, size_t n)
{
    snprintf(buf, n, STAMP_MAGIC " %llu %llu %llu %llu %llu %llu %llu\n",
             (unsigned long long)st->dev, (unsigned long long)st->ino,
             (unsigned long long)st->size, (unsigned long long)st->mtime_sec,
             (unsigned long long)st->mtime_nsec, (unsigned long long)st->txnid0,
             (unsigned long long)st->txnid1);
}

static int stamp_file_matches(const char *path, const kc__mdb_state_t *st)
{
    char want[256], have[256];
    int fd;
    ssize_t n;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    n = read(fd, have, sizeof(have) - 1);
    close(fd);
    if (n <= 0)
        return 0;
    have[n] = '\0';
    stamp_format(st, want, sizeof(want));
    return strcmp(want, have) == 0;
}

/* The stamp in the user's cache directory (a store this process cannot
 * write beside): out of line, its path buffer off the common path. */
static KC__COLD int stamp_matches_fallback(const kc__mdb_state_t *st)
{
    char path[PATH_MAX];

    return stamp_path_fallback(st, path, sizeof(path)) == 0 &&
           stamp_file_matches(path, st);
}

int kc__mdb_stamp_matches(const char *data_path, const kc__mdb_state_t *st)
{
    size_t cap = strlen(data_path) + sizeof(STAMP_SUFFIX) + 1;
    char *path = malloc(cap);
    int match = 0;

    /* The path on the heap: this is the deepest frame of a first open. */
    if (path && stamp_path(data_path, path, cap) == 0 && stamp_file_matches(path, st))
        match = 1;
    free(path);
    return match || stamp_matches_fallback(st);
}

/* Write the stamp to path through a temporary file and a rename. 0, or -1
 * when the file could not be made (the directory is not writable). */
static int stamp_file_write(const char *path, const kc__mdb_state_t *st)
{
    char tmp[PATH_MAX + 32], buf[256];
    int fd;
    size_t len;

    if (snprintf(tmp, sizeof(tmp), "%s.%ld", path, (long)getpid()) >= (int)sizeof(tmp))
        return -1;
    stamp_format(st, buf, sizeof(buf));
    len = strlen(buf);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0664);
    if (fd < 0)
        return -1;
    if (write(fd, buf, len) != (ssize_t)len) {
        close(fd);
        unlink(tmp);
        return 0;
    }
    close(fd);
    if (rename(tmp, path) != 0)
        unlink(tmp);
    return 0;
}

void kc__mdb_stamp_write(const char *data_path, const kc__mdb_state_t *st)
{
    char path[PATH_MAX], dir[PATH_MAX];

    if (stamp_path(data_path, path, sizeof(path)) == 0 && stamp_file_write(path, st) == 0)
        return;
    /* Beside the store is not writable: the user's cache directory. */
    if (stamp_dir_fallback(dir, sizeof(dir)) != 0 ||
        stamp_path_fallback(st, path, sizeof(path)) != 0)
        return;
    if (stamp_file_write(path, st) != 0) {
        char parent[PATH_MAX];
        char *slash;
        snprintf(parent, sizeof(parent), "%s", dir);
        if ((slash = strrchr(parent, '/')) != NULL && slash != parent) {
            *slash = '\0';
            mkdir(parent, 0755); /* ~/.cache */
        }
        if (mkdir(dir, 0700) == 0 || errno == EEXIST)
            stamp_file_write(path, st);
    }
}

/* ---- scanning every page, for recovery ------------------------------------------- */

int kc__mdb_scan(int fd, uint64_t size, kc__mdb_scan_fn fn, void *ctx, uint64_t *pages)
{
    src_t s = {fd, NULL, size};
    meta_t m[2];
    char why[256];
    uint64_t psize = 4096, npages;
    uint8_t *pg = NULL, *val = NULL;
    size_t val_cap = 0;
    int rc = KC_OK;

    if (read_metas(&s, m, why, sizeof(why)) == KC_OK)
        psize = m[0].psize;
    else if (src_read(&s, 0, why, HDR + 24 + 4) == 0) {
        uint32_t p = kc__load_u32le((const uint8_t *)why + HDR + 24);
        if (p >= MIN_PSIZE && p <= MAX_PSIZE && !(p & (p - 1)))
            psize = p;
    }
    npages = size / psize;
    if (pages)
        *pages = npages;
    pg = malloc(psize);
    if (!pg)
        return KC_ENOMEM;
    for (uint64_t pgno = 2; pgno < npages && rc == KC_OK; pgno++) {
        unsigned lower, upper, n;
        if (src_read(&s, pgno * psize, pg, psize) != 0)
            break;
        if (kc__load_u16le(pg + 10) != P_LEAF)
            continue;
        lower = kc__load_u16le(pg + 12);
        upper = kc__load_u16le(pg + 14);
        if (lower < HDR || lower > upper || upper > psize)
            continue;
        n = (lower - HDR) / 2;
        for (unsigned i = 0; i < n && rc == KC_OK; i++) {
            unsigned off = kc__load_u16le(pg + HDR + 2 * i);
            node_t nd;
            const uint8_t *v;
            if (off < HDR || off + NODE_HDR > psize ||
                node_read(pg, off, psize, &nd) != 0 || (nd.flags & F_DUPDATA))
                continue;
            if (nd.flags & F_SUBDATA) {
                if (!(nd.flags & F_BIGDATA) && nd.dsize == DB_SIZE &&
                    nd.end + nd.dsize <= psize)
                    rc = fn(nd.key, nd.ksize, pg + nd.end, nd.dsize, 1, ctx);
                continue;
            }
            if (nd.flags & F_BIGDATA) {
                uint8_t h[HDR];
                uint64_t opg;
                if (nd.end + 8 > psize)
                    continue;
                opg = kc__load_u64le(pg + nd.end);
                if (opg < 2 || opg >= npages || src_read(&s, opg * psize, h, HDR) != 0 ||
                    kc__load_u16le(h + 10) != P_OVERFLOW ||
                    nd.dsize > (uint64_t)kc__load_u32le(h + 12) * psize ||
                    opg * psize + HDR + nd.dsize > size)
                    continue;
                if (nd.dsize > val_cap) {
                    uint8_t *b = realloc(val, nd.dsize ? nd.dsize : 1);
                    if (!b) {
                        rc = KC_ENOMEM;
                        break;
                    }
                    val = b;
                    val_cap = nd.dsize;
                }
                if (src_read(&s, opg * psize + HDR, val, nd.dsize) != 0)
                    continue;
                v = val;
            } else {
                if (nd.end + nd.dsize > psize)
                    continue;
                v = pg + nd.end;
            }
            rc = fn(nd.key, nd.ksize, v, nd.dsize, 0, ctx);
        }
    }
    free(pg);
    free(val);
    return rc;
}
