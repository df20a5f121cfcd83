/* fmlp_activation.h — activations and their derivatives, on float32 scalars.
 * Shared by the CPU core and the CUDA kernels (FMLP_HD marks host+device).
 * Formulas match torch.nn.functional exactly (gelu erf / tanh forms, silu,
 * leaky_relu with negative_slope); derivatives match torch's autograd formulas. */
#ifndef FMLP_ACTIVATION_H
#define FMLP_ACTIVATION_H
#include <math.h>
#include "fmlp.h"

#if defined(__CUDACC__)
#define FMLP_HD __host__ __device__ __forceinline__
#else
#define FMLP_HD static inline
#endif

#define FMLP_SQRT1_2 0.70710678118654752440f
#define FMLP_SQRT2_PI 0.79788456080286535588f  /* sqrt(2/pi) */
#define FMLP_INV_SQRT_2PI 0.39894228040143267794f

FMLP_HD float fmlp_sigmoidf(float z) { return 1.0f / (1.0f + expf(-z)); }

/* act(z) */
FMLP_HD float fmlp_act(int act, float z, float slope) {
    switch (act) {
    case FMLP_ACT_RELU: return z < 0.0f ? 0.0f : z; /* NaN stays NaN, as in torch */
    case FMLP_ACT_GELU: return 0.5f * z * (1.0f + erff(z * FMLP_SQRT1_2));
    case FMLP_ACT_GELU_TANH: {
        float u = FMLP_SQRT2_PI * (z + 0.044715f * z * z * z);
        return 0.5f * z * (1.0f + tanhf(u));
    }
    case FMLP_ACT_SILU: return z * fmlp_sigmoidf(z);
    case FMLP_ACT_TANH: return tanhf(z);
    case FMLP_ACT_SIGMOID: return fmlp_sigmoidf(z);
    case FMLP_ACT_LEAKY_RELU: return z > 0.0f ? z : z * slope;
    default: return z;
    }
}

/* d act(z) / dz */
FMLP_HD float fmlp_dact(int act, float z, float slope) {
    switch (act) {
    case FMLP_ACT_RELU: return z > 0.0f ? 1.0f : 0.0f;
    case FMLP_ACT_GELU:
        return 0.5f * (1.0f + erff(z * FMLP_SQRT1_2)) + z * FMLP_INV_SQRT_2PI * expf(-0.5f * z * z);
    case FMLP_ACT_GELU_TANH: {
        float u = FMLP_SQRT2_PI * (z + 0.044715f * z * z * z);
        float t = tanhf(u);
        return 0.5f * (1.0f + t) + 0.5f * z * (1.0f - t * t) * FMLP_SQRT2_PI * (1.0f + 3.0f * 0.044715f * z * z);
    }
    case FMLP_ACT_SILU: {
        float s = fmlp_sigmoidf(z);
        return s * (1.0f + z * (1.0f - s));
    }
    case FMLP_ACT_TANH: {
        float t = tanhf(z);
        return 1.0f - t * t;
    }
    case FMLP_ACT_SIGMOID: {
        float s = fmlp_sigmoidf(z);
        return s * (1.0f - s);
    }
    case FMLP_ACT_LEAKY_RELU: return z > 0.0f ? 1.0f : slope;
    default: return 1.0f;
    }
}
#endif /* FMLP_ACTIVATION_H */
