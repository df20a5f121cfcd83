/* fmlp_desc.c — helpers over fmlp_desc shared by every backend: validation,
 * weight shapes, the layout of the tensors the forward saves for backward. */
#include <stdarg.h>
#include <stdio.h>
#include "fmlp.h"

int fmlp_fail(fmlp_status* st, int code, const char* fmt, ...) {
    if (st) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(st->msg, sizeof st->msg, fmt, ap);
        va_end(ap);
        st->code = code;
    }
    return code;
}

size_t fmlp_dtype_size(fmlp_dtype dt) { return dt == FMLP_F64 ? 8 : dt == FMLP_F32 ? 4 : 2; }

void fmlp_weight_shape(const fmlp_desc* d, int k, int64_t* out, int64_t* in) {
    int layer = d->gated ? (k > 0 ? k - 1 : 0) : k;
    *out = d->width[layer + 1];
    *in = d->width[layer];
}

int fmlp_desc_validate(const fmlp_desc* d, fmlp_status* st) {
    if (d->n_layers < 1 || d->n_layers > FMLP_MAX_LAYERS)
        return fmlp_fail(st, FMLP_ERR_INVALID, "the MLP must have 1 to %d layers, got %d",
                         FMLP_MAX_LAYERS, d->n_layers);
    if (d->gated != 0 && d->gated != 1)
        return fmlp_fail(st, FMLP_ERR_INVALID, "gated must be 0 or 1, got %d", d->gated);
    if (d->gated && d->n_layers < 2)
        return fmlp_fail(st, FMLP_ERR_INVALID,
                         "a gated MLP needs gate, up and down weights (at least 2 layers), got %d layer",
                         d->n_layers);
    for (int i = 0; i <= d->n_layers; i++)
        if (d->width[i] < 1)
            return fmlp_fail(st, FMLP_ERR_INVALID, "width[%d] must be >= 1, got %lld", i,
                             (long long)d->width[i]);
    for (int i = 0; i < d->n_layers; i++)
        if (d->act[i] < 0 || d->act[i] >= FMLP_ACT_COUNT)
            return fmlp_fail(st, FMLP_ERR_INVALID, "activations[%d] = %d is not a known activation code",
                             i, d->act[i]);
    return FMLP_OK;
}

/* Saved layout: [gated: z_gate, z_up] then z_i for each later layer that needs one. */
static int layer_saves(const fmlp_desc* d, int i) {
    return i < d->n_layers - 1 || d->act[i] != FMLP_ACT_IDENTITY;
}

int fmlp_saved_index(const fmlp_desc* d, int layer) {
    int s = 0;
    for (int i = 0; i < d->n_layers; i++) {
        int n = (i == 0 && d->gated) ? 2 : layer_saves(d, i);
        if (i == layer) return n ? s : -1;
        s += n;
    }
    return -1;
}

int fmlp_saved_count(const fmlp_desc* d) {
    int s = 0;
    for (int i = 0; i < d->n_layers; i++) s += (i == 0 && d->gated) ? 2 : layer_saves(d, i);
    return s;
}

int64_t fmlp_saved_width(const fmlp_desc* d, int s) {
    for (int i = 0; i < d->n_layers; i++) {
        int first = fmlp_saved_index(d, i);
        int n = (i == 0 && d->gated) ? 2 : (first >= 0);
        if (first >= 0 && s >= first && s < first + n) return d->width[i + 1];
    }
    return -1;
}
