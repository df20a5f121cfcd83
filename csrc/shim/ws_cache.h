/* ws_cache.h — a cached CUDA workspace per device for calls outside graph capture.
 *
 * Why: at decode sizes a Python loop waits on the host, and allocating and freeing the
 * call's scratch through torch's caching allocator costs ~2.3 us of a ~25 us call on the
 * H100 host (dev/diag/host_loop.py). torch keeps cuBLAS's workspace per stream the same way.
 *
 * Rules: one buffer per device, tagged with the stream it was allocated on (torch's
 * allocator orders its reuse on that stream). A call on that stream that needs at most
 * its size reuses it: work on one stream runs in order, so calls cannot overlap on it.
 * Any other call (another stream, a larger size) gets a fresh allocation, which then
 * replaces the cached one if it is at most FMLP_WS_CACHE_MAX bytes. Calls under CUDA-graph
 * capture never use or replace it (a graph may be replayed on any stream, at any time).
 * The caller gets its own reference, so replacing the buffer never frees memory a call
 * still holds; what stays allocated is at most FMLP_WS_CACHE_MAX bytes per device. */
#ifndef FMLP_SHIM_WS_CACHE_H
#define FMLP_SHIM_WS_CACHE_H
#include <stddef.h>
#include "stable_abi.h"

#define FMLP_WS_CACHE_MAX ((size_t)4 << 20)

/* A uint8 tensor of >= bytes on CUDA device dev (an owning handle: the caller deletes it),
 * or NULL if torch's allocation failed. */
AtenTensorHandle fmlp_ws_cache_take(int dev, void* stream, size_t bytes, int capturing);
#endif
