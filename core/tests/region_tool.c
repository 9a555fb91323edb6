/* Helper for the Python reader's tests (tests/unit/node/test_region.py):
 *   region_tool layout       print the layout constants and offsets (offsetof) as JSON
 *   region_tool create PATH  build a region with the C code, leave this process's slot in it, and
 *                            print what was written as JSON */
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "kl.h"

#define OFF(T, f) printf("  \"%s.%s\": %zu,\n", #T, #f, offsetof(struct T, f))

static int layout(void) {
    printf("{\n");
    printf("  \"MAGIC\": %u,\n  \"ABI_VERSION\": %u,\n  \"MAX_DEVICES\": %d,\n  \"MAX_PROCS\": %d,\n",
           KL_REGION_MAGIC, KL_REGION_ABI_VERSION, KL_MAX_DEVICES, KL_MAX_PROCS);
    printf("  \"UUID_LEN\": %d,\n  \"REGION_SIZE\": %zu,\n  \"DEVICE_SIZE\": %zu,\n  \"SLOT_SIZE\": %zu,\n",
           KL_UUID_LEN, sizeof(struct kl_region), sizeof(struct kl_region_device),
           sizeof(struct kl_region_slot));
    OFF(kl_region, magic); OFF(kl_region, abi_version); OFF(kl_region, size);
    OFF(kl_region, device_count); OFF(kl_region, max_procs); OFF(kl_region, sm_switch);
    OFF(kl_region, proc_count); OFF(kl_region, generation); OFF(kl_region, lock);
    OFF(kl_region, last_kernel_ns); OFF(kl_region, devices); OFF(kl_region, procs);
    OFF(kl_region_device, uuid); OFF(kl_region_device, limit_bytes); OFF(kl_region_device, total_bytes);
    OFF(kl_region_device, reserved_bytes); OFF(kl_region_device, limit_state);
    OFF(kl_region_device, sm_limit); OFF(kl_region_device, sm_state); OFF(kl_region_device, sm_util);
    OFF(kl_region_device, sm_tokens); OFF(kl_region_device, sm_last_ns); OFF(kl_region_device, sm_scale);
    OFF(kl_region_device, sm_util_ns); OFF(kl_region_device, sm_waited_ns);
    OFF(kl_region_device, sm_waited_mark);
    OFF(kl_region_slot, pid); OFF(kl_region_slot, host_pid); OFF(kl_region_slot, start_time);
    OFF(kl_region_slot, state); OFF(kl_region_slot, used);
    printf("  \"end\": 0\n}\n");
    return 0;
}

static int create(const char *path) {
    struct kl_config c;
    memset(&c, 0, sizeof c);
    c.mem_state[0] = KL_LIMIT_SET;
    c.mem_limit[0] = 1ull << 30;
    c.mem_state[1] = KL_LIMIT_SET;
    c.mem_limit[1] = 3ull << 30;
    c.mem_state[2] = KL_LIMIT_INVALID;
    c.sm_state[0] = KL_LIMIT_SET;
    c.sm_limit[0] = 30;
    c.any_mem = c.any_sm = 1;
    struct kl_rh h;
    unlink(path);
    if (kl_region_open(&h, path, &c) || kl_region_register(&h, &c)) return 1;
    if (kl_region_reserve(&h, 0, 300ull << 20) || kl_region_reserve(&h, 1, 5ull << 20)) return 1;
    kl_region_lock(&h);
    strcpy(h.r->devices[0].uuid, "GPU-4b4c0000-0000-0000-0000-000000000000");
    h.r->devices[0].total_bytes = 80ull << 30;
    h.r->last_kernel_ns = 123456789;
    kl_region_unlock(&h);
    const struct kl_region_slot *s = &h.r->procs[h.slot];
    printf("{\"pid\": %d, \"start_time\": %llu, \"slot\": %d, \"used0\": %llu, \"used1\": %llu,"
           " \"device_count\": %u}\n",
           s->pid, (unsigned long long)s->start_time, h.slot, (unsigned long long)s->used[0],
           (unsigned long long)s->used[1], h.r->device_count);
    return 0; /* the slot stays: this process is gone when the reader looks */
}

int main(int argc, char **argv) {
    if (argc == 2 && strcmp(argv[1], "layout") == 0) return layout();
    if (argc == 3 && strcmp(argv[1], "create") == 0) return create(argv[2]);
    fprintf(stderr, "usage: region_tool layout | create PATH\n");
    return 2;
}
