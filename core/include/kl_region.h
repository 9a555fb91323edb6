/* kl_region.h: the one definition of Kantaloupe's shared region, the file every process of a
 * container maps (path: CUDA_DEVICE_MEMORY_SHARED_CACHE, default KL_REGION_DEFAULT_PATH) and the
 * node monitor reads (src/kantaloupe/node/region.py; tests/unit/node/test_region.py checks that reader
 * against this header). Any layout change bumps KL_REGION_ABI_VERSION.
 *
 * Layout (x86-64 and arm64, little-endian, natural alignment, no implicit padding):
 *
 *   offset  size  field
 *   0       4     magic            KL_REGION_MAGIC, written last by the creator (release store)
 *   4       4     abi_version      KL_REGION_ABI_VERSION
 *   8       8     size             sizeof(struct kl_region) == KL_REGION_SIZE
 *   16      4     device_count     devices with configuration (max index + 1)
 *   20      4     max_procs        KL_MAX_PROCS
 *   24      4     sm_switch        1: compute limits apply (default); the monitor may write 0
 *   28      4     proc_count       active slots (informational)
 *   32      8     generation       bumped by every reclamation of dead slots
 *   40      64    lock             robust, process-shared pthread mutex (opaque to readers)
 *   104     8     last_kernel_ns   CLOCK_MONOTONIC ns of a recent kernel launch (0: none yet),
 *                                  refreshed at most once a second per process
 *   112     16    reserved
 *   128     136 * KL_MAX_DEVICES   devices[]  (struct kl_region_device)
 *   2304    152 * KL_MAX_PROCS     procs[]    (struct kl_region_slot)
 *
 * Counters are updated with atomics; device.reserved_bytes == sum over active slots of used[dev]
 * (the lock holder keeps both in step; a crash in the critical section is repaired from the slots
 * by the next lock owner, which gets EOWNERDEAD).
 */
#ifndef KL_REGION_H
#define KL_REGION_H

#include <pthread.h>
#include <stdint.h>

#define KL_REGION_MAGIC 0x4b4c5247u /* "GRLK" in memory order: 'K''L''R''G' as a u32 */
#define KL_REGION_ABI_VERSION 1u
#define KL_MAX_DEVICES 16
#define KL_MAX_PROCS 1024
#define KL_UUID_LEN 48
#define KL_LOCK_BYTES 64
#define KL_REGION_DEFAULT_PATH "/tmp/kantaloupe-region.cache"

/* device.limit_state / device.sm_state */
#define KL_LIMIT_NONE 0u    /* no limit: pass through */
#define KL_LIMIT_SET 1u     /* limit_bytes / sm_limit applies */
#define KL_LIMIT_INVALID 2u /* set but unparseable: allocations (launches) are refused */

/* slot.state */
#define KL_SLOT_FREE 0u
#define KL_SLOT_ACTIVE 1u

struct kl_region_device {     /* 136 bytes */
    char uuid[KL_UUID_LEN];   /* 0   "GPU-..." once a CUDA process has seen the device */
    uint64_t limit_bytes;     /* 48  valid when limit_state == KL_LIMIT_SET */
    uint64_t total_bytes;     /* 56  physical size seen by the last reporter (0 unknown) */
    uint64_t reserved_bytes;  /* 64  cross-process charge: reserve-then-allocate counter */
    uint32_t limit_state;     /* 72  KL_LIMIT_* */
    uint32_t sm_limit;        /* 76  percent 1..99 when sm_state == KL_LIMIT_SET */
    uint32_t sm_state;        /* 80  KL_LIMIT_* */
    uint32_t sm_util;         /* 84  last utilisation sample, percent */
    int64_t sm_tokens;        /* 88  shared launch budget, ns of GPU time (may be negative) */
    uint64_t sm_last_ns;      /* 96  CLOCK_MONOTONIC of the last refill */
    uint64_t sm_scale;        /* 104 launch cost scale, Q16 ns per work unit */
    uint64_t sm_util_ns;      /* 112 CLOCK_MONOTONIC of the last utilisation sample */
    uint64_t sm_waited_ns;    /* 120 total time launches waited */
    uint64_t sm_waited_mark;  /* 128 sm_waited_ns at the last utilisation sample */
};

struct kl_region_slot {       /* 152 bytes */
    int32_t pid;              /* 0  pid in the container's namespace */
    int32_t host_pid;         /* 4  0 unless known (the node agent may fill it) */
    uint64_t start_time;      /* 8  /proc/<pid>/stat field 22: with pid, the slot key */
    uint32_t state;           /* 16 KL_SLOT_* */
    uint32_t pad;             /* 20 */
    uint64_t used[KL_MAX_DEVICES]; /* 24 bytes charged by this process per device */
};

struct kl_region {
    uint32_t magic;
    uint32_t abi_version;
    uint64_t size;
    uint32_t device_count;
    uint32_t max_procs;
    uint32_t sm_switch;
    uint32_t proc_count;
    uint64_t generation;
    union {
        pthread_mutex_t mutex;
        uint8_t bytes[KL_LOCK_BYTES];
    } lock;
    uint64_t last_kernel_ns;
    uint8_t reserved[16];
    struct kl_region_device devices[KL_MAX_DEVICES];
    struct kl_region_slot procs[KL_MAX_PROCS];
};

#define KL_REGION_HEADER_SIZE 128
#define KL_REGION_DEVICE_SIZE 136
#define KL_REGION_SLOT_SIZE 152
#define KL_REGION_SIZE (KL_REGION_HEADER_SIZE + KL_REGION_DEVICE_SIZE * KL_MAX_DEVICES + \
                        KL_REGION_SLOT_SIZE * KL_MAX_PROCS)

_Static_assert(sizeof(pthread_mutex_t) <= KL_LOCK_BYTES, "mutex does not fit the lock field");
_Static_assert(sizeof(struct kl_region_device) == KL_REGION_DEVICE_SIZE, "device size");
_Static_assert(sizeof(struct kl_region_slot) == KL_REGION_SLOT_SIZE, "slot size");
_Static_assert(sizeof(struct kl_region) == KL_REGION_SIZE, "region size");

#endif
