"""Eager PyTorch baseline for the small-M targets (bf16, H100): per-forward time of
F.linear + activation chains, launched eagerly and replayed from a CUDA graph, rotating
through 6 weight sets (> L2) like bench_small_m.cu's "cold" column. Median of replays."""
import torch
import torch.nn.functional as F

def bench(fn, sets, per=12, reps=60):
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for i in range(3):
            fn(sets[i % len(sets)])
    torch.cuda.current_stream().wait_stream(s)
    torch.cuda.synchronize()
    def timeit(run):
        ts = []
        for _ in range(reps):
            a, b = torch.cuda.Event(True), torch.cuda.Event(True)
            a.record(); run(); b.record(); b.synchronize()
            ts.append(a.elapsed_time(b) * 1e3 / per)
        ts = sorted(ts[10:])
        return ts[len(ts) // 2]
    eager = timeit(lambda: [fn(sets[i % len(sets)]) for i in range(per)])
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        for i in range(per):
            fn(sets[i % len(sets)])
    graph = timeit(g.replay)
    return eager, graph

dev, dt = "cuda", torch.bfloat16
def mk(*shape): return torch.randn(*shape, device=dev, dtype=dt) * 0.02
print(f"{'case':36s} {'M':>3s} {'eager_us':>9s} {'graph_us':>9s}")
for M in (1, 16):
    x = torch.randn(M, 1024, device=dev, dtype=dt)
    sets = [(mk(4096, 1024), mk(4096), mk(1024, 4096), mk(1024)) for _ in range(6)]
    fn = lambda p: F.linear(F.gelu(F.linear(x, p[0], p[1]), approximate="tanh"), p[2], p[3])
    e, g = bench(fn, sets)
    print(f"{'eager 1024-4096-1024 gelu_tanh bias':36s} {M:3d} {e:9.2f} {g:9.2f}")
x = torch.randn(64, 768, device=dev, dtype=dt)
sets = [(mk(3072, 768), mk(3072, 768), mk(768, 3072)) for _ in range(6)]
fn = lambda p: F.linear(F.gelu(F.linear(x, p[0]), approximate="tanh") * F.linear(x, p[1]), p[2])
e, g = bench(fn, sets)
print(f"{'eager geglu 768-3072-768 nobias':36s} {64:3d} {e:9.2f} {g:9.2f}")
