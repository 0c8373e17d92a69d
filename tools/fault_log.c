/* See fault_log.h. One software event (PERF_COUNT_SW_PAGE_FAULTS), every
 * fault sampled with its instruction pointer and data address into a ring
 * buffer that is read once, when the stretch is over. */
#include "fault_log.h"

#include <dlfcn.h>
#include <linux/perf_event.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

enum { RING_PAGES = 64 };

struct kc_fault_log {
    int fd;
    void *ring;
    size_t ring_len;
};

kc_fault_log_t *kc_fault_log_start(void)
{
    struct perf_event_attr a;
    memset(&a, 0, sizeof(a));
    a.size = sizeof(a);
    a.type = PERF_TYPE_SOFTWARE;
    a.config = PERF_COUNT_SW_PAGE_FAULTS;
    a.sample_period = 1;
    a.sample_type = PERF_SAMPLE_IP | PERF_SAMPLE_ADDR;
    a.disabled = 1;
    a.exclude_hv = 1;
    int fd = (int)syscall(SYS_perf_event_open, &a, 0, -1, -1, 0);
    if (fd < 0)
        return NULL;
    long page = sysconf(_SC_PAGESIZE);
    size_t len = (size_t)page * (1 + RING_PAGES);
    void *ring = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    kc_fault_log_t *log = malloc(sizeof(*log));
    if (ring == MAP_FAILED || !log) {
        if (ring != MAP_FAILED)
            munmap(ring, len);
        free(log);
        close(fd);
        return NULL;
    }
    /* Touch the ring now: its own faults are not the code's. */
    for (size_t off = 0; off < len; off += (size_t)page)
        (void)*(volatile const char *)((const char *)ring + off);
    *log = (kc_fault_log_t){fd, ring, len};
    ioctl(fd, PERF_EVENT_IOC_RESET, 0);
    ioctl(fd, PERF_EVENT_IOC_ENABLE, 0);
    return log;
}

/* The mapping of addr in /proc/self/maps: its name, [heap], [stack] or
 * "anonymous". */
static void mapping_of(uint64_t addr, char *out, size_t cap)
{
    FILE *f = fopen("/proc/self/maps", "r");
    char line[1024];
    snprintf(out, cap, "unmapped");
    while (f && fgets(line, sizeof(line), f)) {
        unsigned long lo, hi;
        char path[700] = "";
        if (sscanf(line, "%lx-%lx %*s %*s %*s %*s %699s", &lo, &hi, path) < 2)
            continue;
        if (addr >= lo && addr < hi) {
            const char *base = strrchr(path, '/');
            snprintf(out, cap, "%s", path[0] ? (base ? base + 1 : path) : "anonymous");
            break;
        }
    }
    if (f)
        fclose(f);
}

void kc_fault_log_print(kc_fault_log_t *log, const char *title, FILE *out)
{
    if (!log)
        return;
    ioctl(log->fd, PERF_EVENT_IOC_DISABLE, 0);
    struct perf_event_mmap_page *meta = log->ring;
    long page = sysconf(_SC_PAGESIZE);
    const char *data = (const char *)log->ring + page;
    size_t size = log->ring_len - (size_t)page;
    uint64_t head = meta->data_head, tail = meta->data_tail;
    __sync_synchronize();
    enum { KINDS = 32 };
    char kinds[KINDS][64];
    int counts[KINDS], nk = 0, total = 0;
    fprintf(out, "    page faults of %s:\n", title);
    while (tail < head) {
        struct perf_event_header h;
        uint64_t v[2];
        memcpy(&h, data + tail % size, sizeof(h));
        if (h.type == PERF_RECORD_SAMPLE && h.size >= sizeof(h) + sizeof(v)) {
            for (int i = 0; i < 2; i++)
                memcpy(&v[i], data + (tail + sizeof(h) + 8 * (size_t)i) % size, 8);
            char where[64];
            Dl_info di;
            mapping_of(v[1], where, sizeof(where));
            const char *fn =
                dladdr((void *)(uintptr_t)v[0], &di) && di.dli_sname ? di.dli_sname : "?";
            fprintf(out, "      %-28s by %s\n", where, fn);
            int k = 0;
            while (k < nk && strcmp(kinds[k], where) != 0)
                k++;
            if (k == nk && nk < KINDS) {
                snprintf(kinds[nk], sizeof(kinds[nk]), "%s", where);
                counts[nk++] = 0;
            }
            if (k < nk)
                counts[k]++;
            total++;
        }
        if (h.size == 0)
            break;
        tail += h.size;
    }
    fprintf(out, "    %d faults:", total);
    for (int k = 0; k < nk; k++)
        fprintf(out, " %s %d;", kinds[k], counts[k]);
    fprintf(out, "\n");
    munmap(log->ring, log->ring_len);
    close(log->fd);
    free(log);
}
