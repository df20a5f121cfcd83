/* configs.h — interned MLP configurations for the compact inference op.
 *
 * fused_mlp::infer(Tensor x, Tensor[] params, int config) takes everything that is not a
 * tensor (activations, which weights have a bias, negative_slope, gated) as one integer:
 * the id of a configuration registered once from Python (fused_mlp._C.config_id). Passing
 * one int instead of two int[] lists, a float and two bools is ~1.4 us less per call in
 * torch's Python binding (NOTES.md, "Host overhead per call"). The table only grows (ids stay
 * valid for the life of the process) and is small: one entry per distinct configuration. */
#ifndef FMLP_SHIM_CONFIGS_H
#define FMLP_SHIM_CONFIGS_H
#include <stdint.h>
#include "../fmlp.h"

typedef struct {
    int n_weights;                    /* gated: n_layers + 1                       */
    int n_layers;
    int gated;
    float negative_slope;
    int act[FMLP_MAX_LAYERS];         /* fmlp_activation codes, one per layer      */
    int has_bias[FMLP_MAX_LAYERS + 1]; /* one per weight                           */
} fmlp_config;

#define FMLP_MAX_CONFIGS 4096

/* Returns the id (>= 0) of a configuration equal to *c, adding it when new; -1 when the
 * table is full. Callers hold the GIL (it serialises writers); readers need no lock: an
 * entry is written completely before the count that publishes it. */
int fmlp_config_intern(const fmlp_config* c);

/* The configuration with this id, or NULL when no such id was handed out. */
const fmlp_config* fmlp_config_get(int64_t id);
#endif
