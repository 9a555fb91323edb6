/* Fake libcuda.so.1 for tests: an in-memory device model (N devices, physical size, per-process
 * usage, context overhead, memory pools that keep freed memory reserved until trim or sync, VMM
 * handles, arrays, graph memory), unique fake device addresses, a call log readable through
 * test-only exports, and a real (base name, first version, flags) -> variant table behind
 * cuGetProcAddress(_v2), so version and per-thread-stream mistakes are observable.
 * Linked with -Bsymbolic so the pointers it hands out are its own even under LD_PRELOAD. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fake_gpu.h"

#define EXPORT __attribute__((visibility("default")))
#define MIB (1ull << 20)
#define LD(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define ADD(p, v) __atomic_add_fetch((p), (v), __ATOMIC_ACQ_REL)
#define SUB(p, v) __atomic_sub_fetch((p), (v), __ATOMIC_ACQ_REL)

/* ---------------- state ---------------- */

static struct fk_state *S;
static pthread_once_t state_once = PTHREAD_ONCE_INIT;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

static uint64_t env_u64(const char *n, uint64_t def) {
    const char *v = getenv(n);
    return (v && *v) ? strtoull(v, NULL, 10) : def;
}

static void state_init(void) {
    const char *path = getenv("FAKE_GPU_STATE");
    void *p = MAP_FAILED;
    int fd = -1;
    if (path && *path) {
        fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
        if (fd >= 0) {
            flock(fd, LOCK_EX);
            if (ftruncate(fd, sizeof(struct fk_state)) == 0)
                p = mmap(NULL, sizeof(struct fk_state), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        }
    }
    if (p == MAP_FAILED)
        p = mmap(NULL, sizeof(struct fk_state), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    S = p;
    if (S->magic != 0xfa4eu) {
        memset(S, 0, sizeof *S);
        S->ndev = (int)env_u64("FAKE_GPU_COUNT", 2);
        if (S->ndev < 1 || S->ndev > FK_DEVS) S->ndev = 2;
        S->ctx_overhead = env_u64("FAKE_CTX_OVERHEAD_MIB", 300) * MIB;
        for (int i = 0; i < FK_DEVS; i++) {
            S->dev[i].total = env_u64("FAKE_GPU_MEM_MIB", 81920) * MIB;
            S->dev[i].util = (uint32_t)env_u64("FAKE_GPU_UTIL", 0);
        }
        S->next_addr = 1;
        S->next_handle = 1;
        __atomic_store_n(&S->magic, 0xfa4eu, __ATOMIC_RELEASE);
    }
    if (fd >= 0) {
        flock(fd, LOCK_UN);
        close(fd);
    }
}

EXPORT struct fk_state *fake_gpu_state(void) {
    pthread_once(&state_once, state_init);
    return S;
}

/* CUDA_VISIBLE_DEVICES: CUDA ordinal -> physical device (indices or GPU- UUIDs), as the real
 * driver does; NVML (the fake libnvidia-ml) keeps physical indices. */
static int vis[FK_DEVS], nvis = -1;
static pthread_once_t vis_once = PTHREAD_ONCE_INIT;
EXPORT void fake_gpu_uuid(int dev, CUuuid *out);
static void uuid_text(int phys, char *s, size_t n) {
    CUuuid u;
    fake_gpu_uuid(phys, &u);
    const unsigned char *b = (const unsigned char *)u.bytes;
    snprintf(s, n, "GPU-%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
             b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
}
static void vis_init(void) {
    int n = fake_gpu_state()->ndev;
    const char *cvd = getenv("CUDA_VISIBLE_DEVICES");
    nvis = 0;
    if (!cvd) {
        for (int i = 0; i < n; i++) vis[nvis++] = i;
        return;
    }
    char buf[512];
    snprintf(buf, sizeof buf, "%s", cvd);
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t && nvis < FK_DEVS; t = strtok_r(NULL, ",", &save)) {
        int phys = -1;
        if (strncmp(t, "GPU-", 4) == 0) {
            for (int i = 0; i < n; i++) {
                char u[64];
                uuid_text(i, u, sizeof u);
                if (strcmp(u, t) == 0) phys = i;
            }
        } else {
            char *end;
            long v = strtol(t, &end, 10);
            if (*end == '\0' && v >= 0 && v < n) phys = (int)v;
        }
        if (phys < 0) break; /* like the driver: enumeration stops at an invalid entry */
        vis[nvis++] = phys;
    }
}
static int nvisible(void) {
    pthread_once(&vis_once, vis_init);
    return nvis;
}
static int phys_of(int ord) {
    nvisible();
    return vis[ord];
}
#define DEV(ord) (&fake_gpu_state()->dev[phys_of(ord)])

EXPORT void fake_gpu_uuid(int dev, CUuuid *out) {
    memset(out, 0, sizeof *out);
    out->bytes[0] = 0x4b;
    out->bytes[1] = 0x4c;
    out->bytes[15] = (char)dev;
}

EXPORT void fake_gpu_set_util(int dev, unsigned int pct) {
    __atomic_store_n(&fake_gpu_state()->dev[dev].util, pct, __ATOMIC_RELEASE);
}

static struct fk_proc *my_proc(void) {
    struct fk_state *s = fake_gpu_state();
    int pid = (int)getpid();
    for (int i = 0; i < FK_PROCS; i++)
        if (LD(&s->procs[i].pid) == pid) return &s->procs[i];
    for (int i = 0; i < FK_PROCS; i++) {
        int32_t z = 0;
        if (__atomic_compare_exchange_n(&s->procs[i].pid, &z, pid, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
            memset(s->procs[i].used, 0, sizeof s->procs[i].used);
            return &s->procs[i];
        }
        if (z && kill(z, 0) != 0 && errno == ESRCH &&
            __atomic_compare_exchange_n(&s->procs[i].pid, &z, pid, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
            memset(s->procs[i].used, 0, sizeof s->procs[i].used);
            return &s->procs[i];
        }
    }
    return NULL;
}

/* physical charge on the fake device */
static int phys_take(int dev, uint64_t n) {
    struct fk_dev *d = DEV(dev);
    uint64_t cur = LD(&d->used);
    do {
        if (n > d->total || cur > d->total - n) return -1;
    } while (!__atomic_compare_exchange_n(&d->used, &cur, cur + n, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE));
    struct fk_proc *p = my_proc();
    if (p) ADD(&p->used[phys_of(dev)], n);
    return 0;
}

static void phys_give(int dev, uint64_t n) {
    SUB(&DEV(dev)->used, n);
    struct fk_proc *p = my_proc();
    if (p) SUB(&p->used[phys_of(dev)], n);
}

static uint64_t new_addr(int dev, uint64_t size) {
    uint64_t blocks = (size + 0xffff) >> 16;
    uint64_t a = __atomic_fetch_add(&fake_gpu_state()->next_addr, blocks + 1, __ATOMIC_ACQ_REL);
    return ((uint64_t)(dev + 1) << 44) | (a << 16);
}

/* ---------------- call log and fault injection ---------------- */

#define LOG_CAP 65536
static const char *log_buf[LOG_CAP];
static int log_n;
static int logging = 1;
static const char *fail_name;
static CUresult fail_rc;

EXPORT int fake_cuda_log_count(void) { return LD(&log_n) < LOG_CAP ? LD(&log_n) : LOG_CAP; }
EXPORT const char *fake_cuda_log_get(int i) { return (i >= 0 && i < fake_cuda_log_count()) ? log_buf[i] : NULL; }
EXPORT void fake_cuda_log_clear(void) { __atomic_store_n(&log_n, 0, __ATOMIC_RELEASE); }
EXPORT void fake_cuda_set_logging(int on) { logging = on; }
EXPORT int fake_cuda_log_calls(const char *name) {
    int c = 0, n = fake_cuda_log_count();
    for (int i = 0; i < n; i++)
        if (log_buf[i] && strcmp(log_buf[i], name) == 0) c++;
    return c;
}
EXPORT void fake_cuda_fail_next(const char *name, CUresult rc) {
    fail_name = name;
    fail_rc = rc;
}

#define CALL(name)                                                        \
    do {                                                                  \
        if (logging) {                                                    \
            int i_ = __atomic_fetch_add(&log_n, 1, __ATOMIC_ACQ_REL);     \
            if (i_ < LOG_CAP) log_buf[i_] = name;                         \
        }                                                                 \
        if (KL_FAIL_CHECK(name)) return fail_take();                      \
    } while (0)
#define KL_FAIL_CHECK(name) (fail_name && strcmp(fail_name, name) == 0)
static CUresult fail_take(void) {
    fail_name = NULL;
    return fail_rc;
}

/* ---------------- allocations ---------------- */

enum { A_PTR = 1, A_POOL = 2, A_MANAGED = 3 };
struct alloc {
    uint64_t addr;
    uint64_t size;
    int dev;
    int kind;
    void *pool;
};
#define MAX_ALLOCS 16384
static struct alloc allocs[MAX_ALLOCS];

static void alloc_put(uint64_t addr, uint64_t size, int dev, int kind, void *pool) {
    pthread_mutex_lock(&mu);
    for (int i = 0; i < MAX_ALLOCS; i++)
        if (!allocs[i].addr) {
            allocs[i] = (struct alloc){addr, size, dev, kind, pool};
            break;
        }
    pthread_mutex_unlock(&mu);
}

static int alloc_take(uint64_t addr, struct alloc *out) {
    int found = 0;
    pthread_mutex_lock(&mu);
    for (int i = 0; i < MAX_ALLOCS; i++)
        if (allocs[i].addr == addr) {
            *out = allocs[i];
            allocs[i].addr = 0;
            found = 1;
            break;
        }
    pthread_mutex_unlock(&mu);
    return found;
}

/* ---------------- devices and contexts ---------------- */

struct CUctx_st {
    int dev;
    int primary;
};
static struct CUctx_st primary_ctx[FK_DEVS];
static int primary_refs[FK_DEVS];
static __thread CUcontext current;
static int initialized;

static int valid_dev(CUdevice d) { return d >= 0 && d < nvisible(); }

EXPORT CUresult cuInit(unsigned int flags) {
    CALL("cuInit");
    (void)flags;
    fake_gpu_state();
    initialized = 1;
    return CUDA_SUCCESS;
}
EXPORT CUresult cuDriverGetVersion(int *v) {
    CALL("cuDriverGetVersion");
    *v = 12080;
    return CUDA_SUCCESS;
}
EXPORT CUresult cuGetErrorName(CUresult e, const char **s) {
    CALL("cuGetErrorName");
    *s = e == CUDA_SUCCESS ? "CUDA_SUCCESS" : e == CUDA_ERROR_OUT_OF_MEMORY ? "CUDA_ERROR_OUT_OF_MEMORY" : "CUDA_ERROR_UNKNOWN";
    return CUDA_SUCCESS;
}
EXPORT CUresult cuGetErrorString(CUresult e, const char **s) {
    CALL("cuGetErrorString");
    *s = e == CUDA_ERROR_OUT_OF_MEMORY ? "out of memory" : "fake error";
    return CUDA_SUCCESS;
}
EXPORT CUresult cuGetExportTable(const void **t, const CUuuid *id) {
    CALL("cuGetExportTable");
    (void)id;
    *t = NULL;
    return CUDA_ERROR_NOT_SUPPORTED;
}
EXPORT CUresult cuDeviceGetCount(int *n) {
    CALL("cuDeviceGetCount");
    *n = nvisible();
    return CUDA_SUCCESS;
}
EXPORT CUresult cuDeviceGet(CUdevice *d, int ordinal) {
    CALL("cuDeviceGet");
    if (!valid_dev(ordinal)) return CUDA_ERROR_INVALID_DEVICE;
    *d = ordinal;
    return CUDA_SUCCESS;
}
EXPORT CUresult cuDeviceGetName(char *name, int len, CUdevice d) {
    CALL("cuDeviceGetName");
    snprintf(name, (size_t)len, "Fake GPU %d", phys_of(d));
    return CUDA_SUCCESS;
}
EXPORT CUresult cuDeviceGetUuid(CUuuid *u, CUdevice d) {
    CALL("cuDeviceGetUuid");
    if (!valid_dev(d)) return CUDA_ERROR_INVALID_DEVICE;
    fake_gpu_uuid(phys_of(d), u);
    return CUDA_SUCCESS;
}
EXPORT CUresult cuDeviceGetUuid_v2(CUuuid *u, CUdevice d) {
    CALL("cuDeviceGetUuid_v2");
    if (!valid_dev(d)) return CUDA_ERROR_INVALID_DEVICE;
    fake_gpu_uuid(phys_of(d), u);
    return CUDA_SUCCESS;
}
EXPORT CUresult cuDeviceGetPCIBusId(char *s, int len, CUdevice d) {
    CALL("cuDeviceGetPCIBusId");
    snprintf(s, (size_t)len, "0000:%02x:00.0", phys_of(d) + 1);
    return CUDA_SUCCESS;
}
EXPORT CUresult cuDeviceGetAttribute(int *v, int attr, CUdevice d) {
    CALL("cuDeviceGetAttribute");
    if (!valid_dev(d)) return CUDA_ERROR_INVALID_DEVICE;
    *v = attr == CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT ? 132
       : attr == CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_MULTIPROCESSOR ? 2048 : 0;
    return CUDA_SUCCESS;
}
EXPORT CUresult cuDeviceTotalMem_v2(size_t *b, CUdevice d) {
    CALL("cuDeviceTotalMem_v2");
    if (!valid_dev(d)) return CUDA_ERROR_INVALID_DEVICE;
    *b = DEV(d)->total;
    return CUDA_SUCCESS;
}

static CUresult retain_primary(CUcontext *c, CUdevice d) {
    if (!valid_dev(d)) return CUDA_ERROR_INVALID_DEVICE;
    pthread_mutex_lock(&mu);
    if (primary_refs[d] == 0 && phys_take(d, fake_gpu_state()->ctx_overhead) != 0) {
        pthread_mutex_unlock(&mu);
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    primary_refs[d]++;
    primary_ctx[d].dev = d;
    primary_ctx[d].primary = 1;
    pthread_mutex_unlock(&mu);
    *c = &primary_ctx[d];
    return CUDA_SUCCESS;
}
static CUresult release_primary(CUdevice d, int all) {
    if (!valid_dev(d)) return CUDA_ERROR_INVALID_DEVICE;
    pthread_mutex_lock(&mu);
    if (primary_refs[d] > 0) {
        primary_refs[d] = all ? 0 : primary_refs[d] - 1;
        if (primary_refs[d] == 0) phys_give(d, fake_gpu_state()->ctx_overhead);
    }
    pthread_mutex_unlock(&mu);
    return CUDA_SUCCESS;
}
EXPORT CUresult cuDevicePrimaryCtxRetain(CUcontext *c, CUdevice d) {
    CALL("cuDevicePrimaryCtxRetain");
    return retain_primary(c, d);
}
EXPORT CUresult cuDevicePrimaryCtxRelease(CUdevice d) {
    CALL("cuDevicePrimaryCtxRelease");
    return release_primary(d, 0);
}
EXPORT CUresult cuDevicePrimaryCtxRelease_v2(CUdevice d) {
    CALL("cuDevicePrimaryCtxRelease_v2");
    return release_primary(d, 0);
}
EXPORT CUresult cuDevicePrimaryCtxReset_v2(CUdevice d) {
    CALL("cuDevicePrimaryCtxReset_v2");
    return release_primary(d, 1);
}
EXPORT CUresult cuDevicePrimaryCtxGetState(CUdevice d, unsigned int *flags, int *active) {
    CALL("cuDevicePrimaryCtxGetState");
    *flags = 0;
    *active = valid_dev(d) && primary_refs[d] > 0;
    return CUDA_SUCCESS;
}
EXPORT CUresult cuDevicePrimaryCtxSetFlags_v2(CUdevice d, unsigned int flags) {
    CALL("cuDevicePrimaryCtxSetFlags_v2");
    (void)d;
    (void)flags;
    return CUDA_SUCCESS;
}

static CUresult create_ctx(CUcontext *c, CUdevice d) {
    if (!valid_dev(d)) return CUDA_ERROR_INVALID_DEVICE;
    if (phys_take(d, fake_gpu_state()->ctx_overhead) != 0) return CUDA_ERROR_OUT_OF_MEMORY;
    struct CUctx_st *x = calloc(1, sizeof *x);
    x->dev = d;
    *c = x;
    current = x;
    return CUDA_SUCCESS;
}
EXPORT CUresult cuCtxCreate_v2(CUcontext *c, unsigned int f, CUdevice d) {
    CALL("cuCtxCreate_v2");
    (void)f;
    return create_ctx(c, d);
}
EXPORT CUresult cuCtxCreate_v3(CUcontext *c, void *p, int n, unsigned int f, CUdevice d) {
    CALL("cuCtxCreate_v3");
    (void)p, (void)n, (void)f;
    return create_ctx(c, d);
}
EXPORT CUresult cuCtxCreate_v4(CUcontext *c, void *p, unsigned int f, CUdevice d) {
    CALL("cuCtxCreate_v4");
    (void)p, (void)f;
    return create_ctx(c, d);
}
EXPORT CUresult cuCtxDestroy_v2(CUcontext c) {
    CALL("cuCtxDestroy_v2");
    if (!c || c->primary) return CUDA_ERROR_INVALID_CONTEXT;
    phys_give(c->dev, fake_gpu_state()->ctx_overhead);
    if (current == c) current = NULL;
    free(c);
    return CUDA_SUCCESS;
}
EXPORT CUresult cuCtxGetCurrent(CUcontext *c) {
    CALL("cuCtxGetCurrent");
    *c = current;
    return CUDA_SUCCESS;
}
EXPORT CUresult cuCtxSetCurrent(CUcontext c) {
    CALL("cuCtxSetCurrent");
    current = c;
    return CUDA_SUCCESS;
}
EXPORT CUresult cuCtxPushCurrent_v2(CUcontext c) {
    CALL("cuCtxPushCurrent_v2");
    current = c;
    return CUDA_SUCCESS;
}
EXPORT CUresult cuCtxPopCurrent_v2(CUcontext *c) {
    CALL("cuCtxPopCurrent_v2");
    if (c) *c = current;
    current = NULL;
    return CUDA_SUCCESS;
}
EXPORT CUresult cuCtxGetDevice(CUdevice *d) {
    CALL("cuCtxGetDevice");
    if (!current) return CUDA_ERROR_INVALID_CONTEXT;
    *d = current->dev;
    return CUDA_SUCCESS;
}
static void sync_pools(void);
EXPORT CUresult cuCtxSynchronize(void) {
    CALL("cuCtxSynchronize");
    sync_pools();
    return CUDA_SUCCESS;
}

#define NEED_CTX() do { if (!current) return CUDA_ERROR_INVALID_CONTEXT; } while (0)

/* ---------------- plain memory ---------------- */

static CUresult do_alloc(CUdeviceptr *p, uint64_t size, int kind) {
    NEED_CTX();
    if (!size) return CUDA_ERROR_INVALID_VALUE;
    int dev = current->dev;
    if (phys_take(dev, size) != 0) return CUDA_ERROR_OUT_OF_MEMORY;
    *p = new_addr(dev, size);
    alloc_put(*p, size, dev, kind, NULL);
    return CUDA_SUCCESS;
}
EXPORT CUresult cuMemAlloc_v2(CUdeviceptr *p, size_t size) {
    CALL("cuMemAlloc_v2");
    return do_alloc(p, size, A_PTR);
}
EXPORT CUresult cuMemAllocManaged(CUdeviceptr *p, size_t size, unsigned int flags) {
    CALL("cuMemAllocManaged");
    (void)flags;
    return do_alloc(p, size, A_MANAGED);
}
EXPORT CUresult cuMemAllocPitch_v2(CUdeviceptr *p, size_t *pitch, size_t w, size_t h, unsigned int e) {
    CALL("cuMemAllocPitch_v2");
    (void)e;
    *pitch = (w + 511) / 512 * 512;
    return do_alloc(p, (uint64_t)*pitch * h, A_PTR);
}
EXPORT CUresult cuMemFree_v2(CUdeviceptr p) {
    CALL("cuMemFree_v2");
    struct alloc a;
    if (!alloc_take(p, &a) || a.kind == A_POOL) return CUDA_ERROR_INVALID_VALUE;
    phys_give(a.dev, a.size);
    return CUDA_SUCCESS;
}
EXPORT CUresult cuMemGetInfo_v2(size_t *free, size_t *total) {
    CALL("cuMemGetInfo_v2");
    NEED_CTX();
    struct fk_dev *d = DEV(current->dev);
    uint64_t used = LD(&d->used);
    *total = d->total;
    *free = d->total > used ? d->total - used : 0;
    return CUDA_SUCCESS;
}
EXPORT CUresult cuMemAdvise(CUdeviceptr p, size_t n, int advice, CUdevice d) {
    CALL("cuMemAdvise");
    (void)p, (void)n, (void)advice, (void)d;
    return CUDA_SUCCESS;
}
EXPORT CUresult cuMemAdvise_v2(CUdeviceptr p, size_t n, int advice, CUmemLocation loc) {
    CALL("cuMemAdvise_v2");
    (void)p, (void)n, (void)advice, (void)loc;
    return CUDA_SUCCESS;
}
EXPORT CUresult cuMemPrefetchAsync(CUdeviceptr p, size_t n, CUdevice d, CUstream s) {
    CALL("cuMemPrefetchAsync");
    (void)p, (void)n, (void)d, (void)s;
    return CUDA_SUCCESS;
}
EXPORT CUresult cuMemPrefetchAsync_ptsz(CUdeviceptr p, size_t n, CUdevice d, CUstream s) {
    CALL("cuMemPrefetchAsync_ptsz");
    (void)p, (void)n, (void)d, (void)s;
    return CUDA_SUCCESS;
}
EXPORT CUresult cuMemcpyHtoD_v2(CUdeviceptr p, const void *h, size_t n) {
    CALL("cuMemcpyHtoD_v2");
    (void)p, (void)h, (void)n;
    return CUDA_SUCCESS;
}
EXPORT CUresult cuMemcpyHtoD_v2_ptds(CUdeviceptr p, const void *h, size_t n) {
    CALL("cuMemcpyHtoD_v2_ptds");
    (void)p, (void)h, (void)n;
    return CUDA_SUCCESS;
}

/* ---------------- streams and pools ---------------- */

struct CUstream_st { int dev; };
struct CUmemPoolHandle_st {
    int dev;
    int live;
    uint64_t reserved, used, threshold;
};
#define MAX_POOLS 64
static struct CUmemPoolHandle_st pool_tab[MAX_POOLS];
static CUmemoryPool current_pool[FK_DEVS];

static CUmemoryPool default_pool(int dev) {
    pthread_mutex_lock(&mu);
    struct CUmemPoolHandle_st *p = &pool_tab[dev];
    if (!p->live) {
        p->live = 1;
        p->dev = dev;
    }
    pthread_mutex_unlock(&mu);
    return p;
}

static void pool_release_to(CUmemoryPool p, uint64_t keep) {
    uint64_t target = p->used > keep ? p->used : keep;
    if (p->reserved > target) {
        phys_give(p->dev, p->reserved - target);
        p->reserved = target;
    }
}

static void sync_pools(void) {
    pthread_mutex_lock(&mu);
    for (int i = 0; i < MAX_POOLS; i++)
        if (pool_tab[i].live) pool_release_to(&pool_tab[i], pool_tab[i].threshold);
    pthread_mutex_unlock(&mu);
}

static CUresult pool_alloc(CUdeviceptr *ptr, size_t size, CUmemoryPool p) {
    if (!size) return CUDA_ERROR_INVALID_VALUE;
    pthread_mutex_lock(&mu);
    uint64_t inside = p->reserved - p->used;
    if (inside < size) {
        uint64_t grow = (size - inside + 2 * MIB - 1) / (2 * MIB) * (2 * MIB);
        if (phys_take(p->dev, grow) != 0) {
            pthread_mutex_unlock(&mu);
            return CUDA_ERROR_OUT_OF_MEMORY;
        }
        p->reserved += grow;
    }
    p->used += size;
    pthread_mutex_unlock(&mu);
    *ptr = new_addr(p->dev, size);
    alloc_put(*ptr, size, p->dev, A_POOL, p);
    return CUDA_SUCCESS;
}

static CUmemoryPool stream_pool(CUstream s) {
    int dev = s ? s->dev : (current ? current->dev : -1);
    if (dev < 0) return NULL;
    return current_pool[dev] ? current_pool[dev] : default_pool(dev);
}

EXPORT CUresult cuStreamCreate(CUstream *s, unsigned int flags) {
    CALL("cuStreamCreate");
    (void)flags;
    NEED_CTX();
    *s = calloc(1, sizeof **s);
    (*s)->dev = current->dev;
    return CUDA_SUCCESS;
}
EXPORT CUresult cuStreamDestroy_v2(CUstream s) {
    CALL("cuStreamDestroy_v2");
    free(s);
    return CUDA_SUCCESS;
}
EXPORT CUresult cuStreamSynchronize(CUstream s) {
    CALL("cuStreamSynchronize");
    (void)s;
    sync_pools();
    return CUDA_SUCCESS;
}
EXPORT CUresult cuStreamSynchronize_ptsz(CUstream s) {
    CALL("cuStreamSynchronize_ptsz");
    (void)s;
    sync_pools();
    return CUDA_SUCCESS;
}
EXPORT CUresult cuMemAllocAsync(CUdeviceptr *p, size_t n, CUstream s) {
    CALL("cuMemAllocAsync");
    CUmemoryPool pool = stream_pool(s);
    return pool ? pool_alloc(p, n, pool) : CUDA_ERROR_INVALID_CONTEXT;
}
EXPORT CUresult cuMemAllocAsync_ptsz(CUdeviceptr *p, size_t n, CUstream s) {
    CALL("cuMemAllocAsync_ptsz");
    CUmemoryPool pool = stream_pool(s);
    return pool ? pool_alloc(p, n, pool) : CUDA_ERROR_INVALID_CONTEXT;
}
EXPORT CUresult cuMemAllocFromPoolAsync(CUdeviceptr *p, size_t n, CUmemoryPool pool, CUstream s) {
    CALL("cuMemAllocFromPoolAsync");
    (void)s;
    return pool_alloc(p, n, pool);
}
EXPORT CUresult cuMemAllocFromPoolAsync_ptsz(CUdeviceptr *p, size_t n, CUmemoryPool pool, CUstream s) {
    CALL("cuMemAllocFromPoolAsync_ptsz");
    (void)s;
    return pool_alloc(p, n, pool);
}
static CUresult pool_free(CUdeviceptr ptr) {
    struct alloc a;
    if (!alloc_take(ptr, &a)) return CUDA_ERROR_INVALID_VALUE;
    if (a.kind != A_POOL) {
        phys_give(a.dev, a.size);
        return CUDA_SUCCESS;
    }
    pthread_mutex_lock(&mu);
    ((CUmemoryPool)a.pool)->used -= a.size; /* stays reserved until trim or sync */
    pthread_mutex_unlock(&mu);
    return CUDA_SUCCESS;
}
EXPORT CUresult cuMemFreeAsync(CUdeviceptr p, CUstream s) {
    CALL("cuMemFreeAsync");
    (void)s;
    return pool_free(p);
}
EXPORT CUresult cuMemFreeAsync_ptsz(CUdeviceptr p, CUstream s) {
    CALL("cuMemFreeAsync_ptsz");
    (void)s;
    return pool_free(p);
}
EXPORT CUresult cuMemPoolCreate(CUmemoryPool *out, const CUmemPoolProps *props) {
    CALL("cuMemPoolCreate");
    if (!props || props->location.type != CU_MEM_LOCATION_TYPE_DEVICE || !valid_dev(props->location.id))
        return CUDA_ERROR_INVALID_VALUE;
    pthread_mutex_lock(&mu);
    for (int i = FK_DEVS; i < MAX_POOLS; i++)
        if (!pool_tab[i].live) {
            memset(&pool_tab[i], 0, sizeof pool_tab[i]);
            pool_tab[i].live = 1;
            pool_tab[i].dev = props->location.id;
            *out = &pool_tab[i];
            pthread_mutex_unlock(&mu);
            return CUDA_SUCCESS;
        }
    pthread_mutex_unlock(&mu);
    return CUDA_ERROR_OUT_OF_MEMORY;
}
EXPORT CUresult cuMemPoolDestroy(CUmemoryPool p) {
    CALL("cuMemPoolDestroy");
    pthread_mutex_lock(&mu);
    if (p->reserved) phys_give(p->dev, p->reserved);
    p->live = 0;
    p->reserved = p->used = 0;
    pthread_mutex_unlock(&mu);
    return CUDA_SUCCESS;
}
EXPORT CUresult cuMemPoolTrimTo(CUmemoryPool p, size_t keep) {
    CALL("cuMemPoolTrimTo");
    pthread_mutex_lock(&mu);
    pool_release_to(p, keep);
    pthread_mutex_unlock(&mu);
    return CUDA_SUCCESS;
}
EXPORT CUresult cuMemPoolSetAttribute(CUmemoryPool p, CUmemPool_attribute a, void *v) {
    CALL("cuMemPoolSetAttribute");
    if (a == CU_MEMPOOL_ATTR_RELEASE_THRESHOLD) p->threshold = *(cuuint64_t *)v;
    return CUDA_SUCCESS;
}
EXPORT CUresult cuMemPoolGetAttribute(CUmemoryPool p, CUmemPool_attribute a, void *v) {
    CALL("cuMemPoolGetAttribute");
    pthread_mutex_lock(&mu);
    cuuint64_t r = a == CU_MEMPOOL_ATTR_RESERVED_MEM_CURRENT ? p->reserved
                 : a == CU_MEMPOOL_ATTR_USED_MEM_CURRENT ? p->used
                 : a == CU_MEMPOOL_ATTR_RELEASE_THRESHOLD ? p->threshold : 0;
    pthread_mutex_unlock(&mu);
    *(cuuint64_t *)v = r;
    return CUDA_SUCCESS;
}
EXPORT CUresult cuDeviceGetMemPool(CUmemoryPool *p, CUdevice d) {
    CALL("cuDeviceGetMemPool");
    if (!valid_dev(d)) return CUDA_ERROR_INVALID_DEVICE;
    *p = current_pool[d] ? current_pool[d] : default_pool(d);
    return CUDA_SUCCESS;
}
EXPORT CUresult cuDeviceSetMemPool(CUdevice d, CUmemoryPool p) {
    CALL("cuDeviceSetMemPool");
    if (!valid_dev(d)) return CUDA_ERROR_INVALID_DEVICE;
    current_pool[d] = p;
    return CUDA_SUCCESS;
}
EXPORT CUresult cuDeviceGetDefaultMemPool(CUmemoryPool *p, CUdevice d) {
    CALL("cuDeviceGetDefaultMemPool");
    if (!valid_dev(d)) return CUDA_ERROR_INVALID_DEVICE;
    *p = default_pool(d);
    return CUDA_SUCCESS;
}

/* ---------------- VMM ---------------- */

#define GRAN (2 * MIB)
struct handle_rec {
    uint64_t h, size, mapped_at;
    int dev, refs;
};
static struct handle_rec handles[4096];

EXPORT CUresult cuMemGetAllocationGranularity(size_t *g, const CUmemAllocationProp *p,
                                              CUmemAllocationGranularity_flags f) {
    CALL("cuMemGetAllocationGranularity");
    (void)p, (void)f;
    *g = GRAN;
    return CUDA_SUCCESS;
}
EXPORT CUresult cuMemCreate(CUmemGenericAllocationHandle *h, size_t size,
                            const CUmemAllocationProp *prop, unsigned long long flags) {
    CALL("cuMemCreate");
    (void)flags;
    if (!prop || !size || size % GRAN) return CUDA_ERROR_INVALID_VALUE;
    int dev = prop->location.type == CU_MEM_LOCATION_TYPE_DEVICE ? prop->location.id : -1;
    if (dev >= 0 && !valid_dev(dev)) return CUDA_ERROR_INVALID_DEVICE;
    if (dev >= 0 && phys_take(dev, size) != 0) return CUDA_ERROR_OUT_OF_MEMORY;
    pthread_mutex_lock(&mu);
    for (int i = 0; i < 4096; i++)
        if (!handles[i].h) {
            handles[i] = (struct handle_rec){__atomic_fetch_add(&fake_gpu_state()->next_handle, 1, __ATOMIC_ACQ_REL) + 0x1000,
                                             size, 0, dev, 1};
            *h = handles[i].h;
            break;
        }
    pthread_mutex_unlock(&mu);
    return CUDA_SUCCESS;
}
static struct handle_rec *find_handle(uint64_t h) {
    for (int i = 0; i < 4096; i++)
        if (handles[i].h == h) return &handles[i];
    return NULL;
}
EXPORT CUresult cuMemRelease(CUmemGenericAllocationHandle h) {
    CALL("cuMemRelease");
    pthread_mutex_lock(&mu);
    struct handle_rec *r = find_handle(h);
    if (!r) {
        pthread_mutex_unlock(&mu);
        return CUDA_ERROR_INVALID_VALUE;
    }
    if (--r->refs == 0) {
        if (r->dev >= 0) phys_give(r->dev, r->size);
        memset(r, 0, sizeof *r);
    }
    pthread_mutex_unlock(&mu);
    return CUDA_SUCCESS;
}
EXPORT CUresult cuMemRetainAllocationHandle(CUmemGenericAllocationHandle *h, void *addr) {
    CALL("cuMemRetainAllocationHandle");
    pthread_mutex_lock(&mu);
    for (int i = 0; i < 4096; i++)
        if (handles[i].h && handles[i].mapped_at == (uint64_t)(uintptr_t)addr) {
            handles[i].refs++;
            *h = handles[i].h;
            pthread_mutex_unlock(&mu);
            return CUDA_SUCCESS;
        }
    pthread_mutex_unlock(&mu);
    return CUDA_ERROR_INVALID_VALUE;
}
EXPORT CUresult cuMemAddressReserve(CUdeviceptr *p, size_t size, size_t align, CUdeviceptr addr,
                                    unsigned long long f) {
    CALL("cuMemAddressReserve");
    (void)align, (void)addr, (void)f;
    *p = new_addr(FK_DEVS, size);
    return CUDA_SUCCESS;
}
EXPORT CUresult cuMemAddressFree(CUdeviceptr p, size_t size) {
    CALL("cuMemAddressFree");
    (void)p, (void)size;
    return CUDA_SUCCESS;
}
EXPORT CUresult cuMemMap(CUdeviceptr p, size_t size, size_t off, CUmemGenericAllocationHandle h,
                         unsigned long long f) {
    CALL("cuMemMap");
    (void)size, (void)off, (void)f;
    pthread_mutex_lock(&mu);
    struct handle_rec *r = find_handle(h);
    if (r) r->mapped_at = p;
    pthread_mutex_unlock(&mu);
    return r ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}
EXPORT CUresult cuMemUnmap(CUdeviceptr p, size_t size) {
    CALL("cuMemUnmap");
    (void)size;
    pthread_mutex_lock(&mu);
    for (int i = 0; i < 4096; i++)
        if (handles[i].h && handles[i].mapped_at == p) handles[i].mapped_at = 0;
    pthread_mutex_unlock(&mu);
    return CUDA_SUCCESS;
}
EXPORT CUresult cuMemSetAccess(CUdeviceptr p, size_t size, const CUmemAccessDesc *d, size_t n) {
    CALL("cuMemSetAccess");
    (void)p, (void)size, (void)d, (void)n;
    return CUDA_SUCCESS;
}

/* ---------------- arrays ---------------- */

struct CUarray_st { int dev; uint64_t size; };
struct CUmipmappedArray_st { int dev; uint64_t size; };

static uint64_t fmt_bytes(int f) {
    return (f == CU_AD_FORMAT_UNSIGNED_INT16 || f == CU_AD_FORMAT_SIGNED_INT16 || f == CU_AD_FORMAT_HALF) ? 2
         : (f == CU_AD_FORMAT_UNSIGNED_INT32 || f == CU_AD_FORMAT_SIGNED_INT32 || f == CU_AD_FORMAT_FLOAT) ? 4 : 1;
}
static CUresult make_array(CUarray *a, size_t w, size_t h, size_t d, int f, unsigned ch) {
    NEED_CTX();
    uint64_t n = (uint64_t)w * (h ? h : 1) * (d ? d : 1) * fmt_bytes(f) * (ch ? ch : 1);
    n = (n + 0xffff) / 0x10000 * 0x10000; /* real arrays are padded */
    if (phys_take(current->dev, n) != 0) return CUDA_ERROR_OUT_OF_MEMORY;
    struct CUarray_st *x = malloc(sizeof *x);
    x->dev = current->dev;
    x->size = n;
    *a = x;
    return CUDA_SUCCESS;
}
EXPORT CUresult cuArrayCreate_v2(CUarray *a, const CUDA_ARRAY_DESCRIPTOR *d) {
    CALL("cuArrayCreate_v2");
    return make_array(a, d->Width, d->Height, 0, d->Format, d->NumChannels);
}
EXPORT CUresult cuArray3DCreate_v2(CUarray *a, const CUDA_ARRAY3D_DESCRIPTOR *d) {
    CALL("cuArray3DCreate_v2");
    return make_array(a, d->Width, d->Height, d->Depth, d->Format, d->NumChannels);
}
EXPORT CUresult cuArrayDestroy(CUarray a) {
    CALL("cuArrayDestroy");
    phys_give(a->dev, a->size);
    free(a);
    return CUDA_SUCCESS;
}
EXPORT CUresult cuArrayGetMemoryRequirements(CUDA_ARRAY_MEMORY_REQUIREMENTS *r, CUarray a, CUdevice d) {
    CALL("cuArrayGetMemoryRequirements");
    (void)d;
    memset(r, 0, sizeof *r);
    r->size = a->size;
    r->alignment = 0x10000;
    return CUDA_SUCCESS;
}
EXPORT CUresult cuMipmappedArrayCreate(CUmipmappedArray *m, const CUDA_ARRAY3D_DESCRIPTOR *d,
                                       unsigned int levels) {
    CALL("cuMipmappedArrayCreate");
    NEED_CTX();
    uint64_t n = (uint64_t)d->Width * (d->Height ? d->Height : 1) * (d->Depth ? d->Depth : 1) *
                 fmt_bytes(d->Format) * (d->NumChannels ? d->NumChannels : 1);
    if (levels > 1) n += n / 3;
    if (phys_take(current->dev, n) != 0) return CUDA_ERROR_OUT_OF_MEMORY;
    struct CUmipmappedArray_st *x = malloc(sizeof *x);
    x->dev = current->dev;
    x->size = n;
    *m = x;
    return CUDA_SUCCESS;
}
EXPORT CUresult cuMipmappedArrayDestroy(CUmipmappedArray m) {
    CALL("cuMipmappedArrayDestroy");
    phys_give(m->dev, m->size);
    free(m);
    return CUDA_SUCCESS;
}

/* ---------------- modules, launches, graphs ---------------- */

struct CUfunc_st { int x; };
static struct CUfunc_st the_function;

EXPORT CUresult cuModuleLoadData(void **m, const void *image) {
    CALL("cuModuleLoadData");
    (void)image;
    *m = &the_function;
    return CUDA_SUCCESS;
}
EXPORT CUresult cuLibraryLoadData(void **l, const void *code, void *a, void *b, unsigned n, void *c,
                                  void *d, unsigned m) {
    CALL("cuLibraryLoadData");
    (void)code, (void)a, (void)b, (void)n, (void)c, (void)d, (void)m;
    *l = &the_function;
    return CUDA_SUCCESS;
}
EXPORT CUresult cuModuleGetFunction(CUfunction *f, void *m, const char *name) {
    CALL("cuModuleGetFunction");
    (void)m, (void)name;
    *f = &the_function;
    return CUDA_SUCCESS;
}
#define LAUNCH_ARGS CUfunction f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, \
                    unsigned bz, unsigned shm, CUstream s
#define UNUSED_LAUNCH (void)f, (void)gx, (void)gy, (void)gz, (void)bx, (void)by, (void)bz, (void)shm, (void)s
EXPORT CUresult cuLaunchKernel(LAUNCH_ARGS, void **p, void **e) {
    CALL("cuLaunchKernel");
    UNUSED_LAUNCH, (void)p, (void)e;
    return CUDA_SUCCESS;
}
EXPORT CUresult cuLaunchKernel_ptsz(LAUNCH_ARGS, void **p, void **e) {
    CALL("cuLaunchKernel_ptsz");
    UNUSED_LAUNCH, (void)p, (void)e;
    return CUDA_SUCCESS;
}
EXPORT CUresult cuLaunchCooperativeKernel(LAUNCH_ARGS, void **p) {
    CALL("cuLaunchCooperativeKernel");
    UNUSED_LAUNCH, (void)p;
    return CUDA_SUCCESS;
}
EXPORT CUresult cuLaunchCooperativeKernel_ptsz(LAUNCH_ARGS, void **p) {
    CALL("cuLaunchCooperativeKernel_ptsz");
    UNUSED_LAUNCH, (void)p;
    return CUDA_SUCCESS;
}
EXPORT CUresult cuLaunchKernelEx(const CUlaunchConfig *c, CUfunction f, void **p, void **e) {
    CALL("cuLaunchKernelEx");
    (void)c, (void)f, (void)p, (void)e;
    return CUDA_SUCCESS;
}
EXPORT CUresult cuLaunchKernelEx_ptsz(const CUlaunchConfig *c, CUfunction f, void **p, void **e) {
    CALL("cuLaunchKernelEx_ptsz");
    (void)c, (void)f, (void)p, (void)e;
    return CUDA_SUCCESS;
}
EXPORT CUresult cuGraphLaunch(CUgraphExec g, CUstream s) {
    CALL("cuGraphLaunch");
    (void)g, (void)s;
    return CUDA_SUCCESS;
}
EXPORT CUresult cuGraphLaunch_ptsz(CUgraphExec g, CUstream s) {
    CALL("cuGraphLaunch_ptsz");
    (void)g, (void)s;
    return CUDA_SUCCESS;
}
EXPORT CUresult cuGraphAddMemAllocNode(CUgraphNode *n, CUgraph g, const CUgraphNode *deps, size_t nd,
                                       CUDA_MEM_ALLOC_NODE_PARAMS *p) {
    CALL("cuGraphAddMemAllocNode");
    (void)g, (void)deps, (void)nd;
    int dev = p->poolProps.location.id;
    if (!valid_dev(dev)) return CUDA_ERROR_INVALID_VALUE;
    if (phys_take(dev, p->bytesize) != 0) return CUDA_ERROR_OUT_OF_MEMORY;
    ADD(&DEV(dev)->graph_reserved, p->bytesize); /* model: reserved at once */
    p->dptr = new_addr(dev, p->bytesize);
    *n = (CUgraphNode)(uintptr_t)p->dptr;
    return CUDA_SUCCESS;
}
EXPORT CUresult cuDeviceGraphMemTrim(CUdevice d) {
    CALL("cuDeviceGraphMemTrim");
    if (!valid_dev(d)) return CUDA_ERROR_INVALID_DEVICE;
    uint64_t r = __atomic_exchange_n(&DEV(d)->graph_reserved, 0, __ATOMIC_ACQ_REL);
    if (r) phys_give(d, r);
    return CUDA_SUCCESS;
}
EXPORT CUresult cuDeviceGetGraphMemAttribute(CUdevice d, CUgraphMem_attribute a, void *v) {
    CALL("cuDeviceGetGraphMemAttribute");
    if (!valid_dev(d)) return CUDA_ERROR_INVALID_DEVICE;
    *(cuuint64_t *)v = (a == CU_GRAPH_MEM_ATTR_RESERVED_MEM_CURRENT || a == CU_GRAPH_MEM_ATTR_USED_MEM_CURRENT)
                           ? LD(&DEV(d)->graph_reserved) : 0;
    return CUDA_SUCCESS;
}

/* ---------------- cuGetProcAddress ---------------- */

EXPORT CUresult cuGetProcAddress(const char *, void **, int, cuuint64_t);
EXPORT CUresult cuGetProcAddress_v2(const char *, void **, int, cuuint64_t, CUdriverProcAddressQueryResult *);

struct variant {
    const char *base;
    int ver;
    int pt; /* per-thread default-stream variant */
    void *fn;
    const char *sym;
};
#define V(base, ver, pt, fn) {#base, ver, pt, (void *)fn, #fn}
static const struct variant variants[] = {
    V(cuInit, 2000, 0, cuInit),
    V(cuDriverGetVersion, 2020, 0, cuDriverGetVersion),
    V(cuGetErrorName, 6000, 0, cuGetErrorName),
    V(cuGetErrorString, 6000, 0, cuGetErrorString),
    V(cuGetExportTable, 3000, 0, cuGetExportTable),
    V(cuGetProcAddress, 11030, 0, cuGetProcAddress),
    V(cuGetProcAddress, 12000, 0, cuGetProcAddress_v2),
    V(cuDeviceGet, 2000, 0, cuDeviceGet),
    V(cuDeviceGetCount, 2000, 0, cuDeviceGetCount),
    V(cuDeviceGetName, 2000, 0, cuDeviceGetName),
    V(cuDeviceGetUuid, 9020, 0, cuDeviceGetUuid),
    V(cuDeviceGetUuid, 11040, 0, cuDeviceGetUuid_v2),
    V(cuDeviceGetPCIBusId, 4010, 0, cuDeviceGetPCIBusId),
    V(cuDeviceGetAttribute, 2000, 0, cuDeviceGetAttribute),
    V(cuDeviceTotalMem, 3020, 0, cuDeviceTotalMem_v2),
    V(cuDeviceGetMemPool, 11020, 0, cuDeviceGetMemPool),
    V(cuDeviceSetMemPool, 11020, 0, cuDeviceSetMemPool),
    V(cuDeviceGetDefaultMemPool, 11020, 0, cuDeviceGetDefaultMemPool),
    V(cuDevicePrimaryCtxRetain, 7000, 0, cuDevicePrimaryCtxRetain),
    V(cuDevicePrimaryCtxRelease, 7000, 0, cuDevicePrimaryCtxRelease),
    V(cuDevicePrimaryCtxRelease, 11000, 0, cuDevicePrimaryCtxRelease_v2),
    V(cuDevicePrimaryCtxReset, 11000, 0, cuDevicePrimaryCtxReset_v2),
    V(cuDevicePrimaryCtxGetState, 7000, 0, cuDevicePrimaryCtxGetState),
    V(cuDevicePrimaryCtxSetFlags, 11000, 0, cuDevicePrimaryCtxSetFlags_v2),
    V(cuCtxCreate, 3020, 0, cuCtxCreate_v2),
    V(cuCtxCreate, 11040, 0, cuCtxCreate_v3),
    V(cuCtxCreate, 12050, 0, cuCtxCreate_v4),
    V(cuCtxDestroy, 4000, 0, cuCtxDestroy_v2),
    V(cuCtxGetCurrent, 4000, 0, cuCtxGetCurrent),
    V(cuCtxSetCurrent, 4000, 0, cuCtxSetCurrent),
    V(cuCtxPushCurrent, 4000, 0, cuCtxPushCurrent_v2),
    V(cuCtxPopCurrent, 4000, 0, cuCtxPopCurrent_v2),
    V(cuCtxGetDevice, 2000, 0, cuCtxGetDevice),
    V(cuCtxSynchronize, 2000, 0, cuCtxSynchronize),
    V(cuMemAlloc, 3020, 0, cuMemAlloc_v2),
    V(cuMemFree, 3020, 0, cuMemFree_v2),
    V(cuMemAllocPitch, 3020, 0, cuMemAllocPitch_v2),
    V(cuMemAllocManaged, 6000, 0, cuMemAllocManaged),
    V(cuMemGetInfo, 3020, 0, cuMemGetInfo_v2),
    V(cuMemAdvise, 8000, 0, cuMemAdvise),
    V(cuMemAdvise, 12020, 0, cuMemAdvise_v2),
    V(cuMemPrefetchAsync, 8000, 0, cuMemPrefetchAsync),
    V(cuMemPrefetchAsync, 8000, 1, cuMemPrefetchAsync_ptsz),
    V(cuMemcpyHtoD, 3020, 0, cuMemcpyHtoD_v2),
    V(cuMemcpyHtoD, 7000, 1, cuMemcpyHtoD_v2_ptds),
    V(cuStreamCreate, 2000, 0, cuStreamCreate),
    V(cuStreamDestroy, 4000, 0, cuStreamDestroy_v2),
    V(cuStreamSynchronize, 2000, 0, cuStreamSynchronize),
    V(cuStreamSynchronize, 7000, 1, cuStreamSynchronize_ptsz),
    V(cuMemAllocAsync, 11020, 0, cuMemAllocAsync),
    V(cuMemAllocAsync, 11020, 1, cuMemAllocAsync_ptsz),
    V(cuMemFreeAsync, 11020, 0, cuMemFreeAsync),
    V(cuMemFreeAsync, 11020, 1, cuMemFreeAsync_ptsz),
    V(cuMemAllocFromPoolAsync, 11020, 0, cuMemAllocFromPoolAsync),
    V(cuMemAllocFromPoolAsync, 11020, 1, cuMemAllocFromPoolAsync_ptsz),
    V(cuMemPoolCreate, 11020, 0, cuMemPoolCreate),
    V(cuMemPoolDestroy, 11020, 0, cuMemPoolDestroy),
    V(cuMemPoolTrimTo, 11020, 0, cuMemPoolTrimTo),
    V(cuMemPoolSetAttribute, 11020, 0, cuMemPoolSetAttribute),
    V(cuMemPoolGetAttribute, 11020, 0, cuMemPoolGetAttribute),
    V(cuMemGetAllocationGranularity, 10020, 0, cuMemGetAllocationGranularity),
    V(cuMemCreate, 10020, 0, cuMemCreate),
    V(cuMemRelease, 10020, 0, cuMemRelease),
    V(cuMemRetainAllocationHandle, 11000, 0, cuMemRetainAllocationHandle),
    V(cuMemAddressReserve, 10020, 0, cuMemAddressReserve),
    V(cuMemAddressFree, 10020, 0, cuMemAddressFree),
    V(cuMemMap, 10020, 0, cuMemMap),
    V(cuMemUnmap, 10020, 0, cuMemUnmap),
    V(cuMemSetAccess, 10020, 0, cuMemSetAccess),
    V(cuArrayCreate, 3020, 0, cuArrayCreate_v2),
    V(cuArray3DCreate, 3020, 0, cuArray3DCreate_v2),
    V(cuArrayDestroy, 2000, 0, cuArrayDestroy),
    V(cuArrayGetMemoryRequirements, 11060, 0, cuArrayGetMemoryRequirements),
    V(cuMipmappedArrayCreate, 5000, 0, cuMipmappedArrayCreate),
    V(cuMipmappedArrayDestroy, 5000, 0, cuMipmappedArrayDestroy),
    V(cuModuleLoadData, 2000, 0, cuModuleLoadData),
    V(cuLibraryLoadData, 12000, 0, cuLibraryLoadData),
    V(cuModuleGetFunction, 2000, 0, cuModuleGetFunction),
    V(cuLaunchKernel, 4000, 0, cuLaunchKernel),
    V(cuLaunchKernel, 7000, 1, cuLaunchKernel_ptsz),
    V(cuLaunchKernelEx, 11060, 0, cuLaunchKernelEx),
    V(cuLaunchKernelEx, 11060, 1, cuLaunchKernelEx_ptsz),
    V(cuLaunchCooperativeKernel, 9000, 0, cuLaunchCooperativeKernel),
    V(cuLaunchCooperativeKernel, 9000, 1, cuLaunchCooperativeKernel_ptsz),
    V(cuGraphLaunch, 10000, 0, cuGraphLaunch),
    V(cuGraphLaunch, 10000, 1, cuGraphLaunch_ptsz),
    V(cuGraphAddMemAllocNode, 11040, 0, cuGraphAddMemAllocNode),
    V(cuDeviceGraphMemTrim, 11040, 0, cuDeviceGraphMemTrim),
    V(cuDeviceGetGraphMemAttribute, 11040, 0, cuDeviceGetGraphMemAttribute),
};
#define NVARIANTS (sizeof variants / sizeof variants[0])

static void trace(const char *sym, int ver, cuuint64_t flags) {
    const char *path = getenv("FAKE_CUDA_TRACE");
    if (!path || !*path) return;
    FILE *f = fopen(path, "a");
    if (!f) return;
    fprintf(f, "%s %d %llu\n", *sym ? sym : "<empty>", ver, (unsigned long long)flags);
    fclose(f);
}

/* The driver's rule: same base name, first version <= requested, the per-thread variant when the
 * per-thread flag is set and one exists, the highest such version. */
static CUresult lookup(const char *sym, void **pfn, int ver, cuuint64_t flags,
                       CUdriverProcAddressQueryResult *st) {
    trace(sym, ver, flags);
    int want_pt = (flags & CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM) != 0, known = 0, has_pt = 0;
    for (size_t i = 0; i < NVARIANTS; i++)
        if (strcmp(variants[i].base, sym) == 0) {
            known = 1;
            has_pt |= variants[i].pt;
        }
    const struct variant *best = NULL;
    /* per-thread requests take a per-thread variant when one exists at that version, else legacy */
    for (int pass = want_pt && has_pt ? 1 : 0; pass >= 0 && !best; pass--)
        for (size_t i = 0; i < NVARIANTS; i++) {
            const struct variant *v = &variants[i];
            if (strcmp(v->base, sym) != 0 || v->ver > ver || v->pt != pass) continue;
            if (!best || v->ver > best->ver) best = v;
        }
    if (pfn) *pfn = best ? best->fn : NULL;
    if (st) *st = best ? CU_GET_PROC_ADDRESS_SUCCESS
                : known ? CU_GET_PROC_ADDRESS_VERSION_NOT_SUFFICIENT : CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND;
    return best ? CUDA_SUCCESS : CUDA_ERROR_NOT_FOUND;
}

/* test-only: the variant the driver would return, without logging or tracing */
EXPORT const char *fake_cuda_lookup(const char *sym, int ver, cuuint64_t flags, int *status) {
    int want_pt = (flags & CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM) != 0, known = 0, has_pt = 0;
    for (size_t i = 0; i < NVARIANTS; i++)
        if (strcmp(variants[i].base, sym) == 0) {
            known = 1;
            has_pt |= variants[i].pt;
        }
    const struct variant *best = NULL;
    /* per-thread requests take a per-thread variant when one exists at that version, else legacy */
    for (int pass = want_pt && has_pt ? 1 : 0; pass >= 0 && !best; pass--)
        for (size_t i = 0; i < NVARIANTS; i++) {
            const struct variant *v = &variants[i];
            if (strcmp(v->base, sym) != 0 || v->ver > ver || v->pt != pass) continue;
            if (!best || v->ver > best->ver) best = v;
        }
    *status = best ? CU_GET_PROC_ADDRESS_SUCCESS
            : known ? CU_GET_PROC_ADDRESS_VERSION_NOT_SUFFICIENT : CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND;
    return best ? best->sym : NULL;
}

EXPORT CUresult cuGetProcAddress(const char *sym, void **pfn, int ver, cuuint64_t flags) {
    CALL("cuGetProcAddress");
    return lookup(sym, pfn, ver, flags, NULL);
}
EXPORT CUresult cuGetProcAddress_v2(const char *sym, void **pfn, int ver, cuuint64_t flags,
                                    CUdriverProcAddressQueryResult *st) {
    CALL("cuGetProcAddress_v2");
    return lookup(sym, pfn, ver, flags, st);
}
