/* Launch hooks: cuLaunchKernel, cuLaunchKernelEx, cuLaunchCooperativeKernel and cuGraphLaunch
 * (each with _ptsz) pass through the device's shared launch budget (limiter.c) when a compute
 * share applies. Work = blocks × threads per block; a graph launch counts as GRAPH_WORK. With no
 * compute limit the hook is one predictable branch and a tail call. */
#include <pthread.h>
#include <time.h>

#include "kl.h"

#define GRAPH_WORK (1024ull * 256ull)

static int nvml_state = -1;

static nvmlDevice_t nvml_handle_of(int dev) {
    kl_load_nvml();
    if (nvml_state < 0) nvml_state = kl_real.nvmlInit_v2 && kl_real.nvmlInit_v2() == NVML_SUCCESS;
    if (!nvml_state) return NULL;
    nvmlDevice_t h = NULL;
    kl_note_uuid(dev);
    const char *uuid = kl_g.rh.r->devices[dev].uuid;
    if (uuid[0] && kl_real.nvmlDeviceGetHandleByUUID &&
        kl_real.nvmlDeviceGetHandleByUUID(uuid, &h) == NVML_SUCCESS)
        return h;
    if (kl_real.nvmlDeviceGetHandleByIndex_v2 &&
        kl_real.nvmlDeviceGetHandleByIndex_v2((unsigned)dev, &h) == NVML_SUCCESS)
        return h;
    return NULL;
}

/* The container's utilisation of dev: the sum of its processes' SM samples when NVML reports
 * them under pids the region knows, else the device's utilisation. */
static int util_nvml(void *ctx, int dev) {
    (void)ctx;
    nvmlDevice_t h = nvml_handle_of(dev);
    if (!h) return -1;
    if (kl_real.nvmlDeviceGetProcessUtilization) {
        nvmlProcessUtilizationSample_t s[64];
        unsigned int n = 64;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        unsigned long long since = (unsigned long long)ts.tv_sec * 1000000ull +
                                   (unsigned long long)ts.tv_nsec / 1000ull - 1000000ull;
        if (kl_real.nvmlDeviceGetProcessUtilization(h, s, &n, since) == NVML_SUCCESS) {
            /* the latest sample per process of this container, summed over its processes */
            int sum = 0, matched = 0;
            for (unsigned i = 0; i < n && i < 64; i++) {
                int found, newest = 1;
                kl_slot_used_by_pid(dev, s[i].pid, &found);
                for (unsigned j = 0; j < n && j < 64; j++)
                    if (j != i && s[j].pid == s[i].pid && s[j].timeStamp > s[i].timeStamp) newest = 0;
                if (found && newest) {
                    sum += (int)s[i].smUtil;
                    matched = 1;
                }
            }
            if (matched) return sum > 100 ? 100 : sum;
        }
    }
    nvmlUtilization_t u;
    if (kl_real.nvmlDeviceGetUtilizationRates &&
        kl_real.nvmlDeviceGetUtilizationRates(h, &u) == NVML_SUCCESS)
        return (int)u.gpu;
    return -1;
}

static CUresult gate_slow(uint64_t work) {
    CUdevice dev;
    if (kl_current_device(&dev) != 0) return CUDA_SUCCESS;
    struct kl_region_device *d = &kl_g.rh.r->devices[dev];
    uint32_t st = __atomic_load_n(&d->sm_state, __ATOMIC_ACQUIRE);
    if (st == KL_LIMIT_NONE) return CUDA_SUCCESS;
    if (st == KL_LIMIT_INVALID) return CUDA_ERROR_NOT_PERMITTED;
    if (kl_g.cfg.policy != KL_POLICY_FORCE &&
        __atomic_load_n(&kl_g.rh.r->sm_switch, __ATOMIC_ACQUIRE) == 0)
        return CUDA_SUCCESS;
    kl_limiter_acquire(d, dev, work, &kl_limiter_defaults, &kl_clock_monotonic, util_nvml, NULL);
    return CUDA_SUCCESS;
}

/* last_kernel_ns for the node monitor, written at most once a second per process */
static void note_kernel(void) {
    static uint64_t last;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    uint64_t now = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
    if (now - __atomic_load_n(&last, __ATOMIC_RELAXED) < 1000000000ull) return;
    __atomic_store_n(&last, now, __ATOMIC_RELAXED);
    __atomic_store_n(&kl_g.rh.r->last_kernel_ns, now, __ATOMIC_RELAXED);
}

static inline CUresult gate(uint64_t work) {
    kl_start();
    if (KL_LIKELY(!kl_g.rh.r)) return CUDA_SUCCESS; /* no limit at all: nothing to do */
    note_kernel();
    if (kl_g.sm_active <= 0) return CUDA_SUCCESS;
    return gate_slow(work);
}

#define WORK(gx, gy, gz, bx, by, bz) \
    ((uint64_t)(gx) * (uint64_t)(gy) * (uint64_t)(gz) * (uint64_t)(bx) * (uint64_t)(by) * (uint64_t)(bz))

KL_EXPORT CUresult cuLaunchKernel(CUfunction f, unsigned gx, unsigned gy, unsigned gz, unsigned bx,
                                  unsigned by, unsigned bz, unsigned shm, CUstream s, void **params,
                                  void **extra) {
    CUresult rc = gate(WORK(gx, gy, gz, bx, by, bz));
    if (KL_UNLIKELY(rc)) return rc;
    return kl_real.cuLaunchKernel(f, gx, gy, gz, bx, by, bz, shm, s, params, extra);
}

KL_EXPORT CUresult cuLaunchKernel_ptsz(CUfunction f, unsigned gx, unsigned gy, unsigned gz,
                                       unsigned bx, unsigned by, unsigned bz, unsigned shm,
                                       CUstream s, void **params, void **extra) {
    CUresult rc = gate(WORK(gx, gy, gz, bx, by, bz));
    if (KL_UNLIKELY(rc)) return rc;
    return kl_real.cuLaunchKernel_ptsz(f, gx, gy, gz, bx, by, bz, shm, s, params, extra);
}

static uint64_t config_work(const CUlaunchConfig *c) {
    return c ? WORK(c->gridDimX, c->gridDimY, c->gridDimZ, c->blockDimX, c->blockDimY, c->blockDimZ) : 1;
}

KL_EXPORT CUresult cuLaunchKernelEx(const CUlaunchConfig *c, CUfunction f, void **params, void **extra) {
    CUresult rc = gate(config_work(c));
    if (KL_UNLIKELY(rc)) return rc;
    return kl_real.cuLaunchKernelEx(c, f, params, extra);
}

KL_EXPORT CUresult cuLaunchKernelEx_ptsz(const CUlaunchConfig *c, CUfunction f, void **params,
                                         void **extra) {
    CUresult rc = gate(config_work(c));
    if (KL_UNLIKELY(rc)) return rc;
    return kl_real.cuLaunchKernelEx_ptsz(c, f, params, extra);
}

KL_EXPORT CUresult cuLaunchCooperativeKernel(CUfunction f, unsigned gx, unsigned gy, unsigned gz,
                                             unsigned bx, unsigned by, unsigned bz, unsigned shm,
                                             CUstream s, void **params) {
    CUresult rc = gate(WORK(gx, gy, gz, bx, by, bz));
    if (KL_UNLIKELY(rc)) return rc;
    return kl_real.cuLaunchCooperativeKernel(f, gx, gy, gz, bx, by, bz, shm, s, params);
}

KL_EXPORT CUresult cuLaunchCooperativeKernel_ptsz(CUfunction f, unsigned gx, unsigned gy,
                                                  unsigned gz, unsigned bx, unsigned by,
                                                  unsigned bz, unsigned shm, CUstream s,
                                                  void **params) {
    CUresult rc = gate(WORK(gx, gy, gz, bx, by, bz));
    if (KL_UNLIKELY(rc)) return rc;
    return kl_real.cuLaunchCooperativeKernel_ptsz(f, gx, gy, gz, bx, by, bz, shm, s, params);
}

static void graph_mem_sync(void) {
    CUdevice dev;
    if (kl_g.mem_active > 0 && kl_current_device(&dev) == 0) kl_sync_pools(dev);
}

KL_EXPORT CUresult cuGraphLaunch(CUgraphExec g, CUstream s) {
    CUresult rc = gate(GRAPH_WORK);
    if (KL_UNLIKELY(rc)) return rc;
    rc = kl_real.cuGraphLaunch(g, s);
    graph_mem_sync();
    return rc;
}

KL_EXPORT CUresult cuGraphLaunch_ptsz(CUgraphExec g, CUstream s) {
    CUresult rc = gate(GRAPH_WORK);
    if (KL_UNLIKELY(rc)) return rc;
    rc = kl_real.cuGraphLaunch_ptsz(g, s);
    graph_mem_sync();
    return rc;
}
