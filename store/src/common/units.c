/* kc_size_parse and kc_duration_parse: a number with an optional unit
 * suffix ("500M", "1.5GiB", "30d"), as the options, the environment and
 * cachectl spell sizes and durations. */
#include <ctype.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include "kcache/store.h"

/* The whole part of a decimal number: *end receives where its digits
 * stopped. KC_EINVAL if there are none or it overflows. */
static int parse_scaled(const char *s, const char **end, uint64_t *value)
{
    uint64_t ip = 0;
    const char *q = s;

    if (!isdigit((unsigned char)*q))
        return KC_EINVAL;
    for (; isdigit((unsigned char)*q); q++) {
        if (ip > (UINT64_MAX - 9) / 10)
            return KC_EINVAL;
        ip = ip * 10 + (uint64_t)(*q - '0');
    }
    *value = ip;
    *end = q;
    return KC_OK;
}

/* ip * mult, plus the fraction given by the n_frac digits at frac (which
 * may be NULL) times mult, rounded down. */
static int scale(uint64_t ip, const char *frac, size_t n_frac, uint64_t mult,
                 uint64_t *out)
{
    long double f = 0, div = 1;

    if (ip > UINT64_MAX / mult)
        return KC_EINVAL;
    for (size_t i = 0; i < n_frac && i < 18; i++) {
        f = f * 10 + (frac[i] - '0');
        div *= 10;
    }
    uint64_t extra = (uint64_t)(f / div * (long double)mult);
    if (ip * mult > UINT64_MAX - extra)
        return KC_EINVAL;
    *out = ip * mult + extra;
    return KC_OK;
}

static int parse_with_units(const char *text, const char *const *suffixes,
                            const uint64_t *mults, size_t n, uint64_t *out)
{
    const char *q, *frac = NULL;
    size_t n_frac = 0;
    uint64_t ip;

    if (!text || !out || parse_scaled(text, &q, &ip) != KC_OK)
        return KC_EINVAL;
    if (*q == '.') {
        frac = ++q;
        while (isdigit((unsigned char)*q))
            q++;
        n_frac = (size_t)(q - frac);
        if (n_frac == 0)
            return KC_EINVAL;
    }
    for (size_t i = 0; i < n; i++)
        if (strcasecmp(q, suffixes[i]) == 0)
            return scale(ip, frac, n_frac, mults[i], out);
    return KC_EINVAL;
}

#define KIB ((uint64_t)1024)

int kc_size_parse(const char *text, uint64_t *bytes)
{
    static const char *const suf[] = {
        "", "b", "k", "kb", "kib", "m", "mb", "mib", "g", "gb", "gib", "t", "tb", "tib",
    };
    static const uint64_t mult[] = {
        1,
        1,
        KIB,
        KIB,
        KIB,
        KIB * KIB,
        KIB * KIB,
        KIB * KIB,
        KIB * KIB * KIB,
        KIB * KIB * KIB,
        KIB * KIB * KIB,
        KIB * KIB * KIB * KIB,
        KIB * KIB * KIB * KIB,
        KIB * KIB * KIB * KIB,
    };
    return parse_with_units(text, suf, mult, sizeof(suf) / sizeof(*suf), bytes);
}

int kc_duration_parse(const char *text, uint64_t *seconds)
{
    static const char *const suf[] = {"", "s", "m", "h", "d", "w"};
    static const uint64_t mult[] = {1, 1, 60, 3600, 86400, 7 * 86400};
    return parse_with_units(text, suf, mult, sizeof(suf) / sizeof(*suf), seconds);
}
