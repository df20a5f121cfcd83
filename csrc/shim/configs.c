/* configs.c — the interned configuration table (contract: configs.h). */
#include "configs.h"
#include <string.h>

static fmlp_config g_table[FMLP_MAX_CONFIGS];
static int g_count; /* published with release stores, read with acquire loads */

static int same(const fmlp_config* a, const fmlp_config* b) {
    if (a->n_weights != b->n_weights || a->n_layers != b->n_layers || a->gated != b->gated ||
        memcmp(&a->negative_slope, &b->negative_slope, sizeof(float)) != 0)
        return 0;
    for (int i = 0; i < a->n_layers; i++)
        if (a->act[i] != b->act[i]) return 0;
    for (int k = 0; k < a->n_weights; k++)
        if (a->has_bias[k] != b->has_bias[k]) return 0;
    return 1;
}

int fmlp_config_intern(const fmlp_config* c) {
    const int n = __atomic_load_n(&g_count, __ATOMIC_ACQUIRE);
    for (int i = 0; i < n; i++)
        if (same(&g_table[i], c)) return i;
    if (n >= FMLP_MAX_CONFIGS) return -1;
    memset(&g_table[n], 0, sizeof g_table[n]);
    g_table[n].n_weights = c->n_weights;
    g_table[n].n_layers = c->n_layers;
    g_table[n].gated = c->gated;
    g_table[n].negative_slope = c->negative_slope;
    memcpy(g_table[n].act, c->act, sizeof(int) * (size_t)c->n_layers);
    memcpy(g_table[n].has_bias, c->has_bias, sizeof(int) * (size_t)c->n_weights);
    __atomic_store_n(&g_count, n + 1, __ATOMIC_RELEASE);
    return n;
}

const fmlp_config* fmlp_config_get(int64_t id) {
    if (id < 0 || id >= __atomic_load_n(&g_count, __ATOMIC_ACQUIRE)) return NULL;
    return &g_table[id];
}
