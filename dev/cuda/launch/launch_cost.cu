// launch_cost.cu — host time per kernel launch by launch API and parameter size (H100).
// Question (NOTES "Session 11: host time of one call"): the small-M kernel's cooperative
// launch costs 3.5-4.9 us of host time per call; its parameters are ~5.8 KB (32 layer slots).
// Does the host cost come from the cooperative path or from the parameter size?
//   nvcc -O2 -arch=sm_90a -o out/launch_cost dev/cuda/launch/launch_cost.cu && out/launch_cost
#include <cooperative_groups.h>
#include <cstdio>
#include <cstring>
#include <chrono>
#include <algorithm>
#include <vector>

template <int BYTES>
struct P { unsigned char b[BYTES]; };

template <int BYTES>
__global__ void k(const __grid_constant__ P<BYTES> p) {
    if (p.b[0] == 123 && threadIdx.x == 0 && blockIdx.x == 0) printf("never\n");
}
template <int BYTES>
__global__ void kc(const __grid_constant__ P<BYTES> p) {
    cooperative_groups::this_grid().sync();
    if (p.b[0] == 123 && threadIdx.x == 0 && blockIdx.x == 0) printf("never\n");
}

template <int BYTES>
static void run(int grid, int smem) {
    P<BYTES> p;
    memset(&p, 1, sizeof p);
    void* args[] = {&p};
    const void* fns[2] = {(const void*)k<BYTES>, (const void*)kc<BYTES>};
    for (int f = 0; f < 2; f++) cudaFuncSetAttribute(fns[f], cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
    cudaStream_t s;
    cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking);
    const char* names[3] = {"cudaLaunchKernel (plain kernel)", "cudaLaunchCooperativeKernel (grid.sync kernel)",
                            "cudaLaunchKernelExC + cooperative attr"};
    for (int v = 0; v < 3; v++) {
        std::vector<double> r;
        for (int rep = 0; rep < 7; rep++) {
            const int n = 2000;
            cudaStreamSynchronize(s);
            auto t0 = std::chrono::steady_clock::now();
            for (int i = 0; i < n; i++) {
                if (v == 0) cudaLaunchKernel(fns[0], dim3(grid), dim3(256), args, smem, s);
                else if (v == 1) cudaLaunchCooperativeKernel(fns[1], dim3(grid), dim3(256), args, smem, s);
                else {
                    cudaLaunchConfig_t c;
                    memset(&c, 0, sizeof c);
                    c.gridDim = dim3(grid); c.blockDim = dim3(256); c.dynamicSmemBytes = smem; c.stream = s;
                    cudaLaunchAttribute a[1];
                    a[0].id = cudaLaunchAttributeCooperative; a[0].val.cooperative = 1;
                    c.attrs = a; c.numAttrs = 1;
                    cudaLaunchKernelExC(&c, fns[1], args);
                }
            }
            auto t1 = std::chrono::steady_clock::now();
            cudaStreamSynchronize(s);
            r.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count() / n);
        }
        std::sort(r.begin(), r.end());
        printf("params %5d B, grid %3d, smem %6d: %-48s host %.2f us per launch (median of 7 x 2000)\n", BYTES, grid,
               smem, names[v], r[3]);
    }
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) printf("error: %s\n", cudaGetErrorString(e));
    cudaStreamDestroy(s);
}

int main() {
    int sms = 0;
    cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0);
    cudaFree(0);
    run<64>(sms, 200 * 1024);
    run<1024>(sms, 200 * 1024);
    run<4096>(sms, 200 * 1024);
    run<6144>(sms, 200 * 1024);
    run<64>(sms, 0);
    run<6144>(sms, 0);
    return 0;
}
