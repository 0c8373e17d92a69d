/* Keys: hashing, hex, prefixes and the source digest. */
#include "kcache/key.h"

#include <string.h>

#define XXH_STATIC_LINKING_ONLY /* XXH3_state_t on the stack: no allocation */
#include <xxhash.h>

#include "kcache/errors.h"
#include "wire.h"

static kc_key_t key_from_hash(XXH128_hash_t h)
{
    XXH128_canonical_t c;
    kc_key_t k;

    XXH128_canonicalFromHash(&c, h);
    memcpy(k.b, c.digest, sizeof(k.b));
    return k;
}

kc_key_t kc_key_hash(const void *data, size_t size)
{
    return key_from_hash(XXH3_128bits(data, size));
}

void kc_key_to_hex(const kc_key_t *key, char out[KC_KEY_HEX_LEN + 1])
{
    static const char digits[] = "0123456789abcdef";

    for (size_t i = 0; i < sizeof(key->b); i++) {
        out[2 * i] = digits[key->b[i] >> 4];
        out[2 * i + 1] = digits[key->b[i] & 15];
    }
    out[KC_KEY_HEX_LEN] = '\0';
}

/* Parses up to 32 hex digits of hex into key (missing nibbles zero) and
 * returns how many there were, or -1 for a non-hex character or a 33rd
 * digit. Never reads past the NUL. */
static int parse_nibbles(const char *hex, kc_key_t *key)
{
    int n = 0;

    memset(key->b, 0, sizeof(key->b));
    for (; hex[n] != '\0'; n++) {
        int v = kc__hex_digit(hex[n]);
        if (v < 0 || n >= KC_KEY_HEX_LEN)
            return -1;
        key->b[n / 2] |= (uint8_t)(n % 2 ? v : v << 4);
    }
    return n;
}

int kc_key_from_hex(const char *hex, kc_key_t *out)
{
    kc_key_t k;

    if (!hex || !out || parse_nibbles(hex, &k) != KC_KEY_HEX_LEN)
        return KC_EINVAL;
    *out = k;
    return KC_OK;
}

int kc_key_prefix_parse(const char *hex, kc_key_prefix_t *out)
{
    kc_key_t k;
    int n;

    if (!hex || !out)
        return KC_EINVAL;
    n = parse_nibbles(hex, &k);
    if (n < KC_KEY_PREFIX_MIN)
        return KC_EINVAL;
    out->key = k;
    out->nibbles = (unsigned)n;
    return KC_OK;
}

int kc_key_prefix_match(const kc_key_prefix_t *prefix, const kc_key_t *key)
{
    unsigned full = prefix->nibbles / 2;

    if (prefix->nibbles > KC_KEY_HEX_LEN)
        return 0;
    if (memcmp(prefix->key.b, key->b, full) != 0)
        return 0;
    if (prefix->nibbles % 2 && (prefix->key.b[full] ^ key->b[full]) & 0xf0)
        return 0;
    return 1;
}

int kc_key_cmp(const kc_key_t *a, const kc_key_t *b)
{
    int c = memcmp(a->b, b->b, sizeof(a->b));
    return (c > 0) - (c < 0);
}

int kc__key_order(const void *a, const void *b)
{
    return memcmp(a, b, sizeof(kc_key_t));
}

long kc__key_find(const void *arr, size_t n, size_t sz, const kc_key_t *key)
{
    size_t lo = 0, hi = n;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = memcmp((const char *)arr + mid * sz, key->b, sizeof(key->b));
        if (c == 0)
            return (long)mid;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

int kc_key_is_zero(const kc_key_t *key)
{
    static const kc_key_t zero;
    return memcmp(key->b, zero.b, sizeof(key->b)) == 0;
}

static void update_u64(XXH3_state_t *st, uint64_t v)
{
    uint8_t b[8];

    kc__store_u64le(b, v);
    XXH3_128bits_update(st, b, sizeof(b));
}

/* Each field is a u64 length and its bytes, so no two different inputs
 * (moving bytes between source, name and content, or between headers)
 * hash the same stream. */
static void update_field(XXH3_state_t *st, const void *p, size_t n)
{
    update_u64(st, n);
    if (n)
        XXH3_128bits_update(st, p, n);
}

kc_key_t kc_source_digest(const char *source, size_t source_len,
                          const kc_header_t *headers, size_t n_headers)
{
    XXH3_state_t st;

    XXH3_INITSTATE(&st);
    XXH3_128bits_reset(&st);
    update_field(&st, source, source ? source_len : 0);
    update_u64(&st, headers ? n_headers : 0);
    for (size_t i = 0; headers && i < n_headers; i++) {
        const char *name = headers[i].name ? headers[i].name : "";
        const char *content = headers[i].content ? headers[i].content : "";
        update_field(&st, name, strlen(name));
        update_field(&st, content, strlen(content));
    }
    return key_from_hash(XXH3_128bits_digest(&st));
}
