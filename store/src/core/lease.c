/* Leases: cross-process single flight on a key (a tuning or a build).
 *
 * A lease record names its owner (host, boot id, pid), when it was taken and
 * how long it lives. Acquiring reads and writes the record in one LMDB write
 * transaction, and LMDB allows one writer at a time across processes, so two
 * processes can never both see the key free and both take it.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "store_internal.h"

/* Who this process is. Filled once: the host name and boot id do not change
 * while a process runs, and the pid is read on every call so that a child
 * forked after the first call is a different owner. */
typedef struct owner {
    char host[256];
    char boot_id[64];
} owner_t;

static pthread_once_t owner_once = PTHREAD_ONCE_INIT;
static owner_t self;

static void owner_init(void)
{
    FILE *f;

    if (gethostname(self.host, sizeof(self.host) - 1) != 0)
        snprintf(self.host, sizeof(self.host), "unknown");
    self.host[sizeof(self.host) - 1] = '\0';
    f = fopen("/proc/sys/kernel/random/boot_id", "r");
    if (f) {
        if (!fgets(self.boot_id, sizeof(self.boot_id), f))
            self.boot_id[0] = '\0';
        fclose(f);
    }
    self.boot_id[strcspn(self.boot_id, "\r\n")] = '\0';
}

/* The holder handed back by a busy acquire: its strings live here until the
 * thread's next lease call. */
static _Thread_local char holder_host[256], holder_boot_id[64];

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int is_mine(const kc_lease_rec_t *l)
{
    return l->pid == (uint32_t)getpid() && strcmp(l->host, self.host) == 0 &&
           strcmp(l->boot_id, self.boot_id) == 0;
}

/* Dead: expired, or owned by a process of this machine's current boot that
 * no longer exists. A pid on another host, or from an earlier boot, cannot
 * be checked, so only its time to live ends it. */
static int is_dead(const kc_lease_rec_t *l, uint64_t now)
{
    if (l->ttl_ms < UINT64_MAX - l->start && now > l->start + l->ttl_ms)
        return 1;
    if (strcmp(l->host, self.host) != 0 || !self.boot_id[0] ||
        strcmp(l->boot_id, self.boot_id) != 0)
        return 0;
    return kill((pid_t)l->pid, 0) == -1 && errno == ESRCH;
}

/* A lease call's request and results. Its transaction may run on another
 * thread of this process (kc__env_write_grouped), so the holder's strings
 * are kept here and copied to the caller's thread-local buffers after. */
typedef struct lease_ctx {
    kc__env_t *env;
    const kc_key_t *keys; /* acquire: keys[0]; release: all n_keys */
    size_t n_keys;
    uint64_t ttl_ms;
    int busy;                    /* acquire: another live owner holds it */
    kc_lease_rec_t holder;       /* ... and this is the owner */
    char host[256], boot_id[64]; /* ... its strings */
    size_t released;             /* release: leases deleted */
} lease_ctx_t;

/* The stored lease of key: 0 with *rec, MDB_NOTFOUND, or an LMDB code. A
 * record that does not decode as a lease counts as absent: nobody can
 * prove they hold it. */
static int lease_read(MDB_txn *txn, kc__env_t *env, const kc_key_t *key,
                      kc_record_t **rec)
{
    MDB_val k = kc__key_val(key), v;
    int rc = mdb_get(txn, env->dbi[KC_REC_LEASE], &k, &v);

    *rec = NULL;
    if (rc != 0)
        return rc;
    rc = kc_record_decode(v.mv_data, v.mv_size, rec);
    if (rc == KC_ENOMEM)
        return rc;
    if (rc != KC_OK || (*rec)->kind != KC_REC_LEASE) {
        kc_free(*rec);
        *rec = NULL;
        return MDB_NOTFOUND;
    }
    return 0;
}

static int acquire_fn(MDB_txn *txn, void *arg)
{
    lease_ctx_t *c = arg;
    kc_record_t *old = NULL;
    uint64_t now = now_ms();
    int rc = lease_read(txn, c->env, c->keys, &old);

    c->busy = 0;
    if (rc != 0 && rc != MDB_NOTFOUND)
        return rc;
    if (old && !is_mine(&old->u.lease) && !is_dead(&old->u.lease, now)) {
        c->busy = 1;
        snprintf(c->host, sizeof(c->host), "%s", old->u.lease.host);
        snprintf(c->boot_id, sizeof(c->boot_id), "%s", old->u.lease.boot_id);
        c->holder = old->u.lease;
        c->holder.host = c->host; /* old's strings go with it */
        c->holder.boot_id = c->boot_id;
        kc_free(old);
        return 0; /* nothing written: the commit is a no-op */
    }
    kc_free(old);
    /* Free, ours (renewed: the start moves to now), or dead (taken over). */
    kc_record_t rec = {.kind = KC_REC_LEASE,
                       .version = KC_RECORD_VERSION,
                       .u.lease = {.host = self.host,
                                   .boot_id = self.boot_id,
                                   .pid = (uint32_t)getpid(),
                                   .start = now,
                                   .ttl_ms = c->ttl_ms}};
    MDB_val k = kc__key_val(c->keys);
    return kc__txn_put_record(txn, c->env->dbi[KC_REC_LEASE], &k, &rec, 0);
}

int kc_store_lease_acquire(kc_store_t *st, const kc_key_t *key, uint64_t ttl_ms,
                           kc_lease_rec_t *holder_out)
{
    lease_ctx_t c = {0};
    int rc;

    kc__store_begin_call(st);
    if (!st || !key || !ttl_ms)
        return KC_EINVAL;
    rc = kc__store_check_writable(st, "taking a lease");
    if (rc != KC_OK)
        return rc;
    pthread_once(&owner_once, owner_init);
    c.env = st->env;
    c.keys = key;
    c.n_keys = 1;
    c.ttl_ms = ttl_ms;
    /* Grouped: a kernel's candidates take their leases as they start
     * compiling, at nearly the same time. */
    rc = kc__env_write_grouped(st->env, acquire_fn, &c);
    if (rc != 0)
        return kc__store_finish(st, rc, "taking a lease");
    if (!c.busy)
        return KC_OK;
    if (holder_out) {
        snprintf(holder_host, sizeof(holder_host), "%s", c.host);
        snprintf(holder_boot_id, sizeof(holder_boot_id), "%s", c.boot_id);
        *holder_out = c.holder;
        holder_out->host = holder_host;
        holder_out->boot_id = holder_boot_id;
    }
    return kc__store_fail(st, KC_EBUSY, "lease held by pid %u on %s",
                          (unsigned)c.holder.pid, c.holder.host);
}

/* Delete the leases on keys[0..n_keys) that this process holds, counting
 * them. One absent or another's is left alone, and is no error: in a
 * group, an error would undo the others' writes. */
static int release_fn(MDB_txn *txn, void *arg)
{
    lease_ctx_t *c = arg;

    c->released = 0;
    for (size_t i = 0; i < c->n_keys; i++) {
        kc_record_t *old = NULL;
        int rc = lease_read(txn, c->env, &c->keys[i], &old);
        if (rc == MDB_NOTFOUND)
            continue;
        if (rc != 0)
            return rc;
        int mine = is_mine(&old->u.lease);
        kc_free(old);
        if (!mine)
            continue;
        MDB_val k = kc__key_val(&c->keys[i]);
        if ((rc = mdb_del(txn, c->env->dbi[KC_REC_LEASE], &k, NULL)) != 0)
            return rc;
        c->released++;
    }
    return 0;
}

int kc_store_lease_release(kc_store_t *st, const kc_key_t *key)
{
    size_t released = 0;
    int rc = kc_store_lease_release_many(st, key, 1, &released); /* KC_EINVAL if !key */

    return rc == KC_OK && released == 0 ? KC_ENOTFOUND : rc;
}

int kc_store_lease_release_many(kc_store_t *st, const kc_key_t *keys, size_t n,
                                size_t *released)
{
    lease_ctx_t c = {0};
    int rc;

    kc__store_begin_call(st);
    if (released)
        *released = 0;
    if (!st || (!keys && n))
        return KC_EINVAL;
    if (n == 0)
        return KC_OK;
    rc = kc__store_check_writable(st, "releasing leases");
    if (rc != KC_OK)
        return rc;
    pthread_once(&owner_once, owner_init);
    c.env = st->env;
    c.keys = keys;
    c.n_keys = n;
    rc = kc__env_write_grouped(st->env, release_fn, &c);
    if (rc != 0)
        return kc__store_finish(st, rc, "releasing leases");
    if (released)
        *released = c.released;
    return KC_OK;
}
