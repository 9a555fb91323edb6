/* Logging: quiet by default (errors and warnings only, i.e. only when something is wrong), one
 * write(2) per message so lines from several threads do not interleave. Never on the hot path. */
#include <stdarg.h>
#include <stdio.h>
#include <unistd.h>

#include "kl.h"

static int kl_level = KL_LOG_WARN;

void kl_log_set_level(int level) { kl_level = level; }
int kl_log_level(void) { return kl_level; }

void kl_log(int level, const char *fmt, ...) {
    static const char *const names[] = {"error", "warning", "info", "debug"};
    if (level > kl_level) return;
    char buf[512];
    int n = snprintf(buf, sizeof buf, "kantaloupe-core[%d] %s: ", (int)getpid(),
                     names[level < 0 ? 0 : level > 3 ? 3 : level]);
    if (n < 0) return;
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(buf + n, sizeof buf - (size_t)n - 1, fmt, ap);
    va_end(ap);
    if (m < 0) return;
    size_t len = (size_t)n + (size_t)m;
    if (len > sizeof buf - 2) len = sizeof buf - 2;
    buf[len++] = '\n';
    ssize_t w = write(2, buf, len);
    (void)w;
}
