/* ws_cache.c — the per-device cached CUDA workspace (contract: ws_cache.h). */
#include "ws_cache.h"
#include <pthread.h>

#define MAX_DEV 64

typedef struct {
    AtenTensorHandle t; /* NULL: none yet */
    void* stream;
    size_t bytes;
} slot;

static slot g_slot[MAX_DEV];
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;

static AtenTensorHandle alloc(int dev, size_t bytes) {
    int64_t size = (int64_t)bytes, stride = 1;
    AtenTensorHandle h = NULL;
    if (aoti_torch_empty_strided(1, &size, &stride, aoti_torch_dtype_uint8(), aoti_torch_device_type_cuda(), dev,
                                 &h) != 0)
        return NULL;
    return h;
}

AtenTensorHandle fmlp_ws_cache_take(int dev, void* stream, size_t bytes, int capturing) {
    if (capturing || dev < 0 || dev >= MAX_DEV || bytes > FMLP_WS_CACHE_MAX) return alloc(dev, bytes);
    AtenTensorHandle mine = NULL;
    pthread_mutex_lock(&g_lock);
    slot* s = &g_slot[dev];
    if (s->t && s->stream == stream && s->bytes >= bytes && aoti_torch_new_tensor_handle(s->t, &mine) == 0) {
        pthread_mutex_unlock(&g_lock);
        return mine;
    }
    pthread_mutex_unlock(&g_lock);
    /* allocate outside the lock (torch's allocator takes its own), then publish */
    mine = alloc(dev, bytes);
    if (!mine) return NULL;
    AtenTensorHandle keep = NULL, old = NULL;
    if (aoti_torch_new_tensor_handle(mine, &keep) == 0) {
        pthread_mutex_lock(&g_lock);
        old = s->t;
        s->t = keep;
        s->stream = stream;
        s->bytes = bytes;
        pthread_mutex_unlock(&g_lock);
    }
    if (old) aoti_torch_delete_tensor_object(old);
    return mine;
}
