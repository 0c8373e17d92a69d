/* Fuzzes the key-side parsers with one input: the hex prefix parser, both
 * preimage decoders and the shape signature formatter. A decoded preimage
 * must encode back to exactly the input bytes, since decoding accepts only
 * canonical encodings. */
#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kcache/errors.h"
#include "kcache/key.h"
#include "kcache/shape.h"

static void check_prefix(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    kc_key_prefix_t p;

    if (!s)
        return;
    memcpy(s, data, size);
    s[size] = '\0';
    if (kc_key_prefix_parse(s, &p) == KC_OK) {
        char hex[KC_KEY_HEX_LEN + 1];
        if (p.nibbles < KC_KEY_PREFIX_MIN || p.nibbles > KC_KEY_HEX_LEN ||
            p.nibbles != strlen(s))
            abort();
        kc_key_to_hex(&p.key, hex);
        for (unsigned i = 0; i < KC_KEY_HEX_LEN; i++)
            if (hex[i] != (i < p.nibbles ? tolower((unsigned char)s[i]) : '0'))
                abort();
        if (!kc_key_prefix_match(&p, &p.key))
            abort();
    }
    free(s);
}

static void check_same_bytes(int rc, void *enc, size_t enc_len, const uint8_t *data,
                             size_t size)
{
    if (rc != KC_OK || enc_len != size || memcmp(enc, data, size) != 0)
        abort();
    kc_free(enc);
}

static void check_build(const uint8_t *data, size_t size)
{
    kc_build_desc_t *d = NULL;
    void *enc = NULL;
    size_t len = 0;
    int rc = kc_build_preimage_decode(data, size, &d);

    if (rc != KC_OK) {
        if (d || (rc != KC_ECORRUPT && rc != KC_EVERSION && rc != KC_ENOMEM))
            abort();
        return;
    }
    rc = kc_build_preimage_encode(d, &enc, &len);
    check_same_bytes(rc, enc, len, data, size);
    kc_free(d);
}

static void check_tuning(const uint8_t *data, size_t size)
{
    kc_tuning_desc_t *d = NULL;
    void *enc = NULL;
    size_t len = 0;
    int rc = kc_tuning_preimage_decode(data, size, &d);

    if (rc != KC_OK) {
        if (d || (rc != KC_ECORRUPT && rc != KC_EVERSION && rc != KC_ENOMEM))
            abort();
        return;
    }
    rc = kc_tuning_preimage_encode(d, &enc, &len);
    check_same_bytes(rc, enc, len, data, size);
    kc_free(d);
}

static void check_shape(const uint8_t *data, size_t size)
{
    char out[512], tiny[5];
    int rc = kc_shape_sig_format(data, size, out, sizeof(out));

    if (rc != KC_OK && rc != KC_ECORRUPT && rc != KC_EVERSION)
        abort();
    if (memchr(out, '\0', sizeof(out)) == NULL)
        abort();
    /* A short buffer gives the same verdict and a prefix of the text. */
    if (kc_shape_sig_format(data, size, tiny, sizeof(tiny)) != rc)
        abort();
    if (memchr(tiny, '\0', sizeof(tiny)) == NULL || strncmp(tiny, out, strlen(tiny)) != 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_prefix(data, size);
    check_build(data, size);
    check_tuning(data, size);
    check_shape(data, size);
    return 0;
}
