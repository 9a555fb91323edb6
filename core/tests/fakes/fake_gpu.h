/* Test-only fake GPU shared by the fake libcuda.so.1 and libnvidia-ml.so.1. Its state lives in a
 * file named by FAKE_GPU_STATE (mmap'd MAP_SHARED, so several processes see one GPU), or in
 * private memory when unset. Other knobs: FAKE_GPU_COUNT (devices, default 2), FAKE_GPU_MEM_MIB
 * (physical size, default 81920), FAKE_CTX_OVERHEAD_MIB (context cost, default 300),
 * FAKE_GPU_UTIL (utilisation percent reported by NVML, default 0), FAKE_CUDA_TRACE (append every
 * cuGetProcAddress request as "symbol version flags" to this file). */
#ifndef FAKE_GPU_H
#define FAKE_GPU_H

#include <stdint.h>
#include "kl_cuda.h"

#define FK_DEVS 4
#define FK_PROCS 64

struct fk_dev {
    uint64_t total;
    uint64_t used;     /* physical bytes in use (allocations, pools' reserved, contexts) */
    uint64_t graph_reserved;
    uint32_t util;     /* scripted utilisation, percent */
    uint32_t pad;
};

struct fk_proc {
    int32_t pid;
    uint32_t pad;
    uint64_t used[FK_DEVS];
};

struct fk_state {
    uint32_t magic;
    int32_t ndev;
    uint64_t ctx_overhead;
    uint64_t next_addr;
    uint64_t next_handle;
    struct fk_dev dev[FK_DEVS];
    struct fk_proc procs[FK_PROCS];
};

/* test-only exports of the fake libcuda */
struct fk_state *fake_gpu_state(void);
void fake_gpu_uuid(int dev, CUuuid *out);
void fake_gpu_set_util(int dev, unsigned int pct);
int fake_cuda_log_count(void);
const char *fake_cuda_log_get(int i);
int fake_cuda_log_calls(const char *name); /* how many calls of exactly this variant */
void fake_cuda_log_clear(void);
void fake_cuda_fail_next(const char *name, CUresult rc);
void fake_cuda_set_logging(int on);
const char *fake_cuda_lookup(const char *sym, int ver, cuuint64_t flags, int *status);

#endif
