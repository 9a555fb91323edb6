/* Prints the sizes and offsets of the CUDA/NVML structs the core declares; built once against
 * NVIDIA's headers (-DREAL) and once against include/, the outputs must match (check_headers.sh). */
#include <stdio.h>
#include <stddef.h>
#ifdef REAL
#include <cuda.h>
#include <nvml.h>
typedef CUDA_MEM_ALLOC_NODE_PARAMS_v1 NODEP;
#define KLV2 nvmlMemory_v2
#else
#include "kl_cuda.h"
#include "kl_nvml.h"
typedef CUDA_MEM_ALLOC_NODE_PARAMS NODEP;
#define KLV2 NVML_MEMORY_V2_VERSION
#endif
#define P(T) printf(#T " %zu\n", sizeof(T))
#define O(T,f) printf(#T "." #f " %zu\n", offsetof(T,f))
int main(void){
P(CUmemAllocationProp); O(CUmemAllocationProp,location); O(CUmemAllocationProp,allocFlags);
P(CUmemPoolProps); P(NODEP); O(NODEP,bytesize); O(NODEP,dptr);
P(CUlaunchConfig); O(CUlaunchConfig,hStream); O(CUlaunchConfig,numAttrs);
P(CUDA_ARRAY_DESCRIPTOR); P(CUDA_ARRAY3D_DESCRIPTOR); O(CUDA_ARRAY3D_DESCRIPTOR,Flags); P(CUDA_ARRAY_MEMORY_REQUIREMENTS);
P(nvmlMemory_t); P(nvmlMemory_v2_t); P(nvmlProcessInfo_v1_t); P(nvmlProcessInfo_t); P(nvmlProcessUtilizationSample_t); P(nvmlUtilization_t);
printf("v2ver %u\n", (unsigned)KLV2);
printf("%d %d %d\n", CU_MEMPOOL_ATTR_RESERVED_MEM_CURRENT, CU_MEMPOOL_ATTR_USED_MEM_CURRENT, CU_GRAPH_MEM_ATTR_RESERVED_MEM_CURRENT);
}
