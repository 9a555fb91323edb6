/* Benchmark driver for bench/core_overhead.py: cuMemAlloc_v2+cuMemFree_v2 pairs and cuLaunchKernel
 * calls through whatever libcuda.so.1 resolves to (the fake directly, or the hook when
 * LD_PRELOADed). Usage: core_bench alloc|launch|both ITERATIONS. Prints one JSON line with the
 * best-of-5 ns per operation. */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kl_cuda.h"

static double now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: core_bench alloc|launch|both ITERATIONS\n");
        return 2;
    }
    const char *op = argv[1];
    long n = atol(argv[2]);
    void *h = dlopen("libcuda.so.1", RTLD_NOW);
    if (!h) {
        fprintf(stderr, "%s\n", dlerror());
        return 1;
    }
    void (*set_logging)(int) = (void (*)(int))dlsym(h, "fake_cuda_set_logging");
    if (set_logging) set_logging(0);
    PFN_cuGetProcAddress_v12000 gpa = (PFN_cuGetProcAddress_v12000)dlsym(h, "cuGetProcAddress_v2");
    CUdriverProcAddressQueryResult st;
    void *p;
#define GET(T, name, ver, flags) (gpa(name, &p, ver, flags, &st), (T)p)
    GET(PFN_cuInit_v2000, "cuInit", 2000, 0)(0);
    CUcontext ctx;
    GET(PFN_cuDevicePrimaryCtxRetain_v7000, "cuDevicePrimaryCtxRetain", 7000, 0)(&ctx, 0);
    GET(CUresult(*)(CUcontext), "cuCtxSetCurrent", 4000, 0)(ctx);
    PFN_cuMemAlloc_v3020 alloc = GET(PFN_cuMemAlloc_v3020, "cuMemAlloc", 3020, 0);
    PFN_cuMemFree_v3020 mfree = GET(PFN_cuMemFree_v3020, "cuMemFree", 3020, 0);
    PFN_cuLaunchKernel_v4000 launch = GET(PFN_cuLaunchKernel_v4000, "cuLaunchKernel", 4000, 0);
    double best_alloc = 1e18, best_launch = 1e18;
    int do_alloc = strcmp(op, "launch") != 0, do_launch = strcmp(op, "alloc") != 0;
    for (int rep = 0; rep < 5; rep++) {
        if (do_alloc) {
            double t0 = now_ns();
            for (long i = 0; i < n; i++) {
                CUdeviceptr d;
                if (alloc(&d, 1 << 20) != CUDA_SUCCESS || mfree(d) != CUDA_SUCCESS) {
                    fprintf(stderr, "allocation failed\n");
                    return 1;
                }
            }
            double t = (now_ns() - t0) / (double)n;
            if (t < best_alloc) best_alloc = t;
        }
        if (do_launch) {
            double t0 = now_ns();
            for (long i = 0; i < n; i++) launch(NULL, 1, 1, 1, 32, 1, 1, 0, NULL, NULL, NULL);
            double t = (now_ns() - t0) / (double)n;
            if (t < best_launch) best_launch = t;
        }
    }
    printf("{\"alloc_free_ns\": %.1f, \"launch_ns\": %.1f}\n", do_alloc ? best_alloc : 0.0,
           do_launch ? best_launch : 0.0);
    return 0;
}
