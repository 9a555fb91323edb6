/* Per-process allocation map: (kind, key) -> (device, bytes, refs). Open addressing with linear
 * probing and backward-shift deletion, grown by doubling; one mutex (only taken when a limit
 * applies, i.e. never on the pass-through path). */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "kl.h"

struct entry {
    uint64_t key; /* 0 = empty */
    int kind;
    struct kl_track_val v;
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct entry *tab;
static size_t cap, count;

static uint64_t mix(int kind, uint64_t key) {
    uint64_t x = key ^ ((uint64_t)kind << 59);
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return x;
}

static struct entry *find(int kind, uint64_t key) {
    if (!cap) return NULL;
    for (size_t i = mix(kind, key) & (cap - 1);; i = (i + 1) & (cap - 1)) {
        if (!tab[i].key) return NULL;
        if (tab[i].key == key && tab[i].kind == kind) return &tab[i];
    }
}

static int grow(void) {
    size_t ncap = cap ? cap * 2 : 256;
    struct entry *n = calloc(ncap, sizeof *n);
    if (!n) return -1;
    for (size_t j = 0; j < cap; j++) {
        if (!tab[j].key) continue;
        size_t i = mix(tab[j].kind, tab[j].key) & (ncap - 1);
        while (n[i].key) i = (i + 1) & (ncap - 1);
        n[i] = tab[j];
    }
    free(tab);
    tab = n;
    cap = ncap;
    return 0;
}

static void erase(struct entry *e) {
    size_t i = (size_t)(e - tab);
    tab[i].key = 0;
    count--;
    for (size_t j = (i + 1) & (cap - 1); tab[j].key; j = (j + 1) & (cap - 1)) {
        size_t h = mix(tab[j].kind, tab[j].key) & (cap - 1);
        /* move j back to i if its home h is not within (i, j] cyclically */
        int between = (i <= j) ? (h > i && h <= j) : (h > i || h <= j);
        if (!between) {
            tab[i] = tab[j];
            tab[j].key = 0;
            i = j;
        }
    }
}

void kl_track_put(int kind, uint64_t key, int dev, uint64_t bytes) {
    if (!key) key = ~0ull; /* 0 marks empty slots */
    pthread_mutex_lock(&mu);
    struct entry *e = find(kind, key);
    if (!e) {
        if ((count + 1) * 4 > cap * 3 && grow() != 0) {
            pthread_mutex_unlock(&mu);
            return;
        }
        size_t i = mix(kind, key) & (cap - 1);
        while (tab[i].key) i = (i + 1) & (cap - 1);
        e = &tab[i];
        e->key = key;
        e->kind = kind;
        count++;
    }
    e->v.dev = dev;
    e->v.bytes = bytes;
    e->v.refs = 1;
    pthread_mutex_unlock(&mu);
}

int kl_track_take(int kind, uint64_t key, struct kl_track_val *out) {
    if (!key) key = ~0ull;
    pthread_mutex_lock(&mu);
    struct entry *e = find(kind, key);
    int found = e != NULL;
    if (e) {
        *out = e->v;
        erase(e);
    }
    pthread_mutex_unlock(&mu);
    return found;
}

int kl_track_get(int kind, uint64_t key, struct kl_track_val *out) {
    if (!key) key = ~0ull;
    pthread_mutex_lock(&mu);
    struct entry *e = find(kind, key);
    if (e) *out = e->v;
    pthread_mutex_unlock(&mu);
    return e != NULL;
}

/* refs += delta; when refs reaches 0 the entry is removed and returned with refs == 0. */
int kl_track_ref(int kind, uint64_t key, int delta, struct kl_track_val *out) {
    if (!key) key = ~0ull;
    pthread_mutex_lock(&mu);
    struct entry *e = find(kind, key);
    if (e) {
        e->v.refs += delta;
        *out = e->v;
        if (e->v.refs <= 0) erase(e);
    }
    pthread_mutex_unlock(&mu);
    return e != NULL;
}

void kl_track_reset(void) {
    pthread_mutex_t fresh = PTHREAD_MUTEX_INITIALIZER;
    mu = fresh;
    if (tab) memset(tab, 0, cap * sizeof *tab);
    count = 0;
}
