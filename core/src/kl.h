/* Internal interfaces of the isolation core. Everything here is hidden (-fvisibility=hidden);
 * only the rows of hooks.def (and dlsym) are exported. */
#ifndef KL_H
#define KL_H

#include <stdint.h>
#include <stddef.h>
#include "kl_cuda.h"
#include "kl_nvml.h"
#include "kl_region.h"

#define KL_EXPORT __attribute__((visibility("default")))
#define KL_HIDDEN __attribute__((visibility("hidden")))
#define KL_LIKELY(x) __builtin_expect(!!(x), 1)
#define KL_UNLIKELY(x) __builtin_expect(!!(x), 0)

/* ---- log.c ---- */
enum { KL_LOG_ERROR = 0, KL_LOG_WARN = 1, KL_LOG_INFO = 2, KL_LOG_DEBUG = 3 };
void kl_log_set_level(int level);
int kl_log_level(void);
void kl_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- config.c ---- */
enum { KL_POLICY_DEFAULT = 0, KL_POLICY_FORCE = 1, KL_POLICY_DISABLE = 2 };
struct kl_config {
    uint32_t mem_state[KL_MAX_DEVICES]; /* KL_LIMIT_* */
    uint64_t mem_limit[KL_MAX_DEVICES];
    uint32_t sm_state[KL_MAX_DEVICES];
    uint32_t sm_limit[KL_MAX_DEVICES];
    char region_path[512];
    int policy;
    int log_level;
    int any_mem; /* some device has limit_state != NONE */
    int any_sm;
};
typedef const char *(*kl_getenv_fn)(const char *name);
int kl_parse_size(const char *s, uint64_t *out);    /* 0, -EINVAL or -ERANGE */
int kl_parse_percent(const char *s, uint32_t *out); /* 0, -EINVAL or -ERANGE */
/* Fills c from the environment; reports each bad value once through kl_log. Returns the number
 * of bad values. */
int kl_config_load(struct kl_config *c, kl_getenv_fn get);

/* ---- region.c ---- */
struct kl_rh {
    struct kl_region *r;
    int slot;     /* index of this process's slot, -1 before registration */
    int shared;   /* 1: mapped from the file; 0: private fallback */
    int fd;
};
int kl_region_open(struct kl_rh *h, const char *path, const struct kl_config *cfg);
int kl_region_open_private(struct kl_rh *h, const struct kl_config *cfg);
void kl_region_close(struct kl_rh *h);
int kl_region_register(struct kl_rh *h, const struct kl_config *cfg);
void kl_region_unregister(struct kl_rh *h);
int kl_region_lock(struct kl_rh *h);
void kl_region_unlock(struct kl_rh *h);
/* Reserve n bytes on dev within its limit: 0, -ENOMEM (over the limit) or -EPERM (invalid limit).
 * Dead processes are reclaimed before -ENOMEM is returned. */
int kl_region_reserve(struct kl_rh *h, int dev, uint64_t n);
/* Charge (delta > 0) or refund (delta < 0) without a bound; refunds saturate at zero. */
void kl_region_adjust(struct kl_rh *h, int dev, int64_t delta);
int kl_region_reclaim(struct kl_rh *h); /* number of dead slots reclaimed */
uint64_t kl_region_reserved(const struct kl_rh *h, int dev);
int kl_proc_start_time(int pid, uint64_t *start, int *alive);

/* ---- limiter.c ---- */
struct kl_clock {
    uint64_t (*now_ns)(void *ctx);
    void (*sleep_ns)(void *ctx, uint64_t ns);
    void *ctx;
};
/* Utilisation of the device by this container, percent, or -1 when unknown. */
typedef int (*kl_util_fn)(void *ctx, int dev);
struct kl_limiter_params {
    uint64_t period_ns;   /* utilisation sampling period */
    uint64_t max_wait_ns; /* bound on one call's wait */
    uint64_t burst_ns;    /* cap on banked budget */
};
extern const struct kl_limiter_params kl_limiter_defaults;
void kl_limiter_init_device(struct kl_region_device *d, uint32_t sm_limit);
/* Charges `work` units to the device budget, waiting (bounded) when it is exhausted.
 * Returns the ns waited. */
uint64_t kl_limiter_acquire(struct kl_region_device *d, int dev, uint64_t work,
                            const struct kl_limiter_params *p, const struct kl_clock *clk,
                            kl_util_fn util, void *util_ctx);
extern const struct kl_clock kl_clock_monotonic;

/* ---- track.c: per-process allocation map ---- */
enum { KL_TRACK_PTR = 1, KL_TRACK_VMM = 2, KL_TRACK_ARRAY = 3, KL_TRACK_MIPMAP = 4,
       KL_TRACK_CTX = 5 };
struct kl_track_val {
    int dev;
    int refs;
    uint64_t bytes;
};
void kl_track_put(int kind, uint64_t key, int dev, uint64_t bytes);
int kl_track_take(int kind, uint64_t key, struct kl_track_val *out);  /* 1 found+removed */
int kl_track_get(int kind, uint64_t key, struct kl_track_val *out);   /* 1 found */
int kl_track_ref(int kind, uint64_t key, int delta, struct kl_track_val *out);
void kl_track_reset(void);

/* ---- real.c: real entry points ---- */
#define HOOK(sym, base, pfn, ver, pt, grp) pfn sym;
struct kl_real {
#include "hooks.def"
    PFN_cuCtxGetDevice_v2000 cuCtxGetDevice;
    PFN_cuCtxGetCurrent_v4000 cuCtxGetCurrent;
    PFN_cuDeviceGetCount_v2000 cuDeviceGetCount;
    PFN_cuDeviceGetAttribute_v2000 cuDeviceGetAttribute;
    PFN_cuDeviceGetUuid_v11040 cuDeviceGetUuid_v2;
    PFN_cuMemPoolGetAttribute_v11020 cuMemPoolGetAttribute;
    PFN_cuDeviceGetMemPool_v11020 cuDeviceGetMemPool;
    PFN_cuArrayGetMemoryRequirements_v11060 cuArrayGetMemoryRequirements;
    PFN_cuDeviceGetGraphMemAttribute_v11040 cuDeviceGetGraphMemAttribute;
    PFN_cuMemGetAllocationGranularity_v10020 cuMemGetAllocationGranularity;
    PFN_nvmlInit_v2 nvmlInit_v2;
    PFN_nvmlDeviceGetUUID nvmlDeviceGetUUID;
    PFN_nvmlDeviceGetIndex nvmlDeviceGetIndex;
    PFN_nvmlDeviceGetHandleByUUID nvmlDeviceGetHandleByUUID;
    PFN_nvmlDeviceGetHandleByIndex_v2 nvmlDeviceGetHandleByIndex_v2;
    PFN_nvmlDeviceGetProcessUtilization nvmlDeviceGetProcessUtilization;
    PFN_nvmlDeviceGetUtilizationRates nvmlDeviceGetUtilizationRates;
};
#undef HOOK
extern struct kl_real kl_real;
void *kl_real_dlsym(void *handle, const char *name);
void kl_load_cuda(void); /* once: dlopen libcuda.so.1 and resolve CUDA pointers */
void kl_load_nvml(void); /* once: dlopen libnvidia-ml.so.1 and resolve NVML pointers */

/* ---- state.c: process state, started lazily ---- */
struct kl_state {
    struct kl_config cfg;
    struct kl_rh rh;
    int mem_active; /* region open and some device limited */
    int sm_active;
};
extern struct kl_state kl_g;
extern int kl_slot_ok;     /* cleared in a forked child; the next charge re-registers */
extern int kl_started;     /* set (release) once kl_start_once has run */
void kl_start_once(void);  /* once: config + real CUDA + region */
static inline void kl_start(void) {
    if (KL_LIKELY(__atomic_load_n(&kl_started, __ATOMIC_ACQUIRE))) return;
    kl_start_once();
}
int kl_ensure_slot(void);  /* 0 or -errno */
/* Device limit state as the hot path sees it. */
static inline const struct kl_region_device *kl_dev(int dev) {
    return &kl_g.rh.r->devices[dev];
}
int kl_dev_limited(int dev); /* 1 when dev has KL_LIMIT_SET or KL_LIMIT_INVALID */
/* Charge n bytes to dev before allocating: CUDA_SUCCESS, CUDA_ERROR_OUT_OF_MEMORY. */
CUresult kl_charge(int dev, uint64_t n);
void kl_refund(int dev, uint64_t n);
void kl_force(int dev, int64_t delta);
int kl_current_device(CUdevice *dev); /* 0 or -1 */
void kl_sync_pools(int dev);          /* re-read pool/graph reserved memory for dev */
/* One snapshot of a device's virtual memory view. */
struct kl_meminfo { uint64_t total, used, free; };
int kl_snapshot(int dev, uint64_t phys_total, uint64_t phys_free, struct kl_meminfo *out);
int kl_nvml_to_cuda(nvmlDevice_t h); /* CUDA ordinal of an NVML handle, -1 unknown */
void kl_note_uuid(int dev);          /* record dev's UUID in the region (once per process) */
uint64_t kl_slot_used_by_pid(int dev, unsigned int pid, int *found);

#endif
