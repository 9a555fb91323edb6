/* Memory and device reporting, virtualised from one snapshot of the region (kl_snapshot):
 * total = min(limit, physical), used = the device's charge, free = min(total - used, physical
 * free). Unlimited devices report the driver's values untouched. */
#include "kl.h"

KL_EXPORT CUresult cuMemGetInfo_v2(size_t *free, size_t *total) {
    kl_start();
    size_t f = 0, t = 0;
    CUresult rc = kl_real.cuMemGetInfo_v2(&f, &t);
    CUdevice dev;
    if (rc == CUDA_SUCCESS && kl_g.mem_active && kl_current_device(&dev) == 0 && kl_dev_limited(dev)) {
        struct kl_meminfo m;
        kl_sync_pools(dev);
        kl_snapshot(dev, t, f, &m);
        f = m.free;
        t = m.total;
    }
    if (free) *free = f;
    if (total) *total = t;
    return rc;
}

KL_EXPORT CUresult cuDeviceTotalMem_v2(size_t *bytes, CUdevice dev) {
    kl_start();
    CUresult rc = kl_real.cuDeviceTotalMem_v2(bytes, dev);
    if (rc == CUDA_SUCCESS && bytes && kl_g.mem_active && kl_dev_limited(dev)) {
        struct kl_meminfo m;
        kl_snapshot(dev, *bytes, *bytes, &m);
        *bytes = m.total;
    }
    return rc;
}
