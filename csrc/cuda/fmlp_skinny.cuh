// fmlp_skinny.cuh — what the skinny forward's two layer kernels share: the per-layer
// launch parameters, the epilogue of one output, and the staged kernel's host interface.
//   fmlp_skinny.cu       register kernel (any M <= 64, any alignment, sm_80+) and the host plan
//   fmlp_skinny_tile.cu  staged tile kernel (16 < M <= 64, 16-byte rows, sm_90: clusters)
#pragma once
#include "fmlp_cuda_common.cuh"
#include "../fmlp_activation.h"
#include "../fmlp_cuda.h"

struct sk_layer {
    const void* x;     // (M, K) input
    const void* w[2];  // (N, K) weights; gated: gate, up
    const void* b[2];  // (N,) biases or NULL
    void* z[2];        // (M, N) saved pre-activations, or NULL
    void* h;           // (M, N) output
    float* part;       // S > 1: (S, M, PW) float32 partial sums, PW = N (plain) or 2N (gated)
    unsigned* cnt;     // S > 1: one arrival counter per column block, zero on entry
    unsigned* zero;    // counters this launch resets for later layers (the first layer only)
    int nzero;
    int M, N, K, KS, S, act;
    float slope;
    int prefetch;      // launched as a PDL dependent with 16-byte weight rows: prefetch them into L2
    int late_trigger;  // let the next layer's blocks launch only once this block's loads are done
};

// Bias k (0: plain / gate, 1: up) of output column n as float32, 0 when the layer has none.
template <typename T>
static __device__ __forceinline__ float sk_bias(const sk_layer& L, int k, int n) {
    return L.b[k] ? fmlp_to_f32(((const T*)L.b[k])[n]) : 0.f;
}

// act applied to NV values behind one branch on act: a switch per value put every value's
// dependency chain behind its own indirect branch, so none overlapped (NOTES "v7").
template <int NV>
static __device__ __forceinline__ void sk_act_n(int act, float slope, float* v) {
#define SK_ACT_CASE(A)                                                    \
    case A:                                                               \
        _Pragma("unroll") for (int i = 0; i < NV; i++) v[i] = fmlp_act(A, v[i], slope); \
        break;
    switch (act) {
        SK_ACT_CASE(FMLP_ACT_RELU)
        SK_ACT_CASE(FMLP_ACT_GELU)
    case FMLP_ACT_GELU_TANH:
        // 0.5 z (1 + tanh(u)) = z sigmoid(2u) = z / (1 + e^-2u): two SFU operations instead of
        // tanhf's branchy sequence (gelu_tanh epilogues 0.4 µs shorter at 64 rows, NOTES "v9"),
        // and no cancellation in 1 + tanh(u) on the negative tail, where tanh.approx lost up to
        // 30% of the value (z = -4) and tanhf gives 0 below z ~ -5. NaN and +-inf as tanhf's form.
#pragma unroll
        for (int i = 0; i < NV; i++) {
            const float z = v[i], u = FMLP_SQRT2_PI * (z + 0.044715f * z * z * z);
            v[i] = __fdividef(z, 1.0f + __expf(-2.0f * u));
        }
        break;
        SK_ACT_CASE(FMLP_ACT_SILU)
        SK_ACT_CASE(FMLP_ACT_TANH)
        SK_ACT_CASE(FMLP_ACT_SIGMOID)
        SK_ACT_CASE(FMLP_ACT_LEAKY_RELU)
    default: break; // identity
    }
#undef SK_ACT_CASE
}

// The epilogue of NV outputs at element offsets o[i] = token·N + n (those with ok[i]) from the
// float32 sums with bias g (plain: the layer's z; gated: the gate) and u (gated: the up
// projection): saved z, activation (and gate product), h. Numerics as eager: z rounded once to
// the dtype, act applied to that rounded z in float32, h rounded once.
template <typename T, bool GATED, int NV>
static __device__ __forceinline__ void sk_finish_n(const sk_layer& L, const unsigned* o, const bool* ok, const float* g,
                                                   const float* u) {
    T gr[NV];
    float v[NV];
#pragma unroll
    for (int i = 0; i < NV; i++) {
        gr[i] = fmlp_from_f32<T>(g[i]);
        v[i] = fmlp_to_f32(gr[i]);
    }
    if (L.z[0])
#pragma unroll
        for (int i = 0; i < NV; i++)
            if (ok[i]) ((T*)L.z[0])[o[i]] = gr[i];
    sk_act_n<NV>(L.act, L.slope, v);
    if (GATED) {
#pragma unroll
        for (int i = 0; i < NV; i++) {
            const T ur = fmlp_from_f32<T>(u[i]);
            if (L.z[1] && ok[i]) ((T*)L.z[1])[o[i]] = ur;
            v[i] *= fmlp_to_f32(ur);
        }
    }
#pragma unroll
    for (int i = 0; i < NV; i++)
        if (ok[i]) ((T*)L.h)[o[i]] = fmlp_from_f32<T>(v[i]);
}

// The staged tile kernel for one layer (fmlp_skinny_tile.cu). sk_tile_plan: 1 if it takes the
// layer (sm_90, 16 < M <= 64, K % 8 == 0 and 16-byte aligned x and weights are the caller's
// checks), filling the layer's K slices (*S blocks per column, a cluster; *KS elements each)
// and dynamic shared memory; 0 if the layer needs more than 8 slices. sk_tile_launch launches
// it with L.S / L.KS from the plan on `device` (current, sm_count multiprocessors); pdl: as a
// programmatic dependent of the previous launch, whose blocks had prev_smem bytes of dynamic
// shared memory (its blocks are then kept one per multiprocessor where they could not share
// one with the earlier layer's); *smem_used: the dynamic shared memory it launched with.
int sk_tile_plan(int gated, int M, int N, int K, int sm_count, int optin_smem, int* S, int* KS, size_t* smem);
cudaError_t sk_tile_launch(const sk_layer& L, fmlp_dtype dt, int gated, size_t smem, int pdl, size_t prev_smem,
                           int device, int sm_count, cudaStream_t stream, size_t* smem_used);
