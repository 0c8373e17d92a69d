/* Progress lines on stderr for long walks (verify, and ls's blob pass),
 * printed only when stderr is a terminal so that scripts and logs never see
 * them. */
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "util.h"

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void ctl_progress_begin(ctl_progress_t *p, const char *what)
{
    p->what = what;
    p->on = isatty(STDERR_FILENO);
    p->printed = 0;
    p->last_ms = p->on ? now_ms() : 0;
}

void ctl_progress_tick(ctl_progress_t *p, uint64_t done, uint64_t total)
{
    uint64_t t;

    if (!p->on || (t = now_ms()) - p->last_ms < 500)
        return;
    p->last_ms = t;
    p->printed = 1;
    if (total)
        fprintf(stderr, "\r%s: %llu/%llu records", p->what, (unsigned long long)done,
                (unsigned long long)total);
    else
        fprintf(stderr, "\r%s: %llu records", p->what, (unsigned long long)done);
    fflush(stderr);
}

void ctl_progress_end(ctl_progress_t *p)
{
    if (p->printed)
        fputc('\n', stderr);
    p->printed = 0;
}
