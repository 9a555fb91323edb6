/* The shared region: creation, crash-safe locking, per-process slots and the cross-process
 * reserve-then-allocate counter. Layout: include/kl_region.h.
 *
 * Locking: one robust, process-shared mutex. A process that dies holding it hands the next locker
 * EOWNERDEAD; that locker reclaims dead slots, recomputes every device's reserved_bytes from the
 * live slots (the slots are authoritative) and marks the mutex consistent, so survivors recover at
 * once. Creation is serialised with flock(2), which the kernel drops when its holder dies.
 * Slots are keyed by (pid, start time), so a reused pid is not mistaken for its predecessor. */

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kl.h"

#define LD(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define ST(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)

int kl_proc_start_time(int pid, uint64_t *start, int *alive) {
    char path[64], buf[1024];
    *alive = 0;
    *start = 0;
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return errno == ENOENT ? 0 : -errno;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return 0;
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    if (!p || !p[1] || !p[2]) return -EINVAL;
    p += 2; /* state */
    char state = *p;
    /* fields after ')' : 3 state ... 22 starttime -> 19 spaces further */
    for (int i = 0; i < 19 && p; i++) {
        p = strchr(p, ' ');
        if (p) p++;
    }
    if (!p) return -EINVAL;
    *start = strtoull(p, NULL, 10);
    *alive = !(state == 'Z' || state == 'X' || state == 'x');
    return 0;
}

static void init_mutex(struct kl_region *r, int pshared) {
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_setpshared(&a, pshared ? PTHREAD_PROCESS_SHARED : PTHREAD_PROCESS_PRIVATE);
    pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
    pthread_mutex_init(&r->lock.mutex, &a);
    pthread_mutexattr_destroy(&a);
}

static void apply_limits(struct kl_region *r, const struct kl_config *cfg) {
    uint32_t count = 0;
    for (int i = 0; i < KL_MAX_DEVICES; i++) {
        struct kl_region_device *d = &r->devices[i];
        ST(&d->limit_bytes, cfg->mem_limit[i]);
        ST(&d->limit_state, cfg->mem_state[i]);
        if (LD(&d->sm_limit) != cfg->sm_limit[i] || LD(&d->sm_state) != cfg->sm_state[i]) {
            ST(&d->sm_state, cfg->sm_state[i]);
            kl_limiter_init_device(d, cfg->sm_limit[i]);
        }
        if (cfg->mem_state[i] != KL_LIMIT_NONE || cfg->sm_state[i] != KL_LIMIT_NONE) count = (uint32_t)i + 1;
    }
    ST(&r->device_count, count);
}

static void init_region(struct kl_region *r, const struct kl_config *cfg, int pshared) {
    memset(r, 0, sizeof *r);
    init_mutex(r, pshared);
    r->abi_version = KL_REGION_ABI_VERSION;
    r->size = sizeof *r;
    r->max_procs = KL_MAX_PROCS;
    r->sm_switch = 1;
    apply_limits(r, cfg);
    ST(&r->magic, KL_REGION_MAGIC);
}

int kl_region_open_private(struct kl_rh *h, const struct kl_config *cfg) {
    void *p = mmap(NULL, sizeof(struct kl_region), PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return -errno;
    h->r = p;
    h->slot = -1;
    h->shared = 0;
    h->fd = -1;
    init_region(h->r, cfg, 0);
    return 0;
}

int kl_region_open(struct kl_rh *h, const char *path, const struct kl_config *cfg) {
    h->r = NULL;
    h->slot = -1;
    h->shared = 1;
    h->fd = -1;
    mode_t old = umask(0);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
    umask(old);
    if (fd < 0) return -errno;
    if (flock(fd, LOCK_EX) != 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    int rc = 0;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        rc = -errno;
        goto out;
    }
    int fresh = st.st_size == 0;
    if (fresh && ftruncate(fd, (off_t)sizeof(struct kl_region)) != 0) {
        rc = -errno;
        goto out;
    }
    if (!fresh && st.st_size != (off_t)sizeof(struct kl_region)) {
        rc = -EPROTO;
        goto out;
    }
    void *p = mmap(NULL, sizeof(struct kl_region), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
        rc = -errno;
        goto out;
    }
    struct kl_region *r = p;
    uint32_t magic = LD(&r->magic);
    if (fresh || magic == 0) {
        init_region(r, cfg, 1);
    } else if (magic != KL_REGION_MAGIC || r->abi_version != KL_REGION_ABI_VERSION ||
               r->size != sizeof(struct kl_region)) {
        munmap(p, sizeof(struct kl_region));
        rc = -EPROTO;
        goto out;
    }
    h->r = r;
    h->fd = fd;
out:
    flock(fd, LOCK_UN);
    if (rc) close(fd);
    return rc;
}

void kl_region_close(struct kl_rh *h) {
    if (h->r) munmap(h->r, sizeof(struct kl_region));
    if (h->fd >= 0) close(h->fd);
    h->r = NULL;
    h->fd = -1;
    h->slot = -1;
}

static int slot_dead(const struct kl_region_slot *s) {
    uint64_t start;
    int alive;
    if (kl_proc_start_time(s->pid, &start, &alive) < 0) return 0; /* unknown: keep */
    return !alive || start != s->start_time;
}

static void free_slot_nolock(struct kl_region *r, struct kl_region_slot *s) {
    for (int d = 0; d < KL_MAX_DEVICES; d++) {
        uint64_t u = LD(&s->used[d]);
        if (!u) continue;
        uint64_t cur = LD(&r->devices[d].reserved_bytes);
        ST(&r->devices[d].reserved_bytes, cur > u ? cur - u : 0);
        ST(&s->used[d], 0);
    }
    ST(&s->state, KL_SLOT_FREE);
    s->pid = 0;
    s->host_pid = 0;
    s->start_time = 0;
    uint32_t n = LD(&r->proc_count);
    ST(&r->proc_count, n ? n - 1 : 0);
}

static int reclaim_nolock(struct kl_rh *h) {
    struct kl_region *r = h->r;
    if (!h->shared) return 0;
    int n = 0;
    for (int i = 0; i < KL_MAX_PROCS; i++) {
        struct kl_region_slot *s = &r->procs[i];
        if (i == h->slot || LD(&s->state) != KL_SLOT_ACTIVE) continue;
        if (slot_dead(s)) {
            free_slot_nolock(r, s);
            n++;
        }
    }
    if (n) ST(&r->generation, LD(&r->generation) + 1);
    return n;
}

/* After a holder died inside the critical section: slots are authoritative. */
static void repair_nolock(struct kl_rh *h) {
    struct kl_region *r = h->r;
    reclaim_nolock(h);
    uint64_t sum[KL_MAX_DEVICES] = {0};
    uint32_t count = 0;
    for (int i = 0; i < KL_MAX_PROCS; i++) {
        struct kl_region_slot *s = &r->procs[i];
        if (LD(&s->state) != KL_SLOT_ACTIVE) continue;
        count++;
        for (int d = 0; d < KL_MAX_DEVICES; d++) sum[d] += LD(&s->used[d]);
    }
    for (int d = 0; d < KL_MAX_DEVICES; d++) ST(&r->devices[d].reserved_bytes, sum[d]);
    ST(&r->proc_count, count);
}

int kl_region_lock(struct kl_rh *h) {
    int rc = pthread_mutex_lock(&h->r->lock.mutex);
    if (rc == EOWNERDEAD) {
        repair_nolock(h);
        pthread_mutex_consistent(&h->r->lock.mutex);
        kl_log(KL_LOG_INFO, "recovered the shared region lock from a dead process");
        return 0;
    }
    return -rc;
}

void kl_region_unlock(struct kl_rh *h) { pthread_mutex_unlock(&h->r->lock.mutex); }

int kl_region_reclaim(struct kl_rh *h) {
    if (kl_region_lock(h)) return 0;
    int n = reclaim_nolock(h);
    kl_region_unlock(h);
    return n;
}

int kl_region_register(struct kl_rh *h, const struct kl_config *cfg) {
    struct kl_region *r = h->r;
    int pid = (int)getpid(), alive;
    uint64_t start = 0;
    kl_proc_start_time(pid, &start, &alive);
    int rc = kl_region_lock(h);
    if (rc) return rc;
    h->slot = -1;
    reclaim_nolock(h);
    int free_i = -1;
    for (int i = 0; i < KL_MAX_PROCS; i++) {
        struct kl_region_slot *s = &r->procs[i];
        uint32_t st = LD(&s->state);
        if (st == KL_SLOT_ACTIVE && s->pid == pid) {
            /* our pid: a previous life (start time differs) or a forked parent's stale copy */
            free_slot_nolock(r, s);
            st = KL_SLOT_FREE;
        }
        if (st == KL_SLOT_FREE && free_i < 0) free_i = i;
    }
    if (free_i < 0) {
        kl_region_unlock(h);
        return -ENOSPC;
    }
    struct kl_region_slot *s = &r->procs[free_i];
    memset(s, 0, sizeof *s);
    s->pid = pid;
    s->start_time = start;
    ST(&s->state, KL_SLOT_ACTIVE);
    uint32_t n = LD(&r->proc_count) + 1;
    ST(&r->proc_count, n);
    h->slot = free_i;
    if (n == 1) {
        /* first live process: its configuration is the container's (stale files are reset) */
        for (int d = 0; d < KL_MAX_DEVICES; d++) ST(&r->devices[d].reserved_bytes, 0);
        apply_limits(r, cfg);
    } else {
        for (int d = 0; d < KL_MAX_DEVICES; d++) {
            const struct kl_region_device *dv = &r->devices[d];
            if (LD(&dv->limit_state) != cfg->mem_state[d] ||
                LD(&dv->limit_bytes) != cfg->mem_limit[d]) {
                kl_log(KL_LOG_WARN,
                       "device %d: this process's memory limit differs from the shared region's; "
                       "the region's (set by the container's first process) applies",
                       d);
                break;
            }
        }
    }
    kl_region_unlock(h);
    return 0;
}

void kl_region_unregister(struct kl_rh *h) {
    if (!h->r || h->slot < 0) return;
    if (kl_region_lock(h)) return;
    struct kl_region_slot *s = &h->r->procs[h->slot];
    if (s->pid == (int)getpid()) free_slot_nolock(h->r, s);
    kl_region_unlock(h);
    h->slot = -1;
}

int kl_region_reserve(struct kl_rh *h, int dev, uint64_t n) {
    struct kl_region *r = h->r;
    struct kl_region_device *d = &r->devices[dev];
    int rc = kl_region_lock(h);
    if (rc) return rc;
    int rc2 = 0;
    for (int attempt = 0; attempt < 2; attempt++) {
        uint32_t state = LD(&d->limit_state);
        if (state == KL_LIMIT_INVALID) {
            rc2 = -EPERM;
            break;
        }
        uint64_t cur = LD(&d->reserved_bytes), lim = LD(&d->limit_bytes);
        if (state == KL_LIMIT_SET && (n > lim || cur > lim - n)) {
            rc2 = -ENOMEM;
            if (attempt == 0 && reclaim_nolock(h) > 0) continue;
            break;
        }
        rc2 = 0;
        if (h->slot >= 0) {
            uint64_t *u = &r->procs[h->slot].used[dev];
            ST(u, LD(u) + n);
        }
        ST(&d->reserved_bytes, cur + n);
        break;
    }
    kl_region_unlock(h);
    return rc2;
}

void kl_region_adjust(struct kl_rh *h, int dev, int64_t delta) {
    struct kl_region *r = h->r;
    struct kl_region_device *d = &r->devices[dev];
    if (!delta || kl_region_lock(h)) return;
    uint64_t *u = h->slot >= 0 ? &r->procs[h->slot].used[dev] : NULL;
    uint64_t cur = LD(&d->reserved_bytes);
    if (delta > 0) {
        if (u) ST(u, LD(u) + (uint64_t)delta);
        ST(&d->reserved_bytes, cur + (uint64_t)delta);
    } else {
        uint64_t m = (uint64_t)(-delta);
        if (u) {
            uint64_t mine = LD(u);
            if (m > mine) m = mine;
            ST(u, mine - m);
        }
        ST(&d->reserved_bytes, cur > m ? cur - m : 0);
    }
    kl_region_unlock(h);
}

uint64_t kl_region_reserved(const struct kl_rh *h, int dev) {
    return LD(&h->r->devices[dev].reserved_bytes);
}
