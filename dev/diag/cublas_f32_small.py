"""Which cuBLAS call shape avoids the split-K path on small fp32 GEMMs? (H100, torch 2.11:
F.linear / addmm at M = 64-256, N = K = 64 run sgemm_largek_lds64 + a cublasLt epilogue + a
scal kernel + a memset, ~13 us per layer.) Graph-replay time per call and the kernels each
variant launches.

    python dev/diag/cublas_f32_small.py
"""
import torch
import torch.nn.functional as F


def graph_us(fn, replays=200):
    s = torch.cuda.Stream()
    with torch.cuda.stream(s):
        for _ in range(3):
            fn()
    torch.cuda.synchronize()
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        for _ in range(10):
            fn()
    g.replay()
    torch.cuda.synchronize()
    ts = []
    for _ in range(5):
        a, b = torch.cuda.Event(True), torch.cuda.Event(True)
        a.record()
        for _ in range(replays // 5):
            g.replay()
        b.record()
        torch.cuda.synchronize()
        ts.append(a.elapsed_time(b) * 1e3 / (replays // 5) / 10)
    return sorted(ts)[2]


def kernel_names(fn):
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as p:
        fn()
        torch.cuda.synchronize()
    return [e.key[:60] for e in p.key_averages() if e.device_time_total > 0]


def main():
    torch.manual_seed(0)
    for M in (16, 64, 256, 1024):
        for N, K in ((64, 64), (256, 256)):
            x = torch.randn(M, K, device="cuda")
            w = torch.randn(N, K, device="cuda")
            b = torch.randn(N, device="cuda")
            out = torch.empty(M, N, device="cuda")
            wt = w.t().contiguous()
            variants = {
                "F.linear(x,w,b)": lambda: F.linear(x, w, b),
                "mm(x, w.t())": lambda: torch.mm(x, w.t()),
                "mm(x, wt) (wt contiguous K x N)": lambda: torch.mm(x, wt),
                "mm.out(x, w.t())": lambda: torch.mm(x, w.t(), out=out),
                "matmul(w, x.t()) (transposed problem)": lambda: torch.mm(w, x.t()),
                "bmm 1-batch": lambda: torch.bmm(x[None], w.t()[None]),
            }
            for name, fn in variants.items():
                t = graph_us(fn)
                print(f"M={M:5d} N={N} K={K}  {name:40s} {t:7.2f} us  {kernel_names(fn)}")


if __name__ == "__main__":
    main()
