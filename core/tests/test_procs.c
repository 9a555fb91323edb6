/* Multi-process tests of the shared region: racing processes never exceed the limit, SIGKILL while
 * holding memory or the lock is recovered within 1 s, a sequential process sees correct usage. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kl.h"
#include "kt.h"

#define TRIALS 1000
#define WORKERS 3

static struct kl_config cfg_with(uint64_t limit) {
    struct kl_config c;
    memset(&c, 0, sizeof c);
    for (int i = 0; i < KL_MAX_DEVICES; i++) {
        c.mem_state[i] = KL_LIMIT_SET;
        c.mem_limit[i] = limit;
    }
    c.any_mem = 1;
    return c;
}

static void tmp_path(char *buf, size_t n, const char *tag) {
    snprintf(buf, n, "/tmp/kl-procs-%d-%s.cache", (int)getpid(), tag);
    unlink(buf);
}

struct race_shared {
    pthread_barrier_t bar;
    int won[TRIALS][WORKERS];
    uint64_t max_seen;
};

static void test_race_processes_never_over_limit(void) {
    char path[128];
    tmp_path(path, sizeof path, "race");
    struct kl_config c = cfg_with(GIB);
    struct race_shared *sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    pthread_barrierattr_t ba;
    pthread_barrierattr_init(&ba);
    pthread_barrierattr_setpshared(&ba, PTHREAD_PROCESS_SHARED);
    pthread_barrier_init(&sh->bar, &ba, WORKERS + 1);
    struct kl_rh h;
    KT_EQ(kl_region_open(&h, path, &c), 0);
    KT_EQ(kl_region_register(&h, &c), 0);
    pid_t pids[WORKERS];
    for (int w = 0; w < WORKERS; w++) {
        pids[w] = fork();
        if (pids[w] == 0) {
            struct kl_rh mine;
            if (kl_region_open(&mine, path, &c) || kl_region_register(&mine, &c)) _exit(2);
            for (int t = 0; t < TRIALS; t++) {
                pthread_barrier_wait(&sh->bar);
                int ok = kl_region_reserve(&mine, 0, 600 * MIB) == 0;
                sh->won[t][w] = ok;
                pthread_barrier_wait(&sh->bar);
                if (ok) kl_region_adjust(&mine, 0, -(int64_t)(600 * MIB));
                pthread_barrier_wait(&sh->bar);
            }
            _exit(0);
        }
    }
    int over = 0, trials_with_winner = 0;
    for (int t = 0; t < TRIALS; t++) {
        pthread_barrier_wait(&sh->bar);
        pthread_barrier_wait(&sh->bar);
        uint64_t r = kl_region_reserved(&h, 0);
        int winners = 0;
        for (int w = 0; w < WORKERS; w++) winners += sh->won[t][w];
        if (winners > 1 || r > GIB) over++;
        trials_with_winner += winners == 1;
        pthread_barrier_wait(&sh->bar);
    }
    for (int w = 0; w < WORKERS; w++) {
        int st;
        waitpid(pids[w], &st, 0);
        KT_CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    KT_EQ(over, 0);
    KT_EQ(trials_with_winner, TRIALS); /* and never a spurious refusal */
    KT_EQ(kl_region_reserved(&h, 0), 0);
    kl_region_close(&h);
    munmap(sh, sizeof *sh);
    unlink(path);
}

/* child: reserve `hold` bytes, optionally take the lock, report readiness, wait to be killed */
static pid_t spawn_holder(const char *path, const struct kl_config *c, uint64_t hold, int take_lock,
                          int half_update) {
    int fds[2];
    if (pipe(fds) != 0) return -1;
    pid_t pid = fork();
    if (pid == 0) {
        struct kl_rh mine;
        if (kl_region_open(&mine, path, c) || kl_region_register(&mine, c)) _exit(2);
        if (hold && kl_region_reserve(&mine, 0, hold) != 0) _exit(3);
        if (take_lock) {
            kl_region_lock(&mine);
            if (half_update) /* die between the slot and the device counter update */
                mine.r->procs[mine.slot].used[0] += 100 * MIB;
        }
        char x = 'r';
        if (write(fds[1], &x, 1) != 1) _exit(4);
        for (;;) pause();
    }
    close(fds[1]);
    char x;
    if (read(fds[0], &x, 1) != 1) pid = -1;
    close(fds[0]);
    return pid;
}

static void sigkill_case(int take_lock, int reap_first, int half_update) {
    char path[128];
    tmp_path(path, sizeof path, "kill");
    struct kl_config c = cfg_with(GIB);
    struct kl_rh h;
    KT_EQ(kl_region_open(&h, path, &c), 0);
    KT_EQ(kl_region_register(&h, &c), 0);
    pid_t child = spawn_holder(path, &c, 600 * MIB, take_lock, half_update);
    KT_CHECK(child > 0);
    KT_EQ(kl_region_reserved(&h, 0), 600 * MIB);
    kill(child, SIGKILL);
    if (reap_first) waitpid(child, NULL, 0);
    else usleep(20000); /* a zombie: dead, not yet reaped */
    double t0 = kt_now();
    int rc = kl_region_reserve(&h, 0, 600 * MIB);
    double dt = kt_now() - t0;
    KT_EQ(rc, 0);
    KT_CHECK(dt < 1.0);
    KT_EQ(kl_region_reserved(&h, 0), 600 * MIB);
    KT_EQ(h.r->proc_count, 1);
    if (!reap_first) waitpid(child, NULL, 0);
    kl_region_close(&h);
    unlink(path);
}

static void test_sigkill_holding_memory_reaped(void) { sigkill_case(0, 1, 0); }
static void test_sigkill_holding_memory_zombie(void) { sigkill_case(0, 0, 0); }
static void test_sigkill_holding_lock(void) { sigkill_case(1, 1, 0); }
static void test_sigkill_mid_update_repaired(void) { sigkill_case(1, 1, 1); }

static void test_sequential_process_sees_correct_usage(void) {
    char path[128];
    tmp_path(path, sizeof path, "seq");
    struct kl_config c = cfg_with(GIB);
    pid_t p = fork();
    if (p == 0) {
        struct kl_rh mine;
        if (kl_region_open(&mine, path, &c) || kl_region_register(&mine, &c)) _exit(2);
        if (kl_region_reserve(&mine, 0, 700 * MIB)) _exit(3);
        kl_region_unregister(&mine); /* the library's atexit handler */
        _exit(0);
    }
    int st;
    waitpid(p, &st, 0);
    KT_CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    struct kl_rh h;
    KT_EQ(kl_region_open(&h, path, &c), 0);
    KT_EQ(kl_region_register(&h, &c), 0);
    KT_EQ(kl_region_reserved(&h, 0), 0);
    KT_EQ(kl_region_reserve(&h, 0, GIB), 0);
    kl_region_close(&h);
    unlink(path);
}

static void test_unwritable_existing_file_falls_back(void) {
    if (geteuid() == 0) {
        /* root bypasses permissions; check the fallback path with an unopenable path instead */
        struct kl_config c = cfg_with(GIB);
        struct kl_rh h;
        KT_CHECK(kl_region_open(&h, "/proc/kl-cannot-create", &c) < 0);
        KT_EQ(kl_region_open_private(&h, &c), 0);
        kl_region_close(&h);
        return;
    }
    char path[128];
    tmp_path(path, sizeof path, "ro");
    FILE *f = fopen(path, "w");
    fclose(f);
    chmod(path, 0444);
    struct kl_config c = cfg_with(GIB);
    struct kl_rh h;
    KT_EQ(kl_region_open(&h, path, &c), -EACCES);
    unlink(path);
}

int main(void) {
    KT_RUN(test_race_processes_never_over_limit);
    KT_RUN(test_sigkill_holding_memory_reaped);
    KT_RUN(test_sigkill_holding_memory_zombie);
    KT_RUN(test_sigkill_holding_lock);
    KT_RUN(test_sigkill_mid_update_repaired);
    KT_RUN(test_sequential_process_sees_correct_usage);
    KT_RUN(test_unwritable_existing_file_falls_back);
    return kt_done();
}
