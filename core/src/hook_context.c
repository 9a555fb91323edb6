/* Context overhead: measured, per device, as the change of the device's used memory (NVML) across
 * the first primary-context retain or a cuCtxCreate, charged after the fact (a context cannot be
 * reserved for before it exists) and refunded on the last release, reset or destroy. */
#include <pthread.h>

#include "kl.h"

#define MAX_CTX_OVERHEAD (4ull << 30)

static pthread_mutex_t ctx_mu = PTHREAD_MUTEX_INITIALIZER;
static int primary_refs[KL_MAX_DEVICES];
static uint64_t primary_cost[KL_MAX_DEVICES];
static int nvml_ready = -1;

static int nvml_used(int dev, uint64_t *used) {
    kl_load_nvml();
    if (nvml_ready < 0) nvml_ready = kl_real.nvmlInit_v2 && kl_real.nvmlInit_v2() == NVML_SUCCESS;
    if (!nvml_ready || !kl_real.nvmlDeviceGetMemoryInfo) return -1;
    nvmlDevice_t h = NULL;
    if (kl_g.rh.r) kl_note_uuid(dev);
    const char *uuid = kl_g.rh.r ? kl_g.rh.r->devices[dev].uuid : "";
    if (!(uuid[0] && kl_real.nvmlDeviceGetHandleByUUID && kl_real.nvmlDeviceGetHandleByUUID(uuid, &h) == NVML_SUCCESS)) {
        if (!kl_real.nvmlDeviceGetHandleByIndex_v2 ||
            kl_real.nvmlDeviceGetHandleByIndex_v2((unsigned)dev, &h) != NVML_SUCCESS)
            return -1;
    }
    nvmlMemory_t m;
    if (kl_real.nvmlDeviceGetMemoryInfo(h, &m) != NVML_SUCCESS) return -1;
    *used = m.used;
    return 0;
}

static uint64_t measured(int ok0, uint64_t u0, int dev) {
    uint64_t u1;
    if (ok0 != 0 || nvml_used(dev, &u1) != 0 || u1 <= u0) return 0;
    uint64_t d = u1 - u0;
    return d > MAX_CTX_OVERHEAD ? MAX_CTX_OVERHEAD : d;
}

KL_EXPORT CUresult cuDevicePrimaryCtxRetain(CUcontext *ctx, CUdevice dev) {
    kl_start();
    if (!kl_g.mem_active || !kl_dev_limited(dev)) return kl_real.cuDevicePrimaryCtxRetain(ctx, dev);
    pthread_mutex_lock(&ctx_mu);
    uint64_t u0 = 0;
    int first = primary_refs[dev] == 0;
    int ok0 = first ? nvml_used(dev, &u0) : -1;
    CUresult rc = kl_real.cuDevicePrimaryCtxRetain(ctx, dev);
    if (rc == CUDA_SUCCESS) {
        if (first) {
            primary_cost[dev] = measured(ok0, u0, dev);
            kl_force(dev, (int64_t)primary_cost[dev]);
        }
        primary_refs[dev]++;
    }
    pthread_mutex_unlock(&ctx_mu);
    return rc;
}

static void primary_drop(int dev, int all) {
    pthread_mutex_lock(&ctx_mu);
    if (primary_refs[dev] > 0) {
        primary_refs[dev] = all ? 0 : primary_refs[dev] - 1;
        if (primary_refs[dev] == 0) {
            kl_refund(dev, primary_cost[dev]);
            primary_cost[dev] = 0;
        }
    }
    pthread_mutex_unlock(&ctx_mu);
}

KL_EXPORT CUresult cuDevicePrimaryCtxRelease_v2(CUdevice dev) {
    kl_start();
    CUresult rc = kl_real.cuDevicePrimaryCtxRelease_v2(dev);
    if (rc == CUDA_SUCCESS && kl_g.mem_active && kl_dev_limited(dev)) primary_drop(dev, 0);
    return rc;
}

KL_EXPORT CUresult cuDevicePrimaryCtxReset_v2(CUdevice dev) {
    kl_start();
    CUresult rc = kl_real.cuDevicePrimaryCtxReset_v2(dev);
    if (rc == CUDA_SUCCESS && kl_g.mem_active && kl_dev_limited(dev)) primary_drop(dev, 1);
    return rc;
}

static void ctx_created(CUcontext ctx, int dev, int ok0, uint64_t u0) {
    uint64_t cost = measured(ok0, u0, dev);
    kl_force(dev, (int64_t)cost);
    kl_track_put(KL_TRACK_CTX, (uint64_t)(uintptr_t)ctx, dev, cost);
}

#define CTX_CREATE(call, ctxp, dev)                                                  \
    kl_start();                                                                      \
    if (!kl_g.mem_active || !kl_dev_limited(dev)) return kl_real.call;               \
    pthread_mutex_lock(&ctx_mu);                                                     \
    uint64_t u0 = 0;                                                                 \
    int ok0 = nvml_used(dev, &u0);                                                   \
    CUresult rc = kl_real.call;                                                      \
    if (rc == CUDA_SUCCESS) ctx_created(*(ctxp), dev, ok0, u0);                      \
    pthread_mutex_unlock(&ctx_mu);                                                   \
    return rc;

KL_EXPORT CUresult cuCtxCreate_v2(CUcontext *ctx, unsigned int flags, CUdevice dev) {
    CTX_CREATE(cuCtxCreate_v2(ctx, flags, dev), ctx, dev)
}
KL_EXPORT CUresult cuCtxCreate_v3(CUcontext *ctx, void *params, int n, unsigned int flags, CUdevice dev) {
    CTX_CREATE(cuCtxCreate_v3(ctx, params, n, flags, dev), ctx, dev)
}
KL_EXPORT CUresult cuCtxCreate_v4(CUcontext *ctx, void *params, unsigned int flags, CUdevice dev) {
    CTX_CREATE(cuCtxCreate_v4(ctx, params, flags, dev), ctx, dev)
}

KL_EXPORT CUresult cuCtxDestroy_v2(CUcontext ctx) {
    kl_start();
    CUresult rc = kl_real.cuCtxDestroy_v2(ctx);
    struct kl_track_val v;
    if (rc == CUDA_SUCCESS && kl_g.mem_active &&
        kl_track_take(KL_TRACK_CTX, (uint64_t)(uintptr_t)ctx, &v))
        kl_refund(v.dev, v.bytes);
    return rc;
}
