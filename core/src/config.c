/* Configuration from HAMi's environment variable names, parsed once per process.
 *
 * Sizes: a decimal (or 0x hexadecimal) integer with an optional binary unit, case-insensitive:
 *   b | k kb ki kib | m mb mi mib | g gb gi gib | t tb ti tib   (all powers of 1024)
 * so 1g == 1gb == 1Gi == 1GiB == 1024m. No unit means bytes (as in HAMi). Leading zeros are
 * decimal (HAMi's strtoul would read 010 as octal). Spaces around the value and between number
 * and unit are allowed. Anything else, negative values and overflow are errors: the variable is
 * reported once and the device's limit becomes KL_LIMIT_INVALID (allocations refused), never a
 * wrong number. Empty or "0" means no limit (HAMi: 0 = unlimited).
 * Percentages (CUDA_DEVICE_SM_LIMIT): integer 0..100, optional '%'; 0 and 100 mean no limit. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kl.h"

static const char *skip_ws(const char *s) {
    while (*s == ' ' || *s == '\t') s++;
    return s;
}

int kl_parse_size(const char *s, uint64_t *out) {
    if (!s) return -EINVAL;
    s = skip_ws(s);
    uint64_t v = 0;
    int digits = 0;
    if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
        s += 2;
        while (isxdigit((unsigned char)*s)) {
            unsigned d = (unsigned)(isdigit((unsigned char)*s) ? *s - '0'
                                                              : (tolower((unsigned char)*s) - 'a' + 10));
            if (v > (UINT64_MAX >> 4)) return -ERANGE;
            v = (v << 4) | d;
            s++;
            digits++;
        }
    } else {
        while (isdigit((unsigned char)*s)) {
            unsigned d = (unsigned)(*s - '0');
            if (v > (UINT64_MAX - d) / 10) return -ERANGE;
            v = v * 10 + d;
            s++;
            digits++;
        }
    }
    if (!digits) return -EINVAL;
    s = skip_ws(s);
    unsigned shift = 0;
    char u = (char)tolower((unsigned char)*s);
    if (u == 'k') shift = 10;
    else if (u == 'm') shift = 20;
    else if (u == 'g') shift = 30;
    else if (u == 't') shift = 40;
    if (shift) {
        s++;
        if (*s == 'i' || *s == 'I') s++;
        if (*s == 'b' || *s == 'B') s++;
    } else if (u == 'b') {
        s++;
    }
    s = skip_ws(s);
    if (*s) return -EINVAL;
    if (shift && v > (UINT64_MAX >> shift)) return -ERANGE;
    *out = v << shift;
    return 0;
}

int kl_parse_percent(const char *s, uint32_t *out) {
    if (!s) return -EINVAL;
    s = skip_ws(s);
    uint64_t v = 0;
    int digits = 0;
    while (isdigit((unsigned char)*s)) {
        v = v * 10 + (uint64_t)(*s - '0');
        if (v > 1000) return -ERANGE;
        s++;
        digits++;
    }
    if (!digits) return -EINVAL;
    s = skip_ws(s);
    if (*s == '%') s++;
    s = skip_ws(s);
    if (*s) return -EINVAL;
    if (v > 100) return -ERANGE;
    *out = (uint32_t)v;
    return 0;
}

static int is_blank(const char *s) { return *skip_ws(s) == '\0'; }

/* Applies one memory-limit variable; returns 1 when it was bad. */
static int apply_mem(const char *name, const char *val, uint32_t *state, uint64_t *limit) {
    if (!val || is_blank(val)) return 0;
    uint64_t v;
    int rc = kl_parse_size(val, &v);
    if (rc) {
        kl_log(KL_LOG_ERROR,
               "%s=\"%s\" is not a size (use e.g. 4096m, 4g, 4GiB); allocations on the device are "
               "refused until it is fixed",
               name, val);
        *state = KL_LIMIT_INVALID;
        *limit = 0;
        return 1;
    }
    *state = v ? KL_LIMIT_SET : KL_LIMIT_NONE;
    *limit = v;
    return 0;
}

static int apply_sm(const char *name, const char *val, uint32_t *state, uint32_t *limit) {
    if (!val || is_blank(val)) return 0;
    uint32_t v;
    int rc = kl_parse_percent(val, &v);
    if (rc) {
        kl_log(KL_LOG_ERROR,
               "%s=\"%s\" is not a percentage 0..100; kernel launches on the device are refused "
               "until it is fixed",
               name, val);
        *state = KL_LIMIT_INVALID;
        *limit = 0;
        return 1;
    }
    *state = (v == 0 || v >= 100) ? KL_LIMIT_NONE : KL_LIMIT_SET;
    *limit = (v >= 100) ? 0 : v;
    return 0;
}

int kl_config_load(struct kl_config *c, kl_getenv_fn get) {
    memset(c, 0, sizeof *c);
    int bad = 0;
    const char *lvl = get("LIBCUDA_LOG_LEVEL");
    c->log_level = KL_LOG_WARN;
    if (lvl && !is_blank(lvl)) {
        uint32_t v;
        if (kl_parse_percent(lvl, &v) == 0 && v <= 4) {
            c->log_level = v >= 3 ? KL_LOG_DEBUG : (int)v;
        } else {
            kl_log(KL_LOG_WARN, "LIBCUDA_LOG_LEVEL=\"%s\" is not 0..4; using 1 (warnings)", lvl);
            bad++;
        }
    }
    kl_log_set_level(c->log_level);

    uint32_t dstate = KL_LIMIT_NONE, sstate = KL_LIMIT_NONE, slim = 0;
    uint64_t dlim = 0;
    bad += apply_mem("CUDA_DEVICE_MEMORY_LIMIT", get("CUDA_DEVICE_MEMORY_LIMIT"), &dstate, &dlim);
    bad += apply_sm("CUDA_DEVICE_SM_LIMIT", get("CUDA_DEVICE_SM_LIMIT"), &sstate, &slim);
    for (int i = 0; i < KL_MAX_DEVICES; i++) {
        char name[64];
        c->mem_state[i] = dstate;
        c->mem_limit[i] = dlim;
        snprintf(name, sizeof name, "CUDA_DEVICE_MEMORY_LIMIT_%d", i);
        bad += apply_mem(name, get(name), &c->mem_state[i], &c->mem_limit[i]);
        c->sm_state[i] = sstate;
        c->sm_limit[i] = slim;
        snprintf(name, sizeof name, "CUDA_DEVICE_SM_LIMIT_%d", i);
        bad += apply_sm(name, get(name), &c->sm_state[i], &c->sm_limit[i]);
        if (c->mem_state[i] != KL_LIMIT_NONE) c->any_mem = 1;
        if (c->sm_state[i] != KL_LIMIT_NONE) c->any_sm = 1;
    }

    const char *pol = get("GPU_CORE_UTILIZATION_POLICY");
    c->policy = KL_POLICY_DEFAULT;
    if (pol && !is_blank(pol)) {
        if (strcasecmp(pol, "force") == 0) c->policy = KL_POLICY_FORCE;
        else if (strcasecmp(pol, "disable") == 0) c->policy = KL_POLICY_DISABLE;
        else if (strcasecmp(pol, "default") != 0) {
            kl_log(KL_LOG_WARN,
                   "GPU_CORE_UTILIZATION_POLICY=\"%s\" is not FORCE, DISABLE or DEFAULT; using "
                   "DEFAULT",
                   pol);
            bad++;
        }
    }
    if (c->policy == KL_POLICY_DISABLE) c->any_sm = 0;

    const char *path = get("CUDA_DEVICE_MEMORY_SHARED_CACHE");
    if (path && !is_blank(path)) {
        if (strlen(path) >= sizeof c->region_path) {
            kl_log(KL_LOG_ERROR, "CUDA_DEVICE_MEMORY_SHARED_CACHE is too long; using a private region");
            c->region_path[0] = '\0';
            bad++;
        } else {
            strcpy(c->region_path, path);
        }
    } else {
        strcpy(c->region_path, KL_REGION_DEFAULT_PATH);
    }
    return bad;
}
