/* Fake libnvidia-ml.so.1 for tests. It reads the fake GPU of the fake libcuda.so.1 (it links
 * against it), so memory and per-process usage reflect fake CUDA activity, and the utilisation it
 * reports is the scripted one (FAKE_GPU_UTIL or fake_gpu_set_util). */
#include <stdio.h>
#include <string.h>

#include "fake_gpu.h"
#include "kl_nvml.h"

#define EXPORT __attribute__((visibility("default")))
#define LD(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)

struct nvmlDevice_st { int index; };
static struct nvmlDevice_st devs[FK_DEVS] = {{0}, {1}, {2}, {3}};

static int ndev(void) { return fake_gpu_state()->ndev; }
static int idx(nvmlDevice_t h) {
    if (!h || h < devs || h >= devs + ndev()) return -1;
    return h->index;
}
static void uuid_str(int i, char *out, unsigned n) {
    CUuuid u;
    fake_gpu_uuid(i, &u);
    const unsigned char *b = (const unsigned char *)u.bytes;
    snprintf(out, n, "GPU-%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
             b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
}

EXPORT nvmlReturn_t nvmlInit(void) { fake_gpu_state(); return NVML_SUCCESS; }
EXPORT nvmlReturn_t nvmlInit_v2(void) { fake_gpu_state(); return NVML_SUCCESS; }
EXPORT nvmlReturn_t nvmlInitWithFlags(unsigned int f) { (void)f; fake_gpu_state(); return NVML_SUCCESS; }
EXPORT nvmlReturn_t nvmlShutdown(void) { return NVML_SUCCESS; }
EXPORT const char *nvmlErrorString(nvmlReturn_t r) { return r == NVML_SUCCESS ? "Success" : "Fake error"; }
EXPORT nvmlReturn_t nvmlDeviceGetCount(unsigned int *n) { *n = (unsigned)ndev(); return NVML_SUCCESS; }
EXPORT nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int *n) { *n = (unsigned)ndev(); return NVML_SUCCESS; }
EXPORT nvmlReturn_t nvmlDeviceGetHandleByIndex(unsigned int i, nvmlDevice_t *h) {
    if ((int)i >= ndev()) return NVML_ERROR_INVALID_ARGUMENT;
    *h = &devs[i];
    return NVML_SUCCESS;
}
EXPORT nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int i, nvmlDevice_t *h) {
    return nvmlDeviceGetHandleByIndex(i, h);
}
EXPORT nvmlReturn_t nvmlDeviceGetHandleByUUID(const char *uuid, nvmlDevice_t *h) {
    char s[96];
    for (int i = 0; i < ndev(); i++) {
        uuid_str(i, s, sizeof s);
        if (strcmp(s, uuid) == 0) {
            *h = &devs[i];
            return NVML_SUCCESS;
        }
    }
    return NVML_ERROR_NOT_FOUND;
}
EXPORT nvmlReturn_t nvmlDeviceGetHandleByPciBusId_v2(const char *bus, nvmlDevice_t *h) {
    unsigned d = 0;
    if (sscanf(bus, "0000:%x:00.0", &d) != 1 || d < 1 || (int)d > ndev()) return NVML_ERROR_NOT_FOUND;
    *h = &devs[d - 1];
    return NVML_SUCCESS;
}
EXPORT nvmlReturn_t nvmlDeviceGetIndex(nvmlDevice_t h, unsigned int *i) {
    if (idx(h) < 0) return NVML_ERROR_INVALID_ARGUMENT;
    *i = (unsigned)idx(h);
    return NVML_SUCCESS;
}
EXPORT nvmlReturn_t nvmlDeviceGetUUID(nvmlDevice_t h, char *s, unsigned int n) {
    if (idx(h) < 0) return NVML_ERROR_INVALID_ARGUMENT;
    uuid_str(idx(h), s, n);
    return NVML_SUCCESS;
}
EXPORT nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t h, char *s, unsigned int n) {
    if (idx(h) < 0) return NVML_ERROR_INVALID_ARGUMENT;
    snprintf(s, n, "Fake GPU %d", idx(h));
    return NVML_SUCCESS;
}
struct nvmlPciInfo_st { char busIdLegacy[16]; unsigned domain, bus, device, pciDeviceId, pciSubSystemId; char busId[32]; };
EXPORT nvmlReturn_t nvmlDeviceGetPciInfo_v3(nvmlDevice_t h, struct nvmlPciInfo_st *p) {
    if (idx(h) < 0) return NVML_ERROR_INVALID_ARGUMENT;
    memset(p, 0, sizeof *p);
    p->bus = (unsigned)idx(h) + 1;
    snprintf(p->busId, sizeof p->busId, "0000:%02x:00.0", idx(h) + 1);
    return NVML_SUCCESS;
}
static void mem(int i, unsigned long long *total, unsigned long long *used) {
    struct fk_dev *d = &fake_gpu_state()->dev[i];
    *total = d->total;
    *used = LD(&d->used);
}
EXPORT nvmlReturn_t nvmlDeviceGetMemoryInfo(nvmlDevice_t h, nvmlMemory_t *m) {
    if (idx(h) < 0) return NVML_ERROR_INVALID_ARGUMENT;
    mem(idx(h), &m->total, &m->used);
    m->free = m->total - m->used;
    return NVML_SUCCESS;
}
EXPORT nvmlReturn_t nvmlDeviceGetMemoryInfo_v2(nvmlDevice_t h, nvmlMemory_v2_t *m) {
    if (idx(h) < 0) return NVML_ERROR_INVALID_ARGUMENT;
    if (m->version != NVML_MEMORY_V2_VERSION) return NVML_ERROR_INVALID_ARGUMENT;
    mem(idx(h), &m->total, &m->used);
    m->reserved = 0;
    m->free = m->total - m->used;
    return NVML_SUCCESS;
}
#define PROCS(T, fill)                                                              \
    int d = idx(h);                                                                 \
    if (d < 0) return NVML_ERROR_INVALID_ARGUMENT;                                  \
    struct fk_state *s = fake_gpu_state();                                          \
    unsigned int n = 0;                                                             \
    for (int i = 0; i < FK_PROCS; i++) {                                            \
        if (!LD(&s->procs[i].pid) || !LD(&s->procs[i].used[d])) continue;           \
        if (infos && n < *count) {                                                  \
            T *x = &infos[n];                                                       \
            memset(x, 0, sizeof *x);                                                \
            x->pid = (unsigned)s->procs[i].pid;                                     \
            x->usedGpuMemory = LD(&s->procs[i].used[d]);                            \
            fill;                                                                   \
        }                                                                           \
        n++;                                                                        \
    }                                                                               \
    nvmlReturn_t rc = (infos && n <= *count) || n == 0 ? NVML_SUCCESS : NVML_ERROR_INSUFFICIENT_SIZE; \
    *count = n;                                                                     \
    return rc;
EXPORT nvmlReturn_t nvmlDeviceGetComputeRunningProcesses(nvmlDevice_t h, unsigned int *count,
                                                         nvmlProcessInfo_v1_t *infos) {
    PROCS(nvmlProcessInfo_v1_t, (void)0)
}
EXPORT nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v2(nvmlDevice_t h, unsigned int *count,
                                                            nvmlProcessInfo_t *infos) {
    PROCS(nvmlProcessInfo_t, x->gpuInstanceId = 0xffffffffu; x->computeInstanceId = 0xffffffffu)
}
EXPORT nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v3(nvmlDevice_t h, unsigned int *count,
                                                            nvmlProcessInfo_t *infos) {
    PROCS(nvmlProcessInfo_t, x->gpuInstanceId = 0xffffffffu; x->computeInstanceId = 0xffffffffu)
}
EXPORT nvmlReturn_t nvmlDeviceGetProcessUtilization(nvmlDevice_t h, nvmlProcessUtilizationSample_t *s,
                                                    unsigned int *n, unsigned long long since) {
    (void)h, (void)s, (void)n, (void)since;
    return NVML_ERROR_NOT_SUPPORTED;
}
EXPORT nvmlReturn_t nvmlDeviceGetProcessesUtilizationInfo(nvmlDevice_t h, void *info) {
    (void)h, (void)info;
    return NVML_ERROR_NOT_SUPPORTED;
}
EXPORT nvmlReturn_t nvmlDeviceGetUtilizationRates(nvmlDevice_t h, nvmlUtilization_t *u) {
    if (idx(h) < 0) return NVML_ERROR_INVALID_ARGUMENT;
    u->gpu = LD(&fake_gpu_state()->dev[idx(h)].util);
    u->memory = 0;
    return NVML_SUCCESS;
}
EXPORT nvmlReturn_t nvmlSystemGetDriverVersion(char *v, unsigned int n) {
    snprintf(v, n, "570.00.fake");
    return NVML_SUCCESS;
}
EXPORT nvmlReturn_t nvmlSystemGetCudaDriverVersion(int *v) { *v = 12080; return NVML_SUCCESS; }
EXPORT nvmlReturn_t nvmlSystemGetCudaDriverVersion_v2(int *v) { *v = 12080; return NVML_SUCCESS; }
