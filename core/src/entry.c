/* Entry points: cuInit, cuGetProcAddress(_v2) and the dlsym override.
 *
 * cuGetProcAddress(_v2) first asks the real driver with the caller's exact (symbol, version,
 * flags), then substitutes the wrapper for the variant the driver returned, identified by pointer
 * (the real address of each hooked variant); if the driver's pointer matches none (a driver whose
 * lookup returns internal addresses), the variant is chosen from hooks.def by base name, per-thread
 * flag and the highest first version not above the request. A variant we do not hook is returned
 * untouched, so a request never receives a function of another ABI.
 * dlsym keeps the caller's handle semantics: the real lookup runs first and only a hit on a hooked
 * name is replaced by our wrapper. Nothing is loaded or initialised inside dlsym. */

#include <dlfcn.h>
#include <string.h>

#include "kl.h"

/* wrappers are defined in the hook_*.c files */
#define HOOK(sym, base, pfn, ver, pt, grp) extern __typeof__(*(pfn)0) sym;
#include "hooks.def"
#undef HOOK

struct row {
    const char *sym;
    const char *base;
    void *wrapper;
    size_t real_off;
    int ver;
    int pt;
    int cuda;
};

#define IS_CUDA_ENTRY 1
#define IS_CUDA_MEMORY 1
#define IS_CUDA_INFO 1
#define IS_CUDA_CONTEXT 1
#define IS_CUDA_LAUNCH 1
#define IS_CUDA_NVML 0
#define HOOK(sym, base, pfn, ver, pt, grp) \
    {#sym, #base, (void *)sym, offsetof(struct kl_real, sym), ver, pt, IS_CUDA_##grp},
static const struct row rows[] = {
#include "hooks.def"
};
#undef HOOK
#define NROWS (sizeof rows / sizeof rows[0])

/* compile-time check that every wrapper has its PFN type */
#define HOOK(sym, base, pfn, ver, pt, grp) __attribute__((unused)) static const pfn check_##sym = sym;
#include "hooks.def"
#undef HOOK

static void *real_of(const struct row *r) { return *(void **)((char *)&kl_real + r->real_off); }

static void *substitute(const char *symbol, void *p, int ver, cuuint64_t flags) {
    for (size_t i = 0; i < NROWS; i++)
        if (rows[i].cuda && real_of(&rows[i]) == p) return rows[i].wrapper;
    /* fall back to the version table for this base name */
    int want_pt = (flags & CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM) != 0;
    int has_pt = 0;
    for (size_t i = 0; i < NROWS; i++)
        if (rows[i].cuda && rows[i].pt && strcmp(rows[i].base, symbol) == 0) has_pt = 1;
    const struct row *best = NULL;
    for (int pass = want_pt && has_pt ? 1 : 0; pass >= 0 && !best; pass--)
        for (size_t i = 0; i < NROWS; i++) {
            const struct row *r = &rows[i];
            if (!r->cuda || strcmp(r->base, symbol) != 0 || r->ver > ver || r->pt != pass) continue;
            if (!best || r->ver > best->ver) best = r;
        }
    if (!best) return p;
    /* p is `best` only if the driver answers the same pointer at best's own version; otherwise p
     * is a variant we do not hook (for example a newer one) and is returned untouched */
    void *q = NULL;
    CUdriverProcAddressQueryResult st;
    CUresult rc = kl_real.cuGetProcAddress_v2
                      ? kl_real.cuGetProcAddress_v2(symbol, &q, best->ver, flags, &st)
                      : kl_real.cuGetProcAddress(symbol, &q, best->ver, flags);
    return (rc == CUDA_SUCCESS && q == p) ? best->wrapper : p;
}

KL_EXPORT CUresult cuInit(unsigned int flags) {
    kl_start();
    if (!kl_real.cuInit) return CUDA_ERROR_NOT_INITIALIZED;
    return kl_real.cuInit(flags);
}

KL_EXPORT CUresult cuGetProcAddress_v2(const char *symbol, void **pfn, int ver, cuuint64_t flags,
                                       CUdriverProcAddressQueryResult *status) {
    kl_load_cuda();
    if (!kl_real.cuGetProcAddress_v2) return CUDA_ERROR_NOT_INITIALIZED;
    CUresult rc = kl_real.cuGetProcAddress_v2(symbol, pfn, ver, flags, status);
    if (rc == CUDA_SUCCESS && pfn && *pfn && symbol) *pfn = substitute(symbol, *pfn, ver, flags);
    return rc;
}

KL_EXPORT CUresult cuGetProcAddress(const char *symbol, void **pfn, int ver, cuuint64_t flags) {
    kl_load_cuda();
    if (!kl_real.cuGetProcAddress) return CUDA_ERROR_NOT_INITIALIZED;
    CUresult rc = kl_real.cuGetProcAddress(symbol, pfn, ver, flags);
    if (rc == CUDA_SUCCESS && pfn && *pfn && symbol) *pfn = substitute(symbol, *pfn, ver, flags);
    return rc;
}

KL_EXPORT void *dlsym(void *handle, const char *name) {
    void *p = kl_real_dlsym(handle, name);
    if (!p || !((name[0] == 'c' && name[1] == 'u') || strncmp(name, "nvml", 4) == 0))
        return p;
    for (size_t i = 0; i < NROWS; i++)
        if (strcmp(rows[i].sym, name) == 0) return rows[i].wrapper;
    return p;
}
