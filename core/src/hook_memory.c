/* Memory hooks: reserve, then allocate, then commit or refund (section 10.2).
 *
 * Charged per device (the CUDA ordinal the container sees):
 *  - cuMemAlloc_v2, cuMemAllocPitch_v2 (real pitch × height), cuMemAllocManaged (policy: the full
 *    size is charged to the current device, as if it were resident);
 *  - cuMemCreate: the handle's size rounded up to the minimum granularity, on prop->location.id
 *    (never the current context); refunded when the last reference is released.
 *    cuMemImportFromShareableHandle is not charged (the exporter owns the memory);
 *  - async allocations and pools: by pool *reserved* bytes (CU_MEMPOOL_ATTR_RESERVED_MEM_CURRENT).
 *    Before an allocation the part that the pool's free reserved bytes cannot cover is reserved;
 *    if that fails the pool is trimmed and the charge re-read before OUT_OF_MEMORY is returned;
 *  - arrays: estimated before creation, corrected from cuArrayGetMemoryRequirements after;
 *  - graph memory: cuGraphAddMemAllocNode is refused when its size cannot fit; the device's graph
 *    reserved memory (CU_GRAPH_MEM_ATTR_RESERVED_MEM_CURRENT) is charged whenever it is re-read.
 * With no limit on the device every hook is a pass-through. */
#include <pthread.h>
#include <string.h>

#include "kl.h"

#define PASS(call) return kl_real.call

static void trim_device(int dev);

/* Reserve n bytes on dev; under pressure trim this device's pools (unused reserved bytes only) and try once more before reporting CUDA_ERROR_OUT_OF_MEMORY. */
static CUresult charge(int dev, uint64_t n) {
    if (kl_charge(dev, n) == CUDA_SUCCESS) return CUDA_SUCCESS;
    trim_device(dev);
    return kl_charge(dev, n);
}

static int limited_current(CUdevice *dev) {
    return kl_g.mem_active && kl_current_device(dev) == 0 && kl_dev_limited(*dev);
}

KL_EXPORT CUresult cuMemAlloc_v2(CUdeviceptr *dptr, size_t size) {
    kl_start();
    CUdevice dev;
    if (!limited_current(&dev)) PASS(cuMemAlloc_v2(dptr, size));
    if (charge(dev, size) != CUDA_SUCCESS) return CUDA_ERROR_OUT_OF_MEMORY;
    CUresult rc = kl_real.cuMemAlloc_v2(dptr, size);
    if (rc != CUDA_SUCCESS) kl_refund(dev, size);
    else kl_track_put(KL_TRACK_PTR, *dptr, dev, size);
    return rc;
}

KL_EXPORT CUresult cuMemFree_v2(CUdeviceptr dptr) {
    kl_start();
    if (!kl_g.mem_active) PASS(cuMemFree_v2(dptr));
    CUresult rc = kl_real.cuMemFree_v2(dptr);
    struct kl_track_val v;
    if (rc == CUDA_SUCCESS && kl_track_take(KL_TRACK_PTR, dptr, &v)) kl_refund(v.dev, v.bytes);
    return rc;
}

KL_EXPORT CUresult cuMemAllocPitch_v2(CUdeviceptr *dptr, size_t *pitch, size_t w, size_t h,
                                      unsigned int elem) {
    kl_start();
    CUdevice dev;
    if (!limited_current(&dev)) PASS(cuMemAllocPitch_v2(dptr, pitch, w, h, elem));
    size_t est;
    if (__builtin_mul_overflow(w, h, &est)) return CUDA_ERROR_OUT_OF_MEMORY;
    if (charge(dev, est) != CUDA_SUCCESS) return CUDA_ERROR_OUT_OF_MEMORY;
    CUresult rc = kl_real.cuMemAllocPitch_v2(dptr, pitch, w, h, elem);
    if (rc != CUDA_SUCCESS) {
        kl_refund(dev, est);
        return rc;
    }
    uint64_t actual = (uint64_t)*pitch * h;
    kl_force(dev, (int64_t)actual - (int64_t)est);
    kl_track_put(KL_TRACK_PTR, *dptr, dev, actual);
    return rc;
}

KL_EXPORT CUresult cuMemAllocManaged(CUdeviceptr *dptr, size_t size, unsigned int flags) {
    kl_start();
    CUdevice dev;
    if (!limited_current(&dev)) PASS(cuMemAllocManaged(dptr, size, flags));
    if (charge(dev, size) != CUDA_SUCCESS) return CUDA_ERROR_OUT_OF_MEMORY;
    CUresult rc = kl_real.cuMemAllocManaged(dptr, size, flags);
    if (rc != CUDA_SUCCESS) kl_refund(dev, size);
    else kl_track_put(KL_TRACK_PTR, *dptr, dev, size);
    return rc;
}

/* ---- pools ---- */

#define MAX_POOLS 256
struct pool_rec {
    CUmemoryPool pool;
    int dev;
    uint64_t charged;
};
static pthread_mutex_t pool_mu = PTHREAD_MUTEX_INITIALIZER;
static struct pool_rec pools[MAX_POOLS];
static int npools;
static uint64_t graph_charged[KL_MAX_DEVICES];

static struct pool_rec *pool_find_nolock(CUmemoryPool p) {
    for (int i = 0; i < npools; i++)
        if (pools[i].pool == p) return &pools[i];
    return NULL;
}

static struct pool_rec *pool_add_nolock(CUmemoryPool p, int dev) {
    struct pool_rec *r = pool_find_nolock(p);
    if (r || npools == MAX_POOLS) return r;
    r = &pools[npools++];
    r->pool = p;
    r->dev = dev;
    r->charged = 0;
    return r;
}

static uint64_t pool_attr(CUmemoryPool p, CUmemPool_attribute a) {
    cuuint64_t v = 0;
    if (!kl_real.cuMemPoolGetAttribute || kl_real.cuMemPoolGetAttribute(p, a, &v) != CUDA_SUCCESS)
        return 0;
    return v;
}

/* charge := the pool's reserved bytes (caller holds pool_mu) */
static void pool_sync_nolock(struct pool_rec *r) {
    uint64_t res = pool_attr(r->pool, CU_MEMPOOL_ATTR_RESERVED_MEM_CURRENT);
    kl_force(r->dev, (int64_t)res - (int64_t)r->charged);
    r->charged = res;
}

static void graph_sync_nolock(int dev) {
    cuuint64_t v = 0;
    if (!kl_real.cuDeviceGetGraphMemAttribute ||
        kl_real.cuDeviceGetGraphMemAttribute(dev, CU_GRAPH_MEM_ATTR_RESERVED_MEM_CURRENT, &v) != CUDA_SUCCESS)
        return;
    kl_force(dev, (int64_t)v - (int64_t)graph_charged[dev]);
    graph_charged[dev] = v;
}

void kl_sync_pools(int dev) {
    if (!kl_g.mem_active || !kl_dev_limited(dev)) return;
    pthread_mutex_lock(&pool_mu);
    for (int i = 0; i < npools; i++)
        if (pools[i].dev == dev) pool_sync_nolock(&pools[i]);
    graph_sync_nolock(dev);
    pthread_mutex_unlock(&pool_mu);
}

static void trim_device(int dev) {
    pthread_mutex_lock(&pool_mu);
    for (int i = 0; i < npools; i++) {
        if (pools[i].dev != dev) continue;
        kl_real.cuMemPoolTrimTo(pools[i].pool, 0);
        pool_sync_nolock(&pools[i]);
    }
    graph_sync_nolock(dev); /* graph memory is re-read, not trimmed: graphs may still use it */
    pthread_mutex_unlock(&pool_mu);
}

typedef CUresult (*async_fn)(CUdeviceptr *, size_t, CUmemoryPool, CUstream, void *);

static CUresult alloc_in_pool(CUdeviceptr *dptr, size_t size, CUmemoryPool pool, int dev,
                              CUresult (*call)(void *ctx), void *ctx) {
    pthread_mutex_lock(&pool_mu);
    struct pool_rec *r = pool_add_nolock(pool, dev);
    if (!r) {
        pthread_mutex_unlock(&pool_mu);
        return call(ctx);
    }
    pool_sync_nolock(r);
    uint64_t res = r->charged, used = pool_attr(pool, CU_MEMPOOL_ATTR_USED_MEM_CURRENT);
    uint64_t inside = res > used ? res - used : 0;
    uint64_t need = size > inside ? size - inside : 0;
    if (kl_charge(dev, need) != CUDA_SUCCESS) {
        /* trim this device's pools (unused reserved memory only), re-read, try once more */
        for (int i = 0; i < npools; i++) {
            if (pools[i].dev != dev) continue;
            kl_real.cuMemPoolTrimTo(pools[i].pool, 0);
            pool_sync_nolock(&pools[i]);
        }
        res = r->charged;
        used = pool_attr(pool, CU_MEMPOOL_ATTR_USED_MEM_CURRENT);
        inside = res > used ? res - used : 0;
        need = size > inside ? size - inside : 0;
        if (kl_charge(dev, need) != CUDA_SUCCESS) {
            pthread_mutex_unlock(&pool_mu);
            return CUDA_ERROR_OUT_OF_MEMORY;
        }
    }
    CUresult rc = call(ctx);
    if (rc == CUDA_SUCCESS) pool_sync_nolock(r); /* charge the pool's growth before the refund */
    kl_refund(dev, need);
    pthread_mutex_unlock(&pool_mu);
    (void)dptr;
    return rc;
}

struct async_args {
    int kind; /* 0 alloc async, 1 ptsz, 2 from pool, 3 from pool ptsz */
    CUdeviceptr *dptr;
    size_t size;
    CUmemoryPool pool;
    CUstream s;
};

static CUresult async_call(void *p) {
    struct async_args *a = p;
    switch (a->kind) {
    case 0: return kl_real.cuMemAllocAsync(a->dptr, a->size, a->s);
    case 1: return kl_real.cuMemAllocAsync_ptsz(a->dptr, a->size, a->s);
    case 2: return kl_real.cuMemAllocFromPoolAsync(a->dptr, a->size, a->pool, a->s);
    default: return kl_real.cuMemAllocFromPoolAsync_ptsz(a->dptr, a->size, a->pool, a->s);
    }
}

static CUresult alloc_async(struct async_args *a) {
    kl_start();
    CUdevice dev;
    if (!kl_g.mem_active) return async_call(a);
    if (a->pool) {
        pthread_mutex_lock(&pool_mu);
        struct pool_rec *r = pool_find_nolock(a->pool);
        dev = r ? r->dev : -1;
        pthread_mutex_unlock(&pool_mu);
        if (dev < 0 && kl_current_device(&dev) != 0) return async_call(a);
        if (!kl_dev_limited(dev)) return async_call(a);
        return alloc_in_pool(a->dptr, a->size, a->pool, dev, async_call, a);
    }
    if (!limited_current(&dev)) return async_call(a);
    CUmemoryPool pool = NULL;
    if (!kl_real.cuDeviceGetMemPool || kl_real.cuDeviceGetMemPool(&pool, dev) != CUDA_SUCCESS || !pool) {
        /* no pool to account by: charge the request itself */
        if (charge(dev, a->size) != CUDA_SUCCESS) return CUDA_ERROR_OUT_OF_MEMORY;
        CUresult rc = async_call(a);
        if (rc != CUDA_SUCCESS) kl_refund(dev, a->size);
        else kl_track_put(KL_TRACK_PTR, *a->dptr, dev, a->size);
        return rc;
    }
    return alloc_in_pool(a->dptr, a->size, pool, dev, async_call, a);
}

KL_EXPORT CUresult cuMemAllocAsync(CUdeviceptr *dptr, size_t size, CUstream s) {
    struct async_args a = {0, dptr, size, NULL, s};
    return alloc_async(&a);
}
KL_EXPORT CUresult cuMemAllocAsync_ptsz(CUdeviceptr *dptr, size_t size, CUstream s) {
    struct async_args a = {1, dptr, size, NULL, s};
    return alloc_async(&a);
}
KL_EXPORT CUresult cuMemAllocFromPoolAsync(CUdeviceptr *dptr, size_t size, CUmemoryPool pool,
                                           CUstream s) {
    struct async_args a = {2, dptr, size, pool, s};
    return alloc_async(&a);
}
KL_EXPORT CUresult cuMemAllocFromPoolAsync_ptsz(CUdeviceptr *dptr, size_t size, CUmemoryPool pool,
                                                CUstream s) {
    struct async_args a = {3, dptr, size, pool, s};
    return alloc_async(&a);
}

/* Freed pool memory stays reserved (and charged) until the pool releases it; the charge follows at
 * the next re-read (allocation, trim, reporting). Allocations made without a pool are refunded. */
static CUresult free_async(CUdeviceptr dptr, CUresult rc) {
    struct kl_track_val v;
    if (rc == CUDA_SUCCESS && kl_g.mem_active && kl_track_take(KL_TRACK_PTR, dptr, &v))
        kl_refund(v.dev, v.bytes);
    return rc;
}
KL_EXPORT CUresult cuMemFreeAsync(CUdeviceptr dptr, CUstream s) {
    kl_start();
    return free_async(dptr, kl_real.cuMemFreeAsync(dptr, s));
}
KL_EXPORT CUresult cuMemFreeAsync_ptsz(CUdeviceptr dptr, CUstream s) {
    kl_start();
    return free_async(dptr, kl_real.cuMemFreeAsync_ptsz(dptr, s));
}

KL_EXPORT CUresult cuMemPoolCreate(CUmemoryPool *pool, const CUmemPoolProps *props) {
    kl_start();
    CUresult rc = kl_real.cuMemPoolCreate(pool, props);
    if (rc == CUDA_SUCCESS && kl_g.mem_active && props &&
        props->location.type == CU_MEM_LOCATION_TYPE_DEVICE && props->location.id >= 0 &&
        props->location.id < KL_MAX_DEVICES) {
        pthread_mutex_lock(&pool_mu);
        pool_add_nolock(*pool, props->location.id);
        pthread_mutex_unlock(&pool_mu);
    }
    return rc;
}

KL_EXPORT CUresult cuMemPoolDestroy(CUmemoryPool pool) {
    kl_start();
    CUresult rc = kl_real.cuMemPoolDestroy(pool);
    if (rc == CUDA_SUCCESS && kl_g.mem_active) {
        pthread_mutex_lock(&pool_mu);
        struct pool_rec *r = pool_find_nolock(pool);
        if (r) {
            kl_refund(r->dev, r->charged);
            *r = pools[--npools];
        }
        pthread_mutex_unlock(&pool_mu);
    }
    return rc;
}

static void resync(CUmemoryPool pool) {
    if (!kl_g.mem_active) return;
    pthread_mutex_lock(&pool_mu);
    struct pool_rec *r = pool_find_nolock(pool);
    if (r) pool_sync_nolock(r);
    pthread_mutex_unlock(&pool_mu);
}

KL_EXPORT CUresult cuMemPoolTrimTo(CUmemoryPool pool, size_t keep) {
    kl_start();
    CUresult rc = kl_real.cuMemPoolTrimTo(pool, keep);
    resync(pool);
    return rc;
}

KL_EXPORT CUresult cuMemPoolSetAttribute(CUmemoryPool pool, CUmemPool_attribute attr, void *value) {
    kl_start();
    CUresult rc = kl_real.cuMemPoolSetAttribute(pool, attr, value);
    resync(pool);
    return rc;
}

/* ---- VMM ---- */

KL_EXPORT CUresult cuMemCreate(CUmemGenericAllocationHandle *handle, size_t size,
                               const CUmemAllocationProp *prop, unsigned long long flags) {
    kl_start();
    if (!kl_g.mem_active || !prop || prop->location.type != CU_MEM_LOCATION_TYPE_DEVICE ||
        !kl_dev_limited(prop->location.id))
        PASS(cuMemCreate(handle, size, prop, flags));
    int dev = prop->location.id;
    size_t gran = 0;
    uint64_t bytes = size;
    if (kl_real.cuMemGetAllocationGranularity &&
        kl_real.cuMemGetAllocationGranularity(&gran, prop, CU_MEM_ALLOC_GRANULARITY_MINIMUM) ==
            CUDA_SUCCESS &&
        gran > 1)
        bytes = (size + gran - 1) / gran * gran;
    if (charge(dev, bytes) != CUDA_SUCCESS) return CUDA_ERROR_OUT_OF_MEMORY;
    CUresult rc = kl_real.cuMemCreate(handle, size, prop, flags);
    if (rc != CUDA_SUCCESS) kl_refund(dev, bytes);
    else kl_track_put(KL_TRACK_VMM, *handle, dev, bytes);
    return rc;
}

KL_EXPORT CUresult cuMemRelease(CUmemGenericAllocationHandle handle) {
    kl_start();
    CUresult rc = kl_real.cuMemRelease(handle);
    struct kl_track_val v;
    if (rc == CUDA_SUCCESS && kl_g.mem_active && kl_track_ref(KL_TRACK_VMM, handle, -1, &v) &&
        v.refs <= 0)
        kl_refund(v.dev, v.bytes);
    return rc;
}

KL_EXPORT CUresult cuMemRetainAllocationHandle(CUmemGenericAllocationHandle *handle, void *addr) {
    kl_start();
    CUresult rc = kl_real.cuMemRetainAllocationHandle(handle, addr);
    struct kl_track_val v;
    if (rc == CUDA_SUCCESS && kl_g.mem_active) kl_track_ref(KL_TRACK_VMM, *handle, +1, &v);
    return rc;
}

/* ---- arrays ---- */

static uint64_t format_bytes(int f) {
    switch (f) {
    case CU_AD_FORMAT_UNSIGNED_INT16: case CU_AD_FORMAT_SIGNED_INT16: case CU_AD_FORMAT_HALF: return 2;
    case CU_AD_FORMAT_UNSIGNED_INT32: case CU_AD_FORMAT_SIGNED_INT32: case CU_AD_FORMAT_FLOAT: return 4;
    default: return 1;
    }
}

static uint64_t array_estimate(size_t w, size_t h, size_t d, int fmt, unsigned ch) {
    uint64_t n = (uint64_t)w * (h ? h : 1);
    if (d) n *= d;
    return n * format_bytes(fmt) * (ch ? ch : 1);
}

static void array_commit(int dev, CUarray arr, uint64_t est) {
    CUDA_ARRAY_MEMORY_REQUIREMENTS req;
    memset(&req, 0, sizeof req);
    uint64_t actual = est;
    if (kl_real.cuArrayGetMemoryRequirements &&
        kl_real.cuArrayGetMemoryRequirements(&req, arr, dev) == CUDA_SUCCESS && req.size)
        actual = req.size;
    kl_force(dev, (int64_t)actual - (int64_t)est);
    kl_track_put(KL_TRACK_ARRAY, (uint64_t)(uintptr_t)arr, dev, actual);
}

KL_EXPORT CUresult cuArrayCreate_v2(CUarray *arr, const CUDA_ARRAY_DESCRIPTOR *desc) {
    kl_start();
    CUdevice dev;
    if (!desc || !limited_current(&dev)) PASS(cuArrayCreate_v2(arr, desc));
    uint64_t est = array_estimate(desc->Width, desc->Height, 0, desc->Format, desc->NumChannels);
    if (charge(dev, est) != CUDA_SUCCESS) return CUDA_ERROR_OUT_OF_MEMORY;
    CUresult rc = kl_real.cuArrayCreate_v2(arr, desc);
    if (rc != CUDA_SUCCESS) kl_refund(dev, est);
    else array_commit(dev, *arr, est);
    return rc;
}

KL_EXPORT CUresult cuArray3DCreate_v2(CUarray *arr, const CUDA_ARRAY3D_DESCRIPTOR *desc) {
    kl_start();
    CUdevice dev;
    if (!desc || !limited_current(&dev)) PASS(cuArray3DCreate_v2(arr, desc));
    uint64_t est = array_estimate(desc->Width, desc->Height, desc->Depth, desc->Format, desc->NumChannels);
    if (charge(dev, est) != CUDA_SUCCESS) return CUDA_ERROR_OUT_OF_MEMORY;
    CUresult rc = kl_real.cuArray3DCreate_v2(arr, desc);
    if (rc != CUDA_SUCCESS) kl_refund(dev, est);
    else array_commit(dev, *arr, est);
    return rc;
}

KL_EXPORT CUresult cuArrayDestroy(CUarray arr) {
    kl_start();
    CUresult rc = kl_real.cuArrayDestroy(arr);
    struct kl_track_val v;
    if (rc == CUDA_SUCCESS && kl_g.mem_active && kl_track_take(KL_TRACK_ARRAY, (uint64_t)(uintptr_t)arr, &v))
        kl_refund(v.dev, v.bytes);
    return rc;
}

KL_EXPORT CUresult cuMipmappedArrayCreate(CUmipmappedArray *m, const CUDA_ARRAY3D_DESCRIPTOR *desc,
                                          unsigned int levels) {
    kl_start();
    CUdevice dev;
    if (!desc || !limited_current(&dev)) PASS(cuMipmappedArrayCreate(m, desc, levels));
    uint64_t base = array_estimate(desc->Width, desc->Height, desc->Depth, desc->Format, desc->NumChannels);
    uint64_t est = levels > 1 ? base + base / 3 + 1 : base; /* geometric series of the levels */
    if (charge(dev, est) != CUDA_SUCCESS) return CUDA_ERROR_OUT_OF_MEMORY;
    CUresult rc = kl_real.cuMipmappedArrayCreate(m, desc, levels);
    if (rc != CUDA_SUCCESS) kl_refund(dev, est);
    else kl_track_put(KL_TRACK_MIPMAP, (uint64_t)(uintptr_t)*m, dev, est);
    return rc;
}

KL_EXPORT CUresult cuMipmappedArrayDestroy(CUmipmappedArray m) {
    kl_start();
    CUresult rc = kl_real.cuMipmappedArrayDestroy(m);
    struct kl_track_val v;
    if (rc == CUDA_SUCCESS && kl_g.mem_active && kl_track_take(KL_TRACK_MIPMAP, (uint64_t)(uintptr_t)m, &v))
        kl_refund(v.dev, v.bytes);
    return rc;
}

/* ---- graph memory ---- */

KL_EXPORT CUresult cuGraphAddMemAllocNode(CUgraphNode *node, CUgraph g, const CUgraphNode *deps,
                                          size_t n, CUDA_MEM_ALLOC_NODE_PARAMS *params) {
    kl_start();
    if (kl_g.mem_active && params && params->poolProps.location.type == CU_MEM_LOCATION_TYPE_DEVICE &&
        kl_dev_limited(params->poolProps.location.id)) {
        int dev = params->poolProps.location.id;
        kl_sync_pools(dev);
        if (charge(dev, params->bytesize) != CUDA_SUCCESS) return CUDA_ERROR_OUT_OF_MEMORY;
        kl_refund(dev, params->bytesize); /* a fit check: the graph's memory is charged when reserved */
    }
    return kl_real.cuGraphAddMemAllocNode(node, g, deps, n, params);
}

KL_EXPORT CUresult cuDeviceGraphMemTrim(CUdevice dev) {
    kl_start();
    CUresult rc = kl_real.cuDeviceGraphMemTrim(dev);
    kl_sync_pools(dev);
    return rc;
}
