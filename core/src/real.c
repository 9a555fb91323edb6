/* Real entry points: the real dlsym (found with dlvsym, since we replace dlsym), and the driver's
 * and NVML's functions, resolved once, lazily, on the first hooked call that needs them. */

#include <dlfcn.h>
#include <pthread.h>
#include <string.h>

#include "kl.h"

struct kl_real kl_real;

typedef void *(*dlsym_fn)(void *, const char *);
static dlsym_fn real_dlsym_ptr;

void *kl_real_dlsym(void *handle, const char *name) {
    dlsym_fn f = __atomic_load_n(&real_dlsym_ptr, __ATOMIC_ACQUIRE);
    if (KL_UNLIKELY(!f)) {
        static const char *const versions[] = {"GLIBC_2.34", "GLIBC_2.2.5", "GLIBC_2.17",
                                               "GLIBC_2.0", "GLIBC_2.27"};
        for (size_t i = 0; i < sizeof versions / sizeof versions[0] && !f; i++)
            f = (dlsym_fn)dlvsym(RTLD_NEXT, "dlsym", versions[i]);
        if (!f) return NULL;
        __atomic_store_n(&real_dlsym_ptr, f, __ATOMIC_RELEASE);
    }
    return f(handle, name);
}

static void *cuda_handle, *nvml_handle;
static pthread_once_t cuda_once = PTHREAD_ONCE_INIT, nvml_once = PTHREAD_ONCE_INIT;

#define RESOLVE(h, field, name) kl_real.field = (__typeof__(kl_real.field))kl_real_dlsym(h, name)

static void load_cuda(void) {
    cuda_handle = dlopen("libcuda.so.1", RTLD_NOW | RTLD_GLOBAL | RTLD_NODELETE);
    if (!cuda_handle) {
        kl_log(KL_LOG_ERROR, "cannot load libcuda.so.1: %s", dlerror());
        return;
    }
#define HOOK_ENTRY(sym) RESOLVE(cuda_handle, sym, #sym);
#define HOOK_MEMORY(sym) RESOLVE(cuda_handle, sym, #sym);
#define HOOK_INFO(sym) RESOLVE(cuda_handle, sym, #sym);
#define HOOK_CONTEXT(sym) RESOLVE(cuda_handle, sym, #sym);
#define HOOK_LAUNCH(sym) RESOLVE(cuda_handle, sym, #sym);
#define HOOK_NVML(sym)
#define HOOK(sym, base, pfn, ver, pt, grp) HOOK_##grp(sym)
#include "hooks.def"
#undef HOOK
    RESOLVE(cuda_handle, cuCtxGetDevice, "cuCtxGetDevice");
    RESOLVE(cuda_handle, cuCtxGetCurrent, "cuCtxGetCurrent");
    RESOLVE(cuda_handle, cuDeviceGetCount, "cuDeviceGetCount");
    RESOLVE(cuda_handle, cuDeviceGetAttribute, "cuDeviceGetAttribute");
    RESOLVE(cuda_handle, cuDeviceGetUuid_v2, "cuDeviceGetUuid_v2");
    RESOLVE(cuda_handle, cuMemPoolGetAttribute, "cuMemPoolGetAttribute");
    RESOLVE(cuda_handle, cuDeviceGetMemPool, "cuDeviceGetMemPool");
    RESOLVE(cuda_handle, cuArrayGetMemoryRequirements, "cuArrayGetMemoryRequirements");
    RESOLVE(cuda_handle, cuDeviceGetGraphMemAttribute, "cuDeviceGetGraphMemAttribute");
    RESOLVE(cuda_handle, cuMemGetAllocationGranularity, "cuMemGetAllocationGranularity");
}

static void load_nvml(void) {
    nvml_handle = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_GLOBAL | RTLD_NODELETE);
    if (!nvml_handle) {
        kl_log(KL_LOG_DEBUG, "cannot load libnvidia-ml.so.1: %s", dlerror());
        return;
    }
#undef HOOK_NVML
#undef HOOK_ENTRY
#undef HOOK_MEMORY
#undef HOOK_INFO
#undef HOOK_CONTEXT
#undef HOOK_LAUNCH
#define HOOK_ENTRY(sym)
#define HOOK_MEMORY(sym)
#define HOOK_INFO(sym)
#define HOOK_CONTEXT(sym)
#define HOOK_LAUNCH(sym)
#define HOOK_NVML(sym) RESOLVE(nvml_handle, sym, #sym);
#define HOOK(sym, base, pfn, ver, pt, grp) HOOK_##grp(sym)
#include "hooks.def"
#undef HOOK
    RESOLVE(nvml_handle, nvmlInit_v2, "nvmlInit_v2");
    RESOLVE(nvml_handle, nvmlDeviceGetUUID, "nvmlDeviceGetUUID");
    RESOLVE(nvml_handle, nvmlDeviceGetIndex, "nvmlDeviceGetIndex");
    RESOLVE(nvml_handle, nvmlDeviceGetHandleByUUID, "nvmlDeviceGetHandleByUUID");
    RESOLVE(nvml_handle, nvmlDeviceGetHandleByIndex_v2, "nvmlDeviceGetHandleByIndex_v2");
    RESOLVE(nvml_handle, nvmlDeviceGetProcessUtilization, "nvmlDeviceGetProcessUtilization");
    RESOLVE(nvml_handle, nvmlDeviceGetUtilizationRates, "nvmlDeviceGetUtilizationRates");
}

void kl_load_cuda(void) { pthread_once(&cuda_once, load_cuda); }
void kl_load_nvml(void) { pthread_once(&nvml_once, load_nvml); }
