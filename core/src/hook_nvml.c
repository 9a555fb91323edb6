/* NVML reporting: memory info v1/v2 from the same snapshot as cuMemGetInfo, and the per-process
 * lists restricted to this container's processes, each showing the bytes the region charges it.
 * When no listed pid is known to the region (NVML reports host pids the container cannot see),
 * the list is returned unfiltered rather than emptied. */
#include "kl.h"

static int nvml_dev(nvmlDevice_t h) {
    kl_start();
    kl_load_nvml();
    if (kl_g.mem_active <= 0) return -1;
    int dev = kl_nvml_to_cuda(h);
    return (dev >= 0 && kl_dev_limited(dev)) ? dev : -1;
}

KL_EXPORT nvmlReturn_t nvmlDeviceGetMemoryInfo(nvmlDevice_t h, nvmlMemory_t *mem) {
    kl_load_nvml();
    if (!kl_real.nvmlDeviceGetMemoryInfo) return NVML_ERROR_UNINITIALIZED;
    nvmlReturn_t rc = kl_real.nvmlDeviceGetMemoryInfo(h, mem);
    int dev;
    if (rc == NVML_SUCCESS && mem && (dev = nvml_dev(h)) >= 0) {
        struct kl_meminfo m;
        kl_snapshot(dev, mem->total, mem->free, &m);
        mem->total = m.total;
        mem->used = m.used;
        mem->free = m.free;
    }
    return rc;
}

KL_EXPORT nvmlReturn_t nvmlDeviceGetMemoryInfo_v2(nvmlDevice_t h, nvmlMemory_v2_t *mem) {
    kl_load_nvml();
    if (!kl_real.nvmlDeviceGetMemoryInfo_v2) return NVML_ERROR_UNINITIALIZED;
    nvmlReturn_t rc = kl_real.nvmlDeviceGetMemoryInfo_v2(h, mem);
    int dev;
    if (rc == NVML_SUCCESS && mem && (dev = nvml_dev(h)) >= 0) {
        struct kl_meminfo m;
        kl_snapshot(dev, mem->total, mem->free, &m);
        mem->total = m.total;
        mem->reserved = 0;
        mem->used = m.used;
        mem->free = m.free;
    }
    return rc;
}

#define FILTER(infos, count, dev)                                                  \
    do {                                                                           \
        unsigned int keep = 0, matched = 0;                                        \
        for (unsigned int i = 0; i < *(count); i++) {                              \
            int found;                                                             \
            kl_slot_used_by_pid(dev, (infos)[i].pid, &found);                      \
            matched += (unsigned)found;                                            \
        }                                                                          \
        if (!matched) break;                                                       \
        for (unsigned int i = 0; i < *(count); i++) {                              \
            int found;                                                             \
            uint64_t used = kl_slot_used_by_pid(dev, (infos)[i].pid, &found);      \
            if (!found) continue;                                                  \
            (infos)[keep] = (infos)[i];                                            \
            (infos)[keep].usedGpuMemory = used;                                    \
            keep++;                                                                \
        }                                                                          \
        *(count) = keep;                                                           \
    } while (0)

KL_EXPORT nvmlReturn_t nvmlDeviceGetComputeRunningProcesses(nvmlDevice_t h, unsigned int *count,
                                                            nvmlProcessInfo_v1_t *infos) {
    kl_load_nvml();
    if (!kl_real.nvmlDeviceGetComputeRunningProcesses) return NVML_ERROR_UNINITIALIZED;
    nvmlReturn_t rc = kl_real.nvmlDeviceGetComputeRunningProcesses(h, count, infos);
    int dev;
    if (rc == NVML_SUCCESS && infos && count && (dev = nvml_dev(h)) >= 0) FILTER(infos, count, dev);
    return rc;
}

KL_EXPORT nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v2(nvmlDevice_t h, unsigned int *count,
                                                               nvmlProcessInfo_t *infos) {
    kl_load_nvml();
    if (!kl_real.nvmlDeviceGetComputeRunningProcesses_v2) return NVML_ERROR_UNINITIALIZED;
    nvmlReturn_t rc = kl_real.nvmlDeviceGetComputeRunningProcesses_v2(h, count, infos);
    int dev;
    if (rc == NVML_SUCCESS && infos && count && (dev = nvml_dev(h)) >= 0) FILTER(infos, count, dev);
    return rc;
}

KL_EXPORT nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v3(nvmlDevice_t h, unsigned int *count,
                                                               nvmlProcessInfo_t *infos) {
    kl_load_nvml();
    if (!kl_real.nvmlDeviceGetComputeRunningProcesses_v3) return NVML_ERROR_UNINITIALIZED;
    nvmlReturn_t rc = kl_real.nvmlDeviceGetComputeRunningProcesses_v3(h, count, infos);
    int dev;
    if (rc == NVML_SUCCESS && infos && count && (dev = nvml_dev(h)) >= 0) FILTER(infos, count, dev);
    return rc;
}
