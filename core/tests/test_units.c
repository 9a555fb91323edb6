/* Unit tests of the core services (config, region, allocation map, limiter basics), built plain,
 * with ASan+UBSan and with TSan (the threaded reserve/refund race). */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <unistd.h>

#include "kl.h"
#include "kt.h"

/* ---- config ---- */

static void test_size_units_agree(void) {
    const char *same[] = {"1g", "1G", "1024m", "1048576k", "1Gi", "1gb", "1GiB", "1 g", " 1g ", "1073741824",
                          "0x40000000", "1073741824b", "1024M", "1024MiB"};
    for (size_t i = 0; i < sizeof same / sizeof same[0]; i++) {
        uint64_t v = 0;
        int rc = kl_parse_size(same[i], &v);
        if (rc != 0 || v != GIB) fprintf(stderr, "    value '%s'\n", same[i]);
        KT_EQ(rc, 0);
        KT_EQ(v, GIB);
    }
}

static void test_size_edge_cases(void) {
    uint64_t v = 7;
    KT_EQ(kl_parse_size("010m", &v), 0); /* leading zero is decimal, not octal */
    KT_EQ(v, 10 * MIB);
    KT_EQ(kl_parse_size("0", &v), 0);
    KT_EQ(v, 0);
    KT_EQ(kl_parse_size("18446744073709551615", &v), 0);
    KT_EQ(kl_parse_size("18446744073709551616", &v), -ERANGE);
    KT_EQ(kl_parse_size("16777216t", &v), -ERANGE);
    KT_EQ(kl_parse_size("99999999999999999999g", &v), -ERANGE);
    KT_EQ(kl_parse_size("0x1ffffffffffffffff", &v), -ERANGE);
    const char *bad[] = {"", "-1", "1.5g", "abc", "1x", "g", "1 g b", "1gib2", "0x", "1e9", "4 GB extra"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        v = 12345;
        int rc = kl_parse_size(bad[i], &v);
        if (rc != -EINVAL) fprintf(stderr, "    accepted '%s'\n", bad[i]);
        KT_EQ(rc, -EINVAL);
        KT_EQ(v, 12345); /* never a partial value */
    }
}

static void test_percent(void) {
    uint32_t v;
    KT_EQ(kl_parse_percent("30", &v), 0);
    KT_EQ(v, 30);
    KT_EQ(kl_parse_percent(" 45% ", &v), 0);
    KT_EQ(v, 45);
    KT_EQ(kl_parse_percent("101", &v), -ERANGE);
    KT_EQ(kl_parse_percent("-5", &v), -EINVAL);
    KT_EQ(kl_parse_percent("3.5", &v), -EINVAL);
    KT_EQ(kl_parse_percent("lots", &v), -EINVAL);
}

static const char *const *fake_env;
static const char *env_lookup(const char *name) {
    for (const char *const *e = fake_env; e && *e; e += 2)
        if (strcmp(e[0], name) == 0) return e[1];
    return NULL;
}

/* runs kl_config_load with stderr captured; returns the number of lines written */
static int load_captured(struct kl_config *c, const char *const *env, char *out, size_t outsz, int *bad) {
    fake_env = env;
    char path[] = "/tmp/kl-test-stderr-XXXXXX";
    int fd = mkstemp(path);
    int saved = dup(2);
    dup2(fd, 2);
    *bad = kl_config_load(c, env_lookup);
    dup2(saved, 2);
    close(saved);
    ssize_t n = pread(fd, out, outsz - 1, 0);
    out[n > 0 ? n : 0] = '\0';
    close(fd);
    unlink(path);
    int lines = 0;
    for (char *p = out; *p; p++) lines += *p == '\n';
    return lines;
}

static void test_config_limits_and_overrides(void) {
    const char *env[] = {"CUDA_DEVICE_MEMORY_LIMIT", "1g", "CUDA_DEVICE_MEMORY_LIMIT_1", "2048m",
                         "CUDA_DEVICE_MEMORY_LIMIT_2", "0", "CUDA_DEVICE_SM_LIMIT", "30",
                         "CUDA_DEVICE_SM_LIMIT_1", "100", "CUDA_DEVICE_MEMORY_SHARED_CACHE", "/tmp/x.cache",
                         NULL};
    struct kl_config c;
    char out[4096];
    int bad;
    int lines = load_captured(&c, env, out, sizeof out, &bad);
    KT_EQ(lines, 0); /* quiet when nothing is wrong */
    KT_EQ(bad, 0);
    KT_EQ(c.mem_state[0], KL_LIMIT_SET);
    KT_EQ(c.mem_limit[0], GIB);
    KT_EQ(c.mem_limit[1], 2 * GIB);
    KT_EQ(c.mem_state[2], KL_LIMIT_NONE);
    KT_EQ(c.mem_limit[15], GIB);
    KT_EQ(c.sm_state[0], KL_LIMIT_SET);
    KT_EQ(c.sm_limit[0], 30);
    KT_EQ(c.sm_state[1], KL_LIMIT_NONE);
    KT_CHECK(strcmp(c.region_path, "/tmp/x.cache") == 0);
    KT_EQ(c.policy, KL_POLICY_DEFAULT);
    KT_EQ(c.any_mem, 1);
    KT_EQ(c.any_sm, 1);
}

static void test_config_garbage_reported_once_and_refused(void) {
    const char *env[] = {"CUDA_DEVICE_MEMORY_LIMIT", "lots", "CUDA_DEVICE_MEMORY_LIMIT_3", "4g",
                         "CUDA_DEVICE_SM_LIMIT", "150", "GPU_CORE_UTILIZATION_POLICY", "sometimes", NULL};
    struct kl_config c;
    char out[4096];
    int bad;
    int lines = load_captured(&c, env, out, sizeof out, &bad);
    KT_EQ(bad, 3);
    KT_EQ(lines, 3); /* one line per bad variable, not one per device */
    KT_CHECK(strstr(out, "CUDA_DEVICE_MEMORY_LIMIT=\"lots\"") != NULL);
    KT_EQ(c.mem_state[0], KL_LIMIT_INVALID); /* never a wrong limit */
    KT_EQ(c.mem_limit[0], 0);
    KT_EQ(c.mem_state[3], KL_LIMIT_SET); /* a valid override still applies */
    KT_EQ(c.mem_limit[3], 4 * GIB);
    KT_EQ(c.sm_state[0], KL_LIMIT_INVALID);
    KT_EQ(c.policy, KL_POLICY_DEFAULT);
}

static void test_config_unset_means_unlimited(void) {
    const char *env[] = {"LIBCUDA_LOG_LEVEL", "4", "GPU_CORE_UTILIZATION_POLICY", "FORCE", NULL};
    struct kl_config c;
    char out[1024];
    int bad;
    load_captured(&c, env, out, sizeof out, &bad);
    KT_EQ(bad, 0);
    KT_EQ(c.any_mem, 0);
    KT_EQ(c.any_sm, 0);
    KT_EQ(c.mem_state[0], KL_LIMIT_NONE);
    KT_EQ(c.policy, KL_POLICY_FORCE);
    KT_EQ(c.log_level, KL_LOG_DEBUG);
    KT_CHECK(strcmp(c.region_path, KL_REGION_DEFAULT_PATH) == 0);
    kl_log_set_level(KL_LOG_WARN);
}

/* ---- region ---- */

static struct kl_config cfg_with(uint64_t limit) {
    struct kl_config c;
    memset(&c, 0, sizeof c);
    for (int i = 0; i < KL_MAX_DEVICES; i++) {
        c.mem_state[i] = limit ? KL_LIMIT_SET : KL_LIMIT_NONE;
        c.mem_limit[i] = limit;
    }
    c.any_mem = limit != 0;
    return c;
}

static void tmp_region_path(char *buf, size_t n) {
    static int seq;
    snprintf(buf, n, "/tmp/kl-unit-%d-%d.cache", (int)getpid(), seq++);
    unlink(buf);
}

static void test_region_reserve_at_under_over_limit(void) {
    char path[128];
    tmp_region_path(path, sizeof path);
    struct kl_config c = cfg_with(GIB);
    c.mem_state[2] = KL_LIMIT_INVALID;
    c.mem_state[3] = KL_LIMIT_NONE;
    struct kl_rh h;
    KT_EQ(kl_region_open(&h, path, &c), 0);
    KT_EQ(kl_region_register(&h, &c), 0);
    KT_EQ(h.r->magic, KL_REGION_MAGIC);
    KT_EQ(h.r->size, KL_REGION_SIZE);
    KT_EQ(kl_region_reserve(&h, 0, 600 * MIB), 0);
    KT_EQ(kl_region_reserve(&h, 0, 600 * MIB), -ENOMEM);
    KT_EQ(kl_region_reserve(&h, 0, 424 * MIB), 0); /* exactly at the limit */
    KT_EQ(kl_region_reserved(&h, 0), GIB);
    KT_EQ(kl_region_reserve(&h, 0, 1), -ENOMEM);
    KT_EQ(kl_region_reserve(&h, 0, UINT64_MAX), -ENOMEM); /* no overflow */
    kl_region_adjust(&h, 0, -(int64_t)(600 * MIB));
    KT_EQ(kl_region_reserved(&h, 0), 424 * MIB);
    KT_EQ(h.r->procs[h.slot].used[0], 424 * MIB);
    kl_region_adjust(&h, 0, -(int64_t)(10 * GIB)); /* refunds saturate */
    KT_EQ(kl_region_reserved(&h, 0), 0);
    KT_EQ(kl_region_reserve(&h, 2, 1), -EPERM);
    KT_EQ(kl_region_reserve(&h, 3, 100 * GIB), 0);
    kl_region_unregister(&h);
    KT_EQ(h.r, h.r);
    kl_region_close(&h);
    unlink(path);
}

static void test_region_stale_file_takes_new_limits(void) {
    char path[128];
    tmp_region_path(path, sizeof path);
    struct kl_config a = cfg_with(GIB), b = cfg_with(2 * GIB);
    struct kl_rh h;
    KT_EQ(kl_region_open(&h, path, &a), 0);
    KT_EQ(kl_region_register(&h, &a), 0);
    KT_EQ(kl_region_reserve(&h, 0, 100 * MIB), 0);
    kl_region_unregister(&h);
    kl_region_close(&h);
    KT_EQ(kl_region_open(&h, path, &b), 0);
    KT_EQ(h.r->devices[0].limit_bytes, GIB); /* file content until a process registers */
    KT_EQ(kl_region_register(&h, &b), 0);
    KT_EQ(h.r->devices[0].limit_bytes, 2 * GIB);
    KT_EQ(kl_region_reserved(&h, 0), 0);
    kl_region_close(&h);
    unlink(path);
}

static void test_region_incompatible_file_refused(void) {
    char path[128];
    tmp_region_path(path, sizeof path);
    int fd = open(path, O_CREAT | O_RDWR, 0600);
    KT_EQ(write(fd, "not a region", 12), 12);
    close(fd);
    struct kl_config c = cfg_with(GIB);
    struct kl_rh h;
    KT_EQ(kl_region_open(&h, path, &c), -EPROTO);
    KT_EQ(kl_region_open(&h, "/nonexistent-dir/region.cache", &c), -ENOENT);
    KT_EQ(kl_region_open_private(&h, &c), 0); /* the library's fallback */
    KT_EQ(kl_region_register(&h, &c), 0);
    KT_EQ(kl_region_reserve(&h, 0, 2 * GIB), -ENOMEM);
    kl_region_close(&h);
    unlink(path);
}

static void test_region_pid_reuse_is_reclaimed(void) {
    char path[128];
    tmp_region_path(path, sizeof path);
    struct kl_config c = cfg_with(GIB);
    struct kl_rh h;
    KT_EQ(kl_region_open(&h, path, &c), 0);
    KT_EQ(kl_region_register(&h, &c), 0);
    /* a slot of "pid 1" with a start time pid 1 never had: its process is gone */
    struct kl_region_slot *s = &h.r->procs[h.slot == 0 ? 1 : 0];
    s->pid = 1;
    s->start_time = 0xdeadbeefull;
    s->used[0] = 900 * MIB;
    s->state = KL_SLOT_ACTIVE;
    h.r->devices[0].reserved_bytes += 900 * MIB;
    h.r->proc_count++;
    KT_EQ(kl_region_reserve(&h, 0, 600 * MIB), 0); /* reclaimed on the way to -ENOMEM */
    KT_EQ(s->state, KL_SLOT_FREE);
    KT_EQ(kl_region_reserved(&h, 0), 600 * MIB);
    kl_region_close(&h);
    unlink(path);
}

/* ---- allocation map ---- */

static void test_track_map(void) {
    kl_track_reset();
    for (uint64_t i = 1; i <= 20000; i++) kl_track_put(KL_TRACK_PTR, i * 4096, (int)(i % 3), i);
    kl_track_put(KL_TRACK_VMM, 4096, 1, 77); /* same key, other kind */
    struct kl_track_val v;
    int ok = 1;
    for (uint64_t i = 1; i <= 20000; i += 2) ok &= kl_track_take(KL_TRACK_PTR, i * 4096, &v) && v.bytes == i;
    KT_CHECK(ok);
    for (uint64_t i = 2; i <= 20000; i += 2) ok &= kl_track_get(KL_TRACK_PTR, i * 4096, &v) && v.bytes == i;
    KT_CHECK(ok);
    KT_EQ(kl_track_take(KL_TRACK_PTR, 4096, &v), 0);
    KT_EQ(kl_track_get(KL_TRACK_VMM, 4096, &v), 1);
    KT_EQ(v.bytes, 77);
    KT_EQ(kl_track_ref(KL_TRACK_VMM, 4096, +1, &v), 1);
    KT_EQ(v.refs, 2);
    KT_EQ(kl_track_ref(KL_TRACK_VMM, 4096, -1, &v), 1);
    KT_EQ(kl_track_ref(KL_TRACK_VMM, 4096, -1, &v), 1);
    KT_EQ(v.refs, 0);
    KT_EQ(kl_track_get(KL_TRACK_VMM, 4096, &v), 0);
    kl_track_reset();
}

/* ---- threaded race (the TSan build's subject) ---- */

static struct kl_rh race_h;
static volatile int race_stop;
static uint64_t race_max_seen;

static void *race_worker(void *arg) {
    unsigned seed = (unsigned)(uintptr_t)arg;
    for (int i = 0; i < 3000; i++) {
        uint64_t n = (uint64_t)(rand_r(&seed) % 700 + 1) * MIB;
        if (kl_region_reserve(&race_h, 0, n) == 0) kl_region_adjust(&race_h, 0, -(int64_t)n);
    }
    return NULL;
}

static void *race_monitor(void *arg) {
    (void)arg;
    while (!__atomic_load_n(&race_stop, __ATOMIC_ACQUIRE)) {
        uint64_t r = kl_region_reserved(&race_h, 0);
        if (r > race_max_seen) race_max_seen = r;
    }
    return NULL;
}

static void test_threads_never_exceed_limit(void) {
    char path[128];
    tmp_region_path(path, sizeof path);
    struct kl_config c = cfg_with(GIB);
    KT_EQ(kl_region_open(&race_h, path, &c), 0);
    KT_EQ(kl_region_register(&race_h, &c), 0);
    pthread_t t[4], m;
    race_stop = 0;
    pthread_create(&m, NULL, race_monitor, NULL);
    for (int i = 0; i < 4; i++) pthread_create(&t[i], NULL, race_worker, (void *)(uintptr_t)(i + 1));
    for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    __atomic_store_n(&race_stop, 1, __ATOMIC_RELEASE);
    pthread_join(m, NULL);
    KT_CHECK(race_max_seen <= GIB);
    KT_EQ(kl_region_reserved(&race_h, 0), 0);
    kl_region_close(&race_h);
    unlink(path);
}

/* ---- limiter basics ---- */

static uint64_t vnow;
static uint64_t v_now(void *c) { (void)c; return vnow; }
static void v_sleep(void *c, uint64_t ns) { (void)c; vnow += ns; }

static void test_limiter_unlimited_and_bounded(void) {
    struct kl_region_device d;
    memset(&d, 0, sizeof d);
    struct kl_clock clk = {v_now, v_sleep, NULL};
    vnow = 1000000000ull;
    kl_limiter_init_device(&d, 0);
    KT_EQ(kl_limiter_acquire(&d, 0, 1ull << 40, &kl_limiter_defaults, &clk, NULL, NULL), 0);
    kl_limiter_init_device(&d, 10);
    uint64_t worst = 0;
    for (int i = 0; i < 1000; i++) {
        uint64_t w = kl_limiter_acquire(&d, 0, 1ull << 34, &kl_limiter_defaults, &clk, NULL, NULL);
        if (w > worst) worst = w;
    }
    KT_CHECK(worst <= kl_limiter_defaults.max_wait_ns);
    KT_CHECK(worst > 0);
}

int main(void) {
    KT_RUN(test_size_units_agree);
    KT_RUN(test_size_edge_cases);
    KT_RUN(test_percent);
    KT_RUN(test_config_limits_and_overrides);
    KT_RUN(test_config_garbage_reported_once_and_refused);
    KT_RUN(test_config_unset_means_unlimited);
    KT_RUN(test_region_reserve_at_under_over_limit);
    KT_RUN(test_region_stale_file_takes_new_limits);
    KT_RUN(test_region_incompatible_file_refused);
    KT_RUN(test_region_pid_reuse_is_reclaimed);
    KT_RUN(test_track_map);
    KT_RUN(test_threads_never_exceed_limit);
    KT_RUN(test_limiter_unlimited_and_bounded);
    return kt_done();
}
