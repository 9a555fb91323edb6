/* Limiter convergence on virtual time: a simulated GPU runs the launched kernels back to back, a
 * scripted utilisation source reports its busy fraction like NVML (a trailing window, integer
 * percent), and an application launches as fast as the limiter lets it. After a warm-up the
 * achieved share must be within 5 points of the limit, and no call may wait longer than its bound.
 * The kernel's true cost differs from the limiter's initial guess, so convergence is learned. */
#include <math.h>
#include <stdint.h>

#include "kl.h"
#include "kt.h"

#define SIM_S 60
#define BUCKET_NS 1000000ull /* 1 ms */
#define NB (SIM_S * 1000 + 2000)

static uint64_t now_ns;
static double busy[NB]; /* busy ns per 1 ms bucket */
static uint64_t gpu_until;

static uint64_t v_now(void *c) { (void)c; return now_ns; }
static void v_sleep(void *c, uint64_t ns) { (void)c; now_ns += ns; }

static void add_busy(uint64_t a, uint64_t b) {
    while (a < b) {
        uint64_t k = a / BUCKET_NS;
        if (k >= NB) return;
        uint64_t end = (k + 1) * BUCKET_NS;
        if (end > b) end = b;
        busy[k] += (double)(end - a);
        a = end;
    }
}

static double busy_between(uint64_t a, uint64_t b) { /* fraction, bucket granularity */
    double s = 0;
    uint64_t ka = a / BUCKET_NS, kb = b / BUCKET_NS;
    for (uint64_t k = ka; k < kb && k < NB; k++) s += busy[k];
    return kb > ka ? s / (double)((kb - ka) * BUCKET_NS) : 0;
}

static int util_src(void *ctx, int dev) {
    (void)ctx, (void)dev;
    uint64_t win = 500 * BUCKET_NS;
    if (now_ns < win) return -1;
    return (int)(100.0 * busy_between(now_ns - win, now_ns)); /* integer percent, like NVML */
}

struct sim_result { double share; uint64_t worst_wait; };

static struct sim_result simulate(uint32_t limit, double ns_per_unit, uint64_t work, int processes) {
    memset(busy, 0, sizeof busy);
    now_ns = 1;
    gpu_until = 0;
    struct kl_region_device d;
    memset(&d, 0, sizeof d);
    kl_limiter_init_device(&d, limit);
    struct kl_clock clk = {v_now, v_sleep, NULL};
    struct sim_result r = {0, 0};
    /* several "processes" share one budget: they take turns on the virtual timeline */
    uint64_t proc_now[8] = {0};
    for (int p = 0; p < processes; p++) proc_now[p] = 1 + (uint64_t)p * 1000;
    uint64_t end = (uint64_t)SIM_S * 1000000000ull;
    for (;;) {
        int p = 0;
        for (int q = 1; q < processes; q++)
            if (proc_now[q] < proc_now[p]) p = q;
        if (proc_now[p] >= end) break;
        now_ns = proc_now[p] + 2000; /* CPU time to prepare a launch */
        uint64_t w = kl_limiter_acquire(&d, 0, work, &kl_limiter_defaults, &clk, util_src, NULL);
        if (w > r.worst_wait) r.worst_wait = w;
        uint64_t dur = (uint64_t)((double)work * ns_per_unit);
        uint64_t start = gpu_until > now_ns ? gpu_until : now_ns;
        gpu_until = start + dur;
        add_busy(start, gpu_until);
        if (gpu_until > now_ns + 10 * BUCKET_NS) now_ns = gpu_until - 10 * BUCKET_NS; /* queue full */
        proc_now[p] = now_ns;
    }
    r.share = 100.0 * busy_between((uint64_t)(SIM_S - 20) * 1000000000ull, end);
    return r;
}

static void check(uint32_t limit, double ns_per_unit, uint64_t work, int procs) {
    struct sim_result r = simulate(limit, ns_per_unit, work, procs);
    printf("    limit %u%% (%d proc, %.4f ns/unit): achieved %.1f%%, worst wait %.1f ms\n", limit, procs,
           ns_per_unit, r.share, (double)r.worst_wait / 1e6);
    KT_CHECK(fabs(r.share - (double)limit) <= 5.0);
    KT_CHECK(r.worst_wait <= kl_limiter_defaults.max_wait_ns);
}

static void test_converges_10(void) { check(10, 3.7, 1u << 20, 1); }
static void test_converges_30(void) { check(30, 3.7, 1u << 20, 1); }
static void test_converges_50(void) { check(50, 3.7, 1u << 20, 1); }
static void test_converges_90(void) { check(90, 3.7, 1u << 20, 1); }
static void test_converges_30_expensive_kernels(void) { check(30, 20.0, 1u << 18, 1); }
static void test_converges_30_cheap_kernels(void) { check(30, 20.0, 1u << 10, 1); }
static void test_shared_budget_two_processes_50(void) { check(50, 3.7, 1u << 20, 2); }
static void test_shared_budget_three_processes_30(void) { check(30, 3.7, 1u << 20, 3); }

int main(void) {
    KT_RUN(test_converges_10);
    KT_RUN(test_converges_30);
    KT_RUN(test_converges_50);
    KT_RUN(test_converges_90);
    KT_RUN(test_converges_30_expensive_kernels);
    KT_RUN(test_converges_30_cheap_kernels);
    KT_RUN(test_shared_budget_two_processes_50);
    KT_RUN(test_shared_budget_three_processes_30);
    return kt_done();
}
