/* The page faults of a stretch of code, each with its address and the code
 * that took it, read from the kernel's own page-fault event
 * (perf_event_open); for the benchmarks' first-call breakdowns on machines
 * without the perf tool. */
#ifndef KC_TOOLS_FAULT_LOG_H
#define KC_TOOLS_FAULT_LOG_H

#include <stdio.h>

typedef struct kc_fault_log kc_fault_log_t;

/* Start recording this thread's page faults; NULL if the kernel refuses
 * (perf_event_paranoid, no permission): the caller goes on without. */
kc_fault_log_t *kc_fault_log_start(void);
/* Stop, print one line per fault to out (what was touched: the mapping of
 * its address from /proc/self/maps; and the function that touched it),
 * then a count per mapping kind, and free the log. */
void kc_fault_log_print(kc_fault_log_t *log, const char *title, FILE *out);

#endif
