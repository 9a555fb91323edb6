/* Records a golden cuGetProcAddress trace: loads a real libcudart (argv[1]) against the logging
 * fake libcuda.so.1 (LD_LIBRARY_PATH=build/fakes, FAKE_CUDA_TRACE=<output>) and makes the calls of
 * a minimal CUDA program (cudaGetDeviceCount, cudaMalloc). The runtime performs all its lookups,
 * then stops at the fake's cuGetExportTable; the trace is what tools/record-golden.sh commits. */
#include <dlfcn.h>
#include <stdio.h>

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: golden_record /path/to/libcudart.so.N\n");
        return 2;
    }
    void *rt = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (!rt) {
        fprintf(stderr, "dlopen: %s\n", dlerror());
        return 1;
    }
    int (*count)(int *) = (int (*)(int *))dlsym(rt, "cudaGetDeviceCount");
    int (*malloc_)(void **, size_t) = (int (*)(void **, size_t))dlsym(rt, "cudaMalloc");
    int n = -1;
    void *p = NULL;
    int rc1 = count ? count(&n) : -1;
    int rc2 = malloc_ ? malloc_(&p, 1 << 20) : -1;
    printf("cudaGetDeviceCount -> %d (n=%d), cudaMalloc -> %d\n", rc1, n, rc2);
    return 0;
}
