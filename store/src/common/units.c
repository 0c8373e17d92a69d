/* kc_size_parse and kc_duration_parse: a number with an optional unit
 * suffix ("500M", "1.5GiB", "30d"), as the options, the environment and
 * cachectl spell sizes and durations. The size grammar is ccache's:
 * store.h gives it. */
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
        uint64_t d = (uint64_t)(*q - '0');
        if (ip > (UINT64_MAX - d) / 10)
            return KC_EINVAL;
        ip = ip * 10 + d;
    }
    *value = ip;
    *end = q;
    return KC_OK;
}

/* ip * mult, plus the fraction given by the n_frac digits at frac (which
 * may be NULL) times mult, rounded down. Exact: the first 19 digits of the
 * fraction count, in 128-bit integer arithmetic. */
static int scale(uint64_t ip, const char *frac, size_t n_frac, uint64_t mult,
                 uint64_t *out)
{
    uint64_t f = 0, div = 1;

    if (ip > UINT64_MAX / mult)
        return KC_EINVAL;
    for (size_t i = 0; i < n_frac && i < 19; i++) {
        f = f * 10 + (uint64_t)(frac[i] - '0');
        div *= 10;
    }
    uint64_t extra = (uint64_t)((unsigned __int128)f * mult / div);
    if (ip * mult > UINT64_MAX - extra)
        return KC_EINVAL;
    *out = ip * mult + extra;
    return KC_OK;
}

/* The number at the start of text: its whole part in *ip, its fraction's
 * digits at *frac (NULL if none) and their count in *n_frac; *end receives
 * where it stopped. KC_EINVAL if it is no number or overflows. */
static int parse_number(const char *text, uint64_t *ip, const char **frac, size_t *n_frac,
                        const char **end)
{
    const char *q;

    *frac = NULL;
    *n_frac = 0;
    if (!text || parse_scaled(text, &q, ip) != KC_OK)
        return KC_EINVAL;
    if (*q == '.') {
        *frac = ++q;
        while (isdigit((unsigned char)*q))
            q++;
        *n_frac = (size_t)(q - *frac);
        if (*n_frac == 0)
            return KC_EINVAL;
    }
    *end = q;
    return KC_OK;
}

static int parse_with_units(const char *text, const char *const *suffixes,
                            const uint64_t *mults, size_t n, uint64_t *out)
{
    const char *q, *frac;
    size_t n_frac;
    uint64_t ip;

    if (!out || parse_number(text, &ip, &frac, &n_frac, &q) != KC_OK)
        return KC_EINVAL;
    for (size_t i = 0; i < n; i++)
        if (strcasecmp(q, suffixes[i]) == 0)
            return scale(ip, frac, n_frac, mults[i], out);
    return KC_EINVAL;
}

int kc_size_parse(const char *text, uint64_t *bytes)
{
    static const char prefixes[] = "kmgt";
    const char *q, *frac, *p;
    size_t n_frac;
    uint64_t ip, mult;

    if (!bytes || parse_number(text, &ip, &frac, &n_frac, &q) != KC_OK)
        return KC_EINVAL;
    if (*q == '\0') {
        mult = (uint64_t)1 << 30; /* a bare number is GiB */
    } else if (*q == 'b' || *q == 'B') {
        mult = 1;
        q++;
    } else if ((p = strchr(prefixes, tolower((unsigned char)*q))) != NULL && *p) {
        int power = (int)(p - prefixes) + 1, binary = 0;
        q++;
        if (*q == 'i' || *q == 'I') {
            binary = 1;
            q++;
        }
        if (*q == 'b' || *q == 'B')
            q++;
        mult = 1;
        for (int i = 0; i < power; i++)
            mult *= binary ? 1024 : 1000;
    } else {
        return KC_EINVAL;
    }
    if (*q != '\0')
        return KC_EINVAL;
    return scale(ip, frac, n_frac, mult, bytes);
}

int kc_duration_parse(const char *text, uint64_t *seconds)
{
    static const char *const suf[] = {"", "s", "m", "h", "d", "w"};
    static const uint64_t mult[] = {1, 1, 60, 3600, 86400, 7 * 86400};
    return parse_with_units(text, suf, mult, sizeof(suf) / sizeof(*suf), seconds);
}
