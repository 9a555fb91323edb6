/* A minimal test harness: KT_RUN(fn) runs one test case, checks count failures, the program ends
 * with kt_done() which prints "RESULT <passed> <failed>" for tests/run.sh. */
#ifndef KT_H
#define KT_H
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int kt_pass, kt_fail, kt_cur;

#define KT_CHECK(cond)                                                                   \
    do {                                                                                 \
        if (!(cond)) {                                                                   \
            kt_cur++;                                                                    \
            fprintf(stderr, "    check failed %s:%d: %s\n", __FILE__, __LINE__, #cond);  \
        }                                                                                \
    } while (0)
#define KT_EQ(a, b)                                                                      \
    do {                                                                                 \
        long long a_ = (long long)(a), b_ = (long long)(b);                              \
        if (a_ != b_) {                                                                  \
            kt_cur++;                                                                    \
            fprintf(stderr, "    check failed %s:%d: %s == %s (%lld != %lld)\n", __FILE__, \
                    __LINE__, #a, #b, a_, b_);                                           \
        }                                                                                \
    } while (0)

static inline void kt_run(const char *name, void (*fn)(void)) {
    kt_cur = 0;
    fn();
    if (kt_cur) {
        kt_fail++;
        printf("FAIL %s\n", name);
    } else {
        kt_pass++;
        printf("PASS %s\n", name);
    }
    fflush(stdout);
}
#define KT_RUN(fn) kt_run(#fn, fn)

static inline int kt_done(void) {
    printf("RESULT %d %d\n", kt_pass, kt_fail);
    fflush(stdout);
    return kt_fail ? 1 : 0;
}

static inline double kt_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

#define MIB (1ull << 20)
#define GIB (1ull << 30)
#endif
