/* fmlp_cpu_f64.c — float64 forward and backward on the CPU, all arithmetic in double.
 *
 * Regime: correctness, not speed — it exists so torch.autograd.gradcheck (which needs
 * float64) can check the whole op, and so float64 users get an exact answer. Serial,
 * one row at a time, weights read in place. Contract: fmlp.h (fmlp_*_cpu_f64).
 * Tested by tests/test_gradients.py (gradcheck) and tests/test_numerics.py. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "../fmlp.h"

static double act_d(int act, double z, double slope) {
    switch (act) {
    case FMLP_ACT_RELU: return z < 0 ? 0 : z;
    case FMLP_ACT_GELU: return 0.5 * z * (1 + erf(z * M_SQRT1_2));
    case FMLP_ACT_GELU_TANH: return 0.5 * z * (1 + tanh(sqrt(2 / M_PI) * (z + 0.044715 * z * z * z)));
    case FMLP_ACT_SILU: return z / (1 + exp(-z));
    case FMLP_ACT_TANH: return tanh(z);
    case FMLP_ACT_SIGMOID: return 1 / (1 + exp(-z));
    case FMLP_ACT_LEAKY_RELU: return z > 0 ? z : z * slope;
    default: return z;
    }
}

static double dact_d(int act, double z, double slope) {
    switch (act) {
    case FMLP_ACT_RELU: return z > 0 ? 1 : 0;
    case FMLP_ACT_GELU: return 0.5 * (1 + erf(z * M_SQRT1_2)) + z * exp(-0.5 * z * z) / sqrt(2 * M_PI);
    case FMLP_ACT_GELU_TANH: {
        double k = sqrt(2 / M_PI), t = tanh(k * (z + 0.044715 * z * z * z));
        return 0.5 * (1 + t) + 0.5 * z * (1 - t * t) * k * (1 + 3 * 0.044715 * z * z);
    }
    case FMLP_ACT_SILU: {
        double s = 1 / (1 + exp(-z));
        return s * (1 + z * (1 - s));
    }
    case FMLP_ACT_TANH: {
        double t = tanh(z);
        return 1 - t * t;
    }
    case FMLP_ACT_SIGMOID: {
        double s = 1 / (1 + exp(-z));
        return s * (1 - s);
    }
    case FMLP_ACT_LEAKY_RELU: return z > 0 ? 1 : slope;
    default: return 1;
    }
}

static int64_t max_width(const fmlp_desc* d) {
    int64_t w = 1;
    for (int i = 0; i <= d->n_layers; i++) if (d->width[i] > w) w = d->width[i];
    return w;
}

/* Weight index of plain layer i (layer 0 of a gated MLP is weights 0 and 1). */
static int wi(const fmlp_desc* d, int i) { return i + (d->gated && i > 0); }

/* The input of layer i (i >= 1) for row m, rebuilt from the saved pre-activations. */
static void layer_input(const fmlp_desc* d, int i, int64_t m, const void* const* saved, double* h) {
    int s = fmlp_saved_index(d, i - 1);
    int64_t w = d->width[i];
    const double* z = (const double*)saved[s] + m * w;
    if (i == 1 && d->gated) {
        const double* zu = (const double*)saved[s + 1] + m * w;
        for (int64_t n = 0; n < w; n++) h[n] = act_d(d->act[0], z[n], d->negative_slope) * zu[n];
    } else {
        for (int64_t n = 0; n < w; n++) h[n] = act_d(d->act[i - 1], z[n], d->negative_slope);
    }
}

int fmlp_forward_cpu_f64(const fmlp_desc* d, int64_t M, const double* x, const fmlp_params* p,
                         double* out, void* const* saved, fmlp_status* st) {
    int rc = fmlp_desc_validate(d, st);
    if (rc) return rc;
    int64_t W = max_width(d);
    double* buf = (double*)malloc(sizeof(double) * 3 * (size_t)W);
    if (!buf) return fmlp_fail(st, FMLP_ERR_BACKEND, "out of host memory (%lld doubles)", (long long)(3 * W));
    double *h = buf, *nxt = buf + W, *up = buf + 2 * W;
    for (int64_t m = 0; m < M; m++) {
        memcpy(h, x + m * d->width[0], sizeof(double) * (size_t)d->width[0]);
        for (int i = 0; i < d->n_layers; i++) {
            int64_t in = d->width[i], on = d->width[i + 1];
            int k = wi(d, i), s = fmlp_saved_index(d, i);
            const double *w = (const double*)p->w[k], *b = (const double*)p->b[k];
            for (int64_t n = 0; n < on; n++) {
                double z = b ? b[n] : 0;
                for (int64_t j = 0; j < in; j++) z += w[n * in + j] * h[j];
                nxt[n] = z;
            }
            if (i == 0 && d->gated) {
                const double *wu = (const double*)p->w[1], *bu = (const double*)p->b[1];
                for (int64_t n = 0; n < on; n++) {
                    double z = bu ? bu[n] : 0;
                    for (int64_t j = 0; j < in; j++) z += wu[n * in + j] * h[j];
                    up[n] = z;
                }
                if (saved) {
                    memcpy((double*)saved[s] + m * on, nxt, sizeof(double) * (size_t)on);
                    memcpy((double*)saved[s + 1] + m * on, up, sizeof(double) * (size_t)on);
                }
                for (int64_t n = 0; n < on; n++) h[n] = act_d(d->act[0], nxt[n], d->negative_slope) * up[n];
            } else {
                if (saved && s >= 0) memcpy((double*)saved[s] + m * on, nxt, sizeof(double) * (size_t)on);
                for (int64_t n = 0; n < on; n++) h[n] = act_d(d->act[i], nxt[n], d->negative_slope);
            }
        }
        memcpy(out + m * d->width[d->n_layers], h, sizeof(double) * (size_t)d->width[d->n_layers]);
    }
    free(buf);
    return FMLP_OK;
}

int fmlp_backward_cpu_f64(const fmlp_desc* d, int64_t M, const double* dout, const double* x,
                          const void* const* saved, const fmlp_params* p, double* dx,
                          const fmlp_grads* g, fmlp_status* st) {
    int rc = fmlp_desc_validate(d, st);
    if (rc) return rc;
    for (int k = 0; k < fmlp_n_weights(d); k++) {
        int64_t o, in;
        fmlp_weight_shape(d, k, &o, &in);
        if (g->dw[k]) memset(g->dw[k], 0, sizeof(double) * (size_t)(o * in));
        if (g->db[k]) memset(g->db[k], 0, sizeof(double) * (size_t)o);
    }
    int64_t W = max_width(d);
    double* buf = (double*)malloc(sizeof(double) * 5 * (size_t)W);
    if (!buf) return fmlp_fail(st, FMLP_ERR_BACKEND, "out of host memory (%lld doubles)", (long long)(5 * W));
    double *gr = buf, *dz = buf + W, *dzu = buf + 2 * W, *hin = buf + 3 * W, *gprev = buf + 4 * W;
    for (int64_t m = 0; m < M; m++) {
        memcpy(gr, dout + m * d->width[d->n_layers], sizeof(double) * (size_t)d->width[d->n_layers]);
        for (int i = d->n_layers - 1; i >= 0; i--) {
            int64_t in = d->width[i], on = d->width[i + 1];
            int s = fmlp_saved_index(d, i), k = wi(d, i);
            int gated0 = (i == 0 && d->gated);
            const double* z = s >= 0 ? (const double*)saved[s] + m * on : NULL;
            for (int64_t n = 0; n < on; n++) {
                if (gated0) {
                    double zu = ((const double*)saved[s + 1])[m * on + n];
                    dz[n] = gr[n] * zu * dact_d(d->act[0], z[n], d->negative_slope);
                    dzu[n] = gr[n] * act_d(d->act[0], z[n], d->negative_slope);
                } else {
                    dz[n] = z ? gr[n] * dact_d(d->act[i], z[n], d->negative_slope) : gr[n];
                }
            }
            if (i == 0) memcpy(hin, x + m * in, sizeof(double) * (size_t)in);
            else layer_input(d, i, m, saved, hin);
            int nk = gated0 ? 2 : 1;
            for (int t = 0; t < nk; t++) {
                const double* dzt = t ? dzu : dz;
                double* dw = (double*)g->dw[k + t];
                double* db = (double*)g->db[k + t];
                for (int64_t n = 0; n < on; n++) {
                    if (db) db[n] += dzt[n];
                    if (dw) for (int64_t j = 0; j < in; j++) dw[n * in + j] += dzt[n] * hin[j];
                }
            }
            if (i == 0 && !dx) break;
            for (int64_t j = 0; j < in; j++) gprev[j] = 0;
            for (int t = 0; t < nk; t++) {
                const double* dzt = t ? dzu : dz;
                const double* w = (const double*)p->w[k + t];
                for (int64_t n = 0; n < on; n++)
                    for (int64_t j = 0; j < in; j++) gprev[j] += dzt[n] * w[n * in + j];
            }
            if (i == 0) memcpy(dx + m * in, gprev, sizeof(double) * (size_t)in);
            else memcpy(gr, gprev, sizeof(double) * (size_t)in);
        }
    }
    free(buf);
    return FMLP_OK;
}
