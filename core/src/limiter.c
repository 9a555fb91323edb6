/* Compute-share limiter: one launch budget per device, kept in the shared region so every process
 * of the container draws on it.
 *
 * The budget is GPU time: it refills at sm_limit % of wall-clock time (capped at burst_ns worth).
 * A launch costs work × scale, where work is blocks × threads per block and scale (Q16 ns per work
 * unit) is learned by feedback: every period_ns one caller samples the container's utilisation
 * and nudges scale up when the device runs above the limit and down when it runs below while
 * launches were waiting. When the budget is in debt a launch sleeps for the time the debt takes to
 * refill, never longer than max_wait_ns (so multi-GPU jobs cannot deadlock); debt is bounded too.
 * The clock and the utilisation source are parameters, so tests run it on virtual time. */

#include <time.h>

#include "kl.h"

#define LD(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define ST(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)
#define CAS(p, e, v) __atomic_compare_exchange_n((p), (e), (v), 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)

#define SCALE_ONE (1ull << 16)
#define SCALE_MIN (1ull << 4)
#define SCALE_MAX (1ull << 32)

const struct kl_limiter_params kl_limiter_defaults = {
    .period_ns = 100000000ull,  /* 100 ms */
    .max_wait_ns = 200000000ull, /* 200 ms */
    .burst_ns = 20000000ull,    /* 20 ms of full-device time */
};

static uint64_t mono_now(void *ctx) {
    (void)ctx;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void mono_sleep(void *ctx, uint64_t ns) {
    (void)ctx;
    struct timespec ts = {.tv_sec = (time_t)(ns / 1000000000ull), .tv_nsec = (long)(ns % 1000000000ull)};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

const struct kl_clock kl_clock_monotonic = {mono_now, mono_sleep, NULL};

void kl_limiter_init_device(struct kl_region_device *d, uint32_t sm_limit) {
    ST(&d->sm_limit, sm_limit);
    ST(&d->sm_tokens, (int64_t)0);
    ST(&d->sm_last_ns, (uint64_t)0);
    ST(&d->sm_scale, SCALE_ONE);
    ST(&d->sm_util_ns, (uint64_t)0);
    ST(&d->sm_util, 0u);
    ST(&d->sm_waited_mark, LD(&d->sm_waited_ns));
}

static void refill(struct kl_region_device *d, uint64_t now, uint32_t limit,
                   const struct kl_limiter_params *p) {
    uint64_t last = LD(&d->sm_last_ns);
    if (last == 0) {
        CAS(&d->sm_last_ns, &last, now);
        return;
    }
    if (now <= last || !CAS(&d->sm_last_ns, &last, now)) return;
    int64_t add = (int64_t)((now - last) * limit / 100);
    int64_t cap = (int64_t)(p->burst_ns * limit / 100);
    int64_t cur = LD(&d->sm_tokens);
    int64_t next;
    do {
        next = cur + add;
        if (next > cap) next = cap;
    } while (!CAS(&d->sm_tokens, &cur, next));
}

static void feedback(struct kl_region_device *d, int dev, uint64_t now, uint32_t limit,
                     const struct kl_limiter_params *p, kl_util_fn util, void *ctx) {
    uint64_t last = LD(&d->sm_util_ns);
    if (last == 0) {
        CAS(&d->sm_util_ns, &last, now);
        return;
    }
    if (now - last < p->period_ns || !CAS(&d->sm_util_ns, &last, now)) return;
    int u = util ? util(ctx, dev) : -1;
    if (u < 0) return;
    if (u > 100) u = 100;
    ST(&d->sm_util, (uint32_t)u);
    uint64_t waited = LD(&d->sm_waited_ns);
    int waiting = waited != LD(&d->sm_waited_mark); /* launches waited during the period */
    ST(&d->sm_waited_mark, waited);
    if (u <= (int)limit && !waiting) return; /* under the limit without pressure: keep scale */
    /* multiplicative step toward u == limit, gain 1/2, each step within [1/2, 2] */
    uint64_t s = LD(&d->sm_scale);
    int64_t num = 2 * (int64_t)limit + ((int64_t)u - (int64_t)limit); /* 2L + (u - L) */
    int64_t den = 2 * (int64_t)limit;
    if (num * 2 < den) num = (den + 1) / 2;
    if (num > 2 * den) num = 2 * den;
    uint64_t ns = s / (uint64_t)den * (uint64_t)num + (s % (uint64_t)den) * (uint64_t)num / (uint64_t)den;
    if (ns < SCALE_MIN) ns = SCALE_MIN;
    if (ns > SCALE_MAX) ns = SCALE_MAX;
    ST(&d->sm_scale, ns);
}

uint64_t kl_limiter_acquire(struct kl_region_device *d, int dev, uint64_t work,
                            const struct kl_limiter_params *p, const struct kl_clock *clk,
                            kl_util_fn util, void *util_ctx) {
    uint32_t limit = LD(&d->sm_limit);
    if (limit == 0 || limit >= 100) return 0;
    uint64_t now = clk->now_ns(clk->ctx);
    refill(d, now, limit, p);
    feedback(d, dev, now, limit, p, util, util_ctx);
    uint64_t scale = LD(&d->sm_scale);
    if (work > (UINT64_MAX >> 33)) work = UINT64_MAX >> 33;
    int64_t cost = (int64_t)((work * scale) >> 16);
    if (cost < 1) cost = 1;
    int64_t floor_debt = -(int64_t)(2 * p->max_wait_ns * limit / 100);
    int64_t cur = LD(&d->sm_tokens), next;
    do {
        next = cur - cost;
        if (next < floor_debt) next = floor_debt;
    } while (!CAS(&d->sm_tokens, &cur, next));
    if (next >= 0) return 0;
    uint64_t wait = (uint64_t)(-next) * 100 / limit;
    if (wait > p->max_wait_ns) wait = p->max_wait_ns;
    clk->sleep_ns(clk->ctx, wait);
    __atomic_fetch_add(&d->sm_waited_ns, wait, __ATOMIC_RELAXED);
    return wait;
}
