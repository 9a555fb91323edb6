/* Process state, started lazily (pthread_once) on the first hooked call that needs it: parse the
 * configuration, resolve the real driver, and, only when some limit is set, map the shared region
 * and register this process's slot. Nothing happens in a constructor or inside dlsym. */

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kl.h"

#define LD(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)

struct kl_state kl_g;
int kl_slot_ok;
static pthread_once_t start_once = PTHREAD_ONCE_INIT;
static uint32_t uuid_done; /* bit per device: uuid written to the region by this process */

static const char *env_get(const char *name) { return getenv(name); }

static void on_exit_unregister(void) { kl_region_unregister(&kl_g.rh); }

static void on_fork_child(void) {
    kl_slot_ok = 0;
    kl_g.rh.slot = -1;
    uuid_done = 0;
    kl_track_reset();
}

static void start(void) {
    kl_config_load(&kl_g.cfg, env_get);
    kl_load_cuda();
    if (!kl_g.cfg.any_mem && !kl_g.cfg.any_sm) return; /* no limit: pure pass-through */
    int rc = -EINVAL;
    if (kl_g.cfg.region_path[0]) rc = kl_region_open(&kl_g.rh, kl_g.cfg.region_path, &kl_g.cfg);
    if (rc) {
        kl_log(KL_LOG_WARN,
               "shared region %s unusable (%s); limits apply to this process alone",
               kl_g.cfg.region_path, rc == -EPROTO ? "incompatible layout" : strerror(-rc));
        rc = kl_region_open_private(&kl_g.rh, &kl_g.cfg);
        if (rc) {
            kl_log(KL_LOG_ERROR, "cannot map a private region (%s); allocations are refused",
                   strerror(-rc));
            kl_g.mem_active = -1;
            return;
        }
    }
    rc = kl_region_register(&kl_g.rh, &kl_g.cfg);
    if (rc == -ENOSPC) {
        kl_log(KL_LOG_WARN, "shared region full (%d processes); limits apply to this process alone",
               KL_MAX_PROCS);
        kl_region_close(&kl_g.rh);
        if (kl_region_open_private(&kl_g.rh, &kl_g.cfg) == 0) rc = kl_region_register(&kl_g.rh, &kl_g.cfg);
    }
    kl_slot_ok = rc == 0;
    kl_g.mem_active = kl_g.cfg.any_mem;
    kl_g.sm_active = kl_g.cfg.any_sm;
    pthread_atfork(NULL, NULL, on_fork_child);
    atexit(on_exit_unregister);
}

int kl_started;

void kl_start_once(void) {
    pthread_once(&start_once, start);
    __atomic_store_n(&kl_started, 1, __ATOMIC_RELEASE);
}

int kl_ensure_slot(void) {
    if (KL_LIKELY(kl_slot_ok)) return 0;
    int rc = kl_region_register(&kl_g.rh, &kl_g.cfg);
    kl_slot_ok = rc == 0;
    return rc;
}

int kl_dev_limited(int dev) {
    if (kl_g.mem_active <= 0 || dev < 0 || dev >= KL_MAX_DEVICES) return kl_g.mem_active < 0;
    return LD(&kl_g.rh.r->devices[dev].limit_state) != KL_LIMIT_NONE;
}

void kl_note_uuid(int dev) {
    if ((__atomic_load_n(&uuid_done, __ATOMIC_RELAXED) & (1u << dev)) || !kl_real.cuDeviceGetUuid_v2) return;
    CUuuid u;
    if (kl_real.cuDeviceGetUuid_v2(&u, dev) != CUDA_SUCCESS) return;
    const unsigned char *b = (const unsigned char *)u.bytes;
    char s[KL_UUID_LEN];
    snprintf(s, sizeof s,
             "GPU-%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
             b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
    if (kl_region_lock(&kl_g.rh) == 0) {
        memcpy(kl_g.rh.r->devices[dev].uuid, s, sizeof s);
        kl_region_unlock(&kl_g.rh);
    }
    __atomic_fetch_or(&uuid_done, 1u << dev, __ATOMIC_RELAXED);
}

CUresult kl_charge(int dev, uint64_t n) {
    if (kl_g.mem_active < 0) return CUDA_ERROR_OUT_OF_MEMORY;
    kl_ensure_slot();
    kl_note_uuid(dev);
    int rc = kl_region_reserve(&kl_g.rh, dev, n);
    return rc == 0 ? CUDA_SUCCESS : CUDA_ERROR_OUT_OF_MEMORY;
}

void kl_refund(int dev, uint64_t n) {
    if (kl_g.mem_active > 0 && n) kl_region_adjust(&kl_g.rh, dev, -(int64_t)n);
}

void kl_force(int dev, int64_t delta) {
    if (kl_g.mem_active > 0 && delta) kl_region_adjust(&kl_g.rh, dev, delta);
}

int kl_current_device(CUdevice *dev) {
    if (!kl_real.cuCtxGetDevice || kl_real.cuCtxGetDevice(dev) != CUDA_SUCCESS) return -1;
    return (*dev >= 0 && *dev < KL_MAX_DEVICES) ? 0 : -1;
}

int kl_snapshot(int dev, uint64_t phys_total, uint64_t phys_free, struct kl_meminfo *out) {
    out->total = phys_total;
    out->free = phys_free;
    out->used = phys_total > phys_free ? phys_total - phys_free : 0;
    if (!kl_dev_limited(dev)) return 0;
    if (kl_g.mem_active < 0) {
        out->total = out->free = out->used = 0;
        return 1;
    }
    struct kl_region_device *d = &kl_g.rh.r->devices[dev];
    kl_note_uuid(dev);
    __atomic_store_n(&d->total_bytes, phys_total, __ATOMIC_RELAXED);
    if (LD(&d->limit_state) == KL_LIMIT_INVALID) {
        out->total = out->free = out->used = 0;
        return 1;
    }
    uint64_t lim = LD(&d->limit_bytes);
    uint64_t total = (phys_total && phys_total < lim) ? phys_total : lim;
    uint64_t used = kl_region_reserved(&kl_g.rh, dev);
    uint64_t free = total > used ? total - used : 0;
    if (free > phys_free) free = phys_free;
    out->total = total;
    out->used = used > total ? total : used;
    out->free = free;
    return 1;
}

static int uuid_index(const char *uuid) {
    for (int i = 0; i < KL_MAX_DEVICES; i++)
        if (kl_g.rh.r->devices[i].uuid[0] && strcmp(kl_g.rh.r->devices[i].uuid, uuid) == 0) return i;
    return -1;
}

/* NVML handle -> CUDA ordinal by UUID (CUDA_VISIBLE_DEVICES may reorder or hide devices; NVML does
 * not). When CUDA can enumerate its devices, an NVML device whose UUID none of them has is not
 * this container's (-1); only when CUDA cannot tell (not initialised) the NVML index is used. */
int kl_nvml_to_cuda(nvmlDevice_t h) {
    char uuid[96];
    if (kl_g.rh.r && kl_real.nvmlDeviceGetUUID &&
        kl_real.nvmlDeviceGetUUID(h, uuid, sizeof uuid) == NVML_SUCCESS) {
        int i = uuid_index(uuid);
        if (i >= 0) return i;
        int n = 0;
        if (kl_real.cuDeviceGetCount && kl_real.cuDeviceGetCount(&n) == CUDA_SUCCESS && n > 0) {
            for (int d = 0; d < n && d < KL_MAX_DEVICES; d++) kl_note_uuid(d);
            return uuid_index(uuid);
        }
    }
    unsigned int idx;
    if (kl_real.nvmlDeviceGetIndex && kl_real.nvmlDeviceGetIndex(h, &idx) == NVML_SUCCESS &&
        idx < KL_MAX_DEVICES)
        return (int)idx;
    return -1;
}

uint64_t kl_slot_used_by_pid(int dev, unsigned int pid, int *found) {
    *found = 0;
    if (!kl_g.rh.r) return 0;
    for (int i = 0; i < KL_MAX_PROCS; i++) {
        const struct kl_region_slot *s = &kl_g.rh.r->procs[i];
        if (LD(&s->state) != KL_SLOT_ACTIVE) continue;
        if ((unsigned int)s->pid == pid || (s->host_pid && (unsigned int)s->host_pid == pid)) {
            *found = 1;
            return LD(&s->used[dev]);
        }
    }
    return 0;
}
