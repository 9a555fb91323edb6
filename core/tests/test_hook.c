/* Driver program for the preloaded hook (LD_PRELOAD=libkantaloupe-core.so, the fakes on
 * LD_LIBRARY_PATH). It is linked against nothing CUDA and reaches the driver the way libcudart
 * does: dlopen("libcuda.so.1"), dlsym("cuGetProcAddress_v2"), then every entry point through the
 * returned lookup function at the versions and flags the runtime uses. One group per run
 * (argv[1]); tests/run.sh sets each group's environment. */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fakes/fake_gpu.h"
#include "kl_cuda.h"
#include "kl_nvml.h"
#include "kl_region.h"
#include "kt.h"

static void *cuda_h, *nvml_h;
static PFN_cuGetProcAddress_v12000 gpa;
static int (*log_calls)(const char *);
static void (*log_clear)(void);
static void (*fail_next)(const char *, CUresult);
static const char *(*fk_lookup)(const char *, int, cuuint64_t, int *);

static void *R(const char *name, int ver, int flags) {
    void *p = NULL;
    CUdriverProcAddressQueryResult st;
    if (gpa(name, &p, ver, (cuuint64_t)flags, &st) != CUDA_SUCCESS) return NULL;
    return p;
}

static const char *lib_of(const void *p) {
    Dl_info i;
    if (!p || !dladdr(p, &i) || !i.dli_fname) return "";
    return i.dli_fname;
}
static const char *sym_of(const void *p) {
    Dl_info i;
    if (!p || !dladdr(p, &i) || !i.dli_sname) return "";
    return i.dli_sname;
}
static int in_hook(const void *p) { return strstr(lib_of(p), "libkantaloupe-core") != NULL; }

static void setup(void) {
    cuda_h = dlopen("libcuda.so.1", RTLD_NOW);
    nvml_h = dlopen("libnvidia-ml.so.1", RTLD_NOW);
    if (!cuda_h || !nvml_h) {
        fprintf(stderr, "cannot load the fakes: %s\n", dlerror());
        exit(2);
    }
    gpa = (PFN_cuGetProcAddress_v12000)dlsym(cuda_h, "cuGetProcAddress_v2");
    log_calls = (int (*)(const char *))dlsym(cuda_h, "fake_cuda_log_calls");
    log_clear = (void (*)(void))dlsym(cuda_h, "fake_cuda_log_clear");
    fail_next = (void (*)(const char *, CUresult))dlsym(cuda_h, "fake_cuda_fail_next");
    fk_lookup = (const char *(*)(const char *, int, cuuint64_t, int *))dlsym(cuda_h, "fake_cuda_lookup");
}

static CUcontext ctx0;
static void init_ctx(void) {
    ((PFN_cuInit_v2000)R("cuInit", 2000, 0))(0);
    ((PFN_cuDevicePrimaryCtxRetain_v7000)R("cuDevicePrimaryCtxRetain", 7000, 0))(&ctx0, 0);
    ((CUresult(*)(CUcontext))R("cuCtxSetCurrent", 4000, 0))(ctx0);
}

static struct kl_region *region(void) {
    static struct kl_region *r;
    if (r) return r;
    const char *path = getenv("CUDA_DEVICE_MEMORY_SHARED_CACHE");
    int fd = path ? open(path, O_RDONLY) : -1;
    if (fd < 0) return NULL;
    void *p = mmap(NULL, sizeof *r, PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    r = p == MAP_FAILED ? NULL : p;
    return r;
}
static uint64_t charged(int dev) {
    struct kl_region *r = region();
    return r ? __atomic_load_n(&r->devices[dev].reserved_bytes, __ATOMIC_ACQUIRE) : 0;
}

/* ================= entry ================= */

struct req { const char *name; int ver; int flags; };
static const struct req runtime_requests[] = {
    {"cuGetProcAddress", 11030, 0}, {"cuGetProcAddress", 12000, 0}, {"cuInit", 2000, 0},
    {"cuMemAlloc", 3020, 0}, {"cuMemAlloc", 2000, 0}, {"cuMemFree", 3020, 0},
    {"cuMemGetInfo", 3020, 0}, {"cuDeviceTotalMem", 3020, 0}, {"cuCtxCreate", 3020, 0},
    {"cuCtxCreate", 11040, 0}, {"cuCtxCreate", 12050, 0}, {"cuCtxCreate", 13000, 0},
    {"cuMemAdvise", 8000, 0}, {"cuMemAdvise", 12020, 0}, {"cuMemPrefetchAsync", 8000, 2},
    {"cuMemAllocAsync", 11020, 0}, {"cuMemAllocAsync", 11020, 2}, {"cuMemFreeAsync", 11020, 2},
    {"cuMemAllocFromPoolAsync", 11020, 2}, {"cuLaunchKernel", 4000, 0}, {"cuLaunchKernel", 4000, 2},
    {"cuLaunchKernel", 7000, 2}, {"cuLaunchKernel", 7000, 0}, {"cuLaunchKernelEx", 11060, 2},
    {"cuLaunchCooperativeKernel", 9000, 2}, {"cuGraphLaunch", 10000, 2}, {"cuGraphLaunch", 10000, 0},
    {"cuMemcpyHtoD", 3020, 2}, {"cuMemcpyHtoD", 7000, 2}, {"cuDevicePrimaryCtxRelease", 7000, 0},
    {"cuDevicePrimaryCtxRelease", 11000, 0}, {"cuGraphAddMemAllocNode", 11040, 0},
    {"cuLibraryLoadData", 12000, 0}, {"cuMemCreate", 10020, 0}, {"cuMemAllocManaged", 6000, 0},
    {"cuArrayCreate", 3020, 0}, {"cuArrayCreate", 2000, 0}, {"cuNoSuchFunction", 12000, 0},
    {"cuMemAllocAsync", 11000, 0}, {"cuStreamSynchronize", 2000, 2}, {"", 12000, 0},
};

static int replay_one(const char *name, int ver, int flags, int verbose) {
    void *p = NULL;
    CUdriverProcAddressQueryResult st = 99;
    CUresult rc = gpa(name, &p, ver, (cuuint64_t)flags, &st);
    int want_st;
    const char *want = fk_lookup(name, ver, (cuuint64_t)flags, &want_st);
    int ok = 1;
    if ((int)st != want_st) ok = 0;
    if (!want) ok &= rc != CUDA_SUCCESS && p == NULL;
    else {
        /* the wrapper (or the untouched driver function) for exactly that variant */
        ok &= rc == CUDA_SUCCESS && strcmp(sym_of(p), want) == 0;
        void *hooked = dlsym(RTLD_DEFAULT, want);
        int is_hooked = hooked && in_hook(hooked);
        ok &= is_hooked ? in_hook(p) : !in_hook(p);
    }
    if (!ok && verbose)
        fprintf(stderr, "    %s@%d/%d: got %s (%s) status %d, driver says %s status %d\n", name, ver,
                flags, sym_of(p), lib_of(p), (int)st, want ? want : "none", want_st);
    return ok;
}

static void test_lookup_symbol_is_ours_via_handle_and_default(void) {
    void *a = dlsym(cuda_h, "cuGetProcAddress_v2");
    void *b = dlsym(RTLD_DEFAULT, "cuGetProcAddress_v2");
    KT_CHECK(in_hook(a));
    KT_CHECK(in_hook(b));
    KT_CHECK(a == b);
    KT_CHECK(in_hook(dlsym(cuda_h, "cuGetProcAddress")));
    KT_CHECK(!in_hook(dlsym(cuda_h, "cuGetExportTable"))); /* passed through untouched */
    KT_CHECK(dlsym(cuda_h, "cuNoSuchSymbol") == NULL);      /* handle semantics kept */
}

static void test_runtime_sequence_probe_init_then_lookup(void) {
    void *p = (void *)1;
    CUdriverProcAddressQueryResult st;
    KT_CHECK(gpa("", &p, 12000, 0, &st) != CUDA_SUCCESS); /* the empty probe */
    KT_CHECK(p == NULL);
    PFN_cuInit_v2000 init = (PFN_cuInit_v2000)R("cuInit", 2000, 0);
    KT_CHECK(in_hook((void *)init));
    KT_EQ(init(0), CUDA_SUCCESS);
    void *v1 = R("cuGetProcAddress", 11030, 0), *v2 = R("cuGetProcAddress", 12000, 0);
    KT_CHECK(v1 == dlsym(RTLD_DEFAULT, "cuGetProcAddress")); /* 4-argument ABI for 11030 */
    KT_CHECK(v2 == dlsym(RTLD_DEFAULT, "cuGetProcAddress_v2"));
    /* the returned lookup keeps hooking */
    PFN_cuGetProcAddress_v11030 g1 = (PFN_cuGetProcAddress_v11030)v1;
    void *m = NULL;
    KT_EQ(g1("cuMemAlloc", &m, 3020, 0), CUDA_SUCCESS);
    KT_CHECK(in_hook(m) && strcmp(sym_of(m), "cuMemAlloc_v2") == 0);
}

static void test_versions_and_flags_select_the_drivers_variant(void) {
    int bad = 0;
    for (size_t i = 0; i < sizeof runtime_requests / sizeof runtime_requests[0]; i++)
        bad += !replay_one(runtime_requests[i].name, runtime_requests[i].ver, runtime_requests[i].flags, 1);
    KT_EQ(bad, 0);
}

static void test_calls_reach_the_same_variant(void) {
    init_ctx();
    log_clear();
    PFN_cuLaunchKernel_v7000_ptsz lk = (PFN_cuLaunchKernel_v7000_ptsz)R("cuLaunchKernel", 7000, 2);
    lk(NULL, 1, 1, 1, 1, 1, 1, 0, NULL, NULL, NULL);
    KT_EQ(log_calls("cuLaunchKernel_ptsz"), 1);
    KT_EQ(log_calls("cuLaunchKernel"), 0);
    PFN_cuLaunchKernel_v4000 lk0 = (PFN_cuLaunchKernel_v4000)R("cuLaunchKernel", 4000, 2);
    lk0(NULL, 1, 1, 1, 1, 1, 1, 0, NULL, NULL, NULL); /* per-thread asked below 7000: legacy */
    KT_EQ(log_calls("cuLaunchKernel"), 1);
    PFN_cuGraphLaunch_v10000_ptsz gl = (PFN_cuGraphLaunch_v10000_ptsz)R("cuGraphLaunch", 10000, 2);
    gl(NULL, NULL);
    KT_EQ(log_calls("cuGraphLaunch_ptsz"), 1);
    CUdeviceptr d;
    PFN_cuMemAllocAsync_v11020_ptsz aa = (PFN_cuMemAllocAsync_v11020_ptsz)R("cuMemAllocAsync", 11020, 2);
    KT_EQ(aa(&d, 4 * MIB, NULL), CUDA_SUCCESS);
    KT_EQ(log_calls("cuMemAllocAsync_ptsz"), 1);
    KT_EQ(log_calls("cuMemAllocAsync"), 0);
    void *adv = R("cuMemAdvise", 8000, 0);
    KT_CHECK(strcmp(sym_of(adv), "cuMemAdvise") == 0); /* never the newer-signature _v2 */
}

static void test_golden_traces(int argc, char **argv) {
    (void)argc;
    int files = 0, lines = 0, bad = 0;
    for (char **a = argv; *a; a++) {
        FILE *f = fopen(*a, "r");
        if (!f) {
            fprintf(stderr, "    cannot open %s\n", *a);
            bad++;
            continue;
        }
        files++;
        char name[256];
        int ver;
        unsigned long long flags;
        while (fscanf(f, "%255s %d %llu", name, &ver, &flags) == 3) {
            lines++;
            if (!strcmp(name, "<empty>")) name[0] = '\0';
            if (!replay_one(name, ver, (int)flags, bad < 10)) bad++;
        }
        fclose(f);
    }
    printf("    replayed %d lookups from %d golden traces\n", lines, files);
    KT_CHECK(files > 0 && lines > 100);
    KT_EQ(bad, 0);
}

static char **golden_args;
static void test_golden_replay(void) { test_golden_traces(0, golden_args); }

static void test_dlsym_override_for_nvml_and_ctypes_style_users(void) {
    void *h = dlopen("libnvidia-ml.so.1", RTLD_NOW);
    KT_CHECK(in_hook(dlsym(h, "nvmlDeviceGetMemoryInfo")));
    KT_CHECK(in_hook(dlsym(h, "nvmlDeviceGetMemoryInfo_v2")));
    KT_CHECK(in_hook(dlsym(h, "nvmlDeviceGetComputeRunningProcesses_v3")));
    KT_CHECK(!in_hook(dlsym(h, "nvmlInit_v2")));
    KT_CHECK(dlsym(h, "nvmlNoSuchThing") == NULL);
    KT_CHECK(in_hook(dlsym(RTLD_DEFAULT, "cuMemAlloc_v2")));
    KT_CHECK(!in_hook(dlsym(cuda_h, "cuMemAdvise")));
    KT_CHECK(!in_hook(dlsym(cuda_h, "cuDeviceGetCount")));
}

/* ================= memory (limit 1 GiB on device 0, device 1 unlimited) ================= */

#define F(T, name, ver) ((T)R(name, ver, 0))
static PFN_cuMemAlloc_v3020 mem_alloc;
static PFN_cuMemFree_v3020 mem_free;
static PFN_cuMemGetInfo_v3020 mem_info;
static void mem_setup(void) {
    init_ctx();
    mem_alloc = F(PFN_cuMemAlloc_v3020, "cuMemAlloc", 3020);
    mem_free = F(PFN_cuMemFree_v3020, "cuMemFree", 3020);
    mem_info = F(PFN_cuMemGetInfo_v3020, "cuMemGetInfo", 3020);
}

static void test_plain_at_under_over(void) {
    CUdeviceptr a, b, c;
    KT_EQ(mem_alloc(&a, 600 * MIB), CUDA_SUCCESS);
    KT_EQ(mem_alloc(&b, 600 * MIB), CUDA_ERROR_OUT_OF_MEMORY);
    KT_EQ(charged(0), 600 * MIB);
    KT_EQ(mem_free(a), CUDA_SUCCESS);
    KT_EQ(mem_alloc(&b, 600 * MIB), CUDA_SUCCESS);
    KT_EQ(mem_alloc(&c, 424 * MIB), CUDA_SUCCESS); /* exactly at the limit */
    KT_EQ(mem_alloc(&a, 1), CUDA_ERROR_OUT_OF_MEMORY);
    KT_EQ(mem_free(b), CUDA_SUCCESS);
    KT_EQ(mem_free(c), CUDA_SUCCESS);
    KT_EQ(charged(0), 0);
}

static void test_refund_when_driver_fails(void) {
    CUdeviceptr a;
    fail_next("cuMemAlloc_v2", CUDA_ERROR_UNKNOWN);
    KT_EQ(mem_alloc(&a, 600 * MIB), CUDA_ERROR_UNKNOWN);
    KT_EQ(charged(0), 0);
    KT_EQ(mem_free(0x1234), CUDA_ERROR_INVALID_VALUE); /* unknown pointer: no refund */
    KT_EQ(charged(0), 0);
}

static void check_reports(uint64_t used) {
    size_t f = 0, t = 0;
    KT_EQ(mem_info(&f, &t), CUDA_SUCCESS);
    KT_EQ(t, GIB);
    KT_EQ(f, GIB - used);
    size_t tm = 0;
    KT_EQ(F(PFN_cuDeviceTotalMem_v3020, "cuDeviceTotalMem", 3020)(&tm, 0), CUDA_SUCCESS);
    KT_EQ(tm, GIB);
    KT_EQ(F(PFN_cuDeviceTotalMem_v3020, "cuDeviceTotalMem", 3020)(&tm, 1), CUDA_SUCCESS);
    KT_EQ(tm, 81920 * MIB); /* unlimited device: physical */
    PFN_nvmlInit_v2 ninit = (PFN_nvmlInit_v2)dlsym(nvml_h, "nvmlInit_v2");
    PFN_nvmlDeviceGetHandleByIndex_v2 byidx = (PFN_nvmlDeviceGetHandleByIndex_v2)dlsym(nvml_h, "nvmlDeviceGetHandleByIndex_v2");
    PFN_nvmlDeviceGetMemoryInfo m1 = (PFN_nvmlDeviceGetMemoryInfo)dlsym(nvml_h, "nvmlDeviceGetMemoryInfo");
    PFN_nvmlDeviceGetMemoryInfo_v2 m2 = (PFN_nvmlDeviceGetMemoryInfo_v2)dlsym(nvml_h, "nvmlDeviceGetMemoryInfo_v2");
    ninit();
    nvmlDevice_t h;
    byidx(0, &h);
    nvmlMemory_t a;
    nvmlMemory_v2_t b;
    memset(&b, 0, sizeof b);
    b.version = NVML_MEMORY_V2_VERSION;
    KT_EQ(m1(h, &a), NVML_SUCCESS);
    KT_EQ(m2(h, &b), NVML_SUCCESS);
    KT_EQ(a.total, t);
    KT_EQ(a.free, f);
    KT_EQ(a.used, used);
    KT_EQ(b.total, t);
    KT_EQ(b.free, f);
    KT_EQ(b.used, used);
    KT_EQ(b.used + b.free + b.reserved, b.total);
    /* per-process lists: only us, showing what we are charged */
    unsigned int n = 8;
    nvmlProcessInfo_v1_t p1[8];
    nvmlProcessInfo_t p3[8];
    PFN_nvmlDeviceGetComputeRunningProcesses_v1 l1 = (PFN_nvmlDeviceGetComputeRunningProcesses_v1)dlsym(nvml_h, "nvmlDeviceGetComputeRunningProcesses");
    PFN_nvmlDeviceGetComputeRunningProcesses_v2 l3 = (PFN_nvmlDeviceGetComputeRunningProcesses_v2)dlsym(nvml_h, "nvmlDeviceGetComputeRunningProcesses_v3");
    KT_EQ(l1(h, &n, p1), NVML_SUCCESS);
    if (used) {
        KT_EQ(n, 1);
        KT_EQ(p1[0].pid, getpid());
        KT_EQ(p1[0].usedGpuMemory, used);
    }
    n = 8;
    KT_EQ(l3(h, &n, p3), NVML_SUCCESS);
    if (used) {
        KT_EQ(n, 1);
        KT_EQ(p3[0].usedGpuMemory, used);
    }
}

static void test_reporting_consistent(void) {
    check_reports(0);
    CUdeviceptr a;
    KT_EQ(mem_alloc(&a, 600 * MIB), CUDA_SUCCESS);
    check_reports(600 * MIB);
    mem_free(a);
}

static void test_pitch(void) {
    PFN_cuMemAllocPitch_v3020 ap = F(PFN_cuMemAllocPitch_v3020, "cuMemAllocPitch", 3020);
    CUdeviceptr a;
    size_t pitch;
    KT_EQ(ap(&a, &pitch, 1000, 600 * 1024, 4), CUDA_SUCCESS); /* 1000 -> pitch 1024: 600 MiB */
    KT_EQ(pitch, 1024);
    KT_EQ(charged(0), (uint64_t)pitch * 600 * 1024);
    KT_EQ(ap(&a, &pitch, 1000, 600 * 1024, 4), CUDA_ERROR_OUT_OF_MEMORY);
    KT_EQ(mem_free(a), CUDA_SUCCESS);
    KT_EQ(charged(0), 0);
}

static void test_managed_charged_in_full(void) {
    PFN_cuMemAllocManaged_v6000 am = F(PFN_cuMemAllocManaged_v6000, "cuMemAllocManaged", 6000);
    CUdeviceptr a, b;
    KT_EQ(am(&a, 600 * MIB, 1), CUDA_SUCCESS);
    KT_EQ(am(&b, 600 * MIB, 1), CUDA_ERROR_OUT_OF_MEMORY);
    KT_EQ(mem_free(a), CUDA_SUCCESS);
    KT_EQ(charged(0), 0);
}

static CUmemAllocationProp dev_prop(int dev) {
    CUmemAllocationProp p;
    memset(&p, 0, sizeof p);
    p.type = 1;
    p.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
    p.location.id = dev;
    return p;
}

static void *vmm_thread(void *arg) {
    /* a worker thread with no current context: charged by prop->location */
    CUmemAllocationProp p = dev_prop(0);
    CUmemGenericAllocationHandle h;
    *(CUresult *)arg = F(PFN_cuMemCreate_v10020, "cuMemCreate", 10020)(&h, 600 * MIB, &p, 0);
    return NULL;
}

static void test_vmm_by_handle_and_location(void) {
    PFN_cuMemCreate_v10020 mc = F(PFN_cuMemCreate_v10020, "cuMemCreate", 10020);
    PFN_cuMemRelease_v10020 mr = F(PFN_cuMemRelease_v10020, "cuMemRelease", 10020);
    CUmemAllocationProp p = dev_prop(0);
    CUmemGenericAllocationHandle h1, h2;
    KT_EQ(mc(&h1, 600 * MIB, &p, 0), CUDA_SUCCESS);
    KT_EQ(charged(0), 600 * MIB);
    CUresult trc = 0;
    pthread_t t;
    pthread_create(&t, NULL, vmm_thread, &trc);
    pthread_join(t, NULL);
    KT_EQ(trc, CUDA_ERROR_OUT_OF_MEMORY);
    /* a second reference through cuMemRetainAllocationHandle keeps it charged */
    CUdeviceptr va;
    ((CUresult(*)(CUdeviceptr *, size_t, size_t, CUdeviceptr, unsigned long long))R("cuMemAddressReserve", 10020, 0))(&va, 600 * MIB, 0, 0, 0);
    ((CUresult(*)(CUdeviceptr, size_t, size_t, CUmemGenericAllocationHandle, unsigned long long))R("cuMemMap", 10020, 0))(va, 600 * MIB, 0, h1, 0);
    PFN_cuMemRetainAllocationHandle_v11000 ret = F(PFN_cuMemRetainAllocationHandle_v11000, "cuMemRetainAllocationHandle", 11000);
    KT_EQ(ret(&h2, (void *)(uintptr_t)va), CUDA_SUCCESS);
    KT_EQ(h2, h1);
    KT_EQ(mr(h1), CUDA_SUCCESS);
    KT_EQ(charged(0), 600 * MIB);
    KT_EQ(mr(h2), CUDA_SUCCESS);
    KT_EQ(charged(0), 0);
    KT_EQ(mc(&h1, 1024 * MIB, &p, 0), CUDA_SUCCESS); /* exactly the limit */
    KT_EQ(mr(h1), CUDA_SUCCESS);
    CUmemAllocationProp p1 = dev_prop(1); /* unlimited device */
    KT_EQ(mc(&h1, 2048 * MIB, &p1, 0), CUDA_SUCCESS);
    KT_EQ(mr(h1), CUDA_SUCCESS);
    KT_EQ(charged(0), 0);
}

static void test_async_pool_reserved_and_trim(void) {
    PFN_cuMemAllocAsync_v11020 aa = F(PFN_cuMemAllocAsync_v11020, "cuMemAllocAsync", 11020);
    PFN_cuMemFreeAsync_v11020 fa = F(PFN_cuMemFreeAsync_v11020, "cuMemFreeAsync", 11020);
    CUdeviceptr a, b;
    KT_EQ(aa(&a, 600 * MIB, NULL), CUDA_SUCCESS);
    KT_EQ(charged(0), 600 * MIB);
    KT_EQ(aa(&b, 600 * MIB, NULL), CUDA_ERROR_OUT_OF_MEMORY);
    KT_EQ(fa(a, NULL), CUDA_SUCCESS);
    KT_EQ(charged(0), 600 * MIB); /* freed but still reserved by the pool */
    KT_EQ(aa(&b, 600 * MIB, NULL), CUDA_SUCCESS); /* reuses the reservation */
    KT_EQ(charged(0), 600 * MIB);
    KT_EQ(fa(b, NULL), CUDA_SUCCESS);
    /* pressure from another path: the plain allocation trims the pool before OOM */
    CUdeviceptr c;
    KT_EQ(mem_alloc(&c, 700 * MIB), CUDA_SUCCESS);
    KT_EQ(charged(0), 700 * MIB);
    mem_free(c);
    KT_EQ(aa(&a, 100 * MIB, NULL), CUDA_SUCCESS);
    KT_EQ(fa(a, NULL), CUDA_SUCCESS);
    CUmemoryPool pool;
    ((CUresult(*)(CUmemoryPool *, CUdevice))R("cuDeviceGetMemPool", 11020, 0))(&pool, 0);
    KT_EQ(F(PFN_cuMemPoolTrimTo_v11020, "cuMemPoolTrimTo", 11020)(pool, 0), CUDA_SUCCESS);
    KT_EQ(charged(0), 0);
    size_t f, t;
    mem_info(&f, &t);
    KT_EQ(f, GIB);
    /* the per-thread variant is charged the same way */
    PFN_cuMemAllocAsync_v11020_ptsz ap = (PFN_cuMemAllocAsync_v11020_ptsz)R("cuMemAllocAsync", 11020, 2);
    KT_EQ(ap(&a, 900 * MIB, NULL), CUDA_SUCCESS);
    KT_EQ(ap(&b, 200 * MIB, NULL), CUDA_ERROR_OUT_OF_MEMORY);
    ((PFN_cuMemFreeAsync_v11020_ptsz)R("cuMemFreeAsync", 11020, 2))(a, NULL);
    KT_EQ(F(PFN_cuMemPoolTrimTo_v11020, "cuMemPoolTrimTo", 11020)(pool, 0), CUDA_SUCCESS);
    KT_EQ(charged(0), 0);
}

static void test_user_pool(void) {
    CUmemPoolProps props;
    memset(&props, 0, sizeof props);
    props.allocType = 1;
    props.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
    props.location.id = 0;
    CUmemoryPool pool;
    KT_EQ(F(PFN_cuMemPoolCreate_v11020, "cuMemPoolCreate", 11020)(&pool, &props), CUDA_SUCCESS);
    PFN_cuMemAllocFromPoolAsync_v11020 ap = F(PFN_cuMemAllocFromPoolAsync_v11020, "cuMemAllocFromPoolAsync", 11020);
    CUdeviceptr a, b;
    KT_EQ(ap(&a, 600 * MIB, pool, NULL), CUDA_SUCCESS);
    KT_EQ(ap(&b, 600 * MIB, pool, NULL), CUDA_ERROR_OUT_OF_MEMORY);
    KT_EQ(charged(0), 600 * MIB);
    cuuint64_t zero = 0;
    KT_EQ(F(PFN_cuMemPoolSetAttribute_v11020, "cuMemPoolSetAttribute", 11020)(pool, CU_MEMPOOL_ATTR_RELEASE_THRESHOLD, &zero), CUDA_SUCCESS);
    KT_EQ(F(PFN_cuMemPoolDestroy_v11020, "cuMemPoolDestroy", 11020)(pool), CUDA_SUCCESS);
    KT_EQ(charged(0), 0);
}

static void test_arrays(void) {
    CUDA_ARRAY_DESCRIPTOR d = {4096, 4096, CU_AD_FORMAT_FLOAT, 4}; /* 256 MiB */
    CUarray a1, a2, a3;
    PFN_cuArrayCreate_v3020 ac = F(PFN_cuArrayCreate_v3020, "cuArrayCreate", 3020);
    PFN_cuArrayDestroy_v2000 ad = F(PFN_cuArrayDestroy_v2000, "cuArrayDestroy", 2000);
    KT_EQ(ac(&a1, &d), CUDA_SUCCESS);
    KT_EQ(ac(&a2, &d), CUDA_SUCCESS);
    KT_EQ(ac(&a3, &d), CUDA_SUCCESS);
    KT_EQ(charged(0), 768 * MIB);
    CUarray a4;
    KT_EQ(ac(&a4, &d), CUDA_SUCCESS); /* exactly 1 GiB */
    CUDA_ARRAY3D_DESCRIPTOR d3 = {100, 100, 10, CU_AD_FORMAT_UNSIGNED_INT8, 1, 0};
    CUarray a5;
    KT_EQ(F(PFN_cuArray3DCreate_v3020, "cuArray3DCreate", 3020)(&a5, &d3), CUDA_ERROR_OUT_OF_MEMORY);
    ad(a1), ad(a2), ad(a3), ad(a4);
    KT_EQ(charged(0), 0);
    KT_EQ(F(PFN_cuArray3DCreate_v3020, "cuArray3DCreate", 3020)(&a5, &d3), CUDA_SUCCESS);
    KT_EQ(charged(0), 128 * 1024); /* the driver's requirement (padded), not the estimate */
    ad(a5);
    CUmipmappedArray m;
    CUDA_ARRAY3D_DESCRIPTOR dm = {8192, 8192, 0, CU_AD_FORMAT_FLOAT, 4, 0}; /* 1 GiB base level */
    KT_EQ(F(PFN_cuMipmappedArrayCreate_v5000, "cuMipmappedArrayCreate", 5000)(&m, &dm, 4), CUDA_ERROR_OUT_OF_MEMORY);
    CUDA_ARRAY3D_DESCRIPTOR dm2 = {2048, 2048, 0, CU_AD_FORMAT_FLOAT, 4, 0};
    KT_EQ(F(PFN_cuMipmappedArrayCreate_v5000, "cuMipmappedArrayCreate", 5000)(&m, &dm2, 4), CUDA_SUCCESS);
    KT_CHECK(charged(0) > 64 * MIB);
    KT_EQ(F(PFN_cuMipmappedArrayDestroy_v5000, "cuMipmappedArrayDestroy", 5000)(m), CUDA_SUCCESS);
    KT_EQ(charged(0), 0);
}

static void test_graph_memory(void) {
    CUDA_MEM_ALLOC_NODE_PARAMS p;
    memset(&p, 0, sizeof p);
    p.poolProps.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
    p.poolProps.location.id = 0;
    p.bytesize = 600 * MIB;
    CUgraphNode n;
    PFN_cuGraphAddMemAllocNode_v11040 add = F(PFN_cuGraphAddMemAllocNode_v11040, "cuGraphAddMemAllocNode", 11040);
    KT_EQ(add(&n, NULL, NULL, 0, &p), CUDA_SUCCESS);
    KT_EQ(F(PFN_cuGraphLaunch_v10000, "cuGraphLaunch", 10000)(NULL, NULL), CUDA_SUCCESS);
    KT_EQ(charged(0), 600 * MIB); /* the device's graph reserved memory */
    KT_EQ(add(&n, NULL, NULL, 0, &p), CUDA_ERROR_OUT_OF_MEMORY);
    CUdeviceptr a;
    KT_EQ(mem_alloc(&a, 600 * MIB), CUDA_ERROR_OUT_OF_MEMORY);
    KT_EQ(F(PFN_cuDeviceGraphMemTrim_v11040, "cuDeviceGraphMemTrim", 11040)(0), CUDA_SUCCESS);
    KT_EQ(charged(0), 0);
    KT_EQ(mem_alloc(&a, 600 * MIB), CUDA_SUCCESS);
    mem_free(a);
}

static void test_per_device_limits(void) {
    CUcontext c1;
    ((PFN_cuDevicePrimaryCtxRetain_v7000)R("cuDevicePrimaryCtxRetain", 7000, 0))(&c1, 1);
    ((CUresult(*)(CUcontext))R("cuCtxSetCurrent", 4000, 0))(c1);
    CUdeviceptr a;
    KT_EQ(mem_alloc(&a, 3 * GIB), CUDA_SUCCESS); /* device 1: CUDA_DEVICE_MEMORY_LIMIT_1=0 */
    size_t f, t;
    mem_info(&f, &t);
    KT_EQ(t, 81920 * MIB);
    mem_free(a);
    ((CUresult(*)(CUcontext))R("cuCtxSetCurrent", 4000, 0))(ctx0);
    KT_EQ(charged(1), 0);
}

/* ================= context overhead (256 MiB per context) ================= */

static void test_context_overhead_measured(void) {
    init_ctx(); /* the first primary retain */
    KT_EQ(charged(0), 256 * MIB);
    size_t f, t;
    mem_info = F(PFN_cuMemGetInfo_v3020, "cuMemGetInfo", 3020);
    mem_alloc = F(PFN_cuMemAlloc_v3020, "cuMemAlloc", 3020);
    mem_free = F(PFN_cuMemFree_v3020, "cuMemFree", 3020);
    mem_info(&f, &t);
    KT_EQ(t, GIB);
    KT_EQ(f, GIB - 256 * MIB);
    CUdeviceptr a;
    KT_EQ(mem_alloc(&a, 800 * MIB), CUDA_ERROR_OUT_OF_MEMORY);
    KT_EQ(mem_alloc(&a, 700 * MIB), CUDA_SUCCESS);
    mem_free(a);
    CUcontext c;
    KT_EQ(F(PFN_cuCtxCreate_v3020, "cuCtxCreate", 3020)(&c, 0, 0), CUDA_SUCCESS);
    KT_EQ(charged(0), 512 * MIB);
    KT_EQ(F(PFN_cuCtxDestroy_v4000, "cuCtxDestroy", 4000)(c), CUDA_SUCCESS);
    KT_EQ(charged(0), 256 * MIB);
    ((CUresult(*)(CUcontext))R("cuCtxSetCurrent", 4000, 0))(ctx0);
    KT_EQ(F(PFN_cuDevicePrimaryCtxRelease_v11000, "cuDevicePrimaryCtxRelease", 11000)(0), CUDA_SUCCESS);
    KT_EQ(charged(0), 0);
}

/* ================= stderr capture ================= */

static int cap_fd = -1, saved_fd = -1;
static void capture_stderr(void) {
    char path[] = "/tmp/kl-hook-stderr-XXXXXX";
    cap_fd = mkstemp(path);
    unlink(path);
    saved_fd = dup(2);
    dup2(cap_fd, 2);
}
static void captured(char *out, size_t n) {
    dup2(saved_fd, 2);
    ssize_t r = pread(cap_fd, out, n - 1, 0);
    out[r > 0 ? r : 0] = '\0';
}

static void test_invalid_limit_refuses_and_reports_once(void) {
    capture_stderr();
    init_ctx();
    CUdeviceptr a;
    PFN_cuMemAlloc_v3020 al = F(PFN_cuMemAlloc_v3020, "cuMemAlloc", 3020);
    CUresult r1 = al(&a, 1 * MIB), r2 = al(&a, 1);
    char out[4096];
    captured(out, sizeof out);
    KT_EQ(r1, CUDA_ERROR_OUT_OF_MEMORY);
    KT_EQ(r2, CUDA_ERROR_OUT_OF_MEMORY);
    int lines = 0;
    for (char *p = out; *p; p++) lines += *p == '\n';
    KT_EQ(lines, 1);
    KT_CHECK(strstr(out, "CUDA_DEVICE_MEMORY_LIMIT=\"4 gigs\"") != NULL);
}

static void test_no_limit_is_pass_through(void) {
    capture_stderr();
    init_ctx();
    mem_setup();
    CUdeviceptr a;
    KT_EQ(mem_alloc(&a, 10 * GIB), CUDA_SUCCESS);
    size_t f, t;
    mem_info(&f, &t);
    KT_EQ(t, 81920 * MIB);
    KT_EQ(f, 70 * 1024 * MIB);
    mem_free(a);
    char out[1024];
    captured(out, sizeof out);
    KT_EQ(strlen(out), 0);
    KT_CHECK(region() == NULL); /* no region file without a limit */
}

/* ================= launch (30 % share, device busy 100 %) ================= */

static double max_call_s;
static int slow_calls; /* calls over 10 ms */
static double timed_loop(const char *what, double seconds) {
    PFN_cuLaunchKernel_v4000 lk = F(PFN_cuLaunchKernel_v4000, "cuLaunchKernel", 4000);
    PFN_cuLaunchKernel_v7000_ptsz lkp = (PFN_cuLaunchKernel_v7000_ptsz)R("cuLaunchKernel", 7000, 2);
    PFN_cuLaunchKernelEx_v11060 lke = F(PFN_cuLaunchKernelEx_v11060, "cuLaunchKernelEx", 11060);
    PFN_cuLaunchCooperativeKernel_v9000_ptsz lkc = (PFN_cuLaunchCooperativeKernel_v9000_ptsz)R("cuLaunchCooperativeKernel", 9000, 2);
    PFN_cuGraphLaunch_v10000 gl = F(PFN_cuGraphLaunch_v10000, "cuGraphLaunch", 10000);
    PFN_cuGraphLaunch_v10000_ptsz glp = (PFN_cuGraphLaunch_v10000_ptsz)R("cuGraphLaunch", 10000, 2);
    CUlaunchConfig cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.gridDimX = 1024, cfg.gridDimY = cfg.gridDimZ = 1, cfg.blockDimX = 1024, cfg.blockDimY = cfg.blockDimZ = 1;
    double t0 = kt_now(), waited = 0;
    int n = 0;
    while (kt_now() - t0 < seconds) {
        double a = kt_now();
        if (!strcmp(what, "kernel")) lk(NULL, 1024, 1, 1, 1024, 1, 1, 0, NULL, NULL, NULL);
        else if (!strcmp(what, "kernel_ptsz")) lkp(NULL, 1024, 1, 1, 1024, 1, 1, 0, NULL, NULL, NULL);
        else if (!strcmp(what, "ex")) lke(&cfg, NULL, NULL, NULL);
        else if (!strcmp(what, "coop_ptsz")) lkc(NULL, 1024, 1, 1, 1024, 1, 1, 0, NULL, NULL);
        else if (!strcmp(what, "graph")) gl(NULL, NULL);
        else glp(NULL, NULL);
        double d = kt_now() - a;
        waited += d;
        if (d > max_call_s) max_call_s = d;
        slow_calls += d > 0.01;
        n++;
    }
    return waited / (kt_now() - t0); /* fraction of time spent throttled */
}

static void test_every_launch_path_is_throttled_and_bounded(void) {
    init_ctx();
    const char *paths[] = {"kernel", "kernel_ptsz", "ex", "coop_ptsz", "graph", "graph_ptsz"};
    for (size_t i = 0; i < 6; i++) {
        double throttled = timed_loop(paths[i], 0.4);
        if (throttled < 0.5) fprintf(stderr, "    %s: throttled %.2f\n", paths[i], throttled);
        KT_CHECK(throttled > 0.5); /* busy device above the share: most time is spent waiting */
    }
    KT_CHECK(max_call_s < 0.2 + 0.1); /* the bound (200 ms) plus scheduling slack */
    KT_CHECK(log_calls("cuLaunchKernel_ptsz") > 0 && log_calls("cuGraphLaunch_ptsz") > 0);
}

static void test_no_share_is_not_throttled(void) {
    init_ctx();
    timed_loop("kernel", 0.01);
    slow_calls = 0;
    double throttled = timed_loop("kernel", 0.2);
    KT_CHECK(throttled < 0.5);
    KT_CHECK(slow_calls <= 3); /* only scheduler preemption on a loaded machine */
}

static void test_invalid_share_refuses_launches(void) {
    capture_stderr();
    init_ctx();
    CUresult rc = F(PFN_cuLaunchKernel_v4000, "cuLaunchKernel", 4000)(NULL, 1, 1, 1, 1, 1, 1, 0, NULL, NULL, NULL);
    char out[1024];
    captured(out, sizeof out);
    KT_EQ(rc, CUDA_ERROR_NOT_PERMITTED);
    KT_CHECK(strstr(out, "CUDA_DEVICE_SM_LIMIT") != NULL);
}

/* ================= processes through the hook ================= */

#define TRIALS 1000
struct shared {
    pthread_barrier_t bar;
    int won[TRIALS][2];
};

static void test_two_processes_race_through_the_hook(void) {
    struct shared *sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    pthread_barrierattr_t ba;
    pthread_barrierattr_init(&ba);
    pthread_barrierattr_setpshared(&ba, PTHREAD_PROCESS_SHARED);
    pthread_barrier_init(&sh->bar, &ba, 3);
    pid_t kids[2];
    for (int w = 0; w < 2; w++) {
        kids[w] = fork();
        if (kids[w] == 0) {
            mem_setup();
            for (int t = 0; t < TRIALS; t++) {
                CUdeviceptr a;
                pthread_barrier_wait(&sh->bar);
                int ok = mem_alloc(&a, 600 * MIB) == CUDA_SUCCESS;
                sh->won[t][w] = ok;
                pthread_barrier_wait(&sh->bar);
                if (ok) mem_free(a);
                pthread_barrier_wait(&sh->bar);
            }
            _exit(0);
        }
    }
    int over = 0, one = 0;
    for (int t = 0; t < TRIALS; t++) {
        pthread_barrier_wait(&sh->bar);
        pthread_barrier_wait(&sh->bar);
        int n = sh->won[t][0] + sh->won[t][1];
        over += n > 1 || charged(0) > GIB;
        one += n == 1;
        pthread_barrier_wait(&sh->bar);
    }
    for (int w = 0; w < 2; w++) waitpid(kids[w], NULL, 0);
    KT_EQ(over, 0);
    KT_EQ(one, TRIALS);
}

static void test_sigkilled_holder_is_reclaimed(void) {
    int fds[2];
    KT_EQ(pipe(fds), 0);
    pid_t kid = fork();
    if (kid == 0) {
        mem_setup();
        CUdeviceptr a;
        char x = mem_alloc(&a, 800 * MIB) == CUDA_SUCCESS ? 'y' : 'n';
        if (write(fds[1], &x, 1) != 1) _exit(1);
        for (;;) pause();
    }
    char x = 0;
    KT_EQ(read(fds[0], &x, 1), 1);
    KT_EQ(x, 'y');
    mem_setup();
    CUdeviceptr a;
    KT_EQ(mem_alloc(&a, 600 * MIB), CUDA_ERROR_OUT_OF_MEMORY);
    kill(kid, SIGKILL);
    waitpid(kid, NULL, 0);
    double t0 = kt_now();
    KT_EQ(mem_alloc(&a, 600 * MIB), CUDA_SUCCESS);
    KT_CHECK(kt_now() - t0 < 1.0);
    KT_EQ(charged(0), 600 * MIB);
    mem_free(a);
}

/* ================= CUDA_VISIBLE_DEVICES (reordered or UUID form) ================= */

static uint64_t nvml_total(unsigned int phys) {
    PFN_nvmlDeviceGetHandleByIndex_v2 byidx = (PFN_nvmlDeviceGetHandleByIndex_v2)dlsym(nvml_h, "nvmlDeviceGetHandleByIndex_v2");
    PFN_nvmlDeviceGetMemoryInfo m1 = (PFN_nvmlDeviceGetMemoryInfo)dlsym(nvml_h, "nvmlDeviceGetMemoryInfo");
    ((PFN_nvmlInit_v2)dlsym(nvml_h, "nvmlInit_v2"))();
    nvmlDevice_t h;
    nvmlMemory_t m;
    if (byidx(phys, &h) != NVML_SUCCESS || m1(h, &m) != NVML_SUCCESS) return 0;
    return m.total;
}

static void test_visible_devices_map_limits_by_uuid(void) {
    /* CUDA_VISIBLE_DEVICES=1,0: CUDA 0 is physical 1 (limit_0 = 1 GiB), CUDA 1 is physical 0 */
    mem_setup();
    CUdeviceptr a;
    KT_EQ(mem_alloc(&a, 1536 * MIB), CUDA_ERROR_OUT_OF_MEMORY);
    size_t f, t;
    mem_info(&f, &t);
    KT_EQ(t, GIB);
    KT_EQ(nvml_total(1), GIB);     /* NVML's physical 1 is the container's device 0 */
    KT_EQ(nvml_total(0), 2 * GIB); /* and physical 0 its device 1 */
}

static void test_visible_devices_uuid_form(void) {
    /* CUDA_VISIBLE_DEVICES=<uuid of physical 1>: one device, limited to 1 GiB */
    mem_setup();
    KT_EQ(nvml_total(1), GIB);
    KT_EQ(nvml_total(0), 81920 * MIB); /* not this container's device: untouched */
    size_t f, t;
    mem_info(&f, &t);
    KT_EQ(t, GIB);
}

static char quiet_out[4096];
static void test_quiet_when_nothing_is_wrong(void) {
    if (quiet_out[0]) fprintf(stderr, "    unexpected stderr output:\n%s", quiet_out);
    KT_CHECK(quiet_out[0] == '\0');
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: test_hook GROUP [golden traces...]\n");
        return 2;
    }
    const char *g = argv[1];
    setup();
    if (!strcmp(g, "entry")) {
        KT_RUN(test_lookup_symbol_is_ours_via_handle_and_default);
        KT_RUN(test_runtime_sequence_probe_init_then_lookup);
        KT_RUN(test_versions_and_flags_select_the_drivers_variant);
        KT_RUN(test_calls_reach_the_same_variant);
        KT_RUN(test_dlsym_override_for_nvml_and_ctypes_style_users);
        if (argc > 2) {
            golden_args = argv + 2;
            KT_RUN(test_golden_replay);
        }
    } else if (!strcmp(g, "memory")) {
        capture_stderr();
        mem_setup();
        KT_RUN(test_plain_at_under_over);
        KT_RUN(test_refund_when_driver_fails);
        KT_RUN(test_reporting_consistent);
        KT_RUN(test_pitch);
        KT_RUN(test_managed_charged_in_full);
        KT_RUN(test_vmm_by_handle_and_location);
        KT_RUN(test_async_pool_reserved_and_trim);
        KT_RUN(test_user_pool);
        KT_RUN(test_arrays);
        KT_RUN(test_graph_memory);
        KT_RUN(test_per_device_limits);
        captured(quiet_out, sizeof quiet_out);
        KT_RUN(test_quiet_when_nothing_is_wrong);
    } else if (!strcmp(g, "visible")) {
        KT_RUN(test_visible_devices_map_limits_by_uuid);
    } else if (!strcmp(g, "visible_uuid")) {
        KT_RUN(test_visible_devices_uuid_form);
    } else if (!strcmp(g, "context")) {
        KT_RUN(test_context_overhead_measured);
    } else if (!strcmp(g, "invalid")) {
        KT_RUN(test_invalid_limit_refuses_and_reports_once);
    } else if (!strcmp(g, "passthrough")) {
        KT_RUN(test_no_limit_is_pass_through);
    } else if (!strcmp(g, "launch")) {
        KT_RUN(test_every_launch_path_is_throttled_and_bounded);
    } else if (!strcmp(g, "launch_nolimit")) {
        KT_RUN(test_no_share_is_not_throttled);
    } else if (!strcmp(g, "launch_invalid")) {
        KT_RUN(test_invalid_share_refuses_launches);
    } else if (!strcmp(g, "procs")) {
        KT_RUN(test_two_processes_race_through_the_hook);
        KT_RUN(test_sigkilled_holder_is_reclaimed);
    } else {
        fprintf(stderr, "unknown group %s\n", g);
        return 2;
    }
    return kt_done();
}
