/* Signed bundles: key pairs and key files, the signature block the writer
 * appends after the trailer, and its check on import. docs/FORMAT.md
 * ("Signatures") is the specification. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "bundle_internal.h"
#include "kcache/bundle.h"
#include "store_internal.h"
#include "wire.h"

#define SECRET_PREFIX "kcache-ed25519-secret-v1 "
#define PUBLIC_PREFIX "kcache-ed25519-public-v1 "
/* A key file is one short line; anything longer is not one. */
#define KEY_FILE_MAX 512

int kc__sodium_init(void)
{
    /* sodium_init is thread-safe and returns 1 once already initialised. */
    return sodium_init() < 0 ? KC_EINTERNAL : KC_OK;
}

void kc_bundle_key_wipe(kc_bundle_key_t *key)
{
    if (key)
        sodium_memzero(key, sizeof(*key));
}

void kc_bundle_key_id(const uint8_t pk[32], char *out)
{
    sodium_bin2hex(out, KC_BUNDLE_KEY_ID_LEN + 1, pk, KC_BUNDLE_KEY_ID_LEN / 2);
}

/* ---- key files ------------------------------------------------------------------ */

/* Create path exclusively with mode and write text to it. On failure
 * nothing is left at path, and errno says why. */
static int write_new_file(const char *path, mode_t mode, const char *text)
{
    size_t len = strlen(text), done = 0;
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode), err;

    if (fd < 0)
        return errno == EEXIST ? KC_EEXIST : KC_EIO;
    /* The umask may have narrowed the mode; the key files' modes are part
     * of their contract (the secret one must stay private, the public one
     * is meant to be read by others), so they are set exactly. */
    if (fchmod(fd, mode) != 0)
        goto fail;
    while (done < len) {
        ssize_t n = write(fd, text + done, len - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            goto fail;
        done += (size_t)n;
    }
    if (fsync(fd) != 0)
        goto fail;
    if (close(fd) != 0) {
        fd = -1;
        goto fail;
    }
    return KC_OK;
fail:
    err = errno;
    if (fd >= 0)
        close(fd);
    unlink(path);
    errno = err;
    return KC_EIO;
}

/* "<prefix><base64 of bin[n]>\n" into a new sodium_malloc'd string. */
static char *key_line(const char *prefix, const uint8_t *bin, size_t n)
{
    size_t plen = strlen(prefix),
           b64 = sodium_base64_ENCODED_LEN(n, sodium_base64_VARIANT_ORIGINAL);
    char *s = sodium_malloc(plen + b64 + 1);

    if (!s)
        return NULL;
    memcpy(s, prefix, plen);
    sodium_bin2base64(s + plen, b64, bin, n, sodium_base64_VARIANT_ORIGINAL);
    strcat(s, "\n");
    return s;
}

int kc_bundle_keygen(const char *base, kc_bundle_key_t *out)
{
    kc_bundle_key_t key;
    char *secret_path = NULL, *public_path = NULL, *secret = NULL, *public = NULL;
    size_t n;
    int rc, err;

    if (out)
        memset(out, 0, sizeof(*out));
    if (!base || !*base)
        return KC_EINVAL;
    if ((rc = kc__sodium_init()) != KC_OK)
        return rc;
    memset(&key, 0, sizeof(key));
    n = strlen(base) + 5;
    secret_path = malloc(n);
    public_path = malloc(n);
    if (!secret_path || !public_path) {
        rc = KC_ENOMEM;
        goto fail;
    }
    snprintf(secret_path, n, "%s.key", base);
    snprintf(public_path, n, "%s.pub", base);
    /* Checked first so that an existing public key stops keygen before a
     * secret key is written for nothing. O_EXCL below closes the race. */
    if (access(secret_path, F_OK) == 0 || access(public_path, F_OK) == 0) {
        rc = KC_EEXIST;
        goto fail;
    }
    crypto_sign_keypair(key.pk, key.sk);
    key.has_secret = 1;
    secret = key_line(SECRET_PREFIX, key.sk, sizeof(key.sk));
    public = key_line(PUBLIC_PREFIX, key.pk, sizeof(key.pk));
    if (!secret || !public) {
        rc = KC_ENOMEM;
        goto fail;
    }
    if ((rc = write_new_file(secret_path, 0600, secret)) != KC_OK)
        goto fail;
    if ((rc = write_new_file(public_path, 0644, public)) != KC_OK) {
        err = errno;
        unlink(secret_path);
        errno = err;
        goto fail;
    }
    if (out)
        *out = key;
    rc = KC_OK;
fail:
    err = errno;
    kc_bundle_key_wipe(&key);
    sodium_free(secret); /* sodium_free zeroes, and accepts NULL */
    sodium_free(public);
    free(secret_path);
    free(public_path);
    errno = err;
    return rc;
}

/* Decode the base64 in s[len] (surrounding white space allowed) to exactly
 * n bytes. */
static int decode_b64(const char *s, size_t len, uint8_t *bin, size_t n)
{
    size_t got = 0;
    const char *end = NULL;

    while (len && (s[len - 1] == '\n' || s[len - 1] == '\r' || s[len - 1] == ' ' ||
                   s[len - 1] == '\t'))
        len--;
    if (sodium_base642bin(bin, n, s, len, NULL, &got, &end,
                          sodium_base64_VARIANT_ORIGINAL) != 0 ||
        end != s + len || got != n)
        return KC_ECORRUPT;
    return KC_OK;
}

int kc_bundle_key_load(const char *path, kc_bundle_key_t *key)
{
    char *text = NULL;
    struct stat sb;
    size_t len = 0;
    int fd = -1, rc, err;

    if (key)
        memset(key, 0, sizeof(*key));
    if (!path || !key)
        return KC_EINVAL;
    if ((rc = kc__sodium_init()) != KC_OK)
        return rc;
    /* Locked and zeroed on free: the file may hold a secret key. */
    if (!(text = sodium_malloc(KEY_FILE_MAX + 1)))
        return KC_ENOMEM;
    if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0 || fstat(fd, &sb) != 0) {
        rc = KC_EIO;
        goto fail;
    }
    for (;;) {
        ssize_t n = read(fd, text + len, KEY_FILE_MAX + 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = KC_EIO;
            goto fail;
        }
        if (n == 0 || (len += (size_t)n) > KEY_FILE_MAX)
            break;
    }
    if (len > KEY_FILE_MAX) {
        rc = KC_ECORRUPT;
        goto fail;
    }
    text[len] = '\0';
    if (len > strlen(SECRET_PREFIX) &&
        memcmp(text, SECRET_PREFIX, strlen(SECRET_PREFIX)) == 0) {
        uint8_t seed[32], pk[32], sk[64];
        /* As ssh does with its private keys: a secret others could read
         * may already be someone else's. */
        if (sb.st_mode & (S_IRWXG | S_IRWXO)) {
            rc = KC_EPERM;
            goto fail;
        }
        rc = decode_b64(text + strlen(SECRET_PREFIX), len - strlen(SECRET_PREFIX),
                        key->sk, sizeof(key->sk));
        if (rc == KC_OK) {
            /* The file's public half must be the one its seed gives. */
            crypto_sign_ed25519_sk_to_seed(seed, key->sk);
            crypto_sign_seed_keypair(pk, sk, seed);
            if (sodium_memcmp(pk, key->sk + 32, 32) != 0)
                rc = KC_ECORRUPT;
            memcpy(key->pk, pk, sizeof(pk));
            key->has_secret = 1;
        }
        sodium_memzero(seed, sizeof(seed));
        sodium_memzero(sk, sizeof(sk));
    } else if (len > strlen(PUBLIC_PREFIX) &&
               memcmp(text, PUBLIC_PREFIX, strlen(PUBLIC_PREFIX)) == 0) {
        rc = decode_b64(text + strlen(PUBLIC_PREFIX), len - strlen(PUBLIC_PREFIX),
                        key->pk, sizeof(key->pk));
    } else {
        rc = KC_ECORRUPT;
    }
fail:
    err = errno;
    if (fd >= 0)
        close(fd);
    sodium_free(text);
    if (rc != KC_OK)
        kc_bundle_key_wipe(key);
    errno = err;
    return rc;
}

/* ---- the signature block ----------------------------------------------------------- */

int kc__bsig_begin(void **state)
{
    crypto_sign_state *s;
    int rc;

    *state = NULL;
    if ((rc = kc__sodium_init()) != KC_OK)
        return rc;
    if (!(s = malloc(sizeof(*s))))
        return KC_ENOMEM;
    if (crypto_sign_init(s) != 0) {
        free(s);
        return KC_EINTERNAL;
    }
    *state = s;
    return KC_OK;
}

void kc__bsig_update(void *state, const void *p, size_t n)
{
    crypto_sign_update(state, p, n);
}

void kc__bsig_abandon(void *state)
{
    if (state) {
        sodium_memzero(state, sizeof(crypto_sign_state));
        free(state);
    }
}

int kc__bsig_finish(void *state, const kc_bundle_key_t *key, uint8_t *out)
{
    uint8_t *sig = out + 40;
    int rc = KC_OK;

    memcpy(out, KC__BUNDLE_SIG_MAGIC, 4);
    out[4] = KC__BUNDLE_SIG_VERSION;
    out[5] = 0;
    out[6] = KC__BUNDLE_SIG_ED25519PH;
    out[7] = 0;
    memcpy(out + 8, key->pk, 32);
    if (crypto_sign_final_create(state, sig, NULL, key->sk) != 0)
        rc = KC_EINTERNAL;
    kc__store_u64le(out + 104, XXH3_64bits(out, 104));
    kc__bsig_abandon(state);
    return rc;
}

int kc__bsig_check(const kc_store_t *st, const char *name, const uint8_t *p, size_t len,
                   unsigned flags, const kc_bundle_key_t *trust, size_t *body_len,
                   kc_bundle_stats_t *stats)
{
    char id[KC_BUNDLE_KEY_ID_LEN + 1], trusted[KC_BUNDLE_KEY_ID_LEN + 1];
    crypto_sign_state s;
    const uint8_t *pk, *sig;
    size_t off;
    kc__rcur_t r;
    uint16_t version, alg;
    int rc;

    *body_len = len;
    if (trust)
        kc_bundle_key_id(trust->pk, trusted);
    if (!(flags & KC__BUNDLE_FLAG_SIGNED)) {
        if (trust)
            return kc__store_fail(st, KC_ESIGNATURE,
                                  "%s: the bundle is not signed, and only bundles signed "
                                  "by the trusted key %s are accepted",
                                  name, trusted);
        return KC_OK;
    }
    if ((rc = kc__sodium_init()) != KC_OK)
        return kc__store_fail(st, rc, "%s: libsodium cannot initialise", name);
    /* The header says a block follows the trailer: it is the input's last
     * bytes, or the bundle was cut short. */
    if (len < KC__BUNDLE_SIG_BLOCK ||
        memcmp(p + len - KC__BUNDLE_SIG_BLOCK, KC__BUNDLE_SIG_MAGIC, 4) != 0)
        return kc__store_fail(st, KC_ECORRUPT,
                              "%s: truncated: the header says the bundle is signed, but "
                              "no signature block ends it (byte %zu)",
                              name, len);
    off = len - KC__BUNDLE_SIG_BLOCK;
    kc__rcur_init(&r, p + off, KC__BUNDLE_SIG_BLOCK);
    kc__r_bytes(&r, 4);
    version = kc__r_u16(&r);
    alg = kc__r_u16(&r);
    pk = kc__r_bytes(&r, 32);
    sig = kc__r_bytes(&r, 64);
    if (r.bad || XXH3_64bits(p + off, r.off) != kc__r_u64(&r))
        return kc__store_fail(st, KC_ECORRUPT,
                              "%s: signature block checksum mismatch at byte offset %zu",
                              name, off);
    if (version != KC__BUNDLE_SIG_VERSION)
        return kc__store_fail(
            st, KC_EVERSION, "%s: signature block version %u is not %d (byte offset %zu)",
            name, (unsigned)version, KC__BUNDLE_SIG_VERSION, off);
    if (alg != KC__BUNDLE_SIG_ED25519PH)
        return kc__store_fail(st, KC_EUNSUPPORTED,
                              "%s: unknown signature algorithm %u (byte offset %zu)",
                              name, (unsigned)alg, off);
    kc_bundle_key_id(pk, id);
    if (trust && sodium_memcmp(pk, trust->pk, 32) != 0)
        return kc__store_fail(st, KC_ESIGNATURE,
                              "%s: signed by key %s, which is not the trusted key %s",
                              name, id, trusted);
    if (crypto_sign_init(&s) != 0 || crypto_sign_update(&s, p, off) != 0 ||
        crypto_sign_final_verify(&s, sig, pk) != 0)
        return kc__store_fail(
            st, KC_ESIGNATURE,
            "%s: the signature by key %s does not verify: the bundle was "
            "changed or damaged after it was signed",
            name, id);
    *body_len = off;
    if (stats) {
        stats->is_signed = 1;
        memcpy(stats->signer, pk, 32);
    }
    return KC_OK;
}
