/* stable_abi.h — C declarations of the LibTorch stable C ABI subset fused_mlp uses.
 *
 * torch's own headers (torch/csrc/inductor/aoti_torch/c/shim.h, torch/csrc/stable/c/shim.h)
 * cannot be included from C (they use C++ `using` aliases), but the functions are
 * extern "C" and exported by libtorch_cpu.so, so we declare the few we call.
 * Available in torch >= 2.10. The CUDA stream getter lives in libtorch_cuda.so and is
 * looked up at run time (fmlp_shim_cuda_stream in ops.c), so one build also loads in
 * CPU-only torch. */
#ifndef FMLP_STABLE_ABI_H
#define FMLP_STABLE_ABI_H
#include <stddef.h>
#include <stdint.h>

typedef int32_t AOTITorchError;
typedef struct AtenTensorOpaque* AtenTensorHandle;
typedef struct TorchLibraryOpaque* TorchLibraryHandle;
typedef uint64_t StableIValue;
typedef struct StableListOpaque* StableListHandle;
typedef void (*StableBoxedFn)(StableIValue* stack, uint64_t nargs, uint64_t nouts);

/* version tag passed to torch_library_impl: we speak the 2.10 calling convention */
#define FMLP_TORCH_ABI_2_10 ((2ULL << 56) | (10ULL << 48))

/* registration */
AOTITorchError aoti_torch_library_init_def(const char* ns, const char* file, uint32_t line,
                                           TorchLibraryHandle* ret);
AOTITorchError aoti_torch_library_init_impl(const char* ns, const char* key, const char* file,
                                            uint32_t line, TorchLibraryHandle* ret);
AOTITorchError aoti_torch_library_def(TorchLibraryHandle self, const char* schema);
AOTITorchError torch_library_impl(TorchLibraryHandle self, const char* name, StableBoxedFn fn,
                                  uint64_t extension_build_version);

/* tensors */
AOTITorchError aoti_torch_get_data_ptr(AtenTensorHandle t, void** ret);
AOTITorchError aoti_torch_get_sizes(AtenTensorHandle t, int64_t** ret);
AOTITorchError aoti_torch_get_strides(AtenTensorHandle t, int64_t** ret);
AOTITorchError aoti_torch_get_dim(AtenTensorHandle t, int64_t* ret);
AOTITorchError aoti_torch_get_dtype(AtenTensorHandle t, int32_t* ret);
AOTITorchError aoti_torch_get_device_type(AtenTensorHandle t, int32_t* ret);
AOTITorchError aoti_torch_get_device_index(AtenTensorHandle t, int32_t* ret);
AOTITorchError aoti_torch_empty_strided(int64_t ndim, const int64_t* sizes, const int64_t* strides,
                                        int32_t dtype, int32_t device_type, int32_t device_index,
                                        AtenTensorHandle* ret);
AOTITorchError aoti_torch_delete_tensor_object(AtenTensorHandle t);
/* a second owning handle to the same tensor (a new reference) */
AOTITorchError aoti_torch_new_tensor_handle(AtenTensorHandle orig, AtenTensorHandle* ret);
int32_t aoti_torch_dtype_float32(void);
int32_t aoti_torch_dtype_float64(void);
int32_t aoti_torch_dtype_bfloat16(void);
int32_t aoti_torch_dtype_float16(void);
int32_t aoti_torch_dtype_uint8(void);
int32_t aoti_torch_device_type_cpu(void);
int32_t aoti_torch_device_type_cuda(void);

/* lists (Tensor[] and int[] arguments and results) */
AOTITorchError torch_new_list_reserve_size(size_t size, StableListHandle* ret);
AOTITorchError torch_list_size(StableListHandle l, size_t* size);
AOTITorchError torch_list_get_item(StableListHandle l, size_t index, StableIValue* el);
AOTITorchError torch_list_push_back(StableListHandle l, StableIValue el);
AOTITorchError torch_delete_list(StableListHandle l);

/* torch's intra-op thread pool */
typedef void (*ParallelFunc)(int64_t begin, int64_t end, void* ctx);
AOTITorchError torch_parallel_for(int64_t begin, int64_t end, int64_t grain_size, ParallelFunc func,
                                  void* ctx);
AOTITorchError torch_get_num_threads(uint32_t* out_num_threads);

/* libtorch_cuda.so, found with dlsym at run time */
typedef AOTITorchError (*fmlp_get_stream_fn)(int32_t device_index, void** ret_stream);
#endif /* FMLP_STABLE_ABI_H */
